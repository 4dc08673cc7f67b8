package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// VM operations (stop, start, destroy, expunge, ...) on one VM run one at a time, as ZStack
// runs a VM's messages in one chain: a lock per VM, held while an operation runs. A plan's
// cleanup has its own lock, so two runs of its task never work at once.

func keyVMLock(uuid string) string          { return prefix + "vmop-lock:" + uuid }
func keyPlanCleanupLock(plan string) string { return planTag(plan) + ":cleanup-lock" }

// LockVM takes (or renews) the lock of a VM's operations for token; false when another
// operation holds it.
func (s *Store) LockVM(ctx context.Context, uuid, token string, ttl time.Duration) (bool, error) {
	return lockScript.Run(ctx, s.rdb, []string{keyVMLock(uuid)}, token, ttl.Milliseconds(), "").Bool()
}

// UnlockVM gives a VM's operation lock back if token holds it.
func (s *Store) UnlockVM(ctx context.Context, uuid, token string) error {
	return unlockScript.Run(ctx, s.rdb, []string{keyVMLock(uuid)}, token).Err()
}

// LockPlanCleanup takes (or renews) the lock of a plan's cleanup for token.
func (s *Store) LockPlanCleanup(ctx context.Context, plan, token string, ttl time.Duration) (bool, error) {
	return lockScript.Run(ctx, s.rdb, []string{keyPlanCleanupLock(plan)}, token, ttl.Milliseconds(), "").Bool()
}

// UnlockPlanCleanup gives a plan's cleanup lock back if token holds it.
func (s *Store) UnlockPlanCleanup(ctx context.Context, plan, token string) error {
	return unlockScript.Run(ctx, s.rdb, []string{keyPlanCleanupLock(plan)}, token).Err()
}

// VMRecord is a stored VM: its inventory, the account that owns it, and the restore job that
// built it (whose keys hold its capacity, addresses and MACs).
type VMRecord struct {
	VM          *zstack.VmInstanceInventory
	AccountUUID string
	JobUUID     string
}

// GetVMRecord reads a VM with its owner and builder, or ErrNotFound.
func (s *Store) GetVMRecord(ctx context.Context, uuid string) (*VMRecord, error) {
	v, err := s.rdb.HMGet(ctx, keyVM(uuid), "inventory", "account", "job").Result()
	if err != nil {
		return nil, err
	}
	b, _ := v[0].(string)
	if b == "" {
		return nil, ErrNotFound
	}
	r := &VMRecord{}
	r.AccountUUID, _ = v[1].(string)
	r.JobUUID, _ = v[2].(string)
	if err := json.Unmarshal([]byte(b), &r.VM); err != nil {
		return nil, fmt.Errorf("decode vm %s: %w", uuid, err)
	}
	return r, nil
}

// updateVMScript rewrites a VM's inventory if the record exists (not a tombstone) and was
// built by the job. KEYS: vm. ARGV: inventory, job.
var updateVMScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'job') ~= ARGV[2] or redis.call('HEXISTS', KEYS[1], 'inventory') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'inventory', ARGV[1])
return 1
`)

// UpdateVM stores a VM's changed inventory (its state after an operation). A VM that was
// expunged meanwhile is not brought back: ErrNotFound.
func (s *Store) UpdateVM(ctx context.Context, r *VMRecord) error {
	b, err := json.Marshal(r.VM)
	if err != nil {
		return err
	}
	n, err := updateVMScript.Run(ctx, s.rdb, []string{keyVM(r.VM.UUID)}, b, r.JobUUID).Int()
	if err != nil {
		return fmt.Errorf("update vm %s: %w", r.VM.UUID, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// The cleanup of a plan is stored beside the plan (field "cleanup" of its hash), as the JSON
// the native API shows: the runner rewrites it after every VM.

// PutPlanCleanup stores a plan's cleanup.
func (s *Store) PutPlanCleanup(ctx context.Context, plan string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.rdb.HSet(ctx, keyPlan(plan), "cleanup", b).Err()
}

// GetPlanCleanup reads a plan's cleanup into v; false when it has none.
func (s *Store) GetPlanCleanup(ctx context.Context, plan string, v any) (bool, error) {
	b, err := s.rdb.HGet(ctx, keyPlan(plan), "cleanup").Bytes()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(b, v)
}

// Held sums what a reservation holds: CPU, memory bytes and primary-storage bytes.
func (r *Reservation) Held() (cpu, memory, storageBytes int64) {
	for _, c := range r.Claims {
		switch {
		case c.Counter:
		case strings.HasPrefix(c.Field, "h:") && strings.HasSuffix(c.Field, ":cpu"):
			cpu += c.Amount
		case strings.HasPrefix(c.Field, "h:") && strings.HasSuffix(c.Field, ":mem"):
			memory += c.Amount
		case strings.HasPrefix(c.Field, "p:"):
			storageBytes += c.Amount
		}
	}
	return cpu, memory, storageBytes
}

// SetJobStage records the stage a job is in.
func (s *Store) SetJobStage(ctx context.Context, uuid, stage string) error {
	return s.rdb.HSet(ctx, keyJob(uuid), jfStage, stage).Err()
}
