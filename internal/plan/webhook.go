package plan

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hibiken/asynq"

	"github.com/vmrestore/vmrestore/internal/queue"
)

var hookClient = &http.Client{Timeout: 10 * time.Second}

// DeliverWebHook is the asynq handler that POSTs a finished plan's summary (its report
// without items) to the plan's web hook, with X-Plan-UUID and X-Plan-State; like job hooks
// it is retried every 2 s, 15 tries in all, until the receiver answers 2xx.
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, meta.WebHook, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("web hook URL of plan %s: %v: %w", plan, err, asynq.SkipRetry)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("X-Plan-UUID", plan)
	req.Header.Set("X-Plan-State", rep.State)
	resp, err := hookClient.Do(req)
	try, _ := asynq.GetRetryCount(ctx)
	if err != nil {
		return fmt.Errorf("web hook of plan %s to %s (try %d of %d): %w", plan, meta.WebHook, try+1, queue.WebHookTries, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("web hook of plan %s to %s answered %d (try %d of %d)", plan, meta.WebHook, resp.StatusCode, try+1, queue.WebHookTries)
	}
	r.Log.Info("plan web hook delivered", "plan", plan, "url", meta.WebHook, "state", rep.State)
	return nil
}
