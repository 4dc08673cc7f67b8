package store

import (
	"context"
	"sync"

	"github.com/vmrestore/vmrestore/internal/catalog"
)

// CatalogCache keeps the current catalog index in memory and reloads it when its version in
// Redis changes. Current costs one small GET; a reload happens only after a catalog change.
type CatalogCache struct {
	store *Store
	mu    sync.Mutex
	ix    *catalog.Index
}

// NewCatalogCache returns an empty cache over s.
func (s *Store) NewCatalogCache() *CatalogCache { return &CatalogCache{store: s} }

// Current returns the current catalog, reloading it if Redis has a newer version.
// ErrNotFound means no catalog was ever saved.
func (c *CatalogCache) Current(ctx context.Context) (*catalog.Index, error) {
	v, err := c.store.CatalogVersion(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ix != nil && c.ix.Version == v {
		return c.ix, nil
	}
	ix, err := c.store.LoadCatalog(ctx)
	if err != nil {
		return nil, err
	}
	c.ix = ix
	return ix, nil
}

// AtLeast returns the cached catalog when it is of version v or newer, where v is a version
// the caller read from Redis (as StartAttempt does, in the round trip of the job record),
// and reloads it otherwise: the catalog as current as a Current call at the time v was read,
// without a round trip of its own. ErrNotFound means no catalog was ever saved.
func (c *CatalogCache) AtLeast(ctx context.Context, v int64) (*catalog.Index, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ix != nil && c.ix.Version >= v {
		return c.ix, nil
	}
	ix, err := c.store.LoadCatalog(ctx)
	if err != nil {
		return nil, err
	}
	c.ix = ix
	return ix, nil
}
