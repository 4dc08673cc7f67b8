package store

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// CheckInvariants recomputes what is in use from the records that justify it and lists
// every disagreement. An empty list means: capacity counters equal the sum of reservations
// and none exceeds its limit; no reservation, address or MAC is held by a job that failed or
// was cancelled; every L3's address bitmaps, allocations and owners agree; MACs and owners
// agree; no two VMs share an address on an L3 or a MAC; every VM's uuid is claimed by the
// job that built it, and no uuid by a job that failed or was cancelled. Tests and benchmarks
// call it during and after concurrent runs.
func (s *Store) CheckInvariants(ctx context.Context, ix *catalog.Index) ([]string, error) {
	problems, err := s.CapacityDrift(ctx)
	if err != nil {
		return nil, err
	}
	jobState := map[string]job.State{}
	dead := func(jobUUID string) (bool, error) {
		st, ok := jobState[jobUUID]
		if !ok {
			js, err := s.GetJobStatus(ctx, jobUUID)
			switch {
			case errors.Is(err, ErrNotFound):
				st = "" // expired record: its VM holds the resources
			case err != nil:
				return false, err
			default:
				st = js.State
			}
			jobState[jobUUID] = st
		}
		return st == job.Failed || st == job.Cancelled, nil
	}

	holders, err := s.rdb.SMembers(ctx, keyCapResvSet()).Result()
	if err != nil {
		return nil, err
	}
	for _, j := range holders {
		if d, err := dead(j); err != nil {
			return nil, err
		} else if d {
			problems = append(problems, fmt.Sprintf("job %s ended without a VM but still holds a capacity reservation", j))
		}
	}

	for l3, ranges := range ix.Ranges {
		p, err := s.checkL3(ctx, l3, ranges, dead)
		if err != nil {
			return nil, err
		}
		problems = append(problems, p...)
	}

	used, err := s.rdb.HGetAll(ctx, keyMacUsed()).Result()
	if err != nil {
		return nil, err
	}
	owners, err := s.rdb.HGetAll(ctx, keyMacOwners()).Result()
	if err != nil {
		return nil, err
	}
	for mac, owner := range used {
		if owners[owner] != mac {
			problems = append(problems, fmt.Sprintf("MAC %s is held by %s, whose owner record says %q", mac, owner, owners[owner]))
		}
	}
	for owner, mac := range owners {
		if used[mac] != owner {
			problems = append(problems, fmt.Sprintf("owner %s records MAC %s, which is held by %q", owner, mac, used[mac]))
		}
		if d, err := dead(jobOfOwner(owner)); err != nil {
			return nil, err
		} else if d {
			problems = append(problems, fmt.Sprintf("MAC %s is still held by %s, whose job ended without a VM", mac, owner))
		}
	}

	vms, err := s.ListVMs(ctx, "")
	if err != nil {
		return nil, err
	}
	seenIP := map[string]string{}
	seenMac := map[string]string{}
	for _, vm := range vms {
		for _, n := range vm.VMNics {
			if n.IP != "" {
				k := n.L3NetworkUUID + "/" + n.IP
				if other, dup := seenIP[k]; dup {
					problems = append(problems, fmt.Sprintf("VMs %s and %s both have IP %s on l3 %s", other, vm.UUID, n.IP, n.L3NetworkUUID))
				}
				seenIP[k] = vm.UUID
			}
			if other, dup := seenMac[n.Mac]; dup {
				problems = append(problems, fmt.Sprintf("VMs %s and %s both have MAC %s", other, vm.UUID, n.Mac))
			}
			seenMac[n.Mac] = vm.UUID
			if _, held := used[n.Mac]; !held {
				problems = append(problems, fmt.Sprintf("VM %s has MAC %s, which no allocation holds", vm.UUID, n.Mac))
			}
		}
	}
	p, err := s.checkClaims(ctx, vms, dead)
	if err != nil {
		return nil, err
	}
	problems = append(problems, p...)
	sort.Strings(problems)
	return problems, nil
}

// checkClaims checks the uuid claims: every VM's uuid is held by the job that built the VM,
// and no claim is held by a job that failed or was cancelled.
func (s *Store) checkClaims(ctx context.Context, vms []*zstack.VmInstanceInventory, dead func(string) (bool, error)) ([]string, error) {
	var problems []string
	for _, vm := range vms {
		builder, err := s.rdb.HGet(ctx, keyVM(vm.UUID), "job").Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		holder, err := s.ResourceHolder(ctx, vm.UUID)
		if err != nil {
			return nil, err
		}
		if holder == "" || holder != builder {
			problems = append(problems, fmt.Sprintf("VM %s was built by job %q but its uuid is held by %q", vm.UUID, builder, holder))
		}
	}
	var keys []string
	scan := func(ctx context.Context, c *redis.Client) error {
		it := c.Scan(ctx, 0, keyResource("*"), 1000).Iterator()
		for it.Next(ctx) {
			keys = append(keys, it.Val())
		}
		return it.Err()
	}
	var err error
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		var mu sync.Mutex
		err = c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return scan(ctx, n)
		})
	case *redis.Client:
		err = scan(ctx, c)
	}
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		uuid := strings.TrimPrefix(k, keyResource(""))
		holder, err := s.ResourceHolder(ctx, uuid)
		if err != nil {
			return nil, err
		}
		if holder == "" {
			continue
		}
		if d, err := dead(holder); err != nil {
			return nil, err
		} else if d {
			problems = append(problems, fmt.Sprintf("uuid %s is still claimed by job %s, which ended without a VM", uuid, holder))
		}
	}
	return problems, nil
}

// jobOfOwner returns the job part of an IP/MAC owner ("<job>/<nic>").
func jobOfOwner(owner string) string {
	j, _, _ := strings.Cut(owner, "/")
	return j
}

func (s *Store) checkL3(ctx context.Context, l3 string, ranges []catalog.Range, dead func(string) (bool, error)) ([]string, error) {
	var problems []string
	ips, err := s.rdb.HGetAll(ctx, keyL3IPs(l3)).Result()
	if err != nil {
		return nil, err
	}
	owners, err := s.rdb.HGetAll(ctx, keyL3Owners(l3)).Result()
	if err != nil {
		return nil, err
	}
	for ip, owner := range ips {
		if owners[owner] != ip {
			problems = append(problems, fmt.Sprintf("l3 %s: address %s is held by %s, whose owner record says %q", l3, ip, owner, owners[owner]))
		}
	}
	for owner, ip := range owners {
		if ips[ip] != owner {
			problems = append(problems, fmt.Sprintf("l3 %s: owner %s records address %s, which is held by %q", l3, owner, ip, ips[ip]))
		}
		if d, err := dead(jobOfOwner(owner)); err != nil {
			return nil, err
		} else if d {
			problems = append(problems, fmt.Sprintf("l3 %s: address %s is still held by %s, whose job ended without a VM", l3, ip, owner))
		}
	}
	for _, r := range ranges {
		want := 0
		for ip := range ips {
			if v, err := strconv.ParseInt(ip, 10, 64); err == nil && r.Contains(v) {
				want++
			}
		}
		if r.Contains(r.GatewayLong()) {
			want++
		}
		b, err := s.rdb.Get(ctx, keyL3Bits(l3, r.UUID)).Bytes()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		got := 0
		for i, c := range b {
			if int64(i*8+8) <= r.Size() {
				got += bits.OnesCount8(c)
				continue
			}
			for bit := 0; bit < 8; bit++ {
				if int64(i*8+bit) < r.Size() && c&(0x80>>bit) != 0 {
					got++
				}
			}
		}
		if got != want {
			problems = append(problems, fmt.Sprintf("l3 %s range %s: bitmap marks %d addresses taken, allocations say %d", l3, r.UUID, got, want))
		}
	}
	return problems, nil
}

// overCommitScript lists, from one atomic snapshot, every limited capacity field whose use
// exceeds its limit. KEYS: limit, used.
var overCommitScript = redis.NewScript(`
local used = redis.call('HGETALL', KEYS[2])
local out = {}
for i = 1, #used, 2 do
  local f = used[i]
  if not (string.sub(f, -4) == ':vms' or string.sub(f, -5) == ':vols') then
    local lim = tonumber(redis.call('HGET', KEYS[1], f) or '-1')
    if lim >= 0 and tonumber(used[i + 1]) > lim then
      table.insert(out, f .. ' uses ' .. used[i + 1] .. ' of ' .. lim)
    end
  end
end
return out
`)

// OverCommitted lists the capacity fields used beyond their limit, from one atomic snapshot
// (safe to call while restores run, unlike CheckInvariants).
func (s *Store) OverCommitted(ctx context.Context) ([]string, error) {
	return overCommitScript.Run(ctx, s.rdb, []string{keyCapLimit(), keyCapUsed()}).StringSlice()
}
