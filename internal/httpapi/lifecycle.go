package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
)

// vmActions maps the key of a PUT /zstack/v1/vm-instances/{uuid}/actions body to its
// operation, as the SDK's action classes name them.
var vmActions = map[string]string{
	"expungeVmInstance": job.OpExpunge,
	"recoverVmInstance": job.OpRecover,
	"stopVmInstance":    job.OpStop,
	"startVmInstance":   job.OpStart,
	"rebootVmInstance":  job.OpReboot,
}

// destroyVM is DELETE /zstack/v1/vm-instances/{uuid}?deleteMode=Permissive|Enforcing
// (DestroyVmInstance): 202 with the poll location, as every ZStack action.
func (s *Server) destroyVM() echo.HandlerFunc {
	return func(c echo.Context) error {
		op := &job.VMOp{Name: job.OpDestroy, VMUUID: c.Param("uuid"), DeleteMode: c.QueryParam("deleteMode")}
		return s.submitVMOperation(c, op)
	}
}

// vmAction is PUT /zstack/v1/vm-instances/{uuid}/actions: the body names one action,
// {"stopVmInstance": {"type": "grace"}}, {"startVmInstance": {"hostUuid": ...}},
// {"rebootVmInstance": {}}, {"recoverVmInstance": {}} or {"expungeVmInstance": {}}. A body
// naming none is refused at once, as RestServer does; the rest comes through the poll.
func (s *Server) vmAction() echo.HandlerFunc {
	return func(c echo.Context) error {
		op, err := decodeVMAction(c)
		if err != nil {
			return err
		}
		return s.submitVMOperation(c, op)
	}
}

// vmActionParams are the parameters the actions take (each reads its own).
type vmActionParams struct {
	Type     string `json:"type"`
	HostUUID string `json:"hostUuid"`
}

func decodeVMAction(c echo.Context) (*job.VMOp, error) {
	data, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return nil, err
	}
	return DecodeVMAction(c.Param("uuid"), data)
}

// DecodeVMAction parses the body of PUT /zstack/v1/vm-instances/{uuid}/actions as RestServer
// does: a body that is not a JSON object, names no known action, or gives an action
// something other than an object of parameters is a plain-text 400 (see Refusal); the
// parameters' values are checked later (job.VMOp.Validate), through the job. Keys the
// action does not take are ignored, as ZStack ignores them.
func DecodeVMAction(uuid string, data []byte) (*job.VMOp, error) {
	var top map[string]json.RawMessage
	if body := bytes.TrimSpace(data); len(body) > 0 {
		if !json.Valid(body) {
			return nil, malformed(body)
		}
		if body[0] != '{' {
			return nil, plain(http.StatusBadRequest, "the request body must be a JSON object like {\"stopVmInstance\": {...}}, got %s", rawKind(body))
		}
		if err := json.Unmarshal(body, &top); err != nil {
			return nil, refusal(jsonError(err))
		}
	}
	for key, name := range vmActions {
		raw, ok := top[key]
		if !ok {
			continue
		}
		var p vmActionParams
		if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] != 'n' {
			if t[0] != '{' {
				return nil, plain(http.StatusBadRequest, "the value of %q must be a JSON object of its parameters, got %s", key, rawKind(raw))
			}
			if err := json.Unmarshal(t, &p); err != nil {
				return nil, refusal(jsonError(err))
			}
		}
		op := &job.VMOp{Name: name, VMUUID: uuid}
		switch name { // each action keeps only the parameters it takes
		case job.OpStart:
			op.HostUUID = p.HostUUID
		case job.OpStop:
			op.StopType = p.Type
		}
		return op, nil
	}
	return nil, plain(http.StatusBadRequest, "the body doesn't contain action mapping to the URL[/v1/vm-instances/%s/actions]", uuid)
}

// submitVMOperation turns a life-cycle call into a job: queued when the call is valid and the
// VM is the caller's; otherwise a job that has already failed (unknown VM, another account's
// VM, a bad parameter), reported through the poll as ZStack reports its interceptors'
// refusals. The VM's state is checked by the worker, when the operation runs.
func (s *Server) submitVMOperation(c echo.Context, op *job.VMOp) error {
	jobUUID, err := jobUUIDHeader(c)
	if err != nil {
		return err
	}
	timeout, err := apiTimeoutHeader(c)
	if err != nil {
		return err
	}
	hook, err := s.webHookHeader(c)
	if err != nil {
		return err
	}
	ctx, sess := c.Request().Context(), session(c)
	rec := &job.Record{UUID: jobUUID, AccountUUID: sess.AccountUUID, Op: op, VMUUID: op.VMUUID,
		CreatedAt: time.Now(), Timeout: timeout, WebHook: hook}
	wait := s.waitFor(c, hook, 0)
	if e := op.Validate(); e != nil {
		return s.endedJob(c, rec, job.Failed, nil, e, wait, false)
	}
	_, owner, err := s.Store.GetVM(ctx, op.VMUUID)
	if errors.Is(err, store.ErrNotFound) || err == nil && !canSee(sess, owner) {
		return s.endedJob(c, rec, job.Failed, nil, op.NotFound(), wait, false)
	}
	if err != nil {
		return err
	}
	if err := s.Store.CreateJob(ctx, rec); err != nil {
		if errors.Is(err, store.ErrJobExists) {
			return plain(http.StatusBadRequest, "Duplicate job uuid[%s]", jobUUID)
		}
		return err
	}
	if err := s.Queue.EnqueueVMOperation(ctx, jobUUID, rec.Deadline()); err != nil {
		s.undo(ctx, "abandon job "+jobUUID, func(ctx context.Context) error {
			return s.Store.AbandonJob(ctx, jobUUID, rec.Submission, "", store.ResourceBinding{JobUUID: jobUUID})
		})
		if errors.Is(err, queue.ErrDuplicate) {
			return plain(http.StatusBadRequest, "Duplicate job uuid[%s]", jobUUID)
		}
		return err
	}
	s.Metrics.JobsSubmitted.Inc()
	return s.answerJob(c, jobUUID, timeout, wait, false)
}
