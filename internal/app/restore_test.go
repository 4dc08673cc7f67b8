package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/testrig"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// checkRestoredFiles compares every restored volume with its backup, byte for byte.
func checkRestoredFiles(tb testing.TB, e *env, group string, inv map[string]any) {
	tb.Helper()
	g, err := backup.Read(e.paths.Backup, group)
	if err != nil {
		tb.Fatal(err)
	}
	vols := inv["allVolumes"].([]any)
	mustf(tb, len(vols) == len(g.Volumes), "want %d volumes, got %d", len(g.Volumes), len(vols))
	// The root is first, data volumes follow in their original deviceId order.
	want := append([]*backup.Volume{g.Root()}, g.DataVolumes()...)
	for i, v := range vols {
		vol := v.(map[string]any)
		path := str(vol, "installPath")
		mustf(tb, str(vol, "status") == "Ready", "volume %d status %q", i, str(vol, "status"))
		mustf(tb, path != "", "volume %d has no installPath", i)
		got, err := os.ReadFile(path)
		if err != nil {
			tb.Fatalf("restored volume %d: %v", i, err)
		}
		src, err := os.ReadFile(filepath.Join(backup.GroupDir(e.paths.Backup, group), want[i].File))
		if err != nil {
			tb.Fatal(err)
		}
		if !bytes.Equal(got, src) {
			tb.Fatalf("volume %d (%s) differs from its backup %s", i, path, want[i].File)
		}
		mustf(tb, int64(vol["size"].(float64)) == want[i].Size, "volume %d size %v, backup says %d", i, vol["size"], want[i].Size)
		mustf(tb, vol["deviceId"].(float64) == float64(i), "volume %d has deviceId %v", i, vol["deviceId"])
		kind := "dataVolumes"
		if i == 0 {
			kind = "rootVolumes"
		}
		mustf(tb, strings.Contains(path, "/"+kind+"/acct-"), "volume %d install path %s is not in ZStack's layout", i, path)
		mustf(tb, !fileExists(path+".part"), "a partial file is left beside %s", path)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestSyncRestoreAnswersInventoryAndCopiesBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.restore(demosite.GroupDB01UUID, map[string]any{
		"name": "db01-dr", "instanceOfferingUuid": demosite.OfferingLarge,
		"l3NetworkUuids":       []string{demosite.L3ProdUUID, demosite.L3MgmtUUID},
		"defaultL3NetworkUuid": demosite.L3MgmtUUID, "description": "restored by the test",
	}, nil)
	mustf(t, r.status == 200, "want 200, got %d: %s", r.status, r.body)
	inv := r.json()["inventory"].(map[string]any)
	mustf(t, str(inv, "name") == "db01-dr", "name %q", str(inv, "name"))
	mustf(t, str(inv, "state") == "Running", "state %q", str(inv, "state"))
	mustf(t, str(inv, "hostUuid") != "" && str(inv, "hostUuid") == str(inv, "lastHostUuid"), "host %q last %q", str(inv, "hostUuid"), str(inv, "lastHostUuid"))
	mustf(t, str(inv, "clusterUuid") == demosite.ClusterAUUID, "the mgmt L3 only reaches cluster-a, got %q", str(inv, "clusterUuid"))
	mustf(t, inv["cpuNum"].(float64) == 8 && inv["memorySize"].(float64) == 16<<30, "offering sizes not applied: %v %v", inv["cpuNum"], inv["memorySize"])
	mustf(t, str(inv, "allocatorStrategy") == catalog.HostLeastVmPreferred, "allocatorStrategy %q", str(inv, "allocatorStrategy"))
	mustf(t, str(inv, "defaultL3NetworkUuid") == demosite.L3MgmtUUID, "default L3 %q", str(inv, "defaultL3NetworkUuid"))
	mustf(t, str(inv, "guestOsType") == "Rocky Linux 9" && str(inv, "platform") == "Linux", "platform from backup metadata missing")
	nics := inv["vmNics"].([]any)
	mustf(t, len(nics) == 2, "want 2 NICs, got %d", len(nics))
	for i, n := range nics {
		nic := n.(map[string]any)
		mustf(t, nic["deviceId"].(float64) == float64(i), "nic %d deviceId %v", i, nic["deviceId"])
		mustf(t, strings.HasPrefix(str(nic, "mac"), "fa:") && strings.HasSuffix(str(nic, "mac"), []string{":00", ":01"}[i]), "nic %d mac %q", i, str(nic, "mac"))
		mustf(t, str(nic, "internalName") != "" && strings.HasSuffix(str(nic, "internalName"), []string{".0", ".1"}[i]), "nic %d internalName %q", i, str(nic, "internalName"))
		used := nic["usedIps"].([]any)[0].(map[string]any)
		mustf(t, str(used, "ip") == str(nic, "ip"), "usedIps[0].ip differs from the NIC's")
		ip, _ := catalog.IPToLong(str(nic, "ip"))
		mustf(t, int64(used["ipInLong"].(float64)) == ip, "ipInLong %v is not %d", used["ipInLong"], ip)
	}
	mustf(t, str(nics[1].(map[string]any), "ip") == "192.168.100.10", "FirstAvailable on l3-mgmt gives .10, got %s", str(nics[1].(map[string]any), "ip"))
	checkRestoredFiles(t, e, demosite.GroupDB01UUID, inv)

	// The VM is listed, alone and by uuid.
	l := e.do("GET", "/zstack/v1/vm-instances/"+str(inv, "uuid"), e.session, nil, nil)
	mustf(t, l.status == 200, "get vm: %d %s", l.status, l.body)
	invs := l.json()["inventories"].([]any)
	mustf(t, len(invs) == 1 && str(invs[0].(map[string]any), "uuid") == str(inv, "uuid"), "vm-instances/{uuid} answered %s", l.body)
}

func TestAsyncRestoreAnswers202ThenPollsTo200(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.restore(demosite.GroupWeb01UUID, webParams("web01-async"), map[string]string{"Prefer": "respond-async"})
	mustf(t, r.status == 202, "want 202, got %d: %s", r.status, r.body)
	loc := str(r.json(), "location")
	mustf(t, strings.Contains(loc, "/zstack/v1/api-jobs/"), "location %q", loc)
	mustf(t, r.json()["apiTimeout"].(float64) == 86400000, "apiTimeout %v", r.json()["apiTimeout"])
	mustf(t, r.header.Get("Location") == loc, "Location header %q", r.header.Get("Location"))
	done := e.poll(loc, 30*time.Second)
	mustf(t, done.status == 200, "poll ended with %d: %s", done.status, done.body)
	inv := done.json()["inventory"].(map[string]any)
	checkRestoredFiles(t, e, demosite.GroupWeb01UUID, inv)

	// Polls of unknown jobs, and of another method, answer as ZStack does.
	nf := e.do("GET", "/zstack/v1/api-jobs/00000000000000000000000000000000", e.session, nil, nil)
	mustf(t, nf.status == 404 && string(nf.body) == "the job has been expired", "unknown job: %d %q", nf.status, nf.body)
	m := e.do("DELETE", "/zstack/v1/api-jobs/"+loc[strings.LastIndex(loc, "/")+1:], e.session, nil, nil)
	mustf(t, m.status == 405, "DELETE on api-jobs: %d %s", m.status, m.body)
}

// TestAttemptStoppedBeforeTheFinishEndsTheJob runs a restore, then puts its record back the
// way an attempt leaves it when Redis goes away between the commit's writes and the job's end
// (every stage marked done, the commit included, the job still running), and runs the task
// again: the job must end with its VM, not be dropped as having nothing left to do.
func TestAttemptStoppedBeforeTheFinishEndsTheJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.restore(demosite.GroupWeb01UUID, webParams("web01-refinish"), map[string]string{"Prefer": "respond-async"})
	mustf(t, r.status == 202, "want 202, got %d: %s", r.status, r.body)
	loc := str(r.json(), "location")
	first := e.poll(loc, 30*time.Second)
	mustf(t, first.status == 200, "first run: %d %s", first.status, first.body)
	vm := str(first.json()["inventory"].(map[string]any), "uuid")

	ctx := context.Background()
	jobUUID := loc[strings.LastIndex(loc, "/")+1:]
	rdb := e.redis.Client()
	key := "vmr:job:" + jobUUID
	mustf(t, rdb.HSet(ctx, key, "state", "running", "cp:done:commit", "1").Err() == nil, "rewind the record")
	mustf(t, rdb.HDel(ctx, key, "result", "finished").Err() == nil, "rewind the record")
	mustf(t, e.poll(loc, 0).status == 202, "the rewound job must poll as running")
	// The first run's task can still be finishing in asynq after its job ended (under CI's
	// load it was): its id is taken until then.
	q := queue.NewClient(rdb, 3)
	var err error
	testrig.Eventually(t, 30*time.Second, func() bool {
		err = q.EnqueueRestore(ctx, jobUUID, time.Now().Add(time.Hour))
		return !errors.Is(err, queue.ErrDuplicate)
	}, "the first run's task is still in the queue")
	mustf(t, err == nil, "enqueue the task again: %v", err)

	again := e.poll(loc, 30*time.Second)
	mustf(t, again.status == 200, "the interrupted job did not end: %d %s", again.status, again.body)
	mustf(t, str(again.json()["inventory"].(map[string]any), "uuid") == vm, "the job ended with another VM: %s", again.body)
	e.checkInvariants()
}

func TestPreferWaitDegradesTo202(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noWorker: true})
	start := time.Now()
	r := e.restore(demosite.GroupWeb01UUID, webParams("web01-wait"), map[string]string{"Prefer": "wait=1"})
	mustf(t, r.status == 202, "with no worker the wait must degrade to 202, got %d: %s", r.status, r.body)
	mustf(t, time.Since(start) >= time.Second && time.Since(start) < 5*time.Second, "waited %v for a 1 s limit", time.Since(start))
	e.startWorker()
	done := e.poll(str(r.json(), "location"), 30*time.Second)
	mustf(t, done.status == 200, "after a worker started, the job ends with %d: %s", done.status, done.body)
}

// The ZStack route answers 202 with the location at once, as ZStack answers every async
// API, even when the job would end within the wait limit; the wait is asked for.
func TestZStackRouteAnswers202ByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start := time.Now()
	r := e.submit(demosite.GroupWeb01UUID, webParams("web01-default"), nil)
	mustf(t, r.status == 202 && strings.Contains(str(r.json(), "location"), "/zstack/v1/api-jobs/"), "POST: %d %s", r.status, r.body)
	mustf(t, time.Since(start) < 5*time.Second, "the POST waited %v", time.Since(start))
	done := e.poll(str(r.json(), "location"), time.Minute)
	mustf(t, done.status == 200, "poll: %d %s", done.status, done.body)
	// "Prefer: wait=N" gets the inventory in one call.
	w := e.submit(demosite.GroupWeb01UUID, webParams("web01-waited"), map[string]string{"Prefer": "wait=60"})
	mustf(t, w.status == 200 && str(w.json()["inventory"].(map[string]any), "name") == "web01-waited", "waited: %d %s", w.status, w.body)
}

// POST /api/v1/restores is the synchronous restore: the ZStack body plus groupUuid, answered
// with the inventory, the error with a status that says what happened, or 202 past the limit.
func TestNativeSynchronousRestore(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := map[string]any{"groupUuid": demosite.GroupWeb01UUID, "params": webParams("web01-native"), "systemTags": []string{"hostname::native"}}
	id := zstack.NewUUID()
	r := e.do("POST", "/api/v1/restores", e.session, body, map[string]string{"X-Job-UUID": id})
	mustf(t, r.status == 200, "restore: %d %s", r.status, r.body)
	dup := e.do("POST", "/api/v1/restores", e.session, body, map[string]string{"X-Job-UUID": id})
	mustf(t, dup.status == 400 && strings.Contains(string(dup.body), `"details":"Duplicate job uuid[`+id+`]"`), "duplicate: %d %s", dup.status, dup.body)
	inv := r.json()["inventory"].(map[string]any)
	mustf(t, str(inv, "name") == "web01-native" && str(inv, "state") == "Running", "inventory %v", inv)
	checkRestoredFiles(t, e, demosite.GroupWeb01UUID, inv)

	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"no group", map[string]any{"params": webParams("x")}, 400, "SYS.1007"},
		{"unknown group", map[string]any{"groupUuid": "0123456789abcdef0123456789abcdef", "params": webParams("x")}, 404, "SYS.1003"},
		{"malformed JSON", `{"params":`, 400, "SYS.1007"},
	} {
		r := e.do("POST", "/api/v1/restores", e.session, tc.body, nil)
		var m map[string]any
		mustf(t, r.status == tc.status && json.Unmarshal(r.body, &m) == nil, "%s: %d %s", tc.name, r.status, r.body)
		ec, _ := m["error"].(map[string]any)
		mustf(t, str(ec, "code") == tc.code, "%s: %s", tc.name, r.body)
	}
}

// The native route waits at most VMRESTORE_WAIT_LIMIT (and "Prefer: wait=N" shortens it); a
// limit of 0 never waits, on either route.
func TestWaitLimitBoundsTheSynchronousWait(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noWorker: true, config: func(c *app.Config) { c.WaitLimit = 2 * time.Second }})
	body := map[string]any{"groupUuid": demosite.GroupWeb01UUID, "params": webParams("web01-limited")}
	start := time.Now()
	r := e.do("POST", "/api/v1/restores", e.session, body, map[string]string{"Prefer": "wait=600"})
	took := time.Since(start)
	mustf(t, r.status == 202 && str(r.json(), "jobUuid") != "" && strings.Contains(str(r.json(), "location"), "/zstack/v1/api-jobs/"+str(r.json(), "jobUuid")),
		"past the limit: %d %s", r.status, r.body)
	mustf(t, took >= 2*time.Second && took < 6*time.Second, "waited %v for a 2 s limit", took)

	never := newEnv(t, envOptions{noWorker: true, config: func(c *app.Config) { c.WaitLimit = 0 }})
	for _, call := range []func() response{
		func() response { return never.do("POST", "/api/v1/restores", never.session, body, nil) },
		func() response {
			return never.submit(demosite.GroupWeb01UUID, webParams("x"), map[string]string{"Prefer": "wait=60"})
		},
	} {
		start := time.Now()
		r := call()
		// A limit of 0 read as no limit, or as the default, waits 30 s or more here; an
		// answer at once took 1.2 s under CI's load.
		mustf(t, r.status == 202 && time.Since(start) < 3*time.Second, "VMRESTORE_WAIT_LIMIT=0 waited %v: %d %s", time.Since(start), r.status, r.body)
	}
}

// A synchronous wait that a Redis outage cuts short is not a failure: the job was accepted,
// so the answer is 202 with its location, and the job ends once Redis is back.
func TestSyncWaitCutByRedisOutageAnswers202(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, redistest.Options{AOF: true})
	e := newEnv(t, envOptions{noWorker: true, redis: func(c *app.Config) { c.RedisAddr = rs.Addr }})
	id := zstack.NewUUID()
	inspector := asynq.NewInspector(asynq.RedisClientOpt{Addr: rs.Addr})
	defer inspector.Close()
	stopped := make(chan time.Time, 1)
	go func() {
		// Once the job is queued (accepted), Redis goes away for longer than the wait.
		testrig.Within(30*time.Second, func() bool {
			info, err := inspector.GetTaskInfo(queue.QueueRestore, id)
			return err == nil && info != nil
		})
		rs.StopGracefully()
		stopped <- time.Now()
	}()
	r := e.submit(demosite.GroupWeb01UUID, webParams("web01-cut"), map[string]string{"Prefer": "wait=5", "X-Job-UUID": id})
	answeredAt := time.Now()
	downAt := <-stopped
	rs.StartAgain()
	mustf(t, r.status == 202, "a wait cut by Redis must answer 202, got %d: %s", r.status, r.body)
	mustf(t, str(r.json(), "location") == r.header.Get("Location") && strings.HasSuffix(str(r.json(), "location"), "/zstack/v1/api-jobs/"+id),
		"location %s", r.body)
	mustf(t, downAt.Before(answeredAt), "Redis stopped only after the answer (%v after it)", downAt.Sub(answeredAt))
	e.startWorker()
	done := e.poll(str(r.json(), "location"), 2*time.Minute)
	mustf(t, done.status == 200, "after Redis came back the job ends with %d: %s", done.status, done.body)
	mustf(t, str(done.json()["inventory"].(map[string]any), "name") == "web01-cut", "%s", done.body)
}

func TestUnknownGroupFailsWithSYS1003OnPoll(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.restore("0123456789abcdef0123456789abcdef", webParams("ghost"), map[string]string{"Prefer": "respond-async"})
	mustf(t, r.status == 202, "want 202, got %d: %s", r.status, r.body)
	ec := e.poll(str(r.json(), "location"), 30*time.Second).errorCode()
	mustf(t, str(ec, "code") == "SYS.1003", "code %q", str(ec, "code"))
	mustf(t, str(ec, "details") == "No volume backups found with group uuid: 0123456789abcdef0123456789abcdef", "details %q", str(ec, "details"))
}

func TestStrategiesEndInTheirStates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct{ strategy, state string }{{"CreateStopped", "Stopped"}, {"JustCreate", "Created"}} {
		p := webParams("web01-" + tc.strategy)
		p["strategy"] = tc.strategy
		r := e.restore(demosite.GroupWeb01UUID, p, nil)
		mustf(t, r.status == 200, "%s: %d %s", tc.strategy, r.status, r.body)
		inv := r.json()["inventory"].(map[string]any)
		mustf(t, str(inv, "state") == tc.state, "%s ends in %q", tc.strategy, str(inv, "state"))
		mustf(t, str(inv, "hostUuid") == "", "%s must not report a running host, got %q", tc.strategy, str(inv, "hostUuid"))
		if tc.strategy == "JustCreate" {
			mustf(t, len(inv["vmNics"].([]any)) == 0, "JustCreate allocates no NIC")
			for _, v := range inv["allVolumes"].([]any) {
				vol := v.(map[string]any)
				mustf(t, str(vol, "status") == "NotInstantiated" && str(vol, "installPath") == "", "JustCreate volume %v", vol)
			}
		} else {
			mustf(t, str(inv, "lastHostUuid") != "", "a stopped VM keeps its lastHostUuid")
			checkRestoredFiles(t, e, demosite.GroupWeb01UUID, inv)
		}
	}
	e.checkInvariants()
}
