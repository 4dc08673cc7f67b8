// Package backupindex keeps the index of backup groups in Redis current by scanning every
// Enabled backup storage of the catalog. The API lists volume backups (and plans select
// groups) from the index; a restore always re-reads group.json from disk, so a stale index
// can hide a group for one scan period but never restores from stale metadata.
package backupindex

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
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
	return len(out), problems, nil
}

// Run scans at start and then every interval until ctx ends, logging what it finds.
func Run(ctx context.Context, cache *store.CatalogCache, st *store.Store, interval time.Duration, log *slog.Logger) {
	last := -1
	for {
		ix, err := cache.Current(ctx)
		if err == nil {
			n, problems, serr := Scan(ctx, ix, st)
			switch {
			case serr != nil && ctx.Err() == nil:
				log.Warn("backup index scan failed", "err", serr)
			case serr == nil && n != last:
				log.Info("backup groups indexed", "groups", n)
				last = n
			}
			for _, p := range problems {
				log.Warn("backup group skipped", "problem", p)
			}
		} else if ctx.Err() == nil && !errors.Is(err, store.ErrNotFound) {
			log.Warn("backup index: cannot read the catalog", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
