package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// An attempt starts in one round trip: the job turns running, counts the attempt, records as
// its stage the first one without a checkpoint, and comes back whole.
func TestStartAttemptRecordsTheFirstStageLeft(t *testing.T) {
	ctx := context.Background()
	st := store.New(redistest.Start(t).Client())
	const id = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
	if _, _, err := st.StartAttempt(ctx, id, ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a missing job: want ErrNotFound, got %v", err)
	}
	rec := &job.Record{UUID: id, AccountUUID: "acct", CreatedAt: time.Now(), Timeout: time.Hour,
		Request: &job.Request{GroupUUID: "6e0c3b6a1f2d4c5b8a9e7d6c5b4a3f21"}}
	if err := st.CreateJob(ctx, rec); err != nil {
		t.Fatal(err)
	}
	prev, got, err := st.StartAttempt(ctx, id, "")
	if err != nil || prev != job.Pending || got.State != job.Running || got.Attempts != 1 || got.Stage != job.StageResolve ||
		got.StartedAt.IsZero() || got.Request.GroupUUID != rec.Request.GroupUUID {
		t.Fatalf("first attempt: prev %q, record %+v, err %v", prev, got, err)
	}
	// Resolve and place done: the next attempt starts at network, its start time kept.
	if err := st.SaveCheckpoint(ctx, id, job.StageResolve, store.CheckpointResolved, &job.Resolved{VMUUID: "vm"}); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveCheckpoint(ctx, id, job.StagePlace, store.CheckpointPlacement, &job.Placement{HostUUID: "h"}); err != nil {
		t.Fatal(err)
	}
	prev, again, err := st.StartAttempt(ctx, id, "")
	if err != nil || prev != job.Running || again.Attempts != 2 || again.Stage != job.StageNetwork || !again.StartedAt.Equal(got.StartedAt) ||
		again.Checkpoints.Placement == nil || again.Checkpoints.Placement.HostUUID != "h" {
		t.Fatalf("second attempt: prev %q, record %+v, err %v", prev, again, err)
	}
	// Every stage but the commit done, the hydrate stage passed with the instantiate
	// checkpoint: the commit runs.
	for _, s := range []string{job.StageNetwork, job.StageClone} {
		if err := st.SaveCheckpoint(ctx, id, s, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SaveCheckpoints(ctx, id, store.Checkpoint{Stage: job.StageInstantiate, Kind: store.CheckpointInstance, Value: &job.Instance{HostUUID: "h"}, Ended: time.Now()},
		store.Checkpoint{Stage: job.StageHydrate, Ended: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if r, err := st.GetJob(ctx, id); err != nil || r.Stage != job.StageCommit {
		t.Fatalf("after the instantiate checkpoint that passes the hydrate stage: stage %q, err %v", r.Stage, err)
	}
	if _, r, err := st.StartAttempt(ctx, id, ""); err != nil || r.Stage != job.StageCommit || !r.Checkpoints.StageDone(job.StageHydrate) ||
		r.Checkpoints.Instance == nil || r.StageEnded[job.StageHydrate].IsZero() {
		t.Fatalf("all but the commit done: stage %q, checkpoints %+v, err %v", r.Stage, r.Checkpoints, err)
	}
	// An ended job is returned as it ended, not counted again.
	if _, err := st.FinishJob(ctx, id, job.Succeeded, []byte(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	prev, done, err := st.StartAttempt(ctx, id, "")
	if err != nil || prev != job.Succeeded || done.State != job.Succeeded || done.Attempts != 3 {
		t.Fatalf("ended job: prev %q, record %+v, err %v", prev, done, err)
	}
}

// A run that hands its job back (no clone slot, Redis unreachable, worker stopping) is
// continued by the next run: attempts counts only runs after failures and crashes, and the
// hand-backs are counted apart.
func TestHandBacksAreNotAttempts(t *testing.T) {
	ctx := context.Background()
	st := store.New(redistest.Start(t).Client())
	const id = "5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b"
	rec := &job.Record{UUID: id, AccountUUID: "acct", CreatedAt: time.Now(), Timeout: time.Hour,
		Request: &job.Request{GroupUUID: "6e0c3b6a1f2d4c5b8a9e7d6c5b4a3f21"}}
	if err := st.CreateJob(ctx, rec); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		handBack            bool // the run before this one handed the job back
		attempts, handBacks int
		newAttempt          bool
	}{
		{false, 1, 0, true},
		{true, 1, 1, false},
		{true, 1, 2, false},
		{false, 2, 2, true}, // the run before crashed
		{true, 2, 3, false},
	}
	for i, w := range want {
		if w.handBack {
			if err := st.HandBack(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		_, got, err := st.StartAttempt(ctx, id, "")
		if err != nil || got.Attempts != w.attempts || got.HandBacks != w.handBacks || got.NewAttempt != w.newAttempt {
			t.Fatalf("run %d: attempts %d, hand-backs %d, new attempt %v (%v); want %d, %d, %v",
				i+1, got.Attempts, got.HandBacks, got.NewAttempt, err, w.attempts, w.handBacks, w.newAttempt)
		}
	}
	// A job that has ended takes no hand-back.
	if _, err := st.FinishJob(ctx, id, job.Succeeded, []byte(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	if err := st.HandBack(ctx, id); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.GetJob(ctx, id); got.HandBacks != 3 {
		t.Fatalf("an ended job counted a hand-back: %d", got.HandBacks)
	}
}

// VM internal ids come from one Redis counter in blocks: two processes hand out ids that
// never collide, each in order.
func TestVMInternalIDsAreUniqueAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	a, b := store.New(srv.Client()), store.New(srv.Client())
	seen := map[int64]bool{}
	var lastA int64
	for i := 0; i < 300; i++ {
		for _, st := range []*store.Store{a, b} {
			id, err := st.NextVMInternalID(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if id <= 0 || seen[id] {
				t.Fatalf("id %d handed out twice (or not positive)", id)
			}
			seen[id] = true
			if st == a {
				if id <= lastA {
					t.Fatalf("process a went back from %d to %d", lastA, id)
				}
				lastA = id
			}
		}
	}
}

// The ownership check's account types are cached, but an account not seen yet is read at
// once.
func TestSystemAdminSeesANewAccountAtOnce(t *testing.T) {
	ctx := context.Background()
	st := store.New(redistest.Start(t).Client())
	admin := catalog.Account{UUID: "36c27e8ff05c4780bf6d2fa65700f22e", Name: "admin", Type: catalog.AccountSystemAdmin}
	if err := st.PutAccount(ctx, admin); err != nil {
		t.Fatal(err)
	}
	if ok, err := st.SystemAdmin(ctx, admin.UUID); !ok || err != nil {
		t.Fatalf("admin: %v %v", ok, err)
	}
	other := catalog.Account{UUID: "4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a", Name: "ops", Type: catalog.AccountSystemAdmin}
	if ok, err := st.SystemAdmin(ctx, other.UUID); ok || err != nil {
		t.Fatalf("an account that does not exist: %v %v", ok, err)
	}
	if err := st.PutAccount(ctx, other); err != nil {
		t.Fatal(err)
	}
	if ok, err := st.SystemAdmin(ctx, other.UUID); !ok || err != nil {
		t.Fatalf("a SystemAdmin created after the cache was filled: %v %v", ok, err)
	}
	user := catalog.Account{UUID: "4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b", Name: "tenant", Type: catalog.AccountNormal}
	if err := st.PutAccount(ctx, user); err != nil {
		t.Fatal(err)
	}
	if ok, err := st.SystemAdmin(ctx, user.UUID); ok || err != nil {
		t.Fatalf("a Normal account: %v %v", ok, err)
	}
}

// A create whose answer times out is resent by go-redis; the resent script must not take
// the job its first try created for someone else's (Duplicate job uuid for a fresh request,
// seen under load in the fault-injection suite).
func TestCreateJobResentAfterATimeoutIsNotADuplicate(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	// A client that gives up on an answer after a second and resends it on a new connection
	// (go-redis's default).
	impatient := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: time.Second})
	t.Cleanup(func() { impatient.Close() })
	st := store.New(impatient)
	for range 2 { // load the scripts
		rec := &job.Record{UUID: zstack.NewUUID(), AccountUUID: "acct", CreatedAt: time.Now(), Timeout: time.Hour, Request: &job.Request{}}
		if err := st.CreateJob(ctx, rec); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateEndedJob(ctx, &job.Record{UUID: zstack.NewUUID(), Request: &job.Request{}}, job.Failed, nil, zstack.InvalidArgument("x")); err != nil {
			t.Fatal(err)
		}
	}
	// The server is busy for 1.6 s from just before the create: its first try times out
	// at 1.05 s while queued; the resent try, on a new connection whose handshake waits for
	// the end of the busy spell (some 0.55 s, under its 1 s limit), runs after the first
	// try's script and finds the job already there. Each margin is 0.45 s or more, wide
	// enough for CI's load, where a 200 ms limit against a 320 ms spell timed the resend out.
	busy := func() {
		srv.Client().Eval(ctx, `local s = redis.call('TIME'); local start = s[1]*1e6 + s[2]
			repeat local n = redis.call('TIME') until n[1]*1e6 + n[2] - start > 1600000 return 1`, nil)
	}
	for i, create := range []func(*job.Record) error{
		func(r *job.Record) error { return st.CreateJob(ctx, r) },
		func(r *job.Record) error {
			return st.CreateEndedJob(ctx, r, job.Failed, nil, zstack.InvalidArgument("refused"))
		},
	} {
		rec := &job.Record{UUID: fmt.Sprintf("%032x", i+1), AccountUUID: "acct", CreatedAt: time.Now(), Timeout: time.Hour,
			Request: &job.Request{GroupUUID: "6e0c3b6a1f2d4c5b8a9e7d6c5b4a3f21"}}
		go busy()
		time.Sleep(50 * time.Millisecond)
		if err := create(rec); err != nil {
			t.Fatalf("create %d, resent while Redis was busy: %v", i, err)
		}
		// A second, separate submission (a token of its own) with the same uuid is a duplicate.
		again := *rec
		again.Submission = ""
		if err := create(&again); !errors.Is(err, store.ErrJobExists) {
			t.Fatalf("create %d submitted again: want ErrJobExists, got %v", i, err)
		}
	}
}

// A job lock works against a Redis that has never run its scripts (a new or restarted
// server): the pipelined scripts are loaded and sent again.
func TestJobLockOnAFreshRedis(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	st := store.New(srv.Client())
	const id = "5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c"
	ok, err := st.LockJob(ctx, id, "token", time.Minute, "")
	if !ok || err != nil {
		t.Fatalf("lock on a fresh Redis: %v %v", ok, err)
	}
	if ok, err := st.LockJob(ctx, id, "other", time.Minute, ""); ok || err != nil {
		t.Fatalf("a second token took the lock: %v %v", ok, err)
	}
	srv.Client().ScriptFlush(ctx)
	if err := st.UnlockJob(ctx, id, "token"); err != nil {
		t.Fatal(err)
	}
	if ok, err := st.LockJob(ctx, id, "other", time.Minute, ""); !ok || err != nil {
		t.Fatalf("after the unlock: %v %v", ok, err)
	}
}

// An attempt reads the catalog's version with its record, and the stages take the catalog
// from the cache at that version: a catalog saved before the attempt started is the one they
// see, with no round trip of their own. A Redis that lost its scripts still starts attempts.
func TestStartAttemptReadsTheCatalogVersion(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	st := store.New(srv.Client())
	const id = "5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d"
	rec := &job.Record{UUID: id, AccountUUID: "acct", CreatedAt: time.Now(), Timeout: time.Hour,
		Request: &job.Request{GroupUUID: "6e0c3b6a1f2d4c5b8a9e7d6c5b4a3f21"}}
	if err := st.CreateJob(ctx, rec); err != nil {
		t.Fatal(err)
	}
	_, got, err := st.StartAttempt(ctx, id, "")
	if err != nil || got.CatalogVersion != 0 {
		t.Fatalf("no catalog saved: version %d, err %v", got.CatalogVersion, err)
	}
	cache := st.NewCatalogCache()
	if _, err := cache.AtLeast(ctx, got.CatalogVersion); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no catalog saved: want ErrNotFound, got %v", err)
	}
	site := &catalog.Site{Zones: []catalog.Zone{{UUID: "20ae0000000000000000000000000000", Name: "z1"}}}
	v1, err := st.SaveCatalog(ctx, site)
	if err != nil {
		t.Fatal(err)
	}
	if ix, err := cache.AtLeast(ctx, v1); err != nil || ix.Version != v1 {
		t.Fatalf("first catalog: %+v %v", ix, err)
	}
	site.Zones[0].Name = "z2"
	v2, err := st.SaveCatalog(ctx, site)
	if err != nil {
		t.Fatal(err)
	}
	srv.Client().ScriptFlush(ctx)
	_, got, err = st.StartAttempt(ctx, id, "")
	if err != nil || got.CatalogVersion != v2 {
		t.Fatalf("after a catalog change: version %d, want %d, err %v", got.CatalogVersion, v2, err)
	}
	ix, err := cache.AtLeast(ctx, got.CatalogVersion)
	if err != nil || ix.Version != v2 || ix.Site.Zones[0].Name != "z2" {
		t.Fatalf("the attempt's catalog: %+v %v, want version %d with zone z2", ix, err, v2)
	}
	if again, err := cache.AtLeast(ctx, v1); err != nil || again != ix {
		t.Fatalf("an older version read: want the cached newer catalog, got %+v %v", again, err)
	}
}

// AbandonJob removes only the job its own submission created: a late undo of a failed try
// leaves alone the job a retry of the same uuid created since, and its resourceUuid claim.
func TestAbandonJobRemovesOnlyItsSubmissionsJob(t *testing.T) {
	ctx := context.Background()
	st := store.New(redistest.Start(t).Client())
	id, resource := zstack.NewUUID(), zstack.NewUUID()
	b := store.ResourceBinding{JobUUID: id, GroupUUID: "6e0c3b6a1f2d4c5b8a9e7d6c5b4a3f21", AccountUUID: "acct"}
	if _, err := st.ClaimResource(ctx, resource, b); err != nil {
		t.Fatal(err)
	}
	retried := &job.Record{UUID: id, AccountUUID: "acct", CreatedAt: time.Now(), Timeout: time.Hour, Request: &job.Request{ResourceUUID: resource}}
	if err := st.CreateJob(ctx, retried); err != nil {
		t.Fatal(err)
	}
	if err := st.AbandonJob(ctx, id, zstack.NewUUID(), resource, b); err != nil { // the failed try's undo
		t.Fatal(err)
	}
	if _, err := st.GetJob(ctx, id); err != nil {
		t.Fatalf("the undo of another try removed the job: %v", err)
	}
	other := b
	other.JobUUID = zstack.NewUUID()
	if prev, err := st.ClaimResource(ctx, resource, other); err != nil || prev == nil || prev.JobUUID != id {
		t.Fatalf("the undo of another try released the job's resourceUuid: %+v %v", prev, err)
	}
	if err := st.AbandonJob(ctx, id, retried.Submission, resource, b); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetJob(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the job's own undo left it: %v", err)
	}
	if prev, err := st.ClaimResource(ctx, resource, other); err != nil || prev != nil {
		t.Fatalf("the job's own undo kept its resourceUuid: %+v %v", prev, err)
	}
}
