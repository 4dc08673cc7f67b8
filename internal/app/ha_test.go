package app_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/redistest"
)

// TestRedisCluster runs restores and a plan on a real three-master Redis Cluster: every
// script keeps its keys in one slot, so nothing fails with CROSSSLOT, and vmrestore's keys
// spread over the masters.
func TestRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node Redis Cluster")
	}
	cl := redistest.StartCluster(t, 3)
	e := newEnv(t, envOptions{redis: func(c *app.Config) { c.RedisAddr, c.RedisCluster = cl.Addrs(), true }})
	for i := 0; i < 6; i++ {
		g := []string{demosite.GroupWeb01UUID, demosite.GroupDB01UUID, demosite.GroupApp01UUID}[i%3]
		r := e.restore(g, map[string]any{"name": fmt.Sprintf("c-%d", i), "instanceOfferingUuid": demosite.OfferingSmall,
			"l3NetworkUuids": []string{demosite.L3ProdUUID}}, nil)
		mustf(t, r.status == 200, "restore %d on the cluster: %d %s", i, r.status, r.body)
	}
	p := e.do("POST", "/api/v1/plans", e.session, map[string]any{
		"name": "on-cluster", "groups": []string{demosite.GroupWeb01UUID, demosite.GroupApp01UUID},
		"defaults":       map[string]any{"keepSourceSize": true, "nameTemplate": "{{.SourceName}}-plan"},
		"networkMapping": []map[string]any{{"sourceL3NetworkUuid": demosite.L3ProdUUID, "targetL3NetworkUuid": demosite.L3ProdUUID}},
	}, nil)
	mustf(t, p.status == 201, "plan on the cluster: %d %s", p.status, p.body)
	rep := e.waitPlanEnd(str(p.json(), "uuid"), time.Minute)
	mustf(t, rep.State == "succeeded", "plan on the cluster: %s %v", rep.State, rep.Counts)
	e.checkInvariants()

	// vmrestore's keys live on every master.
	for _, n := range cl.Nodes {
		keys, err := n.Client().Keys(context.Background(), "vmr:*").Result()
		mustf(t, err == nil && len(keys) > 0, "master %s holds no vmrestore key (%v)", n.Addr, err)
	}
}

// TestSentinelFailoverMidRun restores through Sentinel, kills the master while restores are
// copying volumes, and checks that the jobs accepted before the failover end, that the api
// and workers follow the new master without a restart, and that nothing leaked.
func TestSentinelFailoverMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a Sentinel failover")
	}
	// Most of its time is spent waiting for asynq to recover a task: let it overlap with other tests.
	t.Parallel()
	sen := redistest.StartSentinel(t)
	e := newEnv(t, envOptions{
		redis: func(c *app.Config) { c.RedisAddr, c.RedisMasterName = sen.Sentinel.Addr, sen.MasterName },
		site:  func(s *catalog.Site) { s.BackupStorages[0].BandwidthBytesPerSecond = 1 << 20 }, // clones take seconds
	})
	writeTinyGroup(t, e.paths.Backup)
	submit := func(name string) string {
		r := e.restore(tinyGroup, map[string]any{"name": name, "cpuNum": 1, "memorySize": 1 << 30,
			"l3NetworkUuids": []string{demosite.L3ProdUUID}}, map[string]string{"Prefer": "respond-async"})
		mustf(t, r.status == 202, "submit %s: %d %s", name, r.status, r.body)
		return str(r.json(), "location")
	}
	var locations []string
	for i := 0; i < 20; i++ {
		locations = append(locations, submit(fmt.Sprintf("before-%d", i)))
	}
	time.Sleep(1500 * time.Millisecond) // let the clones start
	sen.Master.Kill()
	killed := time.Now()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		m, err := sen.CurrentMaster(ctx)
		if err == nil && m == sen.Replica.Addr {
			break
		}
		mustf(t, time.Now().Before(deadline), "no failover: master %s %v", m, err)
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("sentinel promoted the replica %v after the master died", time.Since(killed).Round(100*time.Millisecond))
	for i := 0; i < 10; i++ {
		locations = append(locations, submit(fmt.Sprintf("after-%d", i)))
	}
	ended := 0
	for i, loc := range locations {
		r := e.poll(loc, 3*time.Minute)
		// Replication is asynchronous: a job acknowledged in the last moment before the
		// master died may not have reached the replica (404), never a wrong answer.
		mustf(t, r.status == 200 || r.status == 404 && i < 20, "job %d after the failover: %d %s", i, r.status, r.body)
		if r.status == 200 {
			ended++
		}
	}
	t.Logf("%d of %d jobs restored across the failover", ended, len(locations))
	mustf(t, ended >= len(locations)-3, "too many jobs lost: %d of %d ended", ended, len(locations))
	e.checkInvariants()
	info, _ := redis.NewClient(&redis.Options{Addr: sen.Replica.Addr}).Info(ctx, "replication").Result()
	mustf(t, strings.Contains(info, "role:master"), "the replica is now the master")
}
