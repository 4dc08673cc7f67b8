package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Claim is an amount of one capacity field a placement needs (CPU of a host, bytes of a
// primary storage, ...). Counter claims (VM and volume counts) have no limit.
type Claim struct {
	Field   string
	Amount  int64
	Counter bool
}

// HostCPU, HostMemory, HostVMs, StorageBytes and StorageVolumes build claims.
func HostCPU(host string, n int64) Claim    { return Claim{Field: fieldHostCPU(host), Amount: n} }
func HostMemory(host string, n int64) Claim { return Claim{Field: fieldHostMem(host), Amount: n} }
func HostVMs(host string) Claim             { return Claim{Field: fieldHostVMs(host), Amount: 1, Counter: true} }
func StorageVolumes(ps string, n int64) Claim {
	return Claim{Field: fieldStorageVols(ps), Amount: n, Counter: true}
}

// StorageBytes claims bytes on a shared storage, or on one host's share of a LocalStorage
// (localHost non-empty).
func StorageBytes(ps, localHost string, n int64) Claim {
	return Claim{Field: fieldStorageBytes(ps, localHost), Amount: n}
}

// Candidate is one way to place a VM: a label the caller decodes back (the placement) and
// every claim it needs. Reserve takes the first candidate whose claims all fit.
type Candidate struct {
	Label  string
	Claims []Claim
}

// Reservation is what a job holds.
type Reservation struct {
	Label  string
	Claims []Claim
}

// ReserveResult says which candidate was reserved (Index ≥ 0), or that the job already held a
// reservation (Existing), or why nothing fit (FullField, the limit that refused last).
type ReserveResult struct {
	Index     int
	Existing  *Reservation
	FullField string
}

// reserveScript atomically reserves the first candidate that fits. Idempotent on the job:
// a job that already holds a reservation gets it back unchanged.
//
// KEYS: limit, used, resv, resvs, storage-down. ARGV: job, ncand, then per candidate: label, nclaims,
// then per claim: field, amount, counter(0/1). Amounts are passed through as strings so that
// large byte counts never go through Lua's number formatting.
var reserveScript = redis.NewScript(`
local existing = redis.call('GET', KEYS[3])
if existing then return {'existing', existing} end
local i = 3
local lastFull = ''
for c = 1, tonumber(ARGV[2]) do
  local label = ARGV[i]
  local n = tonumber(ARGV[i + 1])
  local first = i + 2
  local fits = true
  for k = 0, n - 1 do
    local f = ARGV[first + 3 * k]
    if ARGV[first + 3 * k + 2] == '0' then
      local lim = tonumber(redis.call('HGET', KEYS[1], f) or '-1')
      if string.sub(f, 1, 2) == 'p:' and redis.call('HEXISTS', KEYS[5], string.sub(f, 3, 34)) == 1 then lim = -1 end
      local used = tonumber(redis.call('HGET', KEYS[2], f) or '0')
      if lim < 0 or used + tonumber(ARGV[first + 3 * k + 1]) > lim then
        fits = false
        lastFull = f
        break
      end
    end
  end
  if fits then
    local rec = label
    for k = 0, n - 1 do
      local f = ARGV[first + 3 * k]
      local amt = ARGV[first + 3 * k + 1]
      redis.call('HINCRBY', KEYS[2], f, amt)
      rec = rec .. '\n' .. f .. ' ' .. amt .. ' ' .. ARGV[first + 3 * k + 2]
    end
    redis.call('SET', KEYS[3], rec)
    redis.call('SADD', KEYS[4], ARGV[1])
    return {'reserved', tostring(c - 1)}
  end
  i = first + 3 * n
end
return {'full', lastFull}
`)

// releaseScript gives a job's reservation back exactly once, with its host claims that a
// destroy returned already (they are not in use: they are only forgotten).
//
// KEYS: used, resv, resvs, returned. ARGV: job.
var releaseScript = redis.NewScript(`
redis.call('DEL', KEYS[4])
local rec = redis.call('GET', KEYS[2])
if not rec then return 0 end
local first = true
for line in string.gmatch(rec, '[^\n]+') do
  if first then
    first = false
  else
    local f, amt = string.match(line, '^(%S+) (%S+)')
    redis.call('HINCRBY', KEYS[1], f, '-' .. amt)
  end
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
`)

// Reserve reserves capacity for a job: the first candidate whose claims all fit under their
// limits, atomically. A job that already holds a reservation gets it back (Existing).
func (s *Store) Reserve(ctx context.Context, job string, cands []Candidate) (ReserveResult, error) {
	args := []any{job, len(cands)}
	for _, c := range cands {
		if strings.ContainsRune(c.Label, '\n') {
			return ReserveResult{}, errors.New("reservation label cannot contain a newline")
		}
		args = append(args, c.Label, len(c.Claims))
		for _, cl := range c.Claims {
			counter := "0"
			if cl.Counter {
				counter = "1"
			}
			args = append(args, cl.Field, strconv.FormatInt(cl.Amount, 10), counter)
		}
	}
	res, err := reserveScript.Run(ctx, s.rdb, []string{keyCapLimit(), keyCapUsed(), keyCapResv(job), keyCapResvSet(), keyStorageDown()}, args...).StringSlice()
	if err != nil {
		return ReserveResult{}, fmt.Errorf("reserve capacity: %w", err)
	}
	switch res[0] {
	case "existing":
		r, err := parseReservation(res[1])
		if err != nil {
			return ReserveResult{}, err
		}
		return ReserveResult{Index: -1, Existing: r}, nil
	case "reserved":
		idx, _ := strconv.Atoi(res[1])
		return ReserveResult{Index: idx}, nil
	default:
		return ReserveResult{Index: -1, FullField: res[1]}, nil
	}
}

// Release gives back a job's reservation. It reports whether there was one; releasing twice
// is harmless.
func (s *Store) Release(ctx context.Context, job string) (bool, error) {
	n, err := releaseScript.Run(ctx, s.rdb, []string{keyCapUsed(), keyCapResv(job), keyCapResvSet(), keyCapReturned(job)}, job).Int()
	if err != nil {
		return false, fmt.Errorf("release capacity: %w", err)
	}
	return n == 1, nil
}

// A destroyed VM gives its host's CPU, memory and VM slot back, as ZStack's destroy flow
// does (VmReturnHostFlow), and keeps its primary-storage bytes until it is expunged: the
// reservation's host claims move aside (the job's "returned" record, same slot), and a
// recover takes them again if the host still has room.

// returnHostScript moves a reservation's host claims aside and gives them back; a second run
// finds none and does nothing. KEYS: used, resv, returned.
var returnHostScript = redis.NewScript(`
local rec = redis.call('GET', KEYS[2])
if not rec then return 0 end
local kept, moved, first, n = '', '', true, 0
for line in string.gmatch(rec, '[^\n]+') do
  if first then
    first, kept = false, line
  elseif string.sub(line, 1, 2) == 'h:' then
    local f, amt = string.match(line, '^(%S+) (%S+)')
    redis.call('HINCRBY', KEYS[1], f, '-' .. amt)
    moved = moved .. '\n' .. line
    n = n + 1
  else
    kept = kept .. '\n' .. line
  end
end
if n == 0 then return 0 end
redis.call('SET', KEYS[2], kept)
redis.call('SET', KEYS[3], (redis.call('GET', KEYS[3]) or '') .. moved)
return n
`)

// retakeHostScript takes a reservation's returned host claims again if every limited one
// still fits; it returns an empty string (taken, or nothing to take) or the field that is full.
// KEYS: limit, used, resv, returned.
var retakeHostScript = redis.NewScript(`
local moved = redis.call('GET', KEYS[4])
if not moved then return '' end
local rec = redis.call('GET', KEYS[3])
if not rec then
  redis.call('DEL', KEYS[4])
  return ''
end
for line in string.gmatch(moved, '[^\n]+') do
  local f, amt, counter = string.match(line, '^(%S+) (%S+) (%S+)')
  if counter == '0' then
    local lim = tonumber(redis.call('HGET', KEYS[1], f) or '-1')
    local used = tonumber(redis.call('HGET', KEYS[2], f) or '0')
    if lim < 0 or used + tonumber(amt) > lim then return f end
  end
end
for line in string.gmatch(moved, '[^\n]+') do
  local f, amt = string.match(line, '^(%S+) (%S+)')
  redis.call('HINCRBY', KEYS[2], f, amt)
end
redis.call('SET', KEYS[3], rec .. moved)
redis.call('DEL', KEYS[4])
return ''
`)

// ReturnHostCapacity gives back the host claims (CPU, memory, VM count) of a job's
// reservation and keeps them aside for RetakeHostCapacity; it reports whether there were
// any. Returning twice is harmless.
func (s *Store) ReturnHostCapacity(ctx context.Context, job string) (bool, error) {
	n, err := returnHostScript.Run(ctx, s.rdb, []string{keyCapUsed(), keyCapResv(job), keyCapReturned(job)}).Int()
	if err != nil {
		return false, fmt.Errorf("return host capacity: %w", err)
	}
	return n > 0, nil
}

// RetakeHostCapacity takes the host claims ReturnHostCapacity put aside again, all or none:
// full is the capacity field that has no room left for them (empty when they were taken, or
// when there was nothing to take). Taking twice is harmless.
func (s *Store) RetakeHostCapacity(ctx context.Context, job string) (full string, err error) {
	full, err = retakeHostScript.Run(ctx, s.rdb, []string{keyCapLimit(), keyCapUsed(), keyCapResv(job), keyCapReturned(job)}).Text()
	if err != nil {
		return "", fmt.Errorf("take host capacity again: %w", err)
	}
	return full, nil
}

// GetReservation returns a job's reservation, or ErrNotFound.
func (s *Store) GetReservation(ctx context.Context, job string) (*Reservation, error) {
	rec, err := s.rdb.Get(ctx, keyCapResv(job)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return parseReservation(rec)
}

func parseReservation(rec string) (*Reservation, error) {
	lines := strings.Split(rec, "\n")
	r := &Reservation{Label: lines[0]}
	for _, l := range lines[1:] {
		parts := strings.Fields(l)
		if len(parts) != 3 {
			return nil, fmt.Errorf("malformed reservation line %q", l)
		}
		amt, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("malformed reservation amount %q", l)
		}
		r.Claims = append(r.Claims, Claim{Field: parts[0], Amount: amt, Counter: parts[2] == "1"})
	}
	return r, nil
}

// FieldUsage is the limit and the amount in use of one capacity field.
type FieldUsage struct {
	Limit int64 // -1: may not receive anything
	Used  int64
	// Down is why the field's primary storage cannot be used right now (its directory is
	// missing or read-only, as the workers' probe found), empty when it can.
	Down string
}

// Usage reads the limits and amounts in use of the given fields in one round trip. Fields
// of a primary storage the probe found down report Limit -1 and the reason.
func (s *Store) Usage(ctx context.Context, fields []string) ([]FieldUsage, error) {
	if len(fields) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	lim := pipe.HMGet(ctx, keyCapLimit(), fields...)
	used := pipe.HMGet(ctx, keyCapUsed(), fields...)
	down := pipe.HGetAll(ctx, keyStorageDown())
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read capacity: %w", err)
	}
	out := make([]FieldUsage, len(fields))
	for i, f := range fields {
		out[i] = FieldUsage{Limit: toInt(lim.Val()[i], -1), Used: toInt(used.Val()[i], 0)}
		if len(down.Val()) > 0 {
			if ps, ok := storageOfField(f); ok {
				if why, isDown := down.Val()[ps]; isDown {
					out[i].Limit, out[i].Down = -1, why
				}
			}
		}
	}
	return out, nil
}

// storageOfField returns the primary storage uuid of a "p:<ps>[:...]" field.
func storageOfField(f string) (string, bool) {
	if !strings.HasPrefix(f, "p:") || len(f) < 34 {
		return "", false
	}
	return f[2:34], true
}

func toInt(v any, def int64) int64 {
	s, ok := v.(string)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return def
	}
	return n
}

// Field names exposed for placement and reports.
var (
	FieldHostCPU      = fieldHostCPU
	FieldHostMemory   = fieldHostMem
	FieldHostVMs      = fieldHostVMs
	FieldStorageBytes = fieldStorageBytes
	FieldStorageVols  = fieldStorageVols
)

// CapacityDrift compares the amounts in use with the sum of every stored reservation and
// lists each field that differs, plus each limited field whose use exceeds its limit. An
// empty answer means capacity accounting is exact.
func (s *Store) CapacityDrift(ctx context.Context) ([]string, error) {
	jobs, err := s.rdb.SMembers(ctx, keyCapResvSet()).Result()
	if err != nil {
		return nil, err
	}
	want := map[string]int64{}
	counters := map[string]bool{}
	for _, j := range jobs {
		r, err := s.GetReservation(ctx, j)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("job %s is listed as holding a reservation that does not exist", j)
		}
		if err != nil {
			return nil, err
		}
		for _, c := range r.Claims {
			want[c.Field] += c.Amount
			if c.Counter {
				counters[c.Field] = true
			}
		}
	}
	used, err := s.rdb.HGetAll(ctx, keyCapUsed()).Result()
	if err != nil {
		return nil, err
	}
	limits, err := s.rdb.HGetAll(ctx, keyCapLimit()).Result()
	if err != nil {
		return nil, err
	}
	var drift []string
	for f, v := range used {
		n, _ := strconv.ParseInt(v, 10, 64)
		if n != want[f] {
			drift = append(drift, fmt.Sprintf("%s: in use %d, reservations add up to %d", f, n, want[f]))
		}
		if !counters[f] {
			if lim, ok := limits[f]; ok {
				l, _ := strconv.ParseInt(lim, 10, 64)
				if l >= 0 && n > l {
					drift = append(drift, fmt.Sprintf("%s: in use %d exceeds its limit %d", f, n, l))
				}
			}
		}
	}
	for f, n := range want {
		if _, ok := used[f]; !ok && n != 0 {
			drift = append(drift, fmt.Sprintf("%s: not in use, but reservations add up to %d", f, n))
		}
	}
	return drift, nil
}
