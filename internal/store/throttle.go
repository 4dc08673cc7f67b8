package store

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Backup storage limits are shared by every worker process through Redis: a concurrency
// semaphore whose slots are leases (a dead worker's slot comes back when its lease runs
// out), and a bandwidth limiter (GCRA, one reservation per chunk copied). Both use Redis's
// clock only, so worker clocks do not matter.
//
// A holder keeps its slot by calling AcquireCloneSlot again well within the lease (renewal
// and acquisition are the same operation). A renewal that reports false means the lease ran
// out and the slot was taken by someone else: the holder must stop using it, or the limit
// would be exceeded.

func keyBSSlots(bs string) string     { return prefix + "{bs:" + bs + "}:slots" }
func keyBSBandwidth(bs string) string { return prefix + "{bs:" + bs + "}:bw" }

// acquireSlotScript takes or renews a lease on one of limit slots. KEYS: slots zset.
// ARGV: holder, limit, lease ms.
var acquireSlotScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], expiry, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
  return 1
end
return 0
`)

// AcquireCloneSlot takes (or renews) one of a backup storage's clone slots for holder, with
// a lease. It reports false when all slots are held.
func (s *Store) AcquireCloneSlot(ctx context.Context, bs, holder string, limit int, lease time.Duration) (bool, error) {
	n, err := acquireSlotScript.Run(ctx, s.rdb, []string{keyBSSlots(bs)}, holder, limit, lease.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("clone slot of backup storage %s: %w", bs, err)
	}
	return n == 1, nil
}

// ReleaseCloneSlot gives a slot back.
func (s *Store) ReleaseCloneSlot(ctx context.Context, bs, holder string) error {
	return s.rdb.ZRem(ctx, keyBSSlots(bs), holder).Err()
}

// slotsInUseScript counts live leases by Redis's clock. KEYS: slots zset.
var slotsInUseScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
`)

// CloneSlotsInUse returns how many live leases a backup storage has.
func (s *Store) CloneSlotsInUse(ctx context.Context, bs string) (int64, error) {
	return slotsInUseScript.Run(ctx, s.rdb, []string{keyBSSlots(bs)}).Int64()
}

// reserveBandwidthScript is GCRA: it reserves n bytes at rate bytes/s with a burst of burst
// bytes and returns how long (µs) the caller must wait before using them. The reservation
// is made even when the caller has to wait, so callers are served in arrival order and the
// rate holds however many processes share it: over any interval T the bytes granted are at
// most rate*T + burst + one reservation.
// KEYS: bandwidth key. ARGV: rate, burst, n.
var reserveBandwidthScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local newtat = tat + tonumber(ARGV[3]) * 1000000 / rate
local wait = newtat - burst * 1000000 / rate - now
redis.call('SET', KEYS[1], string.format('%.0f', newtat), 'PX', math.ceil((newtat - now) / 1000) + 1000)
if wait < 0 then return 0 end
return math.floor(wait)
`)

// ReserveBandwidth reserves n bytes of a backup storage's bandwidth (bytesPerSecond, with
// a burst of a tenth of a second) and returns how long to wait before reading them.
func (s *Store) ReserveBandwidth(ctx context.Context, bs string, bytesPerSecond, n int64) (time.Duration, error) {
	us, err := reserveBandwidthScript.Run(ctx, s.rdb, []string{keyBSBandwidth(bs)}, bytesPerSecond, max(bytesPerSecond/10, 1), n).Int64()
	if err != nil {
		return 0, fmt.Errorf("bandwidth of backup storage %s: %w", bs, err)
	}
	return time.Duration(us) * time.Microsecond, nil
}
