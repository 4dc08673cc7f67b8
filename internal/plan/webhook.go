package plan

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/vmrestore/vmrestore/internal/webhook"
)

// DeliverWebHook is the asynq handler that POSTs a finished plan's summary (its report
// without items) to the plan's web hook, with X-Plan-UUID and X-Plan-State; like job hooks
// it is retried every 2 s, 15 tries in all, until the receiver answers 2xx, and a hook the
// web hook policy refuses is not tried again.
func (r *Runner) DeliverWebHook(ctx context.Context, t *asynq.Task) error {
	plan := string(t.Payload())
	meta, _, err := r.Store.GetPlan(ctx, plan)
	if err != nil {
		return fmt.Errorf("web hook of plan %s: %w", plan, err)
	}
	if meta.WebHook == "" {
		return fmt.Errorf("plan %s has no web hook: %w", plan, asynq.SkipRetry)
	}
	rep, err := Progress(ctx, r.Store, plan, false, "")
	if err != nil {
		return err
	}
	body, _ := json.Marshal(rep)
	return r.WebHooks.Deliver(ctx, webhook.Delivery{
		Of: "plan", UUID: plan, URL: meta.WebHook, Body: body, Log: []any{"state", rep.State},
		Header: map[string]string{"X-Plan-UUID": plan, "X-Plan-State": rep.State},
	}, r.Log)
}
