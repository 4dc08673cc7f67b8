package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/hibiken/asynq"

	"github.com/vmrestore/vmrestore/internal/queue"
)

// Delivery is one queued web hook: a finished job's answer or a finished plan's summary.
type Delivery struct {
	Of     string            // what finished, for messages and logs: "job" or "plan"
	UUID   string            // its uuid
	URL    string            // the hook URL the client gave
	Header map[string]string // the headers of its kind (X-Job-UUID, X-Plan-State, ...)
	Body   []byte            // JSON
	Log    []any             // attributes of the delivered log line (its outcome)
}

// Deliver makes one try of a queued web hook task: it POSTs d's JSON body with its headers
// under the policy. A try that fails (no answer, not 2xx) returns an error naming the try,
// so that asynq retries it (queue.WebHookTries in all); a hook the policy refuses is logged
// and not tried again (the error wraps asynq.SkipRetry). URLs reach the log only redacted.
func (c *Client) Deliver(ctx context.Context, d Delivery, log *slog.Logger) error {
	h := http.Header{}
	h.Set("Content-Type", "application/json; charset=utf-8")
	for k, v := range d.Header {
		h.Set(k, v)
	}
	err := c.Post(ctx, d.URL, h, d.Body)
	try, _ := asynq.GetRetryCount(ctx)
	what := "web hook"
	if d.Of != "job" {
		what = d.Of + " web hook"
	}
	if errors.Is(err, ErrRefused) {
		log.Warn(what+" refused; it will not be tried again", d.Of, d.UUID, "url", Redact(d.URL), "err", err)
		return fmt.Errorf("web hook of %s %s: %w: %w", d.Of, d.UUID, err, asynq.SkipRetry)
	}
	if err != nil {
		return fmt.Errorf("web hook of %s %s (try %d of %d): %w", d.Of, d.UUID, try+1, queue.WebHookTries, err)
	}
	log.Info(what+" delivered", append([]any{d.Of, d.UUID, "url", Redact(d.URL)}, d.Log...)...)
	return nil
}
