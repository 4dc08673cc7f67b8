package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// MaxAPITimeout bounds X-API-Timeout (7 days).
const MaxAPITimeout = 7 * 24 * time.Hour

// rereadEvery is the slow re-read of a waited-for job, in case its completion event was lost
// (pub/sub is at-most-once).
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

func apiTimeoutHeader(c echo.Context) (time.Duration, error) {
	v := c.Request().Header.Get("X-API-Timeout")
	if v == "" {
		return job.DefaultTimeout, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n <= 0 || time.Duration(n)*time.Second > MaxAPITimeout {
		return 0, plain(http.StatusBadRequest, "Invalid header[X-API-Timeout], it must be a number of seconds between 1 and %d", int64(MaxAPITimeout/time.Second))
	}
	return time.Duration(n) * time.Second, nil
}

func webHookHeader(c echo.Context) (string, error) {
	v := c.Request().Header.Get("X-Web-Hook")
	if v == "" {
		return "", nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(v) > 2048 {
		return "", plain(http.StatusBadRequest, "Invalid header[X-Web-Hook], it must be an absolute http or https URL")
	}
	return v, nil
}

// waitLimit is how long this call may wait for its job: the configured limit, shortened by
// "Prefer: wait=N", zero with "Prefer: respond-async" or a web hook (RFC 7240 preferences).
func (s *Server) waitLimit(c echo.Context, hook string) time.Duration {
	if hook != "" {
		return 0
	}
	limit := s.Config.WaitLimit
	for _, pref := range c.Request().Header.Values("Prefer") {
		for _, p := range strings.Split(pref, ",") {
			p = strings.ToLower(strings.TrimSpace(p))
			if p == "respond-async" {
				return 0
			}
			if v, ok := strings.CutPrefix(p, "wait="); ok {
				if n, err := strconv.Atoi(v); err == nil && n >= 0 {
					limit = min(limit, time.Duration(n)*time.Second)
				}
			}
		}
	}
	return limit
}

// createVMFromBackup is POST /zstack/v1/vm-instances/from/vm-backups/{groupUuid}.
func (s *Server) createVMFromBackup() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		sess := session(c)
		jobUUID, err := jobUUIDHeader(c)
		if err != nil {
			return err
		}
		timeout, err := apiTimeoutHeader(c)
		if err != nil {
			return err
		}
		hook, err := webHookHeader(c)
		if err != nil {
			return err
		}
		body, err := decodeCreateVM(c)
		if err != nil {
			return err
		}
		req, ec := job.FromZStack(c.Param("groupUuid"), body)
		if ec != nil {
			return ec
		}
		rec := &job.Record{UUID: jobUUID, AccountUUID: sess.AccountUUID, Request: req,
			CreatedAt: time.Now(), Timeout: timeout, WebHook: hook}

		binding := store.ResourceBinding{JobUUID: jobUUID, GroupUUID: req.GroupUUID, AccountUUID: sess.AccountUUID}
		if req.ResourceUUID != "" {
			prev, err := s.Store.ClaimResource(ctx, req.ResourceUUID, binding)
			if err != nil {
				return err
			}
			if prev != nil {
				return s.answerRepeat(c, sess, req, prev, hook)
			}
		}
		if err := s.Store.CreateJob(ctx, rec); err != nil {
			if req.ResourceUUID != "" {
				s.undo(ctx, "release resourceUuid "+req.ResourceUUID, func(ctx context.Context) error {
					return s.Store.ReleaseResource(ctx, req.ResourceUUID, binding)
				})
			}
			if errors.Is(err, store.ErrJobExists) {
				return plain(http.StatusBadRequest, "Duplicate job uuid[%s]", jobUUID)
			}
			return err
		}
		if err := s.Queue.EnqueueRestore(ctx, jobUUID, rec.Deadline()); err != nil {
			s.undo(ctx, "abandon job "+jobUUID, func(ctx context.Context) error {
				return s.Store.AbandonJob(ctx, jobUUID, req.ResourceUUID, binding)
			})
			if errors.Is(err, queue.ErrDuplicate) {
				return plain(http.StatusBadRequest, "Duplicate job uuid[%s]", jobUUID)
			}
			return err
		}
		s.Metrics.JobsSubmitted.Inc()
		return s.waitAndAnswer(c, jobUUID, timeout, hook)
	}
}

// answerRepeat answers a request whose resourceUuid is already bound: the same group (and
// account) gets the first job's answer instead of a second VM; anything else is an error.
func (s *Server) answerRepeat(c echo.Context, sess *store.Session, req *job.Request, prev *store.ResourceBinding, hook string) error {
	prevJob := prev.JobUUID
	ctx := c.Request().Context()
	if prev.GroupUUID != req.GroupUUID {
		return zstack.InvalidArgument("resourceUuid[%s] is already used by the restore of another group; choose another resourceUuid", req.ResourceUUID)
	}
	st, err := s.Store.GetJobStatus(ctx, prevJob)
	if errors.Is(err, store.ErrNotFound) {
		// The first job's record expired; its VM, if it exists, is the answer.
		vm, owner, verr := s.Store.GetVM(ctx, req.ResourceUUID)
		if verr != nil || !canSee(sess, owner) {
			return zstack.InvalidArgument("resourceUuid[%s] is already used; choose another resourceUuid", req.ResourceUUID)
		}
		return writeJSON(c, http.StatusOK, map[string]any{"inventory": vm})
	}
	if err != nil {
		return err
	}
	if !canSee(sess, st.Account) {
		return zstack.InvalidArgument("resourceUuid[%s] is already used; choose another resourceUuid", req.ResourceUUID)
	}
	return s.waitAndAnswer(c, prevJob, job.DefaultTimeout, hook)
}

// waitAndAnswer waits for the job within this call's limit and answers 200/503 when it
// ended, or 202 with the poll location.
func (s *Server) waitAndAnswer(c echo.Context, jobUUID string, timeout time.Duration, hook string) error {
	limit := s.waitLimit(c, hook)
	if limit > 0 {
		start := time.Now()
		st, err := s.waitJob(c.Request().Context(), jobUUID, limit)
		if err != nil {
			return err
		}
		if st != nil {
			s.Metrics.SyncWait.WithLabelValues("finished").Observe(time.Since(start).Seconds())
			return answerStatus(c, st)
		}
		s.Metrics.SyncWait.WithLabelValues("degraded").Observe(time.Since(start).Seconds())
	}
	loc := jobLocation(c, jobUUID)
	c.Response().Header().Set("Location", loc)
	return writeJSON(c, http.StatusAccepted, map[string]any{"location": loc, "apiTimeout": timeout.Milliseconds()})
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
// pub/sub may drop events. It returns nil when the limit passes first.
func (s *Server) waitJob(ctx context.Context, jobUUID string, limit time.Duration) (*store.JobStatus, error) {
	done, stop := s.Events.WatchJob(jobUUID)
	defer stop()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	reread := time.NewTicker(rereadEvery)
	defer reread.Stop()
	for {
		st, err := s.Store.GetJobStatus(ctx, jobUUID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if st != nil && st.State.Terminal() {
			return st, nil
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

func answerStatus(c echo.Context, st *store.JobStatus) error {
	if !st.State.Terminal() {
		return writeJSON(c, http.StatusAccepted, map[string]any{})
	}
	body, ok := job.Answer(st.State, st.Result, st.Error)
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	return c.Blob(status, "application/json; charset=utf-8", body)
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
		return answerStatus(c, st)
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
