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
// The semaphore is fair: a holder that finds no free slot joins the storage's waiting list
// under a priority (lower first), and a slot that frees goes to the first waiter. A waiter's
// place is itself a short lease, kept by asking again (every half second at most, and at
// once when a slot of the storage is released: ChannelSlotFree), so a dead waiter drops out
// within CloneWaitLease; a waiter that gives up says so with WithdrawCloneSlotWait.
//
// A holder keeps its slot by calling AcquireCloneSlot again well within the lease (renewal
// and acquisition are the same operation). A renewal that reports false means the lease ran
// out and the slot was taken by someone else: the holder must stop using it, or the limit
// would be exceeded.

func keyBSSlots(bs string) string     { return prefix + "{bs:" + bs + "}:slots" }
func keyBSWaiters(bs string) string   { return prefix + "{bs:" + bs + "}:waiters" }
func keyBSWaiting(bs string) string   { return prefix + "{bs:" + bs + "}:waiting" }
func keyBSBandwidth(bs string) string { return prefix + "{bs:" + bs + "}:bw" }

// CloneWaitLease is how long a place in a backup storage's waiting list lasts without being
// asked for again.
const CloneWaitLease = 3 * time.Second

// acquireSlotScript takes or renews a lease on one of limit slots, or keeps the holder's
// place among the waiters. KEYS: slots zset (holder → lease expiry), waiters zset (holder →
// priority), waiting zset (holder → place expiry). ARGV: holder, limit, lease ms, priority,
// place lease ms.
var acquireSlotScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder = ARGV[1]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, w in ipairs(gone) do
  redis.call('ZREM', KEYS[2], w)
  redis.call('ZREM', KEYS[3], w)
end
local function take()
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), holder)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
  redis.call('ZREM', KEYS[2], holder)
  redis.call('ZREM', KEYS[3], holder)
  return 1
end
if redis.call('ZSCORE', KEYS[1], holder) then return take() end
local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[2], ARGV[4], holder)
if free > 0 and redis.call('ZRANK', KEYS[2], holder) < free then return take() end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), holder)
for _, k in ipairs({KEYS[2], KEYS[3]}) do redis.call('PEXPIRE', k, tonumber(ARGV[5]) * 2) end
return 0
`)

// AcquireCloneSlot takes (or renews) one of a backup storage's limit clone slots for holder,
// with a lease. When all slots are held, or waiters of a lower priority value come first, it
// reports false and keeps the holder's place in the waiting list for CloneWaitLease.
func (s *Store) AcquireCloneSlot(ctx context.Context, bs, holder string, limit int, lease time.Duration, priority float64) (bool, error) {
	n, err := acquireSlotScript.Run(ctx, s.rdb, []string{keyBSSlots(bs), keyBSWaiters(bs), keyBSWaiting(bs)},
		holder, limit, lease.Milliseconds(), priority, CloneWaitLease.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("clone slot of backup storage %s: %w", bs, err)
	}
	return n == 1, nil
}

// WithdrawCloneSlotWait takes holder off a backup storage's waiting list.
func (s *Store) WithdrawCloneSlotWait(ctx context.Context, bs string, holders ...string) error {
	if len(holders) == 0 {
		return nil
	}
	members := make([]any, len(holders))
	for i, h := range holders {
		members[i] = h
	}
	pipe := s.rdb.Pipeline()
	pipe.ZRem(ctx, keyBSWaiters(bs), members...)
	pipe.ZRem(ctx, keyBSWaiting(bs), members...)
	_, err := pipe.Exec(ctx)
	return err
}

// releaseSlotScript gives a slot back and, when someone waits for one, tells them.
// KEYS: slots, waiters. ARGV: holder, channel, backup storage.
var releaseSlotScript = redis.NewScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 and redis.call('ZCARD', KEYS[2]) > 0 then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return 1
`)

// ReleaseCloneSlot gives a slot back and, when holders wait for one, tells them
// (ChannelSlotFree), in one round trip.
func (s *Store) ReleaseCloneSlot(ctx context.Context, bs, holder string) error {
	return releaseSlotScript.Run(ctx, s.rdb, []string{keyBSSlots(bs), keyBSWaiters(bs)}, holder, ChannelSlotFree, bs).Err()
}

// CloneSlotWaiters returns how many holders wait for a slot of a backup storage.
func (s *Store) CloneSlotWaiters(ctx context.Context, bs string) (int64, error) {
	return s.rdb.ZCard(ctx, keyBSWaiters(bs)).Result()
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
