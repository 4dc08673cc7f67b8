// Package store keeps all of vmrestore's own state in Redis: the site catalog, capacity
// reservations, IP and MAC allocations, job records with their stage checkpoints, VM
// inventories, accounts and sessions, and the index of backup groups. Nothing else in
// vmrestore talks to Redis directly (asynq's queues excepted, see package queue).
//
// Every script that touches several keys keeps them in one hash slot ({cap}, {l3:<uuid>},
// {mac}, {acct:<uuid>}, ...), so the same code runs on a single Redis, behind Sentinel, and on
// Redis Cluster.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store is vmrestore's Redis state. It is safe for concurrent use.
type Store struct {
	rdb redis.UniversalClient
	// view is the store's own view of the catalog (resource uuids must not collide with it).
	view *CatalogCache

	vmIDs struct { // the block of VM internal ids this process hands out, see NextVMInternalID
		sync.Mutex
		next, last int64
	}
	accountTypes struct { // account uuid → type, as last read, see SystemAdmin
		sync.Mutex
		byUUID map[string]string
		read   time.Time
	}
}

// New wraps a connected client.
func New(rdb redis.UniversalClient) *Store {
	s := &Store{rdb: rdb}
	s.view = s.NewCatalogCache()
	return s
}

// Client returns the underlying client (for asynq, which shares it).
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// Unavailable reports whether err says that Redis could not be reached or cannot serve
// right now (refused, reset or timed-out connection, a closed client, a server still loading
// its data, a replica or cluster between masters), as opposed to a command that failed.
// Such errors pass when Redis is back; they are nobody's fault and must not fail a job.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) {
		return true
	}
	var re redis.Error
	if errors.As(err, &re) {
		for _, p := range []string{"LOADING", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "TRYAGAIN"} {
			if strings.HasPrefix(re.Error(), p) {
				return true
			}
		}
	}
	return false
}

// WaitReachable waits until Redis answers a PING, ctx ends, or limit passes, polling a few
// times a second; it reports whether Redis answered.
func (s *Store) WaitReachable(ctx context.Context, limit time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		if s.rdb.Ping(ctx).Err() == nil {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// ErrNotFound is returned when a record does not exist (or has expired).
var ErrNotFound = errors.New("not found")

const prefix = "vmr:"

// Keys. Braces mark the hash tag: keys sharing it live in one Redis Cluster slot.
func keyCatalog() string                 { return prefix + "{catalog}" }
func keyCatalogVersion() string          { return prefix + "{catalog}:version" }
func keyCapLimit() string                { return prefix + "{cap}:limit" }
func keyCapUsed() string                 { return prefix + "{cap}:used" }
func keyCapResv(job string) string       { return prefix + "{cap}:resv:" + job }
func keyCapResvSet() string              { return prefix + "{cap}:resvs" }
func keyCapReturned(job string) string   { return prefix + "{cap}:returned:" + job }
func keyStorageDown() string             { return prefix + "{cap}:ps-down" }
func l3Tag(l3 string) string             { return prefix + "{l3:" + l3 + "}" }
func keyL3IPs(l3 string) string          { return l3Tag(l3) + ":ips" }
func keyL3Owners(l3 string) string       { return l3Tag(l3) + ":owners" }
func keyL3Ranges(l3 string) string       { return l3Tag(l3) + ":ranges" }
func keyL3Bits(l3, rng string) string    { return l3Tag(l3) + ":bits:" + rng }
func keyMacUsed() string                 { return prefix + "{mac}:used" }
func keyMacOwners() string               { return prefix + "{mac}:owners" }
func keyJob(uuid string) string          { return prefix + "job:" + uuid }
func keyJobLock(uuid string) string      { return prefix + "job:" + uuid + ":lock" }
func keyJobsLocked() string              { return prefix + "jobs:locked" }
func keyVM(uuid string) string           { return prefix + "vm:" + uuid }
func keyVMIndex() string                 { return prefix + "vms" }
func keyVMAccount(acct string) string    { return prefix + "vms:acct:" + acct }
func keyResource(uuid string) string     { return prefix + "resource:" + uuid }
func keySession(sid string) string       { return prefix + "session:" + sid }
func keyAcctSessions(acct string) string { return prefix + "{acct:" + acct + "}:sessions" }
func keyAccounts() string                { return prefix + "accounts" }
func keyBackups() string                 { return prefix + "{backups}" }
func keyBackupsTmp(n string) string      { return prefix + "{backups}:tmp:" + n }
func keySeqVM() string                   { return prefix + "seq:vm" }
func keyHypervisor(vm string) string     { return prefix + "hv:" + vm }

// Pub/sub channels.
const (
	ChannelJobDone   = prefix + "events:job-done"
	ChannelJobCancel = prefix + "events:job-cancel"
	// ChannelSlotFree carries the uuid of a backup storage one of whose clone slots was
	// released, so that waiters ask again at once.
	ChannelSlotFree = prefix + "events:slot-free"
	// ChannelPlanWake carries the uuid of a plan that has items to start (accepted, resumed,
	// items retried), so that a worker drives it at once.
	ChannelPlanWake = prefix + "events:plan-wake"
)

// vmIDBlock is how many VM internal ids a process takes from Redis at once.
const vmIDBlock = 64

// NextVMInternalID returns a new VM id (ZStack's internalId, used in NIC names), unique
// across the deployment. Each process takes a block of ids from one Redis counter and hands
// them out in order, so most restores need no round trip for it; ids are not in creation
// order across processes, and a process that stops leaves the rest of its block unused.
func (s *Store) NextVMInternalID(ctx context.Context) (int64, error) {
	s.vmIDs.Lock()
	defer s.vmIDs.Unlock()
	if s.vmIDs.next == 0 || s.vmIDs.next > s.vmIDs.last {
		last, err := s.rdb.IncrBy(ctx, keySeqVM(), vmIDBlock).Result()
		if err != nil {
			return 0, err
		}
		s.vmIDs.next, s.vmIDs.last = last-vmIDBlock+1, last
	}
	id := s.vmIDs.next
	s.vmIDs.next++
	return id, nil
}
