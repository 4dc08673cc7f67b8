package plan

import (
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/job"
)

// TestStageTimingsShowHydrateOnlyForInstantRestores: every job passes the hydrate stage, but
// only an instant restore spends time there; the report lists it for those alone.
func TestStageTimingsShowHydrateOnlyForInstantRestores(t *testing.T) {
	start := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	rec := func(instant bool) *job.Record {
		return &job.Record{State: job.Succeeded, StartedAt: start, FinishedAt: at(9),
			Request: &job.Request{Instant: instant},
			StageEnded: map[string]time.Time{job.StageResolve: at(1), job.StagePlace: at(2), job.StageNetwork: at(3),
				job.StageClone: at(4), job.StageInstantiate: at(5), job.StageHydrate: at(8)}}
	}
	names := func(r *job.Record) (out []string) {
		for _, s := range stageTimings(r) {
			out = append(out, s.Stage)
		}
		return out
	}
	plain := names(rec(false))
	if len(plain) != 6 || plain[5] != job.StageCommit {
		t.Fatalf("a plain restore's stages: %v, want resolve … instantiate, commit without hydrate", plain)
	}
	for _, s := range plain {
		if s == job.StageHydrate {
			t.Fatalf("a plain restore's stages list hydrate: %v", plain)
		}
	}
	instant := stageTimings(rec(true))
	if len(instant) != 7 || instant[5].Stage != job.StageHydrate || instant[5].Seconds != 3 {
		t.Fatalf("an instant restore's stages: %+v, want hydrate of 3 s before commit", instant)
	}
}
