package backupverify_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/backupindex"
	"github.com/vmrestore/vmrestore/internal/backupverify"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
)

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}

type site struct {
	st      *store.Store
	ix      *catalog.Index
	storage string
	cache   *store.CatalogCache
}

func newSite(t *testing.T) *site {
	t.Helper()
	paths := demosite.PathsIn(t.TempDir())
	if err := demosite.WriteBackups(paths.Backup); err != nil {
		t.Fatal(err)
	}
	s := demosite.Site(paths)
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	st := store.New(redistest.Start(t).Client())
	ctx := context.Background()
	if _, err := st.SaveCatalog(ctx, s); err != nil {
		t.Fatal(err)
	}
	ix := catalog.NewIndex(s, 1)
	if n, _, err := backupindex.Scan(ctx, ix, st); err != nil || n != 3 {
		t.Fatalf("index: %d groups, %v", n, err)
	}
	return &site{st: st, ix: ix, storage: paths.Backup, cache: st.NewCatalogCache()}
}

// Two workers verify every group once per interval between them (never the same group
// twice in an interval); a file that rots is found at the next due round, named in an
// error log line, counted and kept among the failures until the group verifies again or
// leaves the index.
func TestScheduledVerification(t *testing.T) {
	s := newSite(t)
	ctx := context.Background()
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	mA, mB := metrics.New(), metrics.New()
	a := &backupverify.Verifier{Cache: s.cache, Store: s.st, Metrics: mA, Log: log, Interval: time.Hour, Holder: "a"}
	b := &backupverify.Verifier{Cache: s.st.NewCatalogCache(), Store: s.st, Metrics: mB, Log: log, Interval: time.Hour, Holder: "b"}
	var wg sync.WaitGroup
	for _, v := range []*backupverify.Verifier{a, b} {
		wg.Go(func() {
			if err := v.Round(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	ok := func(m *metrics.Metrics) float64 {
		return counter(m.BackupVerifications.WithLabelValues(demosite.BackupUUID, "ok"))
	}
	if got := ok(mA) + ok(mB); got != 3 {
		t.Fatalf("two workers verified %v groups in one interval, want each of the 3 once", got)
	}
	if bytesRead := counter(mA.BackupVerifyBytes.WithLabelValues(demosite.BackupUUID)) + counter(mB.BackupVerifyBytes.WithLabelValues(demosite.BackupUUID)); bytesRead == 0 {
		t.Fatal("no verification bytes counted")
	}
	results, _ := s.st.Verifications(ctx)
	if len(results) != 3 {
		t.Fatalf("results: %+v", results)
	}
	// Not due again within the interval.
	a.Round(ctx)
	if got := ok(mA) + ok(mB); got != 3 {
		t.Fatalf("a group was verified twice in one interval: %v", got)
	}

	// A byte of web01's data volume rots; the interval passes.
	g, err := backup.Read(s.storage, demosite.GroupWeb01UUID)
	if err != nil {
		t.Fatal(err)
	}
	vol := g.DataVolumes()[0]
	path := filepath.Join(backup.GroupDir(s.storage, g.GroupUUID), vol.File)
	flipByte(t, path)
	a.Interval = 10 * time.Millisecond
	time.Sleep(20 * time.Millisecond)
	if err := a.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if got := counter(mA.BackupVerifications.WithLabelValues(demosite.BackupUUID, "failed")); got != 1 {
		t.Fatalf("failed verifications: %v", got)
	}
	fails, _ := s.st.VerificationFailures(ctx)
	if len(fails) != 1 || fails[0].GroupUUID != demosite.GroupWeb01UUID || !strings.Contains(fails[0].Problem, path) {
		t.Fatalf("failures: %+v", fails)
	}
	text := logs.String()
	if !strings.Contains(text, "level=ERROR msg=\"BACKUP FAILED VERIFICATION") || !strings.Contains(text, "group="+demosite.GroupWeb01UUID) ||
		!strings.Contains(text, vol.UUID) {
		t.Fatalf("the failure is not logged loudly:\n%s", text)
	}

	// Repaired: verified again, no longer a failure.
	flipByte(t, path)
	time.Sleep(20 * time.Millisecond)
	a.Round(ctx)
	if fails, _ := s.st.VerificationFailures(ctx); len(fails) != 0 {
		t.Fatalf("a repaired group is still failing: %+v", fails)
	}

	// Rotten again, then deleted: the next index scan forgets its failure.
	flipByte(t, path)
	time.Sleep(20 * time.Millisecond)
	a.Round(ctx)
	if fails, _ := s.st.VerificationFailures(ctx); len(fails) != 1 {
		t.Fatalf("failures: %+v", fails)
	}
	if err := backup.Delete(s.storage, demosite.GroupWeb01UUID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := backupindex.Scan(ctx, s.ix, s.st); err != nil {
		t.Fatal(err)
	}
	if fails, _ := s.st.VerificationFailures(ctx); len(fails) != 0 {
		t.Fatalf("a deleted group is still reported failing: %+v", fails)
	}
}

func flipByte(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	b := make([]byte, 1)
	off := st.Size() - 1000
	f.ReadAt(b, off)
	b[0] ^= 0x10
	f.WriteAt(b, off)
}

// A worker running restores verifies nothing; one whose restore starts mid-verification
// stops, gives its claim back, and the group is verified by a later round.
func TestVerificationGivesWayToRestores(t *testing.T) {
	s := newSite(t)
	ctx := context.Background()
	var busy atomic.Bool
	busy.Store(true)
	m := metrics.New()
	v := &backupverify.Verifier{Cache: s.cache, Store: s.st, Metrics: m, Log: slog.New(slog.DiscardHandler), Interval: time.Hour,
		Holder: "w", Busy: busy.Load}
	if err := v.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.st.Verifications(ctx); len(r) != 0 {
		t.Fatalf("a busy worker verified: %+v", r)
	}
	// A restore starts after the first group: the round stops there.
	var calls atomic.Int32
	v.Busy = func() bool { return calls.Add(1) > 2 }
	if err := v.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.st.Verifications(ctx); len(r) != 1 {
		t.Fatalf("a worker that became busy after one group verified %d", len(r))
	}
	v.Busy = busy.Load
	busy.Store(false)
	if err := v.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.st.Verifications(ctx); len(r) != 3 {
		t.Fatalf("an idle worker verified %d groups", len(r))
	}
	// A claim is exclusive until released by its holder (not by another).
	if ok, _ := s.st.ClaimVerification(ctx, demosite.BackupUUID, demosite.GroupWeb01UUID, "x", time.Hour); !ok {
		t.Fatal("a finished verification kept its claim")
	}
	if ok, _ := s.st.ClaimVerification(ctx, demosite.BackupUUID, demosite.GroupWeb01UUID, "y", time.Hour); ok {
		t.Fatal("a held claim was given twice")
	}
	s.st.ReleaseVerification(ctx, demosite.BackupUUID, demosite.GroupWeb01UUID, "y")
	if ok, _ := s.st.ClaimVerification(ctx, demosite.BackupUUID, demosite.GroupWeb01UUID, "y", time.Hour); ok {
		t.Fatal("a claim was released by another holder")
	}
}

// With no interval the verifier does nothing and returns at once.
func TestVerificationOff(t *testing.T) {
	v := &backupverify.Verifier{Log: slog.New(slog.DiscardHandler)}
	done := make(chan struct{})
	go func() { v.Run(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run with no interval did not return")
	}
}
