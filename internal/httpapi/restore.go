package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// rereadEvery is the slow re-read of a waited-for job, in case its completion event was lost
// (pub/sub is at-most-once) or Redis did not answer the last read.
const rereadEvery = 2 * time.Second

func jobUUIDHeader(c echo.Context) (string, error) {
	v := c.Request().Header.Get("X-Job-UUID")
	if v == "" {
		return zstack.NewUUID(), nil
	}
	if !zstack.IsUUID(v) {
		return "", plain(http.StatusBadRequest, "Invalid header[X-Job-UUID], it must be a UUID with '-' stripped")
	}
	return v, nil
}

// apiTimeoutHeader reads X-API-Timeout: any positive number of seconds that fits a long, as
// ZStack takes it. Past about 292 years (the longest time.Duration) it means "never".
func apiTimeoutHeader(c echo.Context) (time.Duration, error) {
	v := strings.TrimSpace(c.Request().Header.Get("X-API-Timeout"))
	if v == "" {
		return job.DefaultTimeout, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, plain(http.StatusBadRequest, "Invalid header[X-API-Timeout], it must be a positive whole number of seconds, got %q", v)
	}
	if n > int64(math.MaxInt64/time.Second) {
		return time.Duration(math.MaxInt64), nil
	}
	return time.Duration(n) * time.Second, nil
}

// webHookHeader reads X-Web-Hook: an absolute http(s) URL the web hook policy allows (its
// address, when the URL names one; names are checked again on their address at delivery).
func (s *Server) webHookHeader(c echo.Context) (string, error) {
	v := c.Request().Header.Get("X-Web-Hook")
	if v == "" {
		return "", nil
	}
	if err := s.WebHooks.CheckURL(v); err != nil {
		return "", plain(http.StatusBadRequest, "Invalid header[X-Web-Hook]: %v", err)
	}
	return v, nil
}

// waitFor is how long this call waits for its job before answering 202 with the poll
// location: def (none on the ZStack route, as ZStack answers every async API at once;
// VMRESTORE_WAIT_LIMIT on the native one), or what "Prefer: wait=N" (RFC 7240) asks, never
// more than VMRESTORE_WAIT_LIMIT; none with "Prefer: respond-async" or a web hook.
func (s *Server) waitFor(c echo.Context, hook string, def time.Duration) time.Duration {
	if hook != "" {
		return 0
	}
	wait := def
	for _, pref := range c.Request().Header.Values("Prefer") {
		for _, p := range strings.Split(pref, ",") {
			p = strings.ToLower(strings.TrimSpace(p))
			if p == "respond-async" {
				return 0
			}
			if v, ok := strings.CutPrefix(p, "wait="); ok {
				if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n >= 0 {
					wait = time.Duration(min(n, int64(math.MaxInt64/time.Second))) * time.Second
				}
			}
		}
	}
	return min(wait, s.Config.WaitLimit)
}

// submission is a CreateVmFromVmBackup call as the API received it: the headers RestServer
// reads, and the validated request or why it is invalid.
type submission struct {
	jobUUID string
	timeout time.Duration
	hook    string
	req     *job.Request
	// invalid is why the call breaks the API's rules; it then becomes a job that failed.
	invalid *zstack.ErrorCode
	// group and name describe an invalid call in its job record.
	group, name string
}

// readSubmission reads a call's headers and body. It answers with an error only what ZStack's
// RestServer refuses before it queues a call (see DecodeCreateVM); the API's own rules are
// checked here too but reported through the job.
func (s *Server) readSubmission(c echo.Context, group string) (*submission, error) {
	jobUUID, err := jobUUIDHeader(c)
	if err != nil {
		return nil, err
	}
	timeout, err := apiTimeoutHeader(c)
	if err != nil {
		return nil, err
	}
	hook, err := s.webHookHeader(c)
	if err != nil {
		return nil, err
	}
	body, err := decodeCreateVM(c)
	if err != nil {
		return nil, err
	}
	sub := &submission{jobUUID: jobUUID, timeout: timeout, hook: hook}
	sub.req, sub.invalid = job.FromZStack(group, body)
	if sub.invalid != nil {
		sub.group, sub.name = firstOf(group, body.GroupUUID, body.Params.GroupUUID), body.Params.Name
	}
	return sub, nil
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// createVMFromBackup is POST /zstack/v1/vm-instances/from/vm-backups/{groupUuid}: 202 with
// the poll location at once, as ZStack answers; "Prefer: wait=N" waits for the result.
func (s *Server) createVMFromBackup() echo.HandlerFunc {
	return func(c echo.Context) error {
		sub, err := s.readSubmission(c, c.Param("groupUuid"))
		if err != nil {
			return err
		}
		return s.submit(c, sub, s.waitFor(c, sub.hook, 0), false)
	}
}

// restoreNow is POST /api/v1/restores, vmrestore's synchronous restore: the ZStack body plus
// groupUuid. It waits up to VMRESTORE_WAIT_LIMIT and answers 200 with the inventory, the
// error with a status that says what happened, or 202 with the poll location.
func (s *Server) restoreNow() echo.HandlerFunc {
	return func(c echo.Context) error {
		sub, err := s.readSubmission(c, "")
		if err == nil {
			err = s.submit(c, sub, s.waitFor(c, sub.hook, s.Config.WaitLimit), true)
		}
		// The native API answers its refusals as ErrorCodes, like its other errors.
		if status, text, ok := Refusal(err); ok && status == http.StatusBadRequest {
			return zstack.InvalidArgument("%s", text)
		}
		return err
	}
}

// submit turns a call into a job and answers it: a valid call is queued; an invalid one (or
// one whose resourceUuid cannot be used) is a job that has already failed, reported through
// the poll as ZStack reports its interceptors' refusals; the repeat of a restore answers
// with the first one's job.
func (s *Server) submit(c echo.Context, sub *submission, wait time.Duration, native bool) error {
	ctx := c.Request().Context()
	sess := session(c)
	if sub.invalid == nil && sub.req.ResourceUUID != "" {
		req := sub.req
		prev, err := s.Store.ClaimResource(ctx, req.ResourceUUID, store.ResourceBinding{JobUUID: sub.jobUUID, GroupUUID: req.GroupUUID, AccountUUID: sess.AccountUUID})
		if ec, ok := zstack.AsErrorCode(err); ok {
			sub.invalid = ec
		} else if err != nil {
			return err
		} else if prev != nil {
			return s.answerRepeat(c, sess, sub, prev, wait, native)
		}
	}
	if sub.invalid != nil {
		return s.refuseAsJob(c, sub, wait, native)
	}
	req := sub.req
	binding := store.ResourceBinding{JobUUID: sub.jobUUID, GroupUUID: req.GroupUUID, AccountUUID: sess.AccountUUID}
	rec := &job.Record{UUID: sub.jobUUID, AccountUUID: sess.AccountUUID, Request: req,
		CreatedAt: time.Now(), Timeout: sub.timeout, WebHook: sub.hook}
	if err := s.Store.CreateJob(ctx, rec); err != nil {
		if errors.Is(err, store.ErrJobExists) {
			return s.repeatedJobUUID(ctx, sub, binding)
		}
		// Redis may have created the job and lost the answer as it went away: it is
		// withdrawn as a job whose task could not be queued is (AbandonJob releases the
		// resourceUuid whether or not there was a job).
		s.undo(ctx, "abandon job "+sub.jobUUID, func(ctx context.Context) error {
			return s.Store.AbandonJob(ctx, sub.jobUUID, rec.Submission, req.ResourceUUID, binding)
		})
		return err
	}
	if err := s.Queue.EnqueueRestore(ctx, sub.jobUUID, rec.Deadline()); err != nil {
		s.undo(ctx, "abandon job "+sub.jobUUID, func(ctx context.Context) error {
			return s.Store.AbandonJob(ctx, sub.jobUUID, rec.Submission, req.ResourceUUID, binding)
		})
		if errors.Is(err, queue.ErrDuplicate) {
			return plain(http.StatusBadRequest, "Duplicate job uuid[%s]", sub.jobUUID)
		}
		return err
	}
	s.Metrics.JobsSubmitted.Inc()
	return s.answerJob(c, sub.jobUUID, sub.timeout, wait, native)
}

// repeatedJobUUID answers a submission whose job uuid (X-Job-UUID) names a job that exists:
// "Duplicate job uuid", as ZStack answers. A client that retries after a 503 may find the job
// of its own earlier try, whose task could not be queued and which is withdrawn once Redis
// answers (see undo): that is answered 503 again until it is gone, so the retry then creates
// the job, rather than being told the job exists while it is removed. The resourceUuid claim
// is released unless it is the existing job's (the same uuid claimed it).
func (s *Server) repeatedJobUUID(ctx context.Context, sub *submission, binding store.ResourceBinding) error {
	resource := sub.req.ResourceUUID
	existing, err := s.Store.GetJobSubmission(ctx, sub.jobUUID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if resource != "" && (existing == nil || existing.ResourceUUID != resource) {
		s.undo(ctx, "release resourceUuid "+resource, func(ctx context.Context) error {
			return s.Store.ReleaseResource(ctx, resource, binding)
		})
	}
	withdrawn := zstack.Errorf(zstack.CodeInternal,
		"job uuid[%s]: an earlier try of this submission could not be queued and is being withdrawn; retry in a few seconds", sub.jobUUID)
	if existing == nil {
		return withdrawn // gone since CreateJob saw it
	}
	if existing.State == job.Pending && existing.Attempts == 0 && existing.Plan == "" {
		queued, err := s.Queue.Queued(sub.jobUUID)
		if err != nil {
			return err
		}
		if !queued {
			return withdrawn
		}
	}
	return plain(http.StatusBadRequest, "Duplicate job uuid[%s]", sub.jobUUID)
}

// refuseAsJob records an invalid call as a job that failed with why, and answers with it.
func (s *Server) refuseAsJob(c echo.Context, sub *submission, wait time.Duration, native bool) error {
	rec := &job.Record{UUID: sub.jobUUID, AccountUUID: session(c).AccountUUID,
		Request:   &job.Request{GroupUUID: sub.group, Name: sub.name},
		CreatedAt: time.Now(), Timeout: sub.timeout, WebHook: sub.hook}
	return s.endedJob(c, rec, job.Failed, nil, sub.invalid, wait, native)
}

// endedJob stores a job that ended before any task ran, delivers its web hook, and answers.
func (s *Server) endedJob(c echo.Context, rec *job.Record, state job.State, result json.RawMessage, e *zstack.ErrorCode, wait time.Duration, native bool) error {
	ctx := c.Request().Context()
	if err := s.Store.CreateEndedJob(ctx, rec, state, result, e); err != nil {
		if errors.Is(err, store.ErrJobExists) {
			return plain(http.StatusBadRequest, "Duplicate job uuid[%s]", rec.UUID)
		}
		return err
	}
	if e != nil {
		s.Metrics.Jobs.WithLabelValues(string(state), e.Code).Inc()
	}
	if rec.WebHook != "" {
		if err := s.Queue.EnqueueWebHook(ctx, rec.UUID); err != nil {
			s.Log.Error("queue the web hook of a job that ended at once", "job", rec.UUID, "err", err)
		}
	}
	return s.answerJob(c, rec.UUID, rec.Timeout, wait, native)
}

// answerRepeat answers a call whose resourceUuid is already bound: the same group (and
// account) gets the first job instead of a second VM; anything else fails the call.
func (s *Server) answerRepeat(c echo.Context, sess *store.Session, sub *submission, prev *store.ResourceBinding, wait time.Duration, native bool) error {
	ctx := c.Request().Context()
	req := sub.req
	if c.Request().Header.Get("X-Job-UUID") != "" {
		exists, err := s.Store.JobExists(ctx, sub.jobUUID)
		if err != nil {
			return err
		}
		if exists && sub.jobUUID != prev.JobUUID {
			return plain(http.StatusBadRequest, "Duplicate job uuid[%s]", sub.jobUUID)
		}
	}
	fail := func(format string, args ...any) error {
		sub.invalid, sub.group, sub.name = zstack.InvalidArgument(format, args...), req.GroupUUID, req.Name
		return s.refuseAsJob(c, sub, wait, native)
	}
	if prev.GroupUUID != req.GroupUUID {
		return fail("resourceUuid[%s] is already used by the restore of another group; choose another resourceUuid", req.ResourceUUID)
	}
	st, err := s.Store.GetJobStatus(ctx, prev.JobUUID)
	if errors.Is(err, store.ErrNotFound) {
		// The first job's record was purged; its VM, if it exists, is the answer.
		vm, owner, verr := s.Store.GetVM(ctx, req.ResourceUUID)
		if verr != nil || !canSee(sess, owner) {
			return fail("resourceUuid[%s] is already used; choose another resourceUuid", req.ResourceUUID)
		}
		result, err := json.Marshal(vm)
		if err != nil {
			return err
		}
		rec := &job.Record{UUID: sub.jobUUID, AccountUUID: sess.AccountUUID, Request: req, CreatedAt: time.Now(),
			Timeout: sub.timeout, WebHook: sub.hook, VMUUID: vm.UUID}
		return s.endedJob(c, rec, job.Succeeded, result, nil, wait, native)
	}
	if err != nil {
		return err
	}
	if !canSee(sess, st.Account) {
		return fail("resourceUuid[%s] is already used; choose another resourceUuid", req.ResourceUUID)
	}
	return s.answerJob(c, prev.JobUUID, job.DefaultTimeout, wait, native)
}

// answerJob waits up to wait for the job and answers with its end (200 or the error) when it
// ended in time, or else 202 with the poll location. A wait that Redis cuts short is not a
// failure: the job was accepted, so the answer is the location to poll.
func (s *Server) answerJob(c echo.Context, jobUUID string, timeout, wait time.Duration, native bool) error {
	if wait > 0 {
		start := time.Now()
		st, err := s.waitJob(c.Request().Context(), jobUUID, wait)
		if err != nil {
			return err
		}
		if st != nil {
			s.Metrics.SyncWait.WithLabelValues("finished").Observe(time.Since(start).Seconds())
			return answerEnded(c, st, native)
		}
		s.Metrics.SyncWait.WithLabelValues("degraded").Observe(time.Since(start).Seconds())
	}
	loc := jobLocation(c, jobUUID)
	c.Response().Header().Set("Location", loc)
	accepted := zstack.AsyncAnswer{Location: loc, APITimeout: timeout.Milliseconds()}
	if native {
		return writeJSON(c, http.StatusAccepted, apiv1.RestoreAccepted{AsyncAnswer: accepted, JobUUID: jobUUID})
	}
	return writeJSON(c, http.StatusAccepted, accepted)
}

// jobLocation is the poll URL; it keeps "/zstack/v1/api-jobs" so ZStack's SDK can rewrite
// the host part. It is built on the configured public URL when there is one (see
// publicBase), otherwise on the request's scheme and Host header.
func jobLocation(c echo.Context, jobUUID string) string {
	if base, _ := c.Get(publicURLKey).(string); base != "" {
		return base + "/zstack/v1/api-jobs/" + jobUUID
	}
	return fmt.Sprintf("%s://%s/zstack/v1/api-jobs/%s", c.Scheme(), c.Request().Host, jobUUID)
}

// waitJob watches for the job's completion event before reading its record (so no event
// can slip between the two), wakes on the event, and re-reads on a slow timer because
// pub/sub may drop events. A read Redis does not answer is retried on the timer. It returns
// nil when the limit passes first; an error only when the caller went away.
func (s *Server) waitJob(ctx context.Context, jobUUID string, limit time.Duration) (*store.JobStatus, error) {
	done, stop := s.Events.WatchJob(jobUUID)
	defer stop()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	reread := time.NewTicker(rereadEvery)
	defer reread.Stop()
	for {
		st, err := s.Store.GetJobStatus(ctx, jobUUID)
		switch {
		case err == nil && st.State.Terminal():
			return st, nil
		case err != nil && !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil:
			s.Log.Warn("reading a waited-for job failed; retrying, and answering 202 with the poll location if the wait ends first",
				"job", jobUUID, "err", err)
		}
		select {
		case <-done:
		case <-reread.C:
		case <-deadline.C:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// answerEnded answers with a job that ended: 200 with the inventory (and its schema when
// asked for), or the error: 503 on the ZStack routes, a status that says what happened on
// the native one.
func answerEnded(c echo.Context, st *store.JobStatus, native bool) error {
	if st.State == job.Succeeded {
		if len(st.Result) == 0 {
			// An operation whose event carries no inventory (DestroyVmInstance, ExpungeVmInstance).
			return writeJSON(c, http.StatusOK, map[string]any{})
		}
		if !wantsSchema(c) {
			// The stored inventory as is: no re-encoding on the synchronous path.
			body, _ := job.Answer(st.State, st.Result, nil)
			return writeJSONBytes(c, http.StatusOK, body)
		}
		return writeAnswer(c, false, field{"inventory", st.Result, zstack.ClassVmInstance})
	}
	status := http.StatusServiceUnavailable
	if native {
		status = nativeStatus(st.Error)
	}
	return writeJSON(c, status, zstack.ErrorAnswer{Error: st.Error})
}

// pollJob is GET /zstack/v1/api-jobs/{uuid}: 202 {} while running, 200 with the inventory,
// 503 with the error, 404 "the job has been expired" when unknown, purged, or another
// tenant's (so uuids cannot be probed).
func (s *Server) pollJob() echo.HandlerFunc {
	return func(c echo.Context) error {
		st, err := s.Store.GetJobStatus(c.Request().Context(), c.Param("uuid"))
		if errors.Is(err, store.ErrNotFound) || err == nil && !canSee(session(c), st.Account) {
			return plain(http.StatusNotFound, "the job has been expired")
		}
		if err != nil {
			return err
		}
		if !st.State.Terminal() {
			return writeJSON(c, http.StatusAccepted, map[string]any{})
		}
		return answerEnded(c, st, false)
	}
}

// undoRetryFor bounds how long an undo that could not reach Redis is retried in the background.
const undoRetryFor = 10 * time.Minute

// undo runs the undo of a submission that failed half-way. When Redis is unreachable (the
// likely reason the submission failed) it is retried in the background, every second, until
// Redis answers: a request answered with an error must leave no job behind to run later, nor
// a resourceUuid bound to a job that never runs.
func (s *Server) undo(ctx context.Context, what string, fn func(context.Context) error) {
	ctx = context.WithoutCancel(ctx)
	err := fn(ctx)
	if err == nil || !store.Unavailable(err) {
		if err != nil {
			s.Log.Error("undo of a failed submission failed", "undo", what, "err", err)
		}
		return
	}
	s.Log.Warn("Redis is unreachable; the undo of a failed submission is retried until it answers", "undo", what, "err", err)
	go func() {
		deadline := time.Now().Add(undoRetryFor)
		for time.Now().Before(deadline) {
			time.Sleep(time.Second)
			switch err = fn(ctx); {
			case err == nil:
				s.Log.Info("undo of a failed submission done", "undo", what)
				return
			case !store.Unavailable(err):
				s.Log.Error("undo of a failed submission failed", "undo", what, "err", err)
				return
			}
		}
		s.Log.Error("undo of a failed submission gave up; check the job with GET /api/v1/jobs/{uuid}", "undo", what, "err", err, "tried", undoRetryFor.String())
	}()
}
