// Package backupindex keeps the index of backup groups in Redis current by scanning every
// Enabled backup storage of the catalog. The API lists volume backups (and plans select
// groups) from the index; a restore always re-reads group.json from disk, so a stale index
// can hide a group for one scan period but never restores from stale metadata.
//
// Each scan first checks every backup storage folder as this worker sees it: a folder that
// is missing or unreadable (a mount that failed) or that holds no group (the wrong folder
// mounted) is logged loudly with its path, exported as vmrestore_backup_storage_readable
// and vmrestore_backup_storage_groups, and the worker's /readyz names the storages it cannot
// read.
package backupindex

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/store"
)

// Scan reads every group of every Enabled backup storage and replaces the index. Broken
// groups are skipped and reported in the returned problems (one line each).
func Scan(ctx context.Context, ix *catalog.Index, st *store.Store) (groups int, problems []string, err error) {
	byGroup := map[string]*store.IndexedGroup{}
	var order []string
	now := time.Now()
	for i := range ix.Site.BackupStorages {
		bs := &ix.Site.BackupStorages[i]
		if bs.State != catalog.StateEnabled {
			continue
		}
		uuids, err := backup.List(bs.URL)
		if err != nil {
			problems = append(problems, "backup storage "+bs.UUID+": "+err.Error())
			continue
		}
		for _, u := range uuids {
			if err := ctx.Err(); err != nil {
				return 0, problems, err
			}
			g, err := backup.Read(bs.URL, u)
			if errors.Is(err, backup.ErrNoGroup) {
				continue
			}
			if err != nil {
				problems = append(problems, "backup storage "+bs.UUID+": "+err.Error())
				continue
			}
			if ok, missing := backup.HasFiles(bs.URL, g); !ok {
				problems = append(problems, "backup storage "+bs.UUID+": group "+u+" misses the file of volume backup "+missing)
				continue
			}
			e := byGroup[u]
			if e == nil {
				e = &store.IndexedGroup{Group: *g, IndexedAt: now}
				byGroup[u] = e
				order = append(order, u)
			}
			e.BackupStorageUUIDs = append(e.BackupStorageUUIDs, bs.UUID)
		}
	}
	out := make([]store.IndexedGroup, 0, len(order))
	for _, u := range order {
		out = append(out, *byGroup[u])
	}
	if err := st.ReplaceBackupIndex(ctx, out); err != nil {
		return 0, problems, err
	}
	// A group that left the index (deleted, its storage disabled) is no longer reported as
	// failing verification.
	indexed := map[string]bool{}
	for _, g := range out {
		for _, bs := range g.BackupStorageUUIDs {
			indexed[bs+"/"+g.GroupUUID] = true
		}
	}
	if err := st.KeepVerificationFailures(ctx, indexed); err != nil {
		return len(out), problems, err
	}
	return len(out), problems, nil
}

// StorageState is what a worker found of one backup storage folder.
type StorageState struct {
	UUID string
	Name string
	URL  string
	// Problem says why the folder cannot be read; empty when it can.
	Problem string
	// Groups counts the group folders under <url>/vm-backups (complete or not).
	Groups int
}

// Readable reports whether the worker can read the storage.
func (s StorageState) Readable() bool { return s.Problem == "" }

// CheckStorages checks the folder of every Enabled backup storage of the catalog.
func CheckStorages(ix *catalog.Index) []StorageState {
	var out []StorageState
	for i := range ix.Site.BackupStorages {
		bs := &ix.Site.BackupStorages[i]
		if bs.State != catalog.StateEnabled {
			continue
		}
		out = append(out, checkStorage(bs))
	}
	return out
}

func checkStorage(bs *catalog.BackupStorage) StorageState {
	s := StorageState{UUID: bs.UUID, Name: bs.Name, URL: bs.URL}
	st, err := os.Stat(bs.URL)
	switch {
	case errors.Is(err, os.ErrNotExist):
		s.Problem = fmt.Sprintf("folder %s does not exist on this worker: mount the backup storage there", bs.URL)
		return s
	case err != nil:
		s.Problem = fmt.Sprintf("folder %s cannot be read: %v", bs.URL, err)
		return s
	case !st.IsDir():
		s.Problem = fmt.Sprintf("%s is not a folder", bs.URL)
		return s
	}
	if _, err := os.ReadDir(bs.URL); err != nil {
		s.Problem = fmt.Sprintf("folder %s cannot be read: %v", bs.URL, err)
		return s
	}
	uuids, err := backup.List(bs.URL)
	if err != nil {
		s.Problem = fmt.Sprintf("folder %s cannot be read: %v", backup.GroupsDir(bs.URL), err)
		return s
	}
	s.Groups = len(uuids)
	return s
}

// Health holds the last check of the backup storages, for /readyz.
type Health struct {
	mu       sync.Mutex
	checked  bool
	storages []StorageState
}

func (h *Health) set(states []StorageState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checked, h.storages = true, states
}

// Err names the backup storages this worker cannot read, or says they were not checked yet;
// nil when every Enabled backup storage is readable.
func (h *Health) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.checked {
		return errors.New("the backup storages have not been checked yet")
	}
	var bad []string
	for _, s := range h.storages {
		if !s.Readable() {
			bad = append(bad, fmt.Sprintf("backup storage %s[uuid:%s]: %s", s.Name, s.UUID, s.Problem))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("cannot read %d backup storage(s): %s", len(bad), strings.Join(bad, "; "))
}

// Indexer scans the backup storages at start and then every Interval, keeping the index,
// Health and the metrics current and logging what changes.
type Indexer struct {
	Cache    *store.CatalogCache
	Store    *store.Store
	Interval time.Duration
	Log      *slog.Logger
	Metrics  *metrics.Metrics // nil: no metrics
	Health   Health
	// Remind is how often a problem still there is logged again (default 5 minutes).
	Remind time.Duration

	lastGroups int
	problems   map[string]reported // by storage uuid
}

type reported struct {
	text string
	at   time.Time
}

// Run works until ctx ends.
func (x *Indexer) Run(ctx context.Context) {
	x.lastGroups = -1
	x.problems = map[string]reported{}
	if x.Remind <= 0 {
		x.Remind = 5 * time.Minute
	}
	for {
		ix, err := x.Cache.Current(ctx)
		if err == nil {
			x.scan(ctx, ix)
		} else if ctx.Err() == nil && !errors.Is(err, store.ErrNotFound) {
			x.Log.Warn("backup index: cannot read the catalog", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(x.Interval):
		}
	}
}

func (x *Indexer) scan(ctx context.Context, ix *catalog.Index) {
	states := CheckStorages(ix)
	x.report(states) // logged before /readyz can answer from it
	x.Health.set(states)
	if x.Metrics != nil {
		x.Metrics.BackupStorageReadable.Reset()
		x.Metrics.BackupStorageGroups.Reset()
		for _, s := range states {
			readable := 0.0
			if s.Readable() {
				readable = 1
			}
			x.Metrics.BackupStorageReadable.WithLabelValues(s.UUID, s.Name).Set(readable)
			x.Metrics.BackupStorageGroups.WithLabelValues(s.UUID, s.Name).Set(float64(s.Groups))
		}
	}
	n, problems, err := Scan(ctx, ix, x.Store)
	switch {
	case err != nil && ctx.Err() == nil:
		x.Log.Warn("backup index scan failed", "err", err)
	case err == nil && n != x.lastGroups:
		x.Log.Info("backup groups indexed", "groups", n)
		x.lastGroups = n
	}
	for _, p := range problems {
		x.Log.Warn("backup group skipped", "problem", p)
	}
}

// report logs each storage problem when it appears, changes or every Remind while it lasts,
// and once when it is gone.
func (x *Indexer) report(states []StorageState) {
	now := time.Now()
	seen := map[string]bool{}
	for _, s := range states {
		seen[s.UUID] = true
		text, level, msg := "", slog.LevelInfo, ""
		switch {
		case !s.Readable():
			text, level = s.Problem, slog.LevelError
			msg = "BACKUP STORAGE NOT READABLE on this worker: restores from it fail here until it is mounted"
		case s.Groups == 0:
			text, level = "empty", slog.LevelWarn
			msg = "BACKUP STORAGE EMPTY: its folder holds no backup group; is the right folder mounted here?"
		}
		prev, had := x.problems[s.UUID]
		if text == "" {
			if had {
				x.Log.Info("backup storage problem cleared: readable, with backup groups", "backup_storage", s.UUID, "name", s.Name, "path", s.URL, "groups", s.Groups)
				delete(x.problems, s.UUID)
			}
			continue
		}
		if had && prev.text == text && now.Sub(prev.at) < x.Remind {
			continue
		}
		attrs := []any{"backup_storage", s.UUID, "name", s.Name, "path", s.URL}
		if s.Readable() {
			attrs = append(attrs, "groups_folder", backup.GroupsDir(s.URL))
		} else {
			attrs = append(attrs, "problem", s.Problem)
		}
		x.Log.Log(context.Background(), level, msg, attrs...)
		x.problems[s.UUID] = reported{text: text, at: now}
	}
	for u := range x.problems {
		if !seen[u] {
			delete(x.problems, u) // removed from the catalog or disabled
		}
	}
}
