package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// cleanupPlan is POST /api/v1/plans/{uuid}/cleanup: the plan is cancelled if it still runs,
// then a worker destroys and expunges every VM it created, highest tier first. It answers 202
// with the cleanup, which GET /api/v1/plans/{uuid} shows as it goes ("cleanup"). A cleanup
// that runs already is answered as is; one that ended can be run again (it expunges what
// is left, and finds the rest gone).
func (s *Server) cleanupPlan() echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, err := s.planFor(c); err != nil {
			return err
		}
		ctx, uuid := c.Request().Context(), c.Param("uuid")
		cur, err := s.planCleanup(ctx, uuid)
		if err != nil {
			return err
		}
		if cur != nil && cur.State == apiv1.CleanupRunning {
			return writeJSON(c, http.StatusAccepted, cur)
		}
		_, st, err := s.Store.GetPlan(ctx, uuid)
		if err != nil {
			return err
		}
		if !store.PlanEnded(st.State) {
			if err := s.Plans.Cancel(ctx, uuid); err != nil {
				return err
			}
		}
		run := &apiv1.PlanCleanup{UUID: zstack.NewUUID(), PlanUUID: uuid, State: apiv1.CleanupRunning,
			StartedAt: time.Now().UTC(), VMs: []apiv1.CleanupVM{}}
		if err := s.Store.PutPlanCleanup(ctx, uuid, run); err != nil {
			return err
		}
		if err := s.Queue.EnqueuePlanCleanup(ctx, uuid, run.UUID); err != nil {
			// Not left "running" with no task to run it: a new call starts it again.
			run.State, run.Reason = apiv1.CleanupFailed, "the cleanup could not be queued: "+err.Error()
			s.undo(ctx, "end the cleanup of plan "+uuid, func(ctx context.Context) error { return s.Store.PutPlanCleanup(ctx, uuid, run) })
			return err
		}
		return writeJSON(c, http.StatusAccepted, run)
	}
}

// planCleanup reads a plan's last cleanup, nil when it had none.
func (s *Server) planCleanup(ctx context.Context, plan string) (*apiv1.PlanCleanup, error) {
	var run apiv1.PlanCleanup
	found, err := s.Store.GetPlanCleanup(ctx, plan, &run)
	if err != nil || !found {
		return nil, err
	}
	return &run, nil
}
