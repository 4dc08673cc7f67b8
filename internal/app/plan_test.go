package app_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/testrig"
)

const (
	planBS       = "e5f6a7b8c9d04e1f9a2b3c4d5e6f7081"
	srcProdL3    = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0" // the lost site's networks
	srcMgmtL3    = "f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1"
	planGroupFmt = "%02x%030x"
)

// planGroup is a generated backup group of the plan tests.
type planGroup struct {
	uuid, vm, file string
	tier           int
}

// writePlanGroups writes n tiny groups (1 vCPU, 1 GiB source VMs) named db-*, app-*, web-*
// into a backup storage folder: db VMs have a second NIC on the management network whose
// address the plan keeps.
func writePlanGroups(tb testing.TB, dir string, db, app, web int) []planGroup {
	tb.Helper()
	var out []planGroup
	add := func(prefix string, tier, count int) {
		for i := 0; i < count; i++ {
			n := len(out)
			g := planGroup{uuid: fmt.Sprintf(planGroupFmt, 0xa0+tier, n), vm: fmt.Sprintf("%s-%03d", prefix, i), tier: tier}
			vol := fmt.Sprintf(planGroupFmt, 0xb0+tier, n)
			g.file = vol + ".qcow2"
			gdir := backup.GroupDir(dir, g.uuid)
			if err := os.MkdirAll(gdir, 0o750); err != nil {
				tb.Fatal(err)
			}
			if err := demosite.WriteQcow2(filepath.Join(gdir, g.file), 1<<30, 2, g.uuid); err != nil {
				tb.Fatal(err)
			}
			b, _ := os.ReadFile(filepath.Join(gdir, g.file))
			sum := sha256.Sum256(b)
			nics := []backup.SourceNic{{L3NetworkUUID: srcProdL3, IP: fmt.Sprintf("172.16.%d.%d", n/200, n%200+10), Mac: fmt.Sprintf("fa:16:3e:00:%02x:00", n), DeviceID: 0}}
			if prefix == "db" {
				nics = append(nics, backup.SourceNic{L3NetworkUUID: srcMgmtL3, IP: fmt.Sprintf("192.168.100.%d", 50+i), DeviceID: 1})
			}
			grp := backup.Group{GroupUUID: g.uuid, Name: g.vm + "-2026-11-26", CreateDate: time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC),
				VM:      backup.SourceVM{UUID: fmt.Sprintf(planGroupFmt, 0xc0+tier, n), Name: g.vm, CPUNum: 1, MemorySize: 1 << 30, Nics: nics},
				Volumes: []backup.Volume{{UUID: vol, Type: "Root", Format: "qcow2", Size: 1 << 30, File: g.file, SHA256: hex.EncodeToString(sum[:])}}}
			j, _ := json.Marshal(grp)
			if err := os.WriteFile(filepath.Join(gdir, "group.json"), j, 0o640); err != nil {
				tb.Fatal(err)
			}
			out = append(out, g)
		}
	}
	add("db", 1, db)
	add("app", 2, app)
	add("web", 3, web)
	return out
}

func withPlanStorage(dir string) func(*catalog.Site) {
	return func(s *catalog.Site) {
		s.BackupStorages = append(s.BackupStorages, catalog.BackupStorage{UUID: planBS, Name: "bs-plans", URL: dir})
	}
}

// waitIndexed waits until the backup index lists n groups on the plan storage.
func waitIndexed(tb testing.TB, e *env, n int) {
	tb.Helper()
	count := 0
	var err error
	indexed := testrig.Within(30*time.Second, func() bool {
		groups, lerr := e.store.ListBackupGroups(context.Background())
		err, count = lerr, 0
		for _, g := range groups {
			for _, b := range g.BackupStorageUUIDs {
				if b == planBS {
					count++
				}
			}
		}
		return err == nil && count >= n
	})
	if !indexed {
		tb.Fatalf("after 30s: %d of %d groups indexed (listing: %v)", count, n, err)
	}
}

func planSpec(name string, groups []planGroup, extra map[string]any) map[string]any {
	uuids := make([]string, len(groups))
	for i, g := range groups {
		uuids[i] = g.uuid
	}
	spec := map[string]any{
		"name":   name,
		"groups": uuids,
		"defaults": map[string]any{
			"keepSourceSize": true, "nameTemplate": "{{.SourceName}}-dr", "zoneUuid": demosite.ZoneUUID,
		},
		"networkMapping": []map[string]any{
			{"sourceL3NetworkUuid": srcProdL3, "targetL3NetworkUuid": demosite.L3ProdUUID},
			{"sourceL3NetworkUuid": srcMgmtL3, "targetL3NetworkUuid": demosite.L3MgmtUUID, "ip": "keep"},
		},
		"tiers":       []map[string]any{{"tier": 1, "sourceVmName": "db-*"}, {"tier": 2, "sourceVmName": "app-*"}},
		"concurrency": 25,
	}
	for k, v := range extra {
		spec[k] = v
	}
	return spec
}

type planReport struct {
	UUID       string         `json:"uuid"`
	State      string         `json:"state"`
	ItemCount  int            `json:"itemCount"`
	Counts     map[string]int `json:"counts"`
	BytesDone  int64          `json:"bytesDone"`
	BytesTotal int64          `json:"bytesTotal"`
	Tiers      []struct {
		Tier       int            `json:"tier"`
		Counts     map[string]int `json:"counts"`
		BytesDone  int64          `json:"bytesDone"`
		BytesTotal int64          `json:"bytesTotal"`
	} `json:"tiers"`
	Items []struct {
		Index      int    `json:"index"`
		Tier       int    `json:"tier"`
		GroupUUID  string `json:"groupUuid"`
		Name       string `json:"name"`
		State      string `json:"state"`
		JobUUID    string `json:"jobUuid"`
		VMUUID     string `json:"vmUuid"`
		Attempt    int    `json:"attempt"`
		BytesDone  int64  `json:"bytesDone"`
		BytesTotal int64  `json:"bytesTotal"`
		ErrorCode  string `json:"errorCode"`
		Error      string `json:"error"`
	} `json:"items"`
}

func (e *env) plan(uuid string) planReport {
	e.t.Helper()
	r := e.do("GET", "/api/v1/plans/"+uuid, e.session, nil, nil)
	mustf(e.t, r.status == 200, "get plan: %d %s", r.status, r.body)
	var rep planReport
	if err := json.Unmarshal(r.body, &rep); err != nil {
		e.t.Fatal(err)
	}
	return rep
}

func (e *env) waitPlanEnd(uuid string, within time.Duration) planReport {
	e.t.Helper()
	var rep planReport
	testrig.Eventually(e.t, within, func() bool {
		rep = e.plan(uuid)
		return rep.State == "succeeded" || rep.State == "failed" || rep.State == "cancelled"
	}, "plan %s did not end: %+v", uuid, &rep)
	return rep
}

// checkTotals asserts that counts, bytes and tiers add up to the items.
func checkTotals(tb testing.TB, rep planReport) {
	tb.Helper()
	sum := 0
	for _, n := range rep.Counts {
		sum += n
	}
	mustf(tb, sum == rep.ItemCount && len(rep.Items) == rep.ItemCount, "counts %v add up to %d, items %d, itemCount %d", rep.Counts, sum, len(rep.Items), rep.ItemCount)
	var done, total int64
	byState := map[string]int{}
	for _, it := range rep.Items {
		done += it.BytesDone
		total += it.BytesTotal
		byState[it.State]++
	}
	mustf(tb, done == rep.BytesDone && total == rep.BytesTotal, "bytes: items add up to %d/%d, plan says %d/%d", done, total, rep.BytesDone, rep.BytesTotal)
	for s, n := range byState {
		mustf(tb, rep.Counts[s] == n, "state %s: %d items, counts say %d", s, n, rep.Counts[s])
	}
	var tdone, ttotal int64
	for _, t := range rep.Tiers {
		tdone += t.BytesDone
		ttotal += t.BytesTotal
	}
	mustf(tb, tdone == done && ttotal == total, "tiers add up to %d/%d", tdone, ttotal)
}

func TestPlanOfTwoHundredGroupsInThreeTiers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	groups := writePlanGroups(t, dir, 40, 80, 84)
	e := newEnv(t, envOptions{site: withPlanStorage(dir)})
	waitIndexed(t, e, len(groups))

	// Three items must fail: one too big for any host, one whose file disappears, one corrupt.
	capacityGroup, missingGroup, corruptGroup := groups[len(groups)-1], groups[len(groups)-2], groups[len(groups)-3]
	spec := planSpec("dc-east", groups, map[string]any{
		"clientToken": "drill-1",
		"overrides":   map[string]any{capacityGroup.uuid: map[string]any{"cpuNum": 1000, "memorySize": 1 << 30}},
	})

	// A dry run sees the capacity refusal, places the others, and stores nothing.
	dry := e.do("POST", "/api/v1/plans?dryRun=true", e.session, spec, nil)
	mustf(t, dry.status == 200, "dry run: %d %s", dry.status, dry.body)
	var dr struct {
		Fits, Refused int
		Refusals      map[string]int
		Needed, Free  struct{ CPU int64 }
		Items         []struct {
			Fits     bool
			HostUUID string `json:"hostUuid"`
			NICs     []struct{ IP string }
			Error    string
		}
	}
	json.Unmarshal(dry.body, &dr)
	mustf(t, dr.Fits == len(groups)-1 && dr.Refused == 1 && dr.Refusals["HOST_ALLOCATION.1000"] == 1, "dry run fits %d, refused %d %v", dr.Fits, dr.Refused, dr.Refusals)
	mustf(t, dr.Items[0].Fits && dr.Items[0].HostUUID != "" && len(dr.Items[0].NICs) == 2 && dr.Items[0].NICs[1].IP == "192.168.100.50", "dry-run item 0: %+v", dr.Items[0])
	mustf(t, dr.Needed.CPU == int64(len(groups)-1+1000) && dr.Free.CPU > 1000, "dry-run totals: needed %d free %d", dr.Needed.CPU, dr.Free.CPU)
	mustf(t, len(e.do("GET", "/api/v1/plans", e.session, nil, nil).json()["plans"].([]any)) == 0, "a dry run stores no plan")
	e.checkInvariants()

	r := e.do("POST", "/api/v1/plans", e.session, spec, nil)
	mustf(t, r.status == 201, "submit: %d %s", r.status, r.body)
	uuid := str(r.json(), "uuid")
	os.Remove(filepath.Join(backup.GroupDir(dir, missingGroup.uuid), missingGroup.file))
	corrupt := filepath.Join(backup.GroupDir(dir, corruptGroup.uuid), corruptGroup.file)
	orig, _ := os.ReadFile(corrupt)
	bad := append([]byte(nil), orig...)
	bad[len(bad)-100] ^= 0xff
	os.WriteFile(corrupt, bad, 0o640)

	again := e.do("POST", "/api/v1/plans", e.session, spec, nil)
	mustf(t, again.status == 200 && str(again.json(), "uuid") == uuid, "the same client token returns the first plan: %d %s", again.status, again.body)

	rep := e.waitPlanEnd(uuid, 4*time.Minute)
	mustf(t, rep.State == "failed" && rep.Counts["succeeded"] == len(groups)-3 && rep.Counts["failed"] == 3, "plan ended %s %v", rep.State, rep.Counts)
	checkTotals(t, rep)
	reasons := map[string]string{}
	for _, it := range rep.Items {
		if it.State == "failed" {
			reasons[it.GroupUUID] = it.ErrorCode + " " + it.Error
		}
		if it.State == "succeeded" {
			mustf(t, it.VMUUID != "" && strings.HasSuffix(it.Name, "-dr"), "item %d: vm %q name %q", it.Index, it.VMUUID, it.Name)
		}
	}
	mustf(t, strings.HasPrefix(reasons[capacityGroup.uuid], "HOST_ALLOCATION.1000") && strings.Contains(reasons[capacityGroup.uuid], "cpu[1000]"), "capacity item: %q", reasons[capacityGroup.uuid])
	mustf(t, strings.HasPrefix(reasons[missingGroup.uuid], "SYS.1003") && strings.Contains(reasons[missingGroup.uuid], "not found on any backup storage"), "missing file item: %q", reasons[missingGroup.uuid])
	mustf(t, strings.HasPrefix(reasons[corruptGroup.uuid], "VOL_BACKUP.1000") && strings.Contains(reasons[corruptGroup.uuid], "checksum mismatch"), "corrupt item: %q", reasons[corruptGroup.uuid])

	// Tier order: every item of a tier started after every item of earlier tiers ended.
	ctx := context.Background()
	end := map[int]time.Time{}
	start := map[int]time.Time{}
	for _, it := range rep.Items {
		rec, err := e.store.GetJob(ctx, it.JobUUID)
		if err != nil {
			t.Fatalf("item %d job %s: %v", it.Index, it.JobUUID, err)
		}
		mustf(t, rec.Plan == uuid && rec.PlanItem == it.Index, "job %s does not name its plan item", it.JobUUID)
		if s, ok := start[it.Tier]; !ok || rec.StartedAt.Before(s) {
			start[it.Tier] = rec.StartedAt
		}
		if f := end[it.Tier]; rec.FinishedAt.After(f) {
			end[it.Tier] = rec.FinishedAt
		}
	}
	mustf(t, !start[2].Before(end[1]) && !start[3].Before(end[2]), "tiers overlap: tier 1 ended %v, tier 2 started %v, ended %v, tier 3 started %v",
		end[1], start[2], end[2], start[3])

	// The kept management addresses are the source ones.
	vms := e.do("GET", "/zstack/v1/vm-instances?q=vmNics.ip=192.168.100.50", e.session, nil, nil).json()["inventories"].([]any)
	mustf(t, len(vms) == 1 && str(vms[0].(map[string]any), "name") == "db-000-dr", "kept IP 192.168.100.50: %v", vms)
	e.checkInvariants()

	// Fix the two files and retry the failed items: those two succeed, the oversized one fails again.
	g := filepath.Join(backup.GroupDir(dir, missingGroup.uuid), missingGroup.file)
	demosite.WriteQcow2(g, 1<<30, 2, missingGroup.uuid)
	os.WriteFile(corrupt, orig, 0o640)
	rr := e.do("POST", "/api/v1/plans/"+uuid+"/retry", e.session, nil, nil)
	mustf(t, rr.status == 200 && rr.json()["retried"].(float64) == 3, "retry: %d %s", rr.status, rr.body)
	rep = e.waitPlanEnd(uuid, time.Minute)
	mustf(t, rep.State == "failed" && rep.Counts["succeeded"] == len(groups)-1 && rep.Counts["failed"] == 1, "after retry: %s %v", rep.State, rep.Counts)
	checkTotals(t, rep)
	for _, it := range rep.Items {
		if it.GroupUUID == missingGroup.uuid {
			mustf(t, it.Attempt == 2 && it.State == "succeeded", "retried item: %+v", it)
		}
	}
	e.checkInvariants()
}

func TestPlanCancelMidRunLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	groups := writePlanGroups(t, dir, 0, 0, 30)
	e := newEnv(t, envOptions{site: func(s *catalog.Site) {
		withPlanStorage(dir)(s)
		s.BackupStorages[len(s.BackupStorages)-1].BandwidthBytesPerSecond = 200 << 10 // slow clones: seconds each
	}})
	waitIndexed(t, e, len(groups))
	r := e.do("POST", "/api/v1/plans", e.session, planSpec("to-cancel", groups, map[string]any{"concurrency": 4}), nil)
	mustf(t, r.status == 201, "submit: %d %s", r.status, r.body)
	uuid := str(r.json(), "uuid")

	// Watch the events stream while the plan runs and is cancelled.
	events := make(chan string, 1000)
	go func() {
		req, _ := http.NewRequest("GET", e.base+"/api/v1/plans/"+uuid+"/events", nil)
		req.Header.Set("Authorization", "OAuth "+e.session)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			close(events)
			return
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "event: ") {
				events <- strings.TrimPrefix(l, "event: ")
			}
		}
		close(events)
	}()

	testrig.Eventually(t, 30*time.Second, func() bool { return e.plan(uuid).Counts["running"] > 0 }, "no item started")
	c := e.do("POST", "/api/v1/plans/"+uuid+"/cancel", e.session, nil, nil)
	mustf(t, c.status == 200 && str(c.json(), "state") == "cancelling", "cancel: %d %s", c.status, c.body)
	rep := e.waitPlanEnd(uuid, time.Minute)
	mustf(t, rep.State == "cancelled" && rep.Counts["cancelled"] > 20 && rep.Counts["failed"] == 0, "after cancel: %s %v", rep.State, rep.Counts)
	checkTotals(t, rep)
	ran := 0
	for _, it := range rep.Items {
		switch {
		case it.State == "cancelled" && it.JobUUID == "":
			mustf(t, strings.Contains(it.Error, "before this item started"), "pending item %d: %q", it.Index, it.Error)
		case it.State == "cancelled":
			ran++
			mustf(t, it.ErrorCode == "SYS.1017", "running item %d cancelled with %q", it.Index, it.ErrorCode)
		}
	}
	mustf(t, ran > 0, "the cancel should have stopped running items")
	vms := e.do("GET", "/zstack/v1/vm-instances?count=true", e.session, nil, nil).json()
	mustf(t, int(vms["total"].(float64)) == rep.Counts["succeeded"], "VMs %v for %d succeeded items", vms["total"], rep.Counts["succeeded"])
	e.checkInvariants()
	// Only the VMs that succeeded have files.
	var files int
	for _, d := range []string{e.paths.NFS, e.paths.Local} {
		filepath.Walk(d, func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() && !strings.HasPrefix(fi.Name(), ".vmrestore-probe-") {
				files++
			}
			return nil
		})
	}
	mustf(t, files == rep.Counts["succeeded"], "%d volume files for %d restored VMs", files, rep.Counts["succeeded"])

	seen := map[string]int{}
	timeout := time.After(10 * time.Second)
loop:
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				break loop
			}
			seen[ev]++
		case <-timeout:
			break loop
		}
	}
	mustf(t, seen["progress"] > 0 && seen["item"] > 0 && seen["end"] == 1, "events seen: %v", seen)
	mustf(t, e.do("POST", "/api/v1/plans/"+uuid+"/pause", e.session, nil, nil).status == 409, "an ended plan cannot be paused")
}

var _ = io.Discard

// TestPlanBootCheckHoldsLaterTiers: tier 2 starts only after tier 1's VMs passed their boot
// check. The simulator starts no guest, so a console check fails: tier 1 fails, compensated,
// and tier 2 is held with the plan paused and a reason; nothing of tier 2 ran.
func TestPlanBootCheckHoldsLaterTiers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	groups := writePlanGroups(t, dir, 2, 3, 0)
	e := newEnv(t, envOptions{site: withPlanStorage(dir)})
	waitIndexed(t, e, len(groups))
	spec := planSpec("gated", groups, nil)
	spec["defaults"].(map[string]any)["bootCheck"] = map[string]any{"mode": "console:login: $", "timeout": 30}

	r := e.do("POST", "/api/v1/plans", e.session, spec, nil)
	mustf(t, r.status == 200 || r.status == 201 || r.status == 202, "create plan: %d %s", r.status, r.body)
	uuid := str(r.json(), "uuid")
	var rep planReport
	testrig.Eventually(t, time.Minute, func() bool { rep = e.plan(uuid); return rep.State == "paused" },
		"the plan did not pause: %+v", &rep)
	for _, it := range rep.Items {
		switch it.Tier {
		case 1:
			mustf(t, it.State == "failed" && strings.Contains(it.Error, "boot check"), "tier 1 item %d: %s %s", it.Index, it.State, it.Error)
		default:
			mustf(t, it.State == "pending" && it.JobUUID == "", "tier %d item %d ran: %s", it.Tier, it.Index, it.State)
		}
	}
	raw := e.do("GET", "/api/v1/plans/"+uuid, e.session, nil, nil)
	mustf(t, strings.Contains(string(raw.body), "held before tier 2"), "no reason given: %s", raw.body)
	e.checkInvariants()
}

// An event stream lives as long as its plan, beyond the write deadline every other answer
// gets: the plan waits, silent, for a worker longer than that deadline, then runs and ends,
// and the stream delivers its end (it broke after the http.Server's WriteTimeout before).
//
// Not parallel: every answer of its api, the rig's admin login (a password hash) too, must
// be written within a second, which a loaded machine's parallel tests could make it miss.
func TestPlanEventsOutliveTheWriteDeadline(t *testing.T) {
	e := newEnv(t, envOptions{config: func(c *app.Config) { c.HTTPWriteTimeout = time.Second }})
	waitGroupIndexed(t, e, demosite.GroupWeb01UUID)
	e.worker.Stop() // the plan waits for a worker
	r := e.do("POST", "/api/v1/plans", e.session, map[string]any{"name": "quiet", "groups": []string{demosite.GroupWeb01UUID},
		"defaults":       map[string]any{"keepSourceSize": true, "nameTemplate": "{{.SourceName}}-quiet"},
		"networkMapping": []map[string]any{{"sourceL3NetworkUuid": demosite.L3ProdUUID, "targetL3NetworkUuid": demosite.L3ProdUUID}}}, nil)
	mustf(t, r.status == 201, "submit: %d %s", r.status, r.body)
	uuid := str(r.json(), "uuid")

	req, _ := http.NewRequest("GET", e.base+"/api/v1/plans/"+uuid+"/events", nil)
	req.Header.Set("Authorization", "OAuth "+e.session)
	resp, err := http.DefaultClient.Do(req)
	mustf(t, err == nil && resp.StatusCode == 200, "events: %v", err)
	defer resp.Body.Close()
	events := make(chan string, 100)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if l, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				events <- l
			}
		}
	}()
	time.Sleep(2500 * time.Millisecond) // past the write deadline, nothing to say
	e.startWorker()
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-events:
			mustf(t, ok, "the event stream ended before the plan did")
			if ev == "end" {
				return
			}
		case <-timeout:
			t.Fatal("no end event within a minute")
		}
	}
}
