package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/queue"
)

// webHookClient posts web hooks; a receiver gets 10 s to answer each try.
var webHookClient = &http.Client{Timeout: 10 * time.Second}

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
// in all.
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rec.WebHook, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("web hook URL of job %s: %v: %w", jobUUID, err, asynq.SkipRetry)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("X-Job-UUID", jobUUID)
	req.Header.Set("X-Job-Success", strconv.FormatBool(ok))
	resp, err := webHookClient.Do(req)
	try, _ := asynq.GetRetryCount(ctx)
	if err != nil {
		return fmt.Errorf("web hook of job %s to %s (try %d of %d): %w", jobUUID, rec.WebHook, try+1, queue.WebHookTries, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("web hook of job %s to %s answered %d (try %d of %d)", jobUUID, rec.WebHook, resp.StatusCode, try+1, queue.WebHookTries)
	}
	p.Log.Info("web hook delivered", "job", jobUUID, "url", rec.WebHook, "success", ok)
	return nil
}
