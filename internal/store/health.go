package store

import (
	"context"
	"fmt"
)

// Primary storage health: a worker that finds a storage's directory missing or read-only
// marks it down with the reason; placement then treats it as not Connected (no new volumes,
// reservations refused atomically) until a probe finds it usable again.

// MarkStorageDown records why a primary storage cannot be used; it reports whether the
// storage was up before.
func (s *Store) MarkStorageDown(ctx context.Context, ps, reason string) (bool, error) {
	n, err := s.rdb.HSet(ctx, keyStorageDown(), ps, reason).Result()
	return n > 0, err
}

// MarkStorageUp clears a primary storage's down mark; it reports whether there was one.
func (s *Store) MarkStorageUp(ctx context.Context, ps string) (bool, error) {
	n, err := s.rdb.HDel(ctx, keyStorageDown(), ps).Result()
	return n > 0, err
}

// StoragesDown returns every primary storage marked down, with the reason.
func (s *Store) StoragesDown(ctx context.Context) (map[string]string, error) {
	m, err := s.rdb.HGetAll(ctx, keyStorageDown()).Result()
	if err != nil {
		return nil, fmt.Errorf("read primary storage health: %w", err)
	}
	return m, nil
}
