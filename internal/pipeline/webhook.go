package pipeline

import (
	"context"
	"fmt"
	"strconv"

	"github.com/hibiken/asynq"

	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/webhook"
)

// notify queues the web hook of a finished job, if it asked for one.
func (p *Pipeline) notify(ctx context.Context, rec *job.Record) error {
	if rec.WebHook == "" || p.Queue == nil {
		return nil
	}
	return p.Queue.EnqueueWebHook(ctx, rec.UUID)
}

// DeliverWebHook is the asynq handler of web hook tasks: it POSTs the job's answer (the body
// a poll would return) to the job's X-Web-Hook URL with X-Job-UUID and X-Job-Success, as
// ZStack does. A non-2xx answer or no answer fails the try; asynq retries 2 s later, 15 tries
// in all. A hook the web hook policy refuses (an internal address) is not tried again.
func (p *Pipeline) DeliverWebHook(ctx context.Context, t *asynq.Task) error {
	jobUUID := string(t.Payload())
	rec, err := p.Store.GetJob(ctx, jobUUID)
	if err != nil {
		return fmt.Errorf("web hook of job %s: %w", jobUUID, err)
	}
	if rec.WebHook == "" || !rec.State.Terminal() {
		return fmt.Errorf("job %s has no web hook to deliver: %w", jobUUID, asynq.SkipRetry)
	}
	body, ok := job.Answer(rec.State, rec.Result, rec.Error)
	return p.WebHooks.Deliver(ctx, webhook.Delivery{
		Of: "job", UUID: jobUUID, URL: rec.WebHook, Body: body, Log: []any{"success", ok},
		Header: map[string]string{"X-Job-UUID": jobUUID, "X-Job-Success": strconv.FormatBool(ok)},
	}, p.Log)
}
