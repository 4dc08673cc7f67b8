package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// IndexedGroup is a backup group as found on the backup storages, with every storage that
// holds all of its files.
type IndexedGroup struct {
	backup.Group
	BackupStorageUUIDs []string  `json:"backupStorageUuids"`
	IndexedAt          time.Time `json:"indexedAt"`
}

// ReplaceBackupIndex swaps in a new index of backup groups, atomically.
func (s *Store) ReplaceBackupIndex(ctx context.Context, groups []IndexedGroup) error {
	tmp := keyBackupsTmp(zstack.NewUUID())
	pipe := s.rdb.Pipeline()
	batch := map[string]any{}
	for _, g := range groups {
		b, err := json.Marshal(g)
		if err != nil {
			return err
		}
		batch[g.GroupUUID] = b
		if len(batch) == 500 {
			pipe.HSet(ctx, tmp, batch)
			batch = map[string]any{}
		}
	}
	if len(batch) > 0 {
		pipe.HSet(ctx, tmp, batch)
	}
	if len(groups) == 0 {
		pipe.Del(ctx, keyBackups())
	} else {
		pipe.Rename(ctx, tmp, keyBackups())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store backup index: %w", err)
	}
	return nil
}

// ListBackupGroups returns every indexed backup group. Decoding tens of thousands takes a
// while: it stops when ctx ends.
func (s *Store) ListBackupGroups(ctx context.Context) ([]IndexedGroup, error) {
	m, err := s.rdb.HGetAll(ctx, keyBackups()).Result()
	if err != nil {
		return nil, err
	}
	out := make([]IndexedGroup, 0, len(m))
	for _, b := range m {
		if len(out)%256 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var g IndexedGroup
		if err := json.Unmarshal([]byte(b), &g); err != nil {
			return nil, fmt.Errorf("decode backup index: %w", err)
		}
		out = append(out, g)
	}
	return out, nil
}

// GetBackupGroup reads one indexed group, or ErrNotFound.
func (s *Store) GetBackupGroup(ctx context.Context, uuid string) (*IndexedGroup, error) {
	b, err := s.rdb.HGet(ctx, keyBackups(), uuid).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var g IndexedGroup
	if err := json.Unmarshal(b, &g); err != nil {
		return nil, fmt.Errorf("decode backup index: %w", err)
	}
	return &g, nil
}
