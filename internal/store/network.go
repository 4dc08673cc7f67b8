package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/vmrestore/vmrestore/internal/catalog"
)

// IP allocation modes.
const (
	IPStatic         = "static"
	IPFirstAvailable = "first"
	IPRandom         = "random"
)

// IPOutcome says how an IP allocation ended.
type IPOutcome int

// IP allocation outcomes.
const (
	IPAllocated  IPOutcome = iota // a new address was taken
	IPExisting                    // the owner already held an address (a re-run)
	IPOccupied                    // the static address is taken (HeldBy says by whom)
	IPNotInRange                  // the static address is in no range of the L3
	IPExhausted                   // no free address in any range
	IPStale                       // the ranges passed are not the ones in Redis: reload the catalog
)

// IPResult is the answer of AllocateIP.
type IPResult struct {
	Outcome IPOutcome
	IP      int64
	HeldBy  string
}

// allocateIPScript takes an address of an L3 network for an owner, atomically and
// idempotently. Free addresses are found with BITPOS in byte mode over each range's bitmap
// (see syncRangeScript), so FirstAvailable on a range with 50,000 used addresses costs
// microseconds, not a scan of the allocations.
//
// KEYS: ips, owners, ranges, then one bitmap per range. ARGV: owner, mode, value (the static
// address, or a random fraction in [0,1)), then per range: uuid, start, end, signature.
var allocateIPScript = redis.NewScript(`
local have = redis.call('HGET', KEYS[2], ARGV[1])
if have then return {'existing', have, ''} end
local n = (#ARGV - 3) / 4
for r = 1, n do
  local b = 3 + (r - 1) * 4
  if redis.call('HGET', KEYS[3], ARGV[b + 1]) ~= ARGV[b + 4] then return {'stale', ARGV[b + 1], ''} end
end
local function claim(r, bit)
  local b = 3 + (r - 1) * 4
  local ip = tonumber(ARGV[b + 2]) + bit
  local ipstr = string.format('%d', ip)
  redis.call('SETBIT', KEYS[3 + r], bit, 1)
  redis.call('HSET', KEYS[1], ipstr, ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ipstr)
  return {'allocated', ipstr, ''}
end
local function first_free(key, from, size)
  if from >= size then return -1 end
  local byte = math.floor(from / 8)
  local stop = math.min((byte + 1) * 8, size)
  for bit = from, stop - 1 do
    if redis.call('GETBIT', key, bit) == 0 then return bit end
  end
  local last = math.floor((size - 1) / 8)
  if byte + 1 > last then return -1 end
  local p = redis.call('BITPOS', key, 0, byte + 1, last)
  if p < 0 or p >= size then return -1 end
  return p
end
if ARGV[2] == 'static' then
  local ip = tonumber(ARGV[3])
  for r = 1, n do
    local b = 3 + (r - 1) * 4
    local start = tonumber(ARGV[b + 2])
    if ip >= start and ip <= tonumber(ARGV[b + 3]) then
      if redis.call('GETBIT', KEYS[3 + r], ip - start) == 1 then
        return {'occupied', ARGV[3], redis.call('HGET', KEYS[1], ARGV[3]) or 'gateway'}
      end
      return claim(r, ip - start)
    end
  end
  return {'notinrange', ARGV[3], ''}
end
local f = tonumber(ARGV[3])
local first = 0
if ARGV[2] == 'random' then first = math.floor(f * n) end
for k = 0, n - 1 do
  local r = (first + k) % n + 1
  local b = 3 + (r - 1) * 4
  local size = tonumber(ARGV[b + 3]) - tonumber(ARGV[b + 2]) + 1
  local from = 0
  if ARGV[2] == 'random' then from = math.floor((f * n - math.floor(f * n)) * size) end
  local bit = first_free(KEYS[3 + r], from, size)
  if bit < 0 and from > 0 then bit = first_free(KEYS[3 + r], 0, from) end
  if bit >= 0 and bit < size then return claim(r, bit) end
end
return {'full', '', ''}
`)

// releaseIPScript gives an owner's address back. KEYS: ips, owners, then one bitmap per
// range. ARGV: owner, then per range: start, end.
var releaseIPScript = redis.NewScript(`
local ip = redis.call('HGET', KEYS[2], ARGV[1])
if not ip then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], ip) == ARGV[1] then
  redis.call('HDEL', KEYS[1], ip)
  local v = tonumber(ip)
  for r = 1, (#ARGV - 1) / 2 do
    local start = tonumber(ARGV[2 * r])
    if v >= start and v <= tonumber(ARGV[2 * r + 1]) then
      redis.call('SETBIT', KEYS[2 + r], v - start, 0)
    end
  end
end
return 1
`)

func rangeKeys(l3 string, ranges []catalog.Range) []string {
	keys := []string{keyL3IPs(l3), keyL3Owners(l3), keyL3Ranges(l3)}
	for _, r := range ranges {
		keys = append(keys, keyL3Bits(l3, r.UUID))
	}
	return keys
}

// AllocateIP takes an address on an L3 network for owner: the static address given, or a
// free one by mode (IPFirstAvailable, IPRandom). Allocation is serialised per L3 by Redis and
// idempotent per owner.
func (s *Store) AllocateIP(ctx context.Context, l3 string, ranges []catalog.Range, owner, mode string, static int64) (IPResult, error) {
	if len(ranges) == 0 {
		return IPResult{Outcome: IPExhausted}, nil
	}
	res, err := allocateIPScript.Run(ctx, s.rdb, rangeKeys(l3, ranges), allocateIPArgs(ranges, owner, mode, static)...).StringSlice()
	if err != nil {
		return IPResult{}, fmt.Errorf("allocate IP on l3 %s: %w", l3, err)
	}
	return ipResult(res, static), nil
}

// NICResult is the answer of AllocateNIC: the address's outcome as AllocateIP's, and the
// MAC claimed (empty when it was taken by another owner).
type NICResult struct {
	IP  IPResult
	Mac string
}

// AllocateNIC takes an address (as AllocateIP) and a MAC (as ClaimMac) for one NIC owner in
// one round trip. The MAC is claimed whatever the address's outcome: both are keyed on the
// owner, so releasing the owner's address and MAC (ReleaseIP, ReleaseMac) gives back both,
// and a second call for the same owner returns what the first took. A first call may answer
// IPExisting for the address it just took: when Redis did not know one of the scripts yet,
// the pipeline is sent again. With no ranges the address is IPExhausted and nothing is
// claimed.
func (s *Store) AllocateNIC(ctx context.Context, l3 string, ranges []catalog.Range, owner, mode string, static int64, mac string) (NICResult, error) {
	if len(ranges) == 0 {
		return NICResult{IP: IPResult{Outcome: IPExhausted}}, nil
	}
	var ip, claimed *redis.Cmd
	err := s.pipelineScripts(ctx, []*redis.Script{allocateIPScript, claimMacScript}, func(pipe redis.Pipeliner) []*redis.Cmd {
		ip = allocateIPScript.EvalSha(ctx, pipe, rangeKeys(l3, ranges), allocateIPArgs(ranges, owner, mode, static)...)
		claimed = claimMacScript.EvalSha(ctx, pipe, macKeys(), owner, mac)
		return []*redis.Cmd{ip, claimed}
	})
	if err != nil {
		return NICResult{}, fmt.Errorf("allocate IP on l3 %s and claim MAC: %w", l3, err)
	}
	ipRes, err := ip.StringSlice()
	if err != nil {
		return NICResult{}, fmt.Errorf("allocate IP on l3 %s: %w", l3, err)
	}
	macRes, err := claimed.StringSlice()
	if err != nil {
		return NICResult{}, fmt.Errorf("claim MAC: %w", err)
	}
	out := NICResult{IP: ipResult(ipRes, static)}
	if macRes[0] != "taken" {
		out.Mac = macRes[1]
	}
	return out, nil
}

// allocateIPArgs are allocateIPScript's ARGV.
func allocateIPArgs(ranges []catalog.Range, owner, mode string, static int64) []any {
	value := strconv.FormatFloat(rand.Float64(), 'f', 12, 64)
	if mode == IPStatic {
		value = strconv.FormatInt(static, 10)
	}
	args := make([]any, 0, 3+4*len(ranges))
	args = append(args, owner, mode, value)
	for _, r := range ranges {
		args = append(args, r.UUID, r.Start, r.End, rangeSignature(r))
	}
	return args
}

// ipResult reads allocateIPScript's answer.
func ipResult(res []string, static int64) IPResult {
	ip, _ := strconv.ParseInt(res[1], 10, 64)
	switch res[0] {
	case "existing":
		return IPResult{Outcome: IPExisting, IP: ip}
	case "allocated":
		return IPResult{Outcome: IPAllocated, IP: ip}
	case "occupied":
		return IPResult{Outcome: IPOccupied, IP: ip, HeldBy: res[2]}
	case "notinrange":
		return IPResult{Outcome: IPNotInRange, IP: static}
	case "stale":
		return IPResult{Outcome: IPStale}
	default:
		return IPResult{Outcome: IPExhausted}
	}
}

// ReleaseIP gives back the address an owner holds on an L3; releasing twice is harmless.
func (s *Store) ReleaseIP(ctx context.Context, l3 string, ranges []catalog.Range, owner string) error {
	keys := []string{keyL3IPs(l3), keyL3Owners(l3)}
	args := []any{owner}
	for _, r := range ranges {
		keys = append(keys, keyL3Bits(l3, r.UUID))
		args = append(args, r.Start, r.End)
	}
	if err := releaseIPScript.Run(ctx, s.rdb, keys, args...).Err(); err != nil {
		return fmt.Errorf("release IP on l3 %s: %w", l3, err)
	}
	return nil
}

// UsedIPs returns every address in use on an L3 (ipInLong → owner).
func (s *Store) UsedIPs(ctx context.Context, l3 string) (map[string]string, error) {
	return s.rdb.HGetAll(ctx, keyL3IPs(l3)).Result()
}

// CountUsedIPs returns the number of addresses in use on an L3.
func (s *Store) CountUsedIPs(ctx context.Context, l3 string) (int64, error) {
	return s.rdb.HLen(ctx, keyL3IPs(l3)).Result()
}

// claimMacScript takes a MAC for an owner, idempotently. KEYS: used, owners. ARGV: owner, mac.
var claimMacScript = redis.NewScript(`
local have = redis.call('HGET', KEYS[2], ARGV[1])
if have then return {'existing', have} end
local by = redis.call('HGET', KEYS[1], ARGV[2])
if by then return {'taken', by} end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return {'claimed', ARGV[2]}
`)

// releaseMacScript gives an owner's MAC back. KEYS: used, owners. ARGV: owner.
var releaseMacScript = redis.NewScript(`
local mac = redis.call('HGET', KEYS[2], ARGV[1])
if not mac then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], mac) == ARGV[1] then redis.call('HDEL', KEYS[1], mac) end
return 1
`)

// macKeys are the MAC scripts' KEYS: used, owners.
func macKeys() []string { return []string{keyMacUsed(), keyMacOwners()} }

// ErrMacTaken is returned by ClaimMac when another owner holds the MAC.
var ErrMacTaken = errors.New("mac address taken")

// ClaimMac takes a MAC for owner, unique across the site. An owner that already holds one
// gets its MAC back (which may differ from mac on a re-run).
func (s *Store) ClaimMac(ctx context.Context, owner, mac string) (string, error) {
	res, err := claimMacScript.Run(ctx, s.rdb, macKeys(), owner, mac).StringSlice()
	if err != nil {
		return "", fmt.Errorf("claim MAC: %w", err)
	}
	if res[0] == "taken" {
		return "", ErrMacTaken
	}
	return res[1], nil
}

// ReleaseMac gives back an owner's MAC; releasing twice is harmless.
func (s *Store) ReleaseMac(ctx context.Context, owner string) error {
	if err := releaseMacScript.Run(ctx, s.rdb, macKeys(), owner).Err(); err != nil {
		return fmt.Errorf("release MAC: %w", err)
	}
	return nil
}

// UsedMacs returns every MAC in use (mac → owner).
func (s *Store) UsedMacs(ctx context.Context) (map[string]string, error) {
	return s.rdb.HGetAll(ctx, keyMacUsed()).Result()
}
