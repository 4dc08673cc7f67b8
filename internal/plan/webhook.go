package plan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/hibiken/asynq"

	"github.com/vmrestore/vmrestore/internal/queue"
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
	h := http.Header{}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Plan-UUID", plan)
	h.Set("X-Plan-State", rep.State)
	err = r.WebHooks.Post(ctx, meta.WebHook, h, body)
	try, _ := asynq.GetRetryCount(ctx)
	if errors.Is(err, webhook.ErrRefused) {
		r.Log.Warn("plan web hook refused; it will not be tried again", "plan", plan, "url", webhook.Redact(meta.WebHook), "err", err)
		return fmt.Errorf("web hook of plan %s: %w: %w", plan, err, asynq.SkipRetry)
	}
	if err != nil {
		return fmt.Errorf("web hook of plan %s (try %d of %d): %w", plan, try+1, queue.WebHookTries, err)
	}
	r.Log.Info("plan web hook delivered", "plan", plan, "url", webhook.Redact(meta.WebHook), "state", rep.State)
	return nil
}
