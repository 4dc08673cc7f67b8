package app_test

import (
	"context"
	"fmt"
	"net/http"
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
	t.Parallel()
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
// copying volumes, and checks that the api serves again within 5 s of the promotion and every
// copy goes on within 15 s of it, that the jobs accepted before the failover end, that the api
// and workers follow the new master without a restart, and that nothing leaked.
func TestSentinelFailoverMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a Sentinel failover")
	}
	t.Parallel()
	sen := redistest.StartSentinel(t)
	dir := t.TempDir()
	const group = "d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7"
	writeVolumesGroup(t, dir, group, 16<<20, 16<<20)
	e := newEnv(t, envOptions{
		redis: func(c *app.Config) { c.RedisAddr, c.RedisMasterName = sen.Sentinel.Addr, sen.MasterName },
		site: func(s *catalog.Site) {
			s.BackupStorages = append(s.BackupStorages, catalog.BackupStorage{UUID: slotsBS, Name: "bs-ha", URL: dir,
				State: catalog.StateEnabled, Status: catalog.StatusConnected, ZoneUUIDs: []string{demosite.ZoneUUID},
				MaxConcurrentClones: 16, BandwidthBytesPerSecond: 8 << 20}) // 8 jobs × 32 MiB: about 32 s
		}})
	f := &failoverRun{t: t, e: e, read: jobData(e)}
	f.startCopies(group, 8)
	at := f.snapshot()
	sen.Master.Kill()
	killed := time.Now()
	ctx := context.Background()
	var promoted time.Time
	for {
		m, err := sen.CurrentMaster(ctx)
		if err == nil && m == sen.Replica.Addr {
			promoted = time.Now()
			break
		}
		mustf(t, time.Since(killed) < 60*time.Second, "no failover: master %s %v", m, err)
		time.Sleep(50 * time.Millisecond)
	}
	served := f.serving(60 * time.Second)
	wentOn := f.goOn(at, 90*time.Second)
	t.Logf("master killed: sentinel promoted the replica after %v; the api served again %v after the promotion; every copy went on within %v of it",
		promoted.Sub(killed).Round(10*time.Millisecond), served.Sub(promoted).Round(10*time.Millisecond), wentOn.Sub(promoted).Round(10*time.Millisecond))
	locations := make([]string, 0, len(f.jobs)+10)
	for _, j := range f.jobs {
		locations = append(locations, "/zstack/v1/api-jobs/"+j)
	}
	for i := 0; i < 10; i++ {
		r := e.restore(tinyGroupOn(t, e), map[string]any{"name": fmt.Sprintf("after-%d", i), "cpuNum": 1, "memorySize": 1 << 30,
			"l3NetworkUuids": []string{demosite.L3ProdUUID}}, map[string]string{"Prefer": "respond-async"})
		mustf(t, r.status == 202, "submit after the failover: %d %s", r.status, r.body)
		locations = append(locations, str(r.json(), "location"))
	}
	ended := 0
	for i, loc := range locations {
		r := e.poll(loc, 3*time.Minute)
		// Replication is asynchronous: a job acknowledged in the last moment before the
		// master died may not have reached the replica (404), never a wrong answer.
		mustf(t, r.status == 200 || r.status == 404 && i < len(f.jobs), "job %d after the failover: %d %s", i, r.status, r.body)
		if r.status == 200 {
			ended++
		}
	}
	t.Logf("%d of %d jobs restored across the failover", ended, len(locations))
	mustf(t, ended >= len(locations)-2, "too many jobs lost: %d of %d ended", ended, len(locations))
	mustf(t, served.Sub(promoted) <= 5*time.Second, "the api served again %v after the promotion, want within 5 s", served.Sub(promoted).Round(10*time.Millisecond))
	mustf(t, wentOn.Sub(promoted) <= 15*time.Second, "the copies went on %v after the promotion, want within 15 s", wentOn.Sub(promoted).Round(10*time.Millisecond))
	e.checkInvariants()
	info, _ := redis.NewClient(&redis.Options{Addr: sen.Replica.Addr}).Info(ctx, "replication").Result()
	mustf(t, strings.Contains(info, "role:master"), "the replica is now the master")
}

// tinyGroupOn writes the tiny group to the env's backup storage and returns its uuid.
func tinyGroupOn(tb testing.TB, e *env) string {
	writeTinyGroup(tb, e.paths.Backup)
	return tinyGroup
}

// failoverRun measures a Redis failover under restores that copy volumes: when the apps serve
// again and when each copy under way goes on.
type failoverRun struct {
	t    *testing.T
	e    *env
	jobs []string
	read func(ctx context.Context, job string) (int64, error) // a job's data copied, as recorded
}

// startCopies submits n restores of group (respond-async) and waits until each is copying.
func (f *failoverRun) startCopies(group string, n int) {
	for i := 0; i < n; i++ {
		r := f.e.restore(group, map[string]any{"name": fmt.Sprintf("ha-%d", i), "cpuNum": 1, "memorySize": 1 << 30,
			"l3NetworkUuids": []string{demosite.L3ProdUUID}}, map[string]string{"Prefer": "respond-async"})
		mustf(f.t, r.status == 202, "submit: %d %s", r.status, r.body)
		loc := str(r.json(), "location")
		f.jobs = append(f.jobs, loc[strings.LastIndex(loc, "/")+1:])
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, j := range f.jobs {
		for {
			d, _ := f.read(context.Background(), j)
			if d > 0 {
				break
			}
			mustf(f.t, time.Now().Before(deadline), "job %s never started copying", j)
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// serving polls GET /api/v1/jobs/{uuid} (a session and a job read) until it answers 200.
func (f *failoverRun) serving(within time.Duration) time.Time {
	client := &http.Client{Timeout: 3 * time.Second}
	deadline := time.Now().Add(within)
	for {
		req, _ := http.NewRequest("GET", f.e.base+"/api/v1/jobs/"+f.jobs[0], nil)
		req.Header.Set("Authorization", "OAuth "+f.e.session)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Now()
			}
		}
		mustf(f.t, time.Now().Before(deadline), "the api did not serve again within %v", within)
		time.Sleep(50 * time.Millisecond)
	}
}

// goOn waits until every job's recorded data copied passes what it was at the failover (or
// the job ended), and returns when the last one did.
func (f *failoverRun) goOn(at map[string]int64, within time.Duration) time.Time {
	ctx := context.Background()
	left := map[string]bool{}
	for _, j := range f.jobs {
		left[j] = true
	}
	deadline := time.Now().Add(within)
	var last time.Time
	for len(left) > 0 {
		for j := range left {
			st, err := f.e.store.GetJobStatus(ctx, j)
			if err == nil && st.State.Terminal() {
				delete(left, j)
				last = time.Now()
				continue
			}
			if d, err := f.read(ctx, j); err == nil && d > at[j] {
				delete(left, j)
				last = time.Now()
			}
		}
		mustf(f.t, time.Now().Before(deadline), "%d copies did not go on within %v", len(left), within)
		time.Sleep(50 * time.Millisecond)
	}
	return last
}

func (f *failoverRun) snapshot() map[string]int64 {
	at := map[string]int64{}
	for _, j := range f.jobs {
		at[j], _ = f.read(context.Background(), j)
	}
	return at
}

// jobData reads a job's data copied from its record.
func jobData(e *env) func(ctx context.Context, job string) (int64, error) {
	return func(ctx context.Context, job string) (int64, error) {
		rec, err := e.store.GetJob(ctx, job)
		if err != nil || rec.Progress == nil {
			return 0, err
		}
		return rec.Progress.DataBytes, nil
	}
}

// TestRedisClusterFailover kills the master of a three-master Redis Cluster (with a replica
// each) that holds the backup storage's bandwidth limiter (every copy waits on it) and the
// test's session, while restores copy volumes: the api serves again within 5 s of the
// replica's promotion, every copy goes on within 15 s of it, and the jobs all restore.
func TestRedisClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a Redis Cluster failover")
	}
	t.Parallel()
	cl := redistest.StartClusterWithReplicas(t, 3, 1)
	dir := t.TempDir()
	const group = "d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6"
	writeVolumesGroup(t, dir, group, 16<<20, 16<<20)
	e := newEnv(t, envOptions{
		redis: func(c *app.Config) { c.RedisAddr, c.RedisCluster = cl.Addrs(), true },
		site: func(s *catalog.Site) {
			s.BackupStorages = append(s.BackupStorages, catalog.BackupStorage{UUID: slotsBS, Name: "bs-ha", URL: dir,
				State: catalog.StateEnabled, Status: catalog.StatusConnected, ZoneUUIDs: []string{demosite.ZoneUUID},
				MaxConcurrentClones: 16, BandwidthBytesPerSecond: 8 << 20}) // 8 jobs × 32 MiB: about 32 s
		}})
	f := &failoverRun{t: t, e: e, read: jobData(e)}
	f.startCopies(group, 8)
	ctx := context.Background()
	victim, err := cl.MasterOf(ctx, "vmr:{bs:"+slotsBS+"}:bw")
	mustf(t, err == nil, "the limiter's master: %v", err)
	for i := 0; ; i++ {
		m, err := cl.MasterOf(ctx, "vmr:session:"+e.session)
		mustf(t, err == nil && i < 50, "a session on the limiter's master: %v", err)
		if m == victim {
			break
		}
		e.session = e.login("admin", adminPassword)
	}
	at := f.snapshot()
	cl.Node(victim).Kill()
	killed := time.Now()
	var promoted time.Time
	for {
		if m, err := cl.MasterOf(ctx, "vmr:session:"+e.session); err == nil && m != victim {
			promoted = time.Now()
			break
		}
		mustf(t, time.Since(killed) < 60*time.Second, "no replica was promoted within 60 s")
		time.Sleep(50 * time.Millisecond)
	}
	served := f.serving(60 * time.Second)
	wentOn := f.goOn(at, 90*time.Second)
	t.Logf("master %s killed: replica promoted after %v; the api served again %v after the promotion; every copy went on within %v of it",
		victim, promoted.Sub(killed).Round(10*time.Millisecond), served.Sub(promoted).Round(10*time.Millisecond), wentOn.Sub(promoted).Round(10*time.Millisecond))
	for i, j := range f.jobs {
		r := e.poll("/zstack/v1/api-jobs/"+j, 2*time.Minute)
		mustf(t, r.status == 200, "job %d after the failover: %d %s", i, r.status, r.body)
	}
	mustf(t, served.Sub(promoted) <= 5*time.Second, "the api served again %v after the promotion, want within 5 s", served.Sub(promoted).Round(10*time.Millisecond))
	mustf(t, wentOn.Sub(promoted) <= 15*time.Second, "the copies went on %v after the promotion, want within 15 s", wentOn.Sub(promoted).Round(10*time.Millisecond))
	e.checkInvariants()
}
