package backupindex_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vmrestore/vmrestore/internal/backupindex"
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

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A worker whose backup storage folder is missing says so loudly with the path, in its log,
// its health (for /readyz) and its metrics; an empty folder is warned about; a disabled
// storage is ignored; all clears once the folder is mounted and holds groups.
func TestStorageProblemsAreLoudAndClear(t *testing.T) {
	dir := t.TempDir()
	paths := demosite.PathsIn(dir)
	if err := demosite.WriteBackups(paths.Backup); err != nil {
		t.Fatal(err)
	}
	site := demosite.Site(paths)
	missing, empty := filepath.Join(dir, "mnt", "bs-dr"), filepath.Join(dir, "bs-empty")
	os.Mkdir(empty, 0o750)
	site.BackupStorages = append(site.BackupStorages,
		catalog.BackupStorage{UUID: "0b000000000000000000000000000001", Name: "bs-dr", URL: missing},
		catalog.BackupStorage{UUID: "0b000000000000000000000000000002", Name: "bs-empty", URL: empty},
		catalog.BackupStorage{UUID: "0b000000000000000000000000000003", Name: "bs-off", URL: filepath.Join(dir, "off"), State: catalog.StateDisabled})
	if err := site.Normalize(); err != nil {
		t.Fatal(err)
	}
	st := store.New(redistest.Start(t).Client())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := st.SaveCatalog(ctx, site); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	m := metrics.New()
	x := &backupindex.Indexer{Cache: st.NewCatalogCache(), Store: st, Interval: 50 * time.Millisecond, Metrics: m,
		Log: slog.New(slog.NewTextHandler(logs, nil)), Remind: time.Hour}
	if err := x.Health.Err(); err == nil || !strings.Contains(err.Error(), "not been checked") {
		t.Fatalf("health before the first check: %v", err)
	}
	done := make(chan struct{})
	go func() { x.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	waitFor(t, "the demo groups indexed", func() bool {
		g, _ := st.ListBackupGroups(ctx)
		return len(g) == 3
	})
	err := x.Health.Err()
	if err == nil || !strings.Contains(err.Error(), "cannot read 1 backup storage(s): backup storage bs-dr[uuid:0b000000000000000000000000000001]: folder "+missing+" does not exist") {
		t.Fatalf("health: %v", err)
	}
	text := logs.String()
	for _, want := range []string{"level=ERROR msg=\"BACKUP STORAGE NOT READABLE", "path=" + missing, "level=WARN msg=\"BACKUP STORAGE EMPTY", "path=" + empty,
		"groups_folder=" + filepath.Join(empty, "vm-backups")} {
		if !strings.Contains(text, want) {
			t.Fatalf("the log lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "bs-off") {
		t.Fatalf("a disabled storage was reported:\n%s", text)
	}
	time.Sleep(200 * time.Millisecond) // several more scans: each problem is logged once within Remind
	if n := strings.Count(logs.String(), "path="+missing); n != 1 {
		t.Fatalf("the missing folder was logged %d times", n)
	}
	for uuid, want := range map[string]float64{demosite.BackupUUID: 1, "0b000000000000000000000000000001": 0, "0b000000000000000000000000000002": 1} {
		if got := gauge(m.BackupStorageReadable.WithLabelValues(uuid, nameOf(site, uuid))); got != want {
			t.Errorf("vmrestore_backup_storage_readable of %s = %v, want %v", uuid, got, want)
		}
	}
	if got := gauge(m.BackupStorageGroups.WithLabelValues(demosite.BackupUUID, "bs-main")); got != 3 {
		t.Errorf("vmrestore_backup_storage_groups of bs-main = %v", got)
	}

	// The storage gets mounted, with the demo groups in it; the empty one gets groups too.
	if err := demosite.WriteBackups(missing); err != nil {
		t.Fatal(err)
	}
	if err := demosite.WriteBackups(empty); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "health clear", func() bool { return x.Health.Err() == nil })
	waitFor(t, "the problems logged as cleared", func() bool { return strings.Count(logs.String(), "backup storage problem cleared") == 2 })
	if got := gauge(m.BackupStorageReadable.WithLabelValues("0b000000000000000000000000000001", "bs-dr")); got != 1 {
		t.Errorf("vmrestore_backup_storage_readable of bs-dr = %v after the mount", got)
	}
}

func nameOf(s *catalog.Site, uuid string) string {
	for _, b := range s.BackupStorages {
		if b.UUID == uuid {
			return b.Name
		}
	}
	return ""
}

func gauge(g prometheus.Gauge) float64 {
	var m dto.Metric
	g.Write(&m)
	return m.GetGauge().GetValue()
}
