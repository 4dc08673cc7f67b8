package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/auth"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/plan"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// submitPlan is POST /api/v1/plans (?dryRun=true simulates and stores nothing).
func (s *Server) submitPlan() echo.HandlerFunc {
	return func(c echo.Context) error {
		data, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		var spec apiv1.PlanSpec
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&spec); err != nil {
			if len(bytes.TrimSpace(data)) == 0 {
				return zstack.InvalidArgument("the request body is empty; it must be a plan (see /api/v1/openapi.yaml)")
			}
			if strings.HasPrefix(err.Error(), "json: unknown field") {
				return zstack.InvalidArgument("the plan is not valid: %v; a plan's fields are %s, and those of its parts are in /api/v1/openapi.yaml (a CreateVmFromVmBackup body goes to POST /api/v1/restores)",
					err, strings.Join(zstack.JSONNames(reflect.TypeOf(apiv1.PlanSpec{})), ", "))
			}
			return zstack.InvalidArgument("the plan is not valid: %v", err)
		}
		sess := session(c)
		dry := c.QueryParam("dryRun") == "true"
		res, err := s.Plans.Submit(c.Request().Context(), &spec, sess.AccountUUID, auth.IsAdmin(sess), dry)
		if err != nil {
			return err
		}
		if dry {
			return writeJSON(c, http.StatusOK, res.DryRun)
		}
		rep, err := plan.Progress(c.Request().Context(), s.Store, res.UUID, false, "")
		if err != nil {
			return err
		}
		c.Response().Header().Set("Location", "/api/v1/plans/"+res.UUID)
		status := http.StatusCreated
		if res.Existing {
			status = http.StatusOK
		}
		return writeJSON(c, status, rep)
	}
}

// planFor reads a plan the session may see; others' plans answer as not found.
func (s *Server) planFor(c echo.Context) (*store.PlanMeta, error) {
	uuid := c.Param("uuid")
	meta, _, err := s.Store.GetPlan(c.Request().Context(), uuid)
	if errors.Is(err, store.ErrNotFound) || err == nil && !canSee(session(c), meta.AccountUUID) {
		return nil, zstack.Errorf(zstack.CodeNotFound, "plan %s does not exist", uuid)
	}
	return meta, err
}

// listPlans is GET /api/v1/plans: the plans the session may see, newest first, without items.
func (s *Server) listPlans() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		uuids, err := s.Store.ListPlans(ctx, ownerFilter(session(c)))
		if err != nil {
			return err
		}
		out := make([]apiv1.PlanReport, 0, len(uuids))
		for _, u := range uuids {
			rep, err := plan.Progress(ctx, s.Store, u, false, "")
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, *rep)
		}
		return writeJSON(c, http.StatusOK, apiv1.PlanList{Plans: out})
	}
}

// getPlan is GET /api/v1/plans/{uuid}: progress with every item (?items=none for totals
// only, ?items=<state> for the items in one state).
func (s *Server) getPlan() echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, err := s.planFor(c); err != nil {
			return err
		}
		items, filter := true, ""
		switch q := c.QueryParam("items"); q {
		case "", "all":
		case "none":
			items = false
		case store.ItemPending, store.ItemRunning, store.ItemSucceeded, store.ItemFailed, store.ItemCancelled:
			filter = q
		default:
			return zstack.InvalidArgument("items=%q must be all, none, or an item state (%v)", q, store.ItemStates)
		}
		rep, err := plan.Progress(c.Request().Context(), s.Store, c.Param("uuid"), items, filter)
		if err != nil {
			return err
		}
		if rep.Cleanup, err = s.planCleanup(c.Request().Context(), rep.UUID); err != nil {
			return err
		}
		return writeJSON(c, http.StatusOK, rep)
	}
}

// planEvents is GET /api/v1/plans/{uuid}/events: Server-Sent Events. A "progress" event
// carries the totals whenever they change, an "item" event each item whose state, stage or
// bytes changed, and an "end" event the final totals, after which the stream closes.
// eventWriteTimeout bounds one write of an event stream; eventKeepAlive is the longest a
// stream stays silent.
const (
	eventWriteTimeout = 30 * time.Second
	eventKeepAlive    = 15 * time.Second
)

func (s *Server) planEvents() echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, err := s.planFor(c); err != nil {
			return err
		}
		uuid := c.Param("uuid")
		w := c.Response()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		// A stream lives as long as its plan: each write gets its own deadline instead of the
		// request's, and a comment keeps a quiet stream (a paused plan) from looking dead to
		// proxies.
		rc := http.NewResponseController(w)
		write := func(format string, args ...any) error {
			_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
			if _, err := fmt.Fprintf(w, format, args...); err != nil {
				return err
			}
			w.Flush()
			return nil
		}
		send := func(event string, v any) error {
			b, _ := json.Marshal(v)
			return write("event: %s\ndata: %s\n\n", event, b)
		}
		lastWrite := time.Now()
		ctx := c.Request().Context()
		last := map[int]apiv1.ItemReport{}
		var lastTotals []byte
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			rep, err := plan.Progress(ctx, s.Store, uuid, true, "")
			if err != nil {
				return send("error", map[string]any{"error": err.Error()})
			}
			for _, it := range rep.Items {
				if prev, ok := last[it.Index]; !ok && it.State != store.ItemPending || ok && prev != it {
					if err := send("item", it); err != nil {
						return nil
					}
				}
				last[it.Index] = it
			}
			rep.Items = nil
			totals, _ := json.Marshal(rep)
			if store.PlanEnded(rep.State) {
				return send("end", rep)
			}
			if !bytes.Equal(totals, lastTotals) {
				if err := send("progress", rep); err != nil {
					return nil
				}
				lastTotals, lastWrite = totals, time.Now()
			} else if time.Since(lastWrite) >= eventKeepAlive {
				if err := write(": keep-alive\n\n"); err != nil {
					return nil
				}
				lastWrite = time.Now()
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
	}
}

// operatePlan is POST /api/v1/plans/{uuid}/{cancel,pause,resume,retry}.
func (s *Server) operatePlan(op string) echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, err := s.planFor(c); err != nil {
			return err
		}
		ctx, uuid := c.Request().Context(), c.Param("uuid")
		var err error
		retried := 0
		switch op {
		case "cancel":
			err = s.Plans.Cancel(ctx, uuid)
		case "pause":
			err = s.Plans.Pause(ctx, uuid)
		case "resume":
			err = s.Plans.Resume(ctx, uuid)
		case "retry":
			retried, err = s.Plans.Retry(ctx, uuid)
		}
		if err != nil {
			return err
		}
		rep, err := plan.Progress(ctx, s.Store, uuid, false, "")
		if err != nil {
			return err
		}
		if op == "retry" {
			return writeJSON(c, http.StatusOK, apiv1.PlanRetried{Retried: retried, Plan: rep})
		}
		return writeJSON(c, http.StatusOK, rep)
	}
}

func (s *Server) jobFor(ctx context.Context, c echo.Context) (*apiv1.Job, error) {
	uuid := c.Param("uuid")
	rec, err := s.Store.GetJob(ctx, uuid)
	if errors.Is(err, store.ErrNotFound) || err == nil && !canSee(session(c), rec.AccountUUID) {
		return nil, zstack.Errorf(zstack.CodeNotFound, "job %s does not exist (or was purged %v after it ended)", uuid, 3*time.Hour)
	}
	if err != nil {
		return nil, err
	}
	v := &apiv1.Job{UUID: rec.UUID, State: string(rec.State), Stage: rec.Stage,
		VMUUID: rec.VMUUID, PlanUUID: rec.Plan, Attempts: rec.Attempts, HandBacks: rec.HandBacks, CreatedAt: rec.CreatedAt,
		Cancel: rec.CancelAsked, Error: rec.Error}
	if rec.Request != nil {
		v.GroupUUID, v.Name = rec.Request.GroupUUID, rec.Request.Name
	}
	if rec.Op != nil {
		v.Operation = rec.Op.Name
	}
	if rec.Plan != "" {
		i := rec.PlanItem
		v.PlanItem = &i
	}
	if !rec.StartedAt.IsZero() {
		t := rec.StartedAt
		v.StartedAt = &t
	}
	if !rec.FinishedAt.IsZero() {
		t := rec.FinishedAt
		v.FinishedAt = &t
	}
	if in := rec.Instant; in != nil {
		v.Instant = &apiv1.JobInstant{State: in.State}
		if !in.RunningAt.IsZero() {
			t := in.RunningAt
			v.Instant.RunningAt = &t
		}
		if !in.HydratedAt.IsZero() {
			t := in.HydratedAt
			v.Instant.HydratedAt = &t
		}
		if rec.State == job.Succeeded && in.State == job.InstantHydrated {
			v.Outcome = apiv1.OutcomeHydrated
		}
	}
	if p := rec.Progress; p != nil {
		v.Progress = &apiv1.JobProgress{BytesDone: p.BytesDone, BytesTotal: p.BytesTotal, DataBytes: p.DataBytes,
			DataBytesTotal: p.DataBytesTotal, BytesPerSecond: p.BytesPerSecond, UpdatedAt: p.UpdatedAt}
		for _, vp := range p.Volumes {
			v.Progress.Volumes = append(v.Progress.Volumes, apiv1.VolumeProgress(vp))
		}
	}
	return v, nil
}

// getJob is GET /api/v1/jobs/{uuid}: state, stage, byte progress and error of a job.
func (s *Server) getJob() echo.HandlerFunc {
	return func(c echo.Context) error {
		v, err := s.jobFor(c.Request().Context(), c)
		if err != nil {
			return err
		}
		return writeJSON(c, http.StatusOK, v)
	}
}

// cancelJob is POST /api/v1/jobs/{uuid}/cancel: a pending job never starts, a running one
// stops within seconds and gives back everything it took; the ZStack poll then answers 503
// with SYS.1017. Cancelling a job that has ended is a conflict.
func (s *Server) cancelJob() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		v, err := s.jobFor(ctx, c)
		if err != nil {
			return err
		}
		ok, err := s.Store.RequestCancel(ctx, v.UUID)
		if err != nil {
			return err
		}
		if !ok {
			return zstack.Errorf(zstack.CodeOperation, "job %s has already ended (%s); there is nothing to cancel", v.UUID, v.State)
		}
		v.Cancel = true
		return writeJSON(c, http.StatusAccepted, v)
	}
}

// openAPI serves the native API's OpenAPI document.
func (s *Server) openAPI() echo.HandlerFunc {
	return func(c echo.Context) error {
		return c.Blob(http.StatusOK, "application/yaml", apiv1.OpenAPI)
	}
}
