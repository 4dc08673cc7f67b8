package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/redistest"
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
	rs := redistest.Start(t, redistest.Options{AOF: true})
	dir := t.TempDir()
	e := newEnv(t, envOptions{site: withPlanStorage(dir), noWorker: true, redis: func(c *app.Config) { c.RedisAddr = rs.Addr }})
	e.redis, e.planDir = rs, dir
	first, _ := startWorkerBinary(t, e)
	var second *process
	cleanupFault(t, e, func() {
		first.kill()
		second, _ = startWorkerBinary(t, e)
	})
	checkProcessLogs(t, []*process{first, second})
}
