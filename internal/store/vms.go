package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// putVMScript writes a VM record unless another job's record holds the uuid. KEYS: vm.
// ARGV: inventory, account, job.
var putVMScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HGET', KEYS[1], 'job') ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'inventory', ARGV[1], 'account', ARGV[2], 'job', ARGV[3])
return 1
`)

// PutVM stores the VM inventory a job built and lists it (globally and under its account),
// and returns the inventory's JSON as stored (the job's result repeats it, encoded once).
// The same job writing it again replaces it, so a re-run commit is harmless; a record that
// another job wrote (or that predates the job field) is never overwritten: that is another
// account's VM, and the job fails with SYS.1007 instead.
func (s *Store) PutVM(ctx context.Context, account, jobUUID string, vm *zstack.VmInstanceInventory) (json.RawMessage, error) {
	b, err := json.Marshal(vm)
	if err != nil {
		return nil, err
	}
	n, err := putVMScript.Run(ctx, s.rdb, []string{keyVM(vm.UUID)}, b, account, jobUUID).Int()
	if err != nil {
		return nil, fmt.Errorf("store vm %s: %w", vm.UUID, err)
	}
	if n == 0 {
		return nil, ResourceTaken(vm.UUID)
	}
	score := float64(vm.CreateDate.UnixMilli())
	pipe := s.rdb.Pipeline()
	pipe.ZAdd(ctx, keyVMIndex(), redis.Z{Score: score, Member: vm.UUID})
	pipe.ZAdd(ctx, keyVMAccount(account), redis.Z{Score: score, Member: vm.UUID})
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("list vm %s: %w", vm.UUID, err)
	}
	return b, nil
}

// A VM's record is removed in a recorded step, so that nothing it holds leaks when the
// removal is interrupted (a worker killed, Redis restarted): first the record becomes a
// tombstone (its inventory goes, its builder and owner stay: every read already sees the VM
// gone), then its listings and its uuid's claim go, and the tombstone last. A tombstone that
// is found again (FinishVMRemoval) is finished off; each step is a no-op the second time.

// tombstoneVMScript turns a VM record a job wrote into a tombstone and returns its account,
// or false when the record is absent or another job's. KEYS: vm. ARGV: job.
var tombstoneVMScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'job') ~= ARGV[1] then return false end
redis.call('HDEL', KEYS[1], 'inventory')
redis.call('HSET', KEYS[1], 'removing', '1')
return redis.call('HGET', KEYS[1], 'account')
`)

// dropTombstoneScript deletes a VM's tombstone if it is still the job's. KEYS: vm. ARGV: job.
var dropTombstoneScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'job') == ARGV[1] and redis.call('HGET', KEYS[1], 'removing') == '1' then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// DeleteVM removes the VM record a job wrote, its listings and its uuid's claim (the
// expunge of a VM, or the compensation of a failed restore). A record that another job
// wrote is left alone: a job only ever removes what it made.
func (s *Store) DeleteVM(ctx context.Context, jobUUID, uuid string) error {
	account, err := tombstoneVMScript.Run(ctx, s.rdb, []string{keyVM(uuid)}, jobUUID).Text()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete vm %s: %w", uuid, err)
	}
	return s.finishRemoval(ctx, uuid, jobUUID, account)
}

// FinishVMRemoval finishes the removal of a VM that an interrupted DeleteVM left as a
// tombstone: its listings, its uuid's claim, the tombstone. It reports whether there was one.
func (s *Store) FinishVMRemoval(ctx context.Context, uuid string) (bool, error) {
	v, err := s.rdb.HMGet(ctx, keyVM(uuid), "removing", "job", "account").Result()
	if err != nil {
		return false, err
	}
	if removing, _ := v[0].(string); removing != "1" {
		return false, nil
	}
	jobUUID, _ := v[1].(string)
	account, _ := v[2].(string)
	return true, s.finishRemoval(ctx, uuid, jobUUID, account)
}

func (s *Store) finishRemoval(ctx context.Context, uuid, jobUUID, account string) error {
	pipe := s.rdb.Pipeline()
	pipe.ZRem(ctx, keyVMIndex(), uuid)
	pipe.ZRem(ctx, keyVMAccount(account), uuid)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("unlist vm %s: %w", uuid, err)
	}
	if err := s.ReleaseResource(ctx, uuid, ResourceBinding{JobUUID: jobUUID}); err != nil {
		return fmt.Errorf("release the uuid claim of vm %s: %w", uuid, err)
	}
	if err := dropTombstoneScript.Run(ctx, s.rdb, []string{keyVM(uuid)}, jobUUID).Err(); err != nil {
		return fmt.Errorf("delete vm %s: %w", uuid, err)
	}
	return nil
}

// GetVM reads one VM inventory and the account owning it, or ErrNotFound.
func (s *Store) GetVM(ctx context.Context, uuid string) (*zstack.VmInstanceInventory, string, error) {
	v, err := s.rdb.HMGet(ctx, keyVM(uuid), "inventory", "account").Result()
	if err != nil {
		return nil, "", err
	}
	b, _ := v[0].(string)
	account, _ := v[1].(string)
	if b == "" {
		return nil, "", ErrNotFound
	}
	var vm zstack.VmInstanceInventory
	if err := json.Unmarshal([]byte(b), &vm); err != nil {
		return nil, "", fmt.Errorf("decode vm %s: %w", uuid, err)
	}
	return &vm, account, nil
}

// ListVMs returns the VMs of an account (all VMs when account is empty), oldest first.
func (s *Store) ListVMs(ctx context.Context, account string) ([]*zstack.VmInstanceInventory, error) {
	key := keyVMIndex()
	if account != "" {
		key = keyVMAccount(account)
	}
	uuids, err := s.rdb.ZRange(ctx, key, 0, -1).Result()
	if err != nil {
		return nil, err
	}
	return s.getVMs(ctx, uuids)
}

// getVMs reads VMs by uuid with pipelined reads (MGET-like commands would cross slots on Redis Cluster).
func (s *Store) getVMs(ctx context.Context, uuids []string) ([]*zstack.VmInstanceInventory, error) {
	out := make([]*zstack.VmInstanceInventory, 0, len(uuids))
	const batch = 500
	for i := 0; i < len(uuids); i += batch {
		end := min(i+batch, len(uuids))
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.StringCmd, 0, end-i)
		for _, u := range uuids[i:end] {
			cmds = append(cmds, pipe.HGet(ctx, keyVM(u), "inventory"))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for _, c := range cmds {
			b, err := c.Bytes()
			if err != nil {
				continue // deleted between the index read and the get
			}
			var vm zstack.VmInstanceInventory
			if err := json.Unmarshal(b, &vm); err != nil {
				return nil, fmt.Errorf("decode vm: %w", err)
			}
			out = append(out, &vm)
		}
	}
	return out, nil
}

// CountVMs returns the number of VMs stored.
func (s *Store) CountVMs(ctx context.Context) (int64, error) {
	return s.rdb.ZCard(ctx, keyVMIndex()).Result()
}

// SimulatedDomain is what the simulator hypervisor records of a VM it "runs".
type SimulatedDomain struct {
	HostUUID string `json:"hostUuid"`
	State    string `json:"state"`
}

// PutSimulatedDomain records a VM in the simulator hypervisor.
func (s *Store) PutSimulatedDomain(ctx context.Context, vm string, d SimulatedDomain) error {
	return s.rdb.HSet(ctx, keyHypervisor(vm), "host", d.HostUUID, "state", d.State).Err()
}

// DeleteSimulatedDomain removes a VM from the simulator hypervisor.
func (s *Store) DeleteSimulatedDomain(ctx context.Context, vm string) error {
	return s.rdb.Del(ctx, keyHypervisor(vm)).Err()
}

// GetSimulatedDomain reads a VM from the simulator hypervisor, or ErrNotFound.
func (s *Store) GetSimulatedDomain(ctx context.Context, vm string) (*SimulatedDomain, error) {
	m, err := s.rdb.HGetAll(ctx, keyHypervisor(vm)).Result()
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, ErrNotFound
	}
	return &SimulatedDomain{HostUUID: m["host"], State: m["state"]}, nil
}
