package httpapi

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
)

// TestUndoOfAFailedSubmissionWaitsForRedis: a submission whose task could not be queued
// because Redis went away must not leave its job (to run later, after the client was told it
// failed) nor its resourceUuid binding (which would answer the client's retry with a job that
// never runs). The undo waits for Redis and then removes both; a job that started is kept.
func TestUndoOfAFailedSubmissionWaitsForRedis(t *testing.T) {
	r := redistest.Start(t, redistest.Options{AOF: true})
	rdb := r.Client()
	st := store.New(rdb)
	s := &Server{Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()

	submit := func(jobUUID, resource string) (store.ResourceBinding, string) {
		b := store.ResourceBinding{JobUUID: jobUUID, GroupUUID: "6e0c3b6a1f2d4c5b8a9e7d6c5b4a3f21"}
		if prev, err := st.ClaimResource(ctx, resource, b); err != nil || prev != nil {
			t.Fatalf("claim %s: %v %v", resource, prev, err)
		}
		rec := &job.Record{UUID: jobUUID, AccountUUID: "36c27e8ff05c4780bf6d2fa65700f22e", CreatedAt: time.Now(), Timeout: time.Hour,
			Request: &job.Request{GroupUUID: b.GroupUUID, ResourceUUID: resource}}
		if err := st.CreateJob(ctx, rec); err != nil {
			t.Fatal(err)
		}
		return b, rec.Submission
	}
	orphan, started := "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a", "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"
	bo, to := submit(orphan, "res-orphan")
	bs, ts := submit(started, "res-started")
	if _, _, err := st.StartAttempt(ctx, started, ""); err != nil {
		t.Fatal(err)
	}

	r.StopGracefully()
	for _, j := range []struct {
		uuid, submission, resource string
		b                          store.ResourceBinding
	}{{orphan, to, "res-orphan", bo}, {started, ts, "res-started", bs}} {
		s.undo(ctx, "abandon job "+j.uuid, func(ctx context.Context) error {
			return st.AbandonJob(ctx, j.uuid, j.submission, j.resource, j.b)
		})
	}
	time.Sleep(1500 * time.Millisecond) // a few background tries meet a closed port
	r.StartAgain()

	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := st.GetJobStatus(ctx, orphan)
		bound, _ := rdb.Exists(ctx, "vmr:resource:res-orphan").Result()
		if err == store.ErrNotFound && bound == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after Redis came back the abandoned job is still there (%v) or its resourceUuid still bound (%d)", err, bound)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st, err := st.GetJobStatus(ctx, started); err != nil || st.State != job.Running {
		t.Fatalf("a job whose attempt had started was abandoned: %v %v", st, err)
	}
	if bound, _ := rdb.Exists(ctx, "vmr:resource:res-started").Result(); bound != 1 {
		t.Fatal("the resourceUuid of a running job was released")
	}
}
