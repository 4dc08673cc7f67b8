// Package probe checks, from a worker, that every primary storage directory of the catalog
// exists and is writable. A storage that fails is marked down in Redis with the reason, so
// placement treats it as not Connected (no restore is sent there to fail one by one) and the
// API reports it Disconnected; it comes back at the first probe that succeeds.
package probe

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/store"
)

// FilePrefix starts the name of the short-lived file a probe writes into a storage folder.
const FilePrefix = ".vmrestore-probe-"

// Storage checks one directory: it must be a directory in which a file can be created,
// written, synced and removed.
func Storage(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory %s is not reachable: %v", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	f, err := os.CreateTemp(dir, FilePrefix+"*")
	if err != nil {
		return fmt.Errorf("directory %s is not writable: %v", dir, err)
	}
	name := f.Name()
	defer os.Remove(name)
	if _, err := f.Write([]byte("probe")); err != nil {
		f.Close()
		return fmt.Errorf("cannot write in %s: %v", dir, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("cannot sync a file in %s: %v", dir, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cannot write in %s: %v", dir, err)
	}
	return os.Remove(filepath.Clean(name))
}

// Once probes every primary storage of the catalog and records the result.
func Once(ctx context.Context, ix *catalog.Index, st *store.Store, log *slog.Logger) error {
	host, _ := os.Hostname()
	for i := range ix.Site.PrimaryStorages {
		ps := &ix.Site.PrimaryStorages[i]
		if err := Storage(ps.URL); err != nil {
			reason := fmt.Sprintf("%v (probed by worker %s at %s)", err, host, time.Now().UTC().Format(time.RFC3339))
			wasUp, merr := st.MarkStorageDown(ctx, ps.UUID, reason)
			if merr != nil {
				return merr
			}
			if wasUp {
				log.Warn("primary storage is unusable; no restore will be placed on it until it recovers", "primary_storage", ps.UUID, "reason", err)
			}
			continue
		}
		wasDown, err := st.MarkStorageUp(ctx, ps.UUID)
		if err != nil {
			return err
		}
		if wasDown {
			log.Info("primary storage is usable again", "primary_storage", ps.UUID)
		}
	}
	return nil
}

// Run probes every interval until ctx ends.
func Run(ctx context.Context, cache *store.CatalogCache, st *store.Store, interval time.Duration, log *slog.Logger) {
	for {
		if ix, err := cache.Current(ctx); err == nil {
			if err := Once(ctx, ix, st, log); err != nil && ctx.Err() == nil {
				log.Warn("primary storage probe failed", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
