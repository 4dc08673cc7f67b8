package store

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Failed logins are counted three ways, in keys of one hash slot ({login}) so that one script
// checks and counts them all at once:
//   - per account name and client address (the pair): a few failures are free, then each
//     further attempt from that address for that name waits a back-off that doubles;
//   - per account name, over every address: past its free failures, addresses the account
//     has not logged in from lately wait a back-off too (the account's familiar addresses do
//     not: knowing an account's name is not enough to lock its owner out);
//   - per client address, over every name: a fixed budget per window.
//
// An attempt is reserved (counted as a failure) before the password is checked, atomically
// with the check of every limit, so concurrent attempts cannot all slip under a limit; a
// right password gives its reservation back. Unknown account names are counted like known
// ones, so answers do not tell which exist.

func keyLoginPair(name, addr string) string { return prefix + "{login}:pair:" + addr + "|" + name }
func keyLoginAddr(addr string) string       { return prefix + "{login}:addr:" + addr }
func keyLoginName(name string) string       { return prefix + "{login}:name:" + name }
func keyLoginKnown(name string) string      { return prefix + "{login}:known:" + name }

func loginKeys(name, addr string) []string {
	return []string{keyLoginPair(name, addr), keyLoginAddr(addr), keyLoginName(name), keyLoginKnown(name)}
}

// LoginLimits are the login abuse limits.
type LoginLimits struct {
	PairFree     int           // failures per name and address before back-off
	PairMaxWait  time.Duration // the pair's back-off ceiling
	NameFree     int           // failures per name, over all addresses, before back-off
	NameMaxWait  time.Duration // the name's back-off ceiling (for unfamiliar addresses)
	AddressLimit int           // failures per address, over all names, per window
	Window       time.Duration // how long failures are remembered after the last one
	BaseWait     time.Duration // the first back-off; each further failure doubles it
	FamiliarFor  time.Duration // how long an address a login succeeded from stays familiar
	MaxFamiliar  int           // familiar addresses kept per account (the most recent)
}

// Why a login attempt must wait.
const (
	LoginAllowed   = 0
	LoginByAddress = 1 // the address spent its budget
	LoginByPair    = 2 // this name from this address is backing off
	LoginByName    = 3 // this name, from an address it is not familiar with, is backing off
)

// reserveLoginScript checks every limit and, when none holds the attempt back, counts it as
// a failure. It returns {reason, wait ms}. KEYS: pair, address, name, familiar. ARGV: address,
// pair free, pair max wait, name free, name max wait, address limit, window, base wait,
// familiar for (durations in ms).
var reserveLoginScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[7])
local base = tonumber(ARGV[8])
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[6]) then
  return {1, redis.call('PTTL', KEYS[2])}
end
local pnext = tonumber(redis.call('HGET', KEYS[1], 'next') or '0')
if pnext > now then return {2, pnext - now} end
local seen = tonumber(redis.call('ZSCORE', KEYS[4], ARGV[1]) or '0')
if seen <= now - tonumber(ARGV[9]) then
  local nnext = tonumber(redis.call('HGET', KEYS[3], 'next') or '0')
  if nnext > now then return {3, nnext - now} end
end
if redis.call('INCR', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], window) end
local function count(key, free, maxwait)
  local n = redis.call('HINCRBY', key, 'n', 1)
  local ttl = window
  if n >= free then
    local wait = math.min(base * 2 ^ math.min(n - free, 40), maxwait)
    redis.call('HSET', key, 'next', string.format('%.0f', now + wait))
    ttl = math.max(window, wait)
  end
  redis.call('PEXPIRE', key, ttl)
end
count(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
count(KEYS[3], tonumber(ARGV[4]), tonumber(ARGV[5]))
return {0, 0}
`)

// ReserveLoginAttempt checks the limits for an attempt of an account name from a client
// address and, when it may go on, counts it as a failure until LoginSucceeded says otherwise.
// It returns LoginAllowed, or why and how long the attempt must wait.
func (s *Store) ReserveLoginAttempt(ctx context.Context, name, addr string, l LoginLimits) (int, time.Duration, error) {
	v, err := reserveLoginScript.Run(ctx, s.rdb, loginKeys(name, addr), addr,
		l.PairFree, l.PairMaxWait.Milliseconds(), l.NameFree, l.NameMaxWait.Milliseconds(),
		l.AddressLimit, l.Window.Milliseconds(), l.BaseWait.Milliseconds(), l.FamiliarFor.Milliseconds()).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("login limits: %w", err)
	}
	return int(v[0]), time.Duration(v[1]) * time.Millisecond, nil
}

// loginSucceededScript gives a right password's reservation back, forgets the pair's
// failures and makes the address familiar to the account. KEYS: pair, address, name,
// familiar. ARGV: address, name free, familiar for, max familiar.
var loginSucceededScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('DEL', KEYS[1])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
if redis.call('EXISTS', KEYS[3]) == 1 then
  local n = redis.call('HINCRBY', KEYS[3], 'n', -1)
  if n <= 0 then redis.call('DEL', KEYS[3])
  elseif n < tonumber(ARGV[2]) then redis.call('HDEL', KEYS[3], 'next') end
end
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[3]))
local extra = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[4])
if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[4], 0, extra - 1) end
redis.call('PEXPIRE', KEYS[4], ARGV[3])
return 1
`)

// LoginSucceeded settles a reserved attempt whose password was right.
func (s *Store) LoginSucceeded(ctx context.Context, name, addr string, l LoginLimits) error {
	err := loginSucceededScript.Run(ctx, s.rdb, loginKeys(name, addr), addr, l.NameFree, l.FamiliarFor.Milliseconds(), l.MaxFamiliar).Err()
	if err != nil {
		return fmt.Errorf("login limits: %w", err)
	}
	return nil
}

// DeleteAccount removes an account.
func (s *Store) DeleteAccount(ctx context.Context, name string) error {
	return s.rdb.HDel(ctx, keyAccounts(), name).Err()
}
