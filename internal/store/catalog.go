package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// SaveCatalog stores a validated site and makes it current. Capacity limits and the IP
// bitmaps are brought in line with the new site first, then the site and its new version are
// published, so a placement never sees a version whose limits are not yet in Redis.
// Reservations and allocations are untouched: capacity in use is never part of the catalog.
func (s *Store) SaveCatalog(ctx context.Context, site *catalog.Site) (int64, error) {
	blob, err := json.Marshal(site)
	if err != nil {
		return 0, fmt.Errorf("encode catalog: %w", err)
	}
	ix := catalog.NewIndex(site, 0)
	if err := s.writeLimits(ctx, ix); err != nil {
		return 0, fmt.Errorf("write capacity limits: %w", err)
	}
	if err := s.syncRanges(ctx, ix); err != nil {
		return 0, fmt.Errorf("sync IP ranges: %w", err)
	}
	if err := s.stampCatalogDates(ctx, site); err != nil {
		return 0, fmt.Errorf("record catalog dates: %w", err)
	}
	var incr *redis.IntCmd
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, keyCatalog(), blob, 0)
		incr = p.Incr(ctx, keyCatalogVersion())
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store catalog: %w", err)
	}
	return incr.Val(), nil
}

// CatalogVersion returns the version of the current catalog (0 when none was saved).
func (s *Store) CatalogVersion(ctx context.Context) (int64, error) {
	v, err := s.rdb.Get(ctx, keyCatalogVersion()).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, err
}

// LoadCatalog reads the current catalog and indexes it. ErrNotFound means none was saved.
func (s *Store) LoadCatalog(ctx context.Context) (*catalog.Index, error) {
	var blob *redis.StringCmd
	var ver *redis.StringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		blob = p.Get(ctx, keyCatalog())
		ver = p.Get(ctx, keyCatalogVersion())
		return nil
	})
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var site catalog.Site
	if err := json.Unmarshal([]byte(blob.Val()), &site); err != nil {
		return nil, fmt.Errorf("decode catalog: %w", err)
	}
	v, _ := strconv.ParseInt(ver.Val(), 10, 64)
	return catalog.NewIndex(&site, v), nil
}

// Capacity field names, shared by the limit and used hashes. A limit of -1 marks an entity
// that may not receive anything (disabled, disconnected). Counter fields (vms, vols) have
// no limit.
func fieldHostCPU(h string) string             { return "h:" + h + ":cpu" }
func fieldHostMem(h string) string             { return "h:" + h + ":mem" }
func fieldHostVMs(h string) string             { return "h:" + h + ":vms" }
func fieldStorage(ps string) string            { return "p:" + ps }
func fieldLocalStorage(ps, host string) string { return "p:" + ps + ":" + host }
func fieldStorageVols(ps string) string        { return "p:" + ps + ":vols" }
func fieldStorageBytes(ps, localHost string) string {
	if localHost != "" {
		return fieldLocalStorage(ps, localHost)
	}
	return fieldStorage(ps)
}

// writeLimits replaces the limit hash with one computed from the site, atomically (a fresh
// key renamed over the old one), so concurrent placements see either limits, never a mix.
func (s *Store) writeLimits(ctx context.Context, ix *catalog.Index) error {
	tmp := keyCapLimit() + ":tmp:" + zstack.NewUUID()
	limits := make(map[string]any, 2*len(ix.Hosts)+len(ix.PrimaryStorages))
	for _, h := range ix.Hosts {
		c := ix.HostCapacity(h)
		cpu, mem := c.CPU, c.Memory
		if !ix.HostUsable(h) {
			cpu, mem = -1, -1
		}
		limits[fieldHostCPU(h.UUID)] = cpu
		limits[fieldHostMem(h.UUID)] = mem
	}
	for _, ps := range ix.PrimaryStorages {
		usable := catalog.StorageUsable(ps)
		if ps.Type != catalog.PSLocalStorage {
			total, reserved := ix.StorageCapacity(ps, nil)
			limits[fieldStorage(ps.UUID)] = limitOf(usable, total-reserved)
			continue
		}
		for _, c := range ix.ClustersByStorage[ps.UUID] {
			for _, h := range ix.HostsByCluster[c.UUID] {
				total, reserved := ix.StorageCapacity(ps, h)
				limits[fieldLocalStorage(ps.UUID, h.UUID)] = limitOf(usable, total-reserved)
			}
		}
	}
	pipe := s.rdb.Pipeline()
	batch := make(map[string]any, 1000)
	flush := func() {
		if len(batch) > 0 {
			pipe.HSet(ctx, tmp, batch)
			batch = make(map[string]any, 1000)
		}
	}
	for k, v := range limits {
		batch[k] = v
		if len(batch) == 1000 {
			flush()
		}
	}
	flush()
	if len(limits) == 0 {
		pipe.HSet(ctx, tmp, "empty", -1)
	}
	pipe.Rename(ctx, tmp, keyCapLimit())
	_, err := pipe.Exec(ctx)
	return err
}

func limitOf(usable bool, v int64) int64 {
	if !usable {
		return -1
	}
	if v < 0 {
		return 0
	}
	return v
}

// rangeSignature identifies a range's bounds; a changed signature rebuilds its bitmap.
func rangeSignature(r catalog.Range) string {
	return strconv.FormatInt(r.Start, 10) + "-" + strconv.FormatInt(r.End, 10) + "-" + strconv.FormatInt(r.GatewayLong(), 10)
}

// syncRangeScript makes a range's bitmap match its bounds. The bitmap has one bit per address
// (1 = taken), is pre-sized to whole bytes with the padding bits set so BITPOS in byte mode
// never reports an address past the end, and marks the gateway as taken. It is rebuilt from
// the allocations hash whenever the range's signature changed.
//
// KEYS: ranges, bits, ips. ARGV: rangeUuid, signature, start, end, gateway.
var syncRangeScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] and redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local start = tonumber(ARGV[3])
local size = tonumber(ARGV[4]) - start + 1
local gw = tonumber(ARGV[5])
redis.call('DEL', KEYS[2])
local bytes = math.floor((size + 7) / 8)
for b = size, bytes * 8 - 1 do
  redis.call('SETBIT', KEYS[2], b, 1)
end
if size % 8 == 0 then
  redis.call('SETBIT', KEYS[2], size - 1, 0)
end
if gw >= start and gw < start + size then
  redis.call('SETBIT', KEYS[2], gw - start, 1)
end
local ips = redis.call('HKEYS', KEYS[3])
for _, ip in ipairs(ips) do
  local v = tonumber(ip)
  if v and v >= start and v < start + size then
    redis.call('SETBIT', KEYS[2], v - start, 1)
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`)

// syncRanges brings every L3's bitmaps in line with its ranges and drops bitmaps of ranges
// that no longer exist (their allocations stay recorded until released).
func (s *Store) syncRanges(ctx context.Context, ix *catalog.Index) error {
	for l3, ranges := range ix.Ranges {
		keep := map[string]bool{}
		for _, r := range ranges {
			keep[r.UUID] = true
			err := syncRangeScript.Run(ctx, s.rdb,
				[]string{keyL3Ranges(l3), keyL3Bits(l3, r.UUID), keyL3IPs(l3)},
				r.UUID, rangeSignature(r), r.Start, r.End, r.GatewayLong()).Err()
			if err != nil {
				return fmt.Errorf("l3 %s range %s: %w", l3, r.UUID, err)
			}
		}
		known, err := s.rdb.HKeys(ctx, keyL3Ranges(l3)).Result()
		if err != nil {
			return err
		}
		for _, r := range known {
			if !keep[r] {
				s.rdb.HDel(ctx, keyL3Ranges(l3), r)
				s.rdb.Del(ctx, keyL3Bits(l3, r))
			}
		}
	}
	return nil
}
