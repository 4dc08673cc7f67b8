package webhook

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
)

// TestDeliver: a delivery POSTs its body with Content-Type and its kind's headers and logs
// the redacted URL; a non-2xx answer is a failed try that asynq retries; a refused hook is
// not retried.
func TestDeliver(t *testing.T) {
	var got http.Header
	var body []byte
	status := http.StatusNoContent
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, body = r.Header.Clone(), must(io.ReadAll(r.Body))
		w.WriteHeader(status)
	}))
	defer hook.Close()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	c := NewClient(mustAllow(t, "127.0.0.1/32"))
	d := Delivery{Of: "plan", UUID: "p1", URL: hook.URL + "/h?token=t0ken", Body: []byte(`{"state":"Succeeded"}`),
		Header: map[string]string{"X-Plan-UUID": "p1", "X-Plan-State": "Succeeded"}, Log: []any{"state", "Succeeded"}}

	if err := c.Deliver(context.Background(), d, log); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if got.Get("Content-Type") != "application/json; charset=utf-8" || got.Get("X-Plan-UUID") != "p1" || got.Get("X-Plan-State") != "Succeeded" {
		t.Errorf("headers: %v", got)
	}
	if string(body) != `{"state":"Succeeded"}` {
		t.Errorf("body %s", body)
	}
	if !strings.Contains(logs.String(), "plan web hook delivered") || strings.Contains(logs.String(), "t0ken") {
		t.Errorf("log: %s", logs.String())
	}

	status = http.StatusBadGateway
	err := c.Deliver(context.Background(), d, log)
	if err == nil || errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "try 1 of 15") || strings.Contains(err.Error(), "t0ken") {
		t.Errorf("a 502 is a failed try to retry, got %v", err)
	}

	err = NewClient(NewPolicy(nil)).Deliver(context.Background(), d, log)
	if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, ErrRefused) {
		t.Errorf("a refused hook is not retried, got %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
