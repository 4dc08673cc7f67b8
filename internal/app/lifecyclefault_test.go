package app_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/testrig"
)

// cleanupFault runs a three-tier plan, starts its cleanup with the lock of a tier-1 VM held
// by the test (so the cleanup expunges the four VMs of tiers 3 and 2, then waits), runs
// fault, lets the cleanup go on, and checks that it ends having expunged every VM once:
// what it says it freed is exact, and the site is as it was before the plan.
func cleanupFault(t *testing.T, e *env, fault func()) {
	groups := planGroupsOf(t, e)
	before := e.siteUse()
	r := e.do("POST", "/api/v1/plans", e.session, planSpec("faulty-drill", groups, nil), nil)
	mustf(t, r.status == 201, "submit: %d %s", r.status, r.body)
	plan := str(r.json(), "uuid")
	rep := e.waitPlanEnd(plan, 3*time.Minute)
	mustf(t, rep.State == "succeeded", "plan ended %s %v", rep.State, rep.Counts)
	full := e.plan(plan)
	held := ""
	for _, it := range full.Items {
		if it.Tier == 1 {
			held = it.VMUUID
		}
	}
	ctx := context.Background()
	ok, err := e.store.LockVM(ctx, held, "held-by-the-test", time.Hour)
	mustf(t, ok && err == nil, "lock VM %s: %v %v", held, ok, err)

	c := e.do("POST", "/api/v1/plans/"+plan+"/cleanup", e.session, nil, nil)
	mustf(t, c.status == 202, "cleanup: %d %s", c.status, c.body)
	e.waitCleanup(plan, time.Minute, func(c cleanup) bool { return expungedCount(c) >= 4 })
	fault()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if err := e.store.UnlockVM(ctx, held, "held-by-the-test"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("unlock VM %s: %v", held, err)
		}
	}
	end := e.waitCleanup(plan, 4*time.Minute, func(c cleanup) bool { return c.State != "running" })
	mustf(t, end.State == "succeeded" && expungedCount(end) == len(groups), "cleanup ended %+v", end)
	f := end.Freed
	mustf(t, f.VMs == len(groups) && f.CPUNum == int64(len(groups)) && f.MemoryBytes == int64(len(groups))<<30 &&
		f.IPs == len(groups)+2 && f.MACs == len(groups)+2 && f.Files == len(groups), "freed %+v: something was counted twice or not at all", f)
	e.checkInvariants()
	e.sameUse(before, e.siteUse(), "after the cleanup")
}

func expungedCount(c cleanup) int {
	n := 0
	for _, v := range c.VMs {
		if v.State == "expunged" {
			n++
		}
	}
	return n
}

// planGroupsOf writes the plan groups onto the env's extra backup storage and waits for them.
func planGroupsOf(t *testing.T, e *env) []planGroup {
	groups := writePlanGroups(t, e.planDir, 2, 2, 2)
	waitIndexed(t, e, len(groups))
	return groups
}

// TestCleanupSurvivesRedisRestart: Redis stops (SIGTERM, AOF) and starts again while a plan's
// cleanup runs; the cleanup resumes where it stood, frees each VM once and leaks nothing.
func TestCleanupSurvivesRedisRestart(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, redistest.Options{AOF: true})
	dir := t.TempDir()
	e := newEnv(t, envOptions{site: withPlanStorage(dir), redis: func(c *app.Config) { c.RedisAddr = rs.Addr }})
	e.redis, e.planDir = rs, dir
	cleanupFault(t, e, func() {
		rs.StopGracefully()
		time.Sleep(2 * time.Second)
		rs.StartAgain()
	})
}

// TestCleanupSurvivesAWorkerKilled: the worker that runs a plan's cleanup is killed (SIGKILL)
// half-way; another worker takes the cleanup over and finishes it, each VM freed once. It
// takes about a minute, all of it asynq's: a dead worker's task is recovered once its lease
// (30 s) has been expired for 30 s more, by a recoverer that looks every minute, and asynq
// v0.26 sets none of these from its Config. The second worker starts at once, so that its
// first timed look (a minute after its start) is the earliest that can recover the task.
func TestCleanupSurvivesAWorkerKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the queue's recovery of a killed worker's task")
	}
	t.Parallel()
	rs := redistest.Start(t, redistest.Options{AOF: true})
	dir := t.TempDir()
	e := newEnv(t, envOptions{site: withPlanStorage(dir), noWorker: true, redis: func(c *app.Config) { c.RedisAddr = rs.Addr }})
	e.redis, e.planDir = rs, dir
	// The worker indexes the backup storages as it starts, before cleanupFault writes the
	// plan's groups: it looks again every second, not every 30 s (the default, which
	// waitIndexed's 30 s raced with in CI).
	scan := "VMRESTORE_BACKUP_SCAN_INTERVAL=1s"
	first, _ := startWorkerBinary(t, e, scan)
	var second *process
	cleanupFault(t, e, func() {
		first.kill()
		second, _ = startWorkerBinary(t, e, scan)
	})
	checkProcessLogs(t, []*process{first, second})
}

// TestExpungeInterruptedWhileRemovingTheRecord: Redis fails an expunge right inside the
// removal of the VM's record (its account's VM listing answers WRONGTYPE, after the record
// became a tombstone and before the uuid's claim is released). The VM is gone for every
// read at once; once Redis answers again the expunge's next run finishes the removal: the
// uuid's claim is released, nothing else is freed twice, and the site is as it was.
func TestExpungeInterruptedWhileRemovingTheRecord(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rdb := e.redis.Client()
	before := e.siteUse()
	r := e.restore(demosite.GroupWeb01UUID, webParams("web01-interrupted"), nil)
	mustf(t, r.status == 200, "restore: %d %s", r.status, r.body)
	vm := str(r.json()["inventory"].(map[string]any), "uuid")
	mustf(t, e.vmOp(e.session, "DELETE", "/zstack/v1/vm-instances/"+vm, nil).status == 200, "destroy")
	rec, err := e.store.GetVMRecord(ctx, vm)
	mustf(t, err == nil, "the VM's record: %v", err)

	listing := "vmr:vms:acct:" + rec.AccountUUID
	kept, err := rdb.ZRangeWithScores(ctx, listing, 0, -1).Result()
	mustf(t, err == nil && len(kept) > 0, "the account's VM listing: %v %v", kept, err)
	mustf(t, rdb.Del(ctx, listing).Err() == nil && rdb.Set(ctx, listing, "not a sorted set", 0).Err() == nil, "break the listing")

	s := e.do("PUT", "/zstack/v1/vm-instances/"+vm+"/actions", e.session, map[string]any{"expungeVmInstance": map[string]any{}}, nil)
	mustf(t, s.status == 202, "expunge: %d %s", s.status, s.body)
	testrig.Eventually(t, time.Minute, func() bool {
		return rdb.HGet(ctx, "vmr:vm:"+vm, "removing").Val() == "1"
	}, "the expunge did not reach the removal of the record")
	_, err = e.store.GetVMRecord(ctx, vm)
	mustf(t, errors.Is(err, store.ErrNotFound), "a VM being removed is still read: %v", err)
	holder, _ := e.store.ResourceHolder(ctx, vm)
	mustf(t, holder == rec.JobUUID, "the claim went before the listing: %q", holder)

	mustf(t, rdb.Del(ctx, listing).Err() == nil && rdb.ZAdd(ctx, listing, kept...).Err() == nil, "mend the listing")
	res := e.poll(str(s.json(), "location"), time.Minute)
	mustf(t, res.status == 200 && strings.TrimSpace(string(res.body)) == "{}", "the expunge after Redis answers again: %d %s", res.status, res.body)
	holder, _ = e.store.ResourceHolder(ctx, vm)
	mustf(t, holder == "", "the uuid's claim leaked: held by %q", holder)
	mustf(t, rdb.Exists(ctx, "vmr:vm:"+vm).Val() == 0 && rdb.ZScore(ctx, listing, vm).Err() != nil, "the tombstone or the listing is left")
	e.checkInvariants()
	e.sameUse(before, e.siteUse(), "after the interrupted expunge")
}
