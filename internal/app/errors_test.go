package app_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/testrig"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

func TestValidationFailuresAnswerSYS1007WithDetails(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := demosite.GroupWeb01UUID
	cases := []struct {
		name    string
		group   string
		params  map[string]any
		details string
	}{
		{"no offering and no cpu or memory", g, map[string]any{"name": "x", "l3NetworkUuids": []string{demosite.L3ProdUUID}},
			"instanceOfferingUuid or cpuNum and memorySize must be set"},
		{"cpu without memory", g, map[string]any{"name": "x", "cpuNum": 2, "l3NetworkUuids": []string{demosite.L3ProdUUID}},
			"instanceOfferingUuid or cpuNum and memorySize must be set"},
		{"two L3s without a default", g, map[string]any{"name": "x", "instanceOfferingUuid": demosite.OfferingSmall,
			"l3NetworkUuids": []string{demosite.L3ProdUUID, demosite.L3MgmtUUID}},
			"more than one L3 network specified in l3NetworkUuids, but defaultL3NetworkUuid is null"},
		{"default L3 not in the list", g, map[string]any{"name": "x", "instanceOfferingUuid": demosite.OfferingSmall,
			"l3NetworkUuids": []string{demosite.L3ProdUUID}, "defaultL3NetworkUuid": demosite.L3MgmtUUID},
			"defaultL3NetworkUuid[" + demosite.L3MgmtUUID + "] is not in l3NetworkUuids"},
		{"vmNicParams naming an L3 not in the list", g, map[string]any{"name": "x", "instanceOfferingUuid": demosite.OfferingSmall,
			"l3NetworkUuids": []string{demosite.L3ProdUUID},
			"vmNicParams":    `[{"l3NetworkUuid":"` + demosite.L3MgmtUUID + `","driverType":"virtio"}]`},
			"vmNicParams[0].l3NetworkUuid[" + demosite.L3MgmtUUID + "] is not in l3NetworkUuids"},
		{"vmNicParams not JSON", g, map[string]any{"name": "x", "instanceOfferingUuid": demosite.OfferingSmall,
			"l3NetworkUuids": []string{demosite.L3ProdUUID}, "vmNicParams": `[{`}, "vmNicParams is not a JSON list"},
		{"bad driver type", g, map[string]any{"name": "x", "instanceOfferingUuid": demosite.OfferingSmall,
			"l3NetworkUuids": []string{demosite.L3ProdUUID},
			"vmNicParams":    `[{"l3NetworkUuid":"` + demosite.L3ProdUUID + `","driverType":"ne2k"}]`},
			"vmNicParams[0].driverType[ne2k] is not one of"},
		{"bad strategy", g, map[string]any{"name": "x", "instanceOfferingUuid": demosite.OfferingSmall,
			"l3NetworkUuids": []string{demosite.L3ProdUUID}, "strategy": "StartLater"}, "strategy[StartLater] is not one of"},
		{"malformed uuid", g, map[string]any{"name": "x", "instanceOfferingUuid": "F53AD9F1-4720-3B49-9DFB-D93CE41B7A8E",
			"l3NetworkUuids": []string{demosite.L3ProdUUID}}, "instanceOfferingUuid[F53AD9F1-4720-3B49-9DFB-D93CE41B7A8E] is not a valid uuid"},
		{"malformed group uuid", "not-a-uuid", webParams("x"), "groupUuid[not-a-uuid] is not a valid uuid"},
		{"no name", g, map[string]any{"instanceOfferingUuid": demosite.OfferingSmall, "l3NetworkUuids": []string{demosite.L3ProdUUID}},
			"field[name] of message[APICreateVmFromVmBackupMsg] is mandatory"},
		{"no scope at all", g, map[string]any{"name": "x", "instanceOfferingUuid": demosite.OfferingSmall},
			"at least one of field (l3NetworkUuids,zoneUuid,clusterUuid,hostUuid) should be set"},
		{"unknown parameter", g, map[string]any{"name": "x", "instanceOfferingUuid": demosite.OfferingSmall,
			"l3NetworkUuids": []string{demosite.L3ProdUUID}, "clustreUuid": demosite.ClusterAUUID}, "unknown field(s) clustreUuid"},
		{"parameter in the wrong case", g, map[string]any{"name": "x", "instanceOfferingUuid": demosite.OfferingSmall,
			"l3NetworkUuids": []string{demosite.L3ProdUUID}, "hostUUid": demosite.ClusterAUUID}, `did you mean "hostUuid"?`},
		{"a group in params other than the path's", g, map[string]any{"name": "x", "instanceOfferingUuid": demosite.OfferingSmall,
			"l3NetworkUuids": []string{demosite.L3ProdUUID}, "groupUuid": demosite.GroupDB01UUID},
			"params.groupUuid[" + demosite.GroupDB01UUID + "] differs from the group of the path"},
		{"staticIp outside every range", g, map[string]any{"name": "x", "instanceOfferingUuid": demosite.OfferingSmall,
			"l3NetworkUuids": []string{demosite.L3ProdUUID},
			"vmNicParams":    `[{"l3NetworkUuid":"` + demosite.L3ProdUUID + `","ip":"10.99.0.5"}]`},
			"IP[10.99.0.5] is not in any IP range of l3 network[uuid:" + demosite.L3ProdUUID + "]"},
		{"unknown offering", g, map[string]any{"name": "x", "instanceOfferingUuid": "00000000000000000000000000000001",
			"l3NetworkUuids": []string{demosite.L3ProdUUID}},
			"invalid field[instanceOfferingUuid], resource[uuids:[00000000000000000000000000000001], type:InstanceOfferingVO] not found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// As ZStack reports its interceptors' refusals: the POST answers 202, the poll 503.
			post := e.submit(tc.group, tc.params, nil)
			mustf(t, post.status == 202, "POST answered %d, want 202: %s", post.status, post.body)
			r := e.poll(str(post.json(), "location"), time.Minute)
			ec := r.errorCode()
			mustf(t, str(ec, "code") == "SYS.1007", "code %q, want SYS.1007: %s", str(ec, "code"), r.body)
			mustf(t, strings.Contains(str(ec, "details"), tc.details), "details %q do not contain %q", str(ec, "details"), tc.details)
		})
	}
	// Nothing was left behind by any of them.
	checkNothingAllocated(t, e)
}

// What ZStack's RestServer refuses before queuing a call is answered on the POST, as plain
// text, and leaves no job: malformed JSON, values of the wrong type, bad headers.
func TestRequestRefusedBeforeQueuingIsAnsweredOnThePost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noWorker: true})
	path := "/zstack/v1/vm-instances/from/vm-backups/" + demosite.GroupWeb01UUID
	cases := []struct {
		name    string
		body    string
		headers map[string]string
		want    string
	}{
		{"malformed JSON", `{"params":{"name":"x",}}`, nil, "the request body is not valid JSON"},
		{"a list for a body", `[]`, nil, "the request body must be a JSON object"},
		{"wrong type", `{"params":{"name":"x","cpuNum":"two","memorySize":1}}`, nil, "field[params.cpuNum] must be an integer"},
		{"huge number", `{"params":{"name":"x","cpuNum":1,"memorySize":1e30}}`, nil, "field[params.memorySize] must be an integer"},
		{"a string for a list", `{"params":{"name":"x","l3NetworkUuids":"` + demosite.L3ProdUUID + `"}}`, nil, "field[params.l3NetworkUuids] must be a list"},
		{"bad X-Job-UUID", `{"params":{"name":"x"}}`, map[string]string{"X-Job-UUID": "0123-4567"}, "Invalid header[X-Job-UUID]"},
		{"X-API-Timeout not a number", `{"params":{"name":"x"}}`, map[string]string{"X-API-Timeout": "soon"}, "Invalid header[X-API-Timeout]"},
		{"X-API-Timeout zero", `{"params":{"name":"x"}}`, map[string]string{"X-API-Timeout": "0"}, "Invalid header[X-API-Timeout]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := zstack.NewUUID()
			h := map[string]string{"X-Job-UUID": id}
			for k, v := range tc.headers {
				h[k] = v
			}
			r := e.do("POST", path, e.session, tc.body, h)
			mustf(t, r.status == 400 && strings.Contains(string(r.body), tc.want), "%d %q, want 400 with %q", r.status, r.body, tc.want)
			mustf(t, !strings.HasPrefix(r.header.Get("Content-Type"), "application/json"), "a refusal is plain text: %s", r.header.Get("Content-Type"))
			if zstack.IsUUID(h["X-Job-UUID"]) {
				exists, err := e.store.JobExists(context.Background(), id)
				mustf(t, err == nil && !exists, "a refused call left job %s (%v)", id, err)
			}
		})
	}
	// X-API-Timeout takes any positive long, as ZStack does: a year, or more than a time.Duration holds.
	for _, v := range []string{"31536000", "9223372036854775807"} {
		r := e.submit(demosite.GroupWeb01UUID, webParams("long-"+v[:3]), map[string]string{"X-API-Timeout": v, "Prefer": "respond-async"})
		mustf(t, r.status == 202, "X-API-Timeout %s: %d %s", v, r.status, r.body)
	}
}

// A call that breaks the API's rules is a job that failed before any task was queued: its
// poll answers 503 with the error, a web hook hears of it, and "Prefer: wait" answers it at once.
func TestInvalidCallIsAFailedJobWithoutATask(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noWorker: true})
	bad := map[string]any{"name": "x", "l3NetworkUuids": []string{demosite.L3ProdUUID}} // no offering, no cpuNum/memorySize
	id := zstack.NewUUID()
	r := e.submit(demosite.GroupWeb01UUID, bad, map[string]string{"X-Job-UUID": id})
	mustf(t, r.status == 202 && strings.HasSuffix(str(r.json(), "location"), "/zstack/v1/api-jobs/"+id), "POST: %d %s", r.status, r.body)
	p := e.poll(str(r.json(), "location"), 10*time.Second)
	mustf(t, str(p.errorCode(), "code") == "SYS.1007", "poll: %s", p.body)
	info, err := asynq.NewInspector(asynq.RedisClientOpt{Addr: e.redis.Addr}).GetTaskInfo(queue.QueueRestore, id)
	mustf(t, err != nil && info == nil, "a task was queued for an invalid call: %+v", info)
	j := e.do("GET", "/api/v1/jobs/"+id, e.session, nil, nil)
	mustf(t, j.status == 200 && str(j.json(), "state") == "failed", "job view: %d %s", j.status, j.body)
	// The same uuid again is a duplicate, as for any job.
	again := e.submit(demosite.GroupWeb01UUID, bad, map[string]string{"X-Job-UUID": id})
	mustf(t, again.status == 400 && string(again.body) == "Duplicate job uuid["+id+"]", "%d %s", again.status, again.body)
	// With "Prefer: wait" the error is the answer, without a 202 first.
	w := e.submit(demosite.GroupWeb01UUID, bad, map[string]string{"Prefer": "wait=30"})
	mustf(t, str(w.errorCode(), "code") == "SYS.1007", "waited: %s", w.body)
}

// checkNothingAllocated asserts that no capacity, address, MAC or volume file is held.
func checkNothingAllocated(tb testing.TB, e *env) {
	tb.Helper()
	ctx := context.Background()
	e.checkInvariants()
	for _, h := range []string{"e18cf66eedb3306686a1d4685bbb63af", "2a3b4c5d6e7f48091a2b3c4d5e6f7081", "3b4c5d6e7f8049102b3c4d5e6f708192",
		"4c5d6e7f80914a213c4d5e6f708192a3", "5d6e7f8091a24b324d5e6f708192a3b4"} {
		u, err := e.store.Usage(ctx, []string{store.FieldHostCPU(h), store.FieldHostMemory(h), store.FieldHostVMs(h)})
		mustf(tb, err == nil, "%v", err)
		for _, x := range u {
			mustf(tb, x.Used == 0, "host %s still has capacity in use: %+v", h, u)
		}
	}
	for _, l3 := range []string{demosite.L3ProdUUID, demosite.L3MgmtUUID} {
		n, err := e.store.CountUsedIPs(ctx, l3)
		mustf(tb, err == nil && n == 0, "l3 %s still has %d addresses in use (%v)", l3, n, err)
	}
	macs, err := e.store.UsedMacs(ctx)
	mustf(tb, err == nil && len(macs) == 0, "MACs still in use: %v", macs)
	for _, dir := range []string{e.paths.NFS, e.paths.Local} {
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() && !strings.HasPrefix(fi.Name(), ".vmrestore-probe-") {
				tb.Errorf("file left on primary storage: %s", p)
			}
			return nil
		})
	}
}

func TestNoCapacityFailsWithHostAllocationAndLeaksNothing(t *testing.T) {
	t.Parallel()
	// Shrink every host to 4 cores and 8 GiB: the large offering (8 cores × ratio 1, 16 GiB) fits nowhere.
	e := newEnv(t, envOptions{site: func(s *catalog.Site) {
		for i := range s.Clusters {
			s.Clusters[i].CPUOverProvisioningRatio = 1
		}
		for i := range s.Hosts {
			s.Hosts[i].CPUNum, s.Hosts[i].MemorySize = 4, 8<<30
		}
	}})
	r := e.restore(demosite.GroupDB01UUID, map[string]any{"name": "db01", "instanceOfferingUuid": demosite.OfferingLarge,
		"l3NetworkUuids": []string{demosite.L3ProdUUID}}, nil)
	ec := r.errorCode()
	mustf(t, str(ec, "code") == "SYS.1006", "outer code %q: %s", str(ec, "code"), r.body)
	cause, _ := ec["cause"].(map[string]any)
	mustf(t, cause != nil && str(cause, "code") == "HOST_ALLOCATION.1000", "cause %v", cause)
	mustf(t, strings.Contains(str(cause, "details"), "no host having cpu[8], memory[17179869184 bytes] found"), "details %q", str(cause, "details"))
	checkNothingAllocated(t, e)
	vms := e.do("GET", "/zstack/v1/vm-instances", e.session, nil, nil)
	mustf(t, len(vms.json()["inventories"].([]any)) == 0, "a failed restore left a VM record: %s", vms.body)
}

func TestFailureAfterAllocationCompensates(t *testing.T) {
	t.Parallel()
	// A volume file that does not match its checksum fails the clone stage after the
	// placement and the addresses were taken: all of it must be given back.
	e := newEnv(t)
	group := copyGroup(t, e, demosite.GroupWeb01UUID, "0f0e0d0c0b0a49088786858483828180", func(dir string) {
		f, err := os.OpenFile(filepath.Join(dir, "35cafdc7a0234be7c4eeaafbe07e3993.raw"), os.O_RDWR, 0)
		mustf(t, err == nil, "%v", err)
		defer f.Close()
		b := make([]byte, 1)
		_, err = f.ReadAt(b, 0)
		b[0] ^= 0xff
		if _, werr := f.WriteAt(b, 0); err != nil || werr != nil {
			t.Fatalf("corrupt the volume file: %v %v", err, werr)
		}
	})
	r := e.restore(group, webParams("corrupt"), nil)
	ec := r.errorCode()
	cause, _ := ec["cause"].(map[string]any)
	mustf(t, str(ec, "code") == "SYS.1006" && cause != nil && str(cause, "code") == "VOL_BACKUP.1000", "want SYS.1006/VOL_BACKUP.1000: %s", r.body)
	mustf(t, strings.Contains(str(cause, "details"), "35cafdc7a0234be7c4eeaafbe07e3993") && strings.Contains(str(cause, "details"), "checksum mismatch"),
		"details must name the volume backup and the mismatch: %q", str(cause, "details"))
	checkNothingAllocated(t, e)
}

// copyGroup copies a demo group under a new uuid into a private backup storage added to the
// env's site, lets edit change the copy, and returns the new group uuid.
func copyGroup(tb testing.TB, e *env, from, to string, edit func(dir string)) string {
	tb.Helper()
	src := filepath.Join(e.paths.Backup, "vm-backups", from)
	dst := filepath.Join(e.paths.NFS, "..", "extra-backups", "vm-backups", to)
	if err := os.MkdirAll(dst, 0o750); err != nil {
		tb.Fatal(err)
	}
	entries, _ := os.ReadDir(src)
	for _, en := range entries {
		srcFile, dstFile := filepath.Join(src, en.Name()), filepath.Join(dst, en.Name())
		if en.Name() != "group.json" {
			// cp keeps the volume files sparse, as the demo writes them: a 128 MiB raw
			// volume of 1 MiB of data costs 1 MiB to copy, and to read back.
			if out, err := exec.Command("cp", "--sparse=always", srcFile, dstFile).CombinedOutput(); err != nil {
				tb.Fatalf("copy %s: %v %s", srcFile, err, out)
			}
			continue
		}
		b, err := os.ReadFile(srcFile)
		if err != nil {
			tb.Fatal(err)
		}
		b = []byte(strings.ReplaceAll(string(b), from, to))
		if err := os.WriteFile(dstFile, b, 0o640); err != nil {
			tb.Fatal(err)
		}
	}
	if edit != nil {
		edit(dst)
	}
	site, err := catalog.LoadFile(e.paths.SiteFile)
	if err != nil {
		tb.Fatal(err)
	}
	extra := filepath.Clean(filepath.Join(e.paths.NFS, "..", "extra-backups"))
	found := false
	for _, b := range site.BackupStorages {
		found = found || b.URL == extra
	}
	if !found {
		site.BackupStorages = append(site.BackupStorages, catalog.BackupStorage{UUID: "d4e5f6a7b8c94a0b8c1d2e3f4a5b6c7d", Name: "bs-extra", URL: extra,
			State: catalog.StateEnabled, Status: catalog.StatusConnected, MaxConcurrentClones: 4, ZoneUUIDs: []string{demosite.ZoneUUID}})
		if err := site.Validate(); err != nil {
			tb.Fatal(err)
		}
		if _, err := e.store.SaveCatalog(context.Background(), site); err != nil {
			tb.Fatal(err)
		}
	}
	return to
}

func TestSessionsAreCheckedOnEveryZStackRoute(t *testing.T) {
	t.Parallel()
	clock := &testrig.Clock{}
	e := newEnv(t, envOptions{clock: clock, config: func(c *app.Config) { c.SessionTTL = time.Minute }})
	path := "/zstack/v1/vm-instances"
	r := e.do("GET", path, "", nil, nil)
	mustf(t, r.status == 400 && string(r.body) == "missing header 'Authorization'", "no header: %d %q", r.status, r.body)
	r = e.do("GET", path, "", nil, map[string]string{"Authorization": "Bearer " + e.session})
	mustf(t, r.status == 400 && string(r.body) == "Authorization type must be 'OAuth'", "bad scheme: %d %q", r.status, r.body)
	r = e.do("GET", path, "ffffffffffffffffffffffffffffffff", nil, nil)
	mustf(t, str(r.errorCode(), "code") == "ID.1001", "unknown session: %s", r.body)
	mustf(t, e.do("GET", path, e.session, nil, nil).status == 200, "a live session works")
	clock.Advance(time.Minute + time.Second)
	r = e.do("GET", path, e.session, nil, nil)
	mustf(t, str(r.errorCode(), "code") == "ID.1001", "expired session: %s", r.body)

	s := e.login("admin", adminPassword)
	mustf(t, e.do("DELETE", "/zstack/v1/accounts/sessions/"+s, s, nil, nil).status == 200, "logout")
	r = e.do("GET", path, s, nil, nil)
	mustf(t, str(r.errorCode(), "code") == "ID.1001", "logged-out session: %s", r.body)

	bad := e.do("PUT", "/zstack/v1/accounts/login", "", map[string]any{"logInByAccount": map[string]string{
		"accountName": "admin", "password": strings.Repeat("0", 128)}}, nil)
	mustf(t, str(bad.errorCode(), "code") == "ID.1000", "wrong password: %s", bad.body)
	unknown := e.do("PUT", "/zstack/v1/accounts/login", "", map[string]any{"logInByAccount": map[string]string{
		"accountName": "nobody", "password": strings.Repeat("0", 128)}}, nil)
	mustf(t, string(unknown.body) == string(bad.body), "unknown account and wrong password must answer alike: %s vs %s", unknown.body, bad.body)
}

func TestJobUUIDHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := "0123456789abcdef0123456789abcdef"
	r := e.restore(demosite.GroupWeb01UUID, webParams("first"), map[string]string{"X-Job-UUID": id, "Prefer": "respond-async"})
	mustf(t, r.status == 202 && strings.HasSuffix(str(r.json(), "location"), "/zstack/v1/api-jobs/"+id), "first use: %d %s", r.status, r.body)
	r = e.restore(demosite.GroupWeb01UUID, webParams("second"), map[string]string{"X-Job-UUID": id})
	mustf(t, r.status == 400 && string(r.body) == "Duplicate job uuid["+id+"]", "reuse: %d %q", r.status, r.body)
	r = e.restore(demosite.GroupWeb01UUID, webParams("third"), map[string]string{"X-Job-UUID": "0123-4567"})
	mustf(t, r.status == 400 && strings.HasPrefix(string(r.body), "Invalid header[X-Job-UUID]"), "malformed: %d %q", r.status, r.body)
	mustf(t, e.poll("/zstack/v1/api-jobs/"+id, 30*time.Second).status == 200, "the first job still completes")
}

// TestRetryOfASubmissionBeingWithdrawn: a client retries, with the same X-Job-UUID, a
// submission answered 503 whose job was created but whose task could not be queued (Redis
// went away between the two), before the api's undo has withdrawn that job. The retry is
// answered 503 again, not "Duplicate job uuid" (the client would believe in a job about to
// be removed), and the job's resourceUuid stays bound to it; once the undo is done, the
// retry creates the job, which runs; a true duplicate is still refused.
func TestRetryOfASubmissionBeingWithdrawn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	sess, err := e.store.GetSession(ctx, e.session)
	if err != nil {
		t.Fatal(err)
	}
	id, resource := zstack.NewUUID(), zstack.NewUUID() // a fixed one may name a group another test puts in the shared backup storage
	p := webParams("withdrawn")
	p["resourceUuid"] = resource
	req, ec := job.FromZStack(demosite.GroupWeb01UUID, &zstack.CreateVmFromVmBackupRequest{Params: zstack.CreateVmFromVmBackupParams{
		Name: "withdrawn", ResourceUUID: resource, InstanceOfferingUUID: demosite.OfferingSmall, L3NetworkUUIDs: []string{demosite.L3ProdUUID}}})
	mustf(t, ec == nil, "request: %v", ec)
	// The first try, as far as it got: the resourceUuid claimed, the job created, no task.
	binding := store.ResourceBinding{JobUUID: id, GroupUUID: demosite.GroupWeb01UUID, AccountUUID: sess.AccountUUID}
	if _, err := e.store.ClaimResource(ctx, resource, binding); err != nil {
		t.Fatal(err)
	}
	first := &job.Record{UUID: id, AccountUUID: sess.AccountUUID, Request: req, CreatedAt: time.Now(), Timeout: job.DefaultTimeout}
	if err := e.store.CreateJob(ctx, first); err != nil {
		t.Fatal(err)
	}

	retry := func() response {
		return e.restore(demosite.GroupWeb01UUID, p, map[string]string{"X-Job-UUID": id, "Prefer": "respond-async"})
	}
	r := retry()
	mustf(t, r.status == 503 && strings.Contains(str(r.errorCode(), "details"), "is being withdrawn"), "retry before the undo: %d %s", r.status, r.body)
	other := e.restore(demosite.GroupWeb01UUID, p, map[string]string{"Prefer": "respond-async"})
	mustf(t, other.status == 202 && strings.HasSuffix(str(other.json(), "location"), "/"+id),
		"the resourceUuid must stay bound to the job being withdrawn (a new job uuid is answered with it): %d %s", other.status, other.body)

	if err := e.store.AbandonJob(ctx, id, first.Submission, resource, binding); err != nil { // the api's undo, once Redis answers
		t.Fatal(err)
	}
	r = retry()
	mustf(t, r.status == 202 && strings.HasSuffix(str(r.json(), "location"), "/"+id), "retry after the undo: %d %s", r.status, r.body)
	done := e.poll("/zstack/v1/api-jobs/"+id, 30*time.Second)
	mustf(t, done.status == 200 && str(done.json()["inventory"].(map[string]any), "uuid") == resource, "the retried job: %d %s", done.status, done.body)
	if err := e.store.AbandonJob(ctx, id, first.Submission, resource, binding); err != nil { // a late repeat of the undo
		t.Fatal(err)
	}
	r = retry()
	mustf(t, r.status == 400 && string(r.body) == "Duplicate job uuid["+id+"]", "a true duplicate: %d %q", r.status, r.body)
	again := e.restore(demosite.GroupWeb01UUID, p, nil)
	mustf(t, again.status == 200 && str(again.json()["inventory"].(map[string]any), "uuid") == resource, "the resourceUuid after the duplicate: %d %s", again.status, again.body)
}

func TestUnknownPathAndMethod(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noWorker: true})
	r := e.do("GET", "/zstack/v1/no-such-thing", e.session, nil, nil)
	mustf(t, r.status == 404 && string(r.body) == "no api mapping to /zstack/v1/no-such-thing", "unknown path: %d %q", r.status, r.body)
	r = e.do("PUT", "/zstack/v1/vm-instances/from/vm-backups/"+demosite.GroupWeb01UUID, e.session, "{}", nil)
	mustf(t, r.status == 405, "wrong method: %d %q", r.status, r.body)
	// Unknown sub-paths of known resources are not queries of the resource.
	for _, p := range []string{"/zstack/v1/hosts/" + demosite.ClusterAUUID + "/bogus/x", "/zstack/v1/zones//" + demosite.ZoneUUID,
		"/zstack/v1/vm-instances/from/vm-backups/" + demosite.GroupWeb01UUID, "/zstack/v1/l3-networks/" + demosite.L3ProdUUID + "/ip",
		"/zstack/v1/accounts/sessions/" + e.session + "/valid/x", "/zstack/v1/api-jobs/x/y"} {
		r = e.do("GET", p, e.session, nil, nil)
		mustf(t, r.status == 404 && string(r.body) == "no api mapping to "+p, "GET %s: %d %q", p, r.status, r.body)
	}
}

func TestResourceUUIDIsIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := webParams("once")
	p["resourceUuid"] = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"
	first := e.restore(demosite.GroupWeb01UUID, p, nil)
	mustf(t, first.status == 200, "first: %d %s", first.status, first.body)
	again := e.restore(demosite.GroupWeb01UUID, p, nil)
	mustf(t, again.status == 200, "repeat: %d %s", again.status, again.body)
	mustf(t, str(again.json()["inventory"].(map[string]any), "uuid") == "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e", "repeat answers the first VM")
	vms := e.do("GET", "/zstack/v1/vm-instances", e.session, nil, nil).json()["inventories"].([]any)
	mustf(t, len(vms) == 1, "a repeated resourceUuid must not create a second VM, got %d", len(vms))
	other := e.restore(demosite.GroupApp01UUID, p, nil)
	ec := other.errorCode()
	mustf(t, str(ec, "code") == "SYS.1007" && strings.Contains(str(ec, "details"), "already used"), "another group with a used resourceUuid: %s", other.body)

	// A failed restore frees its resourceUuid for a retry.
	q := webParams("retry")
	q["resourceUuid"] = "6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f"
	q["hostUuid"] = "5d6e7f8091a24b324d5e6f708192a3b4" // host-b2 is not attached to l3-mgmt
	q["l3NetworkUuids"] = []string{demosite.L3MgmtUUID}
	failed := e.restore(demosite.GroupWeb01UUID, q, nil)
	mustf(t, str(failed.errorCode(), "code") == "SYS.1006", "designated host outside the L2: %s", failed.body)
	delete(q, "hostUuid")
	retry := e.restore(demosite.GroupWeb01UUID, q, nil)
	mustf(t, retry.status == 200, "retry with the same resourceUuid after a failure: %d %s", retry.status, retry.body)
}

func TestExplicitlyNamedDisabledHostIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{site: func(s *catalog.Site) {
		s.Hosts[0].State = catalog.StateDisabled
		s.Hosts[1].Status = catalog.StatusDisconnected
	}})
	for _, h := range []string{"e18cf66eedb3306686a1d4685bbb63af", "2a3b4c5d6e7f48091a2b3c4d5e6f7081"} {
		p := webParams("x")
		p["hostUuid"] = h
		ec := e.restore(demosite.GroupWeb01UUID, p, nil).errorCode()
		mustf(t, str(ec, "code") == "SYS.1007" && strings.Contains(str(ec, "details"), "host[uuid:"+h+"]"), "host %s: %v", h, ec)
	}
	// Without naming a host, placement skips them.
	for i := 0; i < 4; i++ {
		r := e.restore(demosite.GroupWeb01UUID, webParams("auto"), nil)
		mustf(t, r.status == 200, "%d %s", r.status, r.body)
		h := str(r.json()["inventory"].(map[string]any), "hostUuid")
		mustf(t, h != "e18cf66eedb3306686a1d4685bbb63af" && h != "2a3b4c5d6e7f48091a2b3c4d5e6f7081", "placed on an unusable host %s", h)
	}
}
