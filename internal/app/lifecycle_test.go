package app_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/probe"
)

// vmOp sends a life-cycle call as ZStack's SDK does (the action's parameters under its key,
// the session in Authorization), checks the 202 and its poll location, and polls to the end.
func (e *env) vmOp(session, method, path string, body any) response {
	e.t.Helper()
	r := e.do(method, path, session, body, map[string]string{"X-JSON-Schema": "true"})
	mustf(e.t, r.status == 202, "%s %s: want 202, got %d: %s", method, path, r.status, r.body)
	loc := str(r.json(), "location")
	mustf(e.t, strings.Contains(loc, "/zstack/v1/api-jobs/"), "202 without a poll location: %s", r.body)
	return e.poll(loc, time.Minute)
}

func (e *env) vmAction(vm, action string, params map[string]any) response {
	e.t.Helper()
	if params == nil {
		params = map[string]any{}
	}
	return e.vmOp(e.session, "PUT", "/zstack/v1/vm-instances/"+vm+"/actions", map[string]any{action: params, "systemTags": []string{}, "userTags": []string{}})
}

func (e *env) vmState(vm string) string {
	e.t.Helper()
	r := e.do("GET", "/zstack/v1/vm-instances/"+vm, e.session, nil, nil)
	invs := r.json()["inventories"].([]any)
	if len(invs) == 0 {
		return ""
	}
	return str(invs[0].(map[string]any), "state")
}

func wantError(t *testing.T, r response, code, causeCode, detail string) {
	t.Helper()
	mustf(t, r.status == 503, "want 503 on poll, got %d: %s", r.status, r.body)
	ec := r.errorCode()
	mustf(t, str(ec, "code") == code, "want %s, got %s", code, r.body)
	if causeCode != "" {
		cause, _ := ec["cause"].(map[string]any)
		mustf(t, cause != nil && str(cause, "code") == causeCode, "want cause %s, got %s", causeCode, r.body)
	}
	mustf(t, strings.Contains(string(r.body), detail), "want %q in %s", detail, r.body)
}

// TestVMLifeCycleOverTheZStackRoutes drives a restored VM through ZStack's life cycle over
// the wire: every call answers 202 with a poll location, results and refusals come through
// the poll, states follow VmInstanceBase's, and the expunge leaves the site as it was.
func TestVMLifeCycleOverTheZStackRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	before := e.siteUse()
	r := e.restore(demosite.GroupWeb01UUID, webParams("web01-life"), nil)
	mustf(t, r.status == 200, "restore: %d %s", r.status, r.body)
	inv := r.json()["inventory"].(map[string]any)
	vm, host := str(inv, "uuid"), str(inv, "lastHostUuid")

	stopped := e.vmAction(vm, "stopVmInstance", map[string]any{"type": "grace"})
	mustf(t, stopped.status == 200, "stop: %d %s", stopped.status, stopped.body)
	si := stopped.json()["inventory"].(map[string]any)
	mustf(t, str(si, "state") == "Stopped" && str(si, "hostUuid") == "" && str(si, "lastHostUuid") == host, "stopped VM: %s", stopped.body)

	wantError(t, e.vmAction(vm, "rebootVmInstance", nil), "VM.1003", "VM.1010", "current vm instance state[Stopped] doesn't allow to proceed message")

	started := e.vmAction(vm, "startVmInstance", map[string]any{"hostUuid": host})
	mustf(t, started.status == 200 && str(started.json()["inventory"].(map[string]any), "state") == "Running", "start: %d %s", started.status, started.body)
	mustf(t, str(started.json()["inventory"].(map[string]any), "hostUuid") == host, "a started VM runs on its host: %s", started.body)
	wantError(t, e.vmAction(vm, "startVmInstance", map[string]any{"hostUuid": demosite.ZoneUUID}), "VM.1001", "SYS.1007", "can only start on the host")
	rebooted := e.vmAction(vm, "rebootVmInstance", nil)
	mustf(t, rebooted.status == 200 && str(rebooted.json()["inventory"].(map[string]any), "state") == "Running", "reboot: %d %s", rebooted.status, rebooted.body)
	wantError(t, e.vmAction(vm, "expungeVmInstance", nil), "VM.1010", "", "allowed states are [Destroyed]")

	destroyed := e.vmOp(e.session, "DELETE", "/zstack/v1/vm-instances/"+vm+"?deleteMode=Permissive", nil)
	mustf(t, destroyed.status == 200 && strings.TrimSpace(string(destroyed.body)) == "{}", "destroy: %d %s", destroyed.status, destroyed.body)
	mustf(t, e.vmState(vm) == "Destroyed", "after destroy the VM is %q", e.vmState(vm))
	wantError(t, e.vmAction(vm, "startVmInstance", nil), "VM.1001", "VM.1010", "state[Destroyed]")
	recovered := e.vmAction(vm, "recoverVmInstance", nil)
	mustf(t, recovered.status == 200 && str(recovered.json()["inventory"].(map[string]any), "state") == "Stopped", "recover: %d %s", recovered.status, recovered.body)
	mustf(t, e.vmOp(e.session, "DELETE", "/zstack/v1/vm-instances/"+vm, nil).status == 200, "destroy again")

	expunged := e.vmAction(vm, "expungeVmInstance", nil)
	mustf(t, expunged.status == 200 && strings.TrimSpace(string(expunged.body)) == "{}", "expunge: %d %s", expunged.status, expunged.body)
	mustf(t, e.vmState(vm) == "", "an expunged VM is no longer listed")
	for _, v := range inv["allVolumes"].([]any) {
		p := str(v.(map[string]any), "installPath")
		mustf(t, !fileExists(p) && !fileExists(filepath.Dir(p)), "expunge left %s or its folder", p)
	}
	e.checkInvariants()
	e.sameUse(before, e.siteUse(), "after the expunge")
	wantError(t, e.vmAction(vm, "expungeVmInstance", nil), "SYS.1007", "", "resource[uuid:"+vm+", type:VmInstanceVO] not found")
}

// TestVMLifeCycleRefusals: what RestServer refuses before queuing is answered on the call;
// everything else comes through the poll, and another account's VM is unknown.
func TestVMLifeCycleRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.restore(demosite.GroupWeb01UUID, webParams("web01-refuse"), nil)
	mustf(t, r.status == 200, "restore: %d %s", r.status, r.body)
	vm := str(r.json()["inventory"].(map[string]any), "uuid")

	none := e.do("PUT", "/zstack/v1/vm-instances/"+vm+"/actions", e.session, map[string]any{"renameVm": map[string]any{}}, nil)
	mustf(t, none.status == 400 && string(none.body) == "the body doesn't contain action mapping to the URL[/v1/vm-instances/"+vm+"/actions]", "no action: %d %s", none.status, none.body)
	bad := e.do("PUT", "/zstack/v1/vm-instances/"+vm+"/actions", e.session, map[string]any{"stopVmInstance": "now"}, nil)
	mustf(t, bad.status == 400, "an action that is not an object: %d %s", bad.status, bad.body)

	wantError(t, e.vmAction(vm, "stopVmInstance", map[string]any{"type": "hard"}), "SYS.1007", "", "invalid value[hard] of field[type]")
	wantError(t, e.vmOp(e.session, "DELETE", "/zstack/v1/vm-instances/"+vm+"?deleteMode=Later", nil), "SYS.1007", "", "field[deleteMode]")
	unknown := "0123456789abcdef0123456789abcdef"
	wantError(t, e.vmAction(unknown, "stopVmInstance", nil), "SYS.1007", "", "resource[uuid:"+unknown+", type:VmInstanceVO] not found")

	bob := e.newTenant("bob")
	foreign := e.vmOp(bob.session, "PUT", "/zstack/v1/vm-instances/"+vm+"/actions", map[string]any{"stopVmInstance": map[string]any{}})
	wantError(t, foreign, "SYS.1007", "", "resource[uuid:"+vm+", type:VmInstanceVO] not found")
	foreign = e.vmOp(bob.session, "DELETE", "/zstack/v1/vm-instances/"+vm, nil)
	wantError(t, foreign, "SYS.1007", "", "not found")
	mustf(t, e.vmState(vm) == "Running", "bob's calls changed alice's VM: %s", e.vmState(vm))

	// The native job view names the operation.
	j := e.do("DELETE", "/zstack/v1/vm-instances/"+vm, e.session, nil, nil)
	loc := str(j.json(), "location")
	e.poll(loc, time.Minute)
	view := e.do("GET", "/api/v1/jobs/"+loc[len(loc)-32:], e.session, nil, nil)
	mustf(t, view.status == 200 && str(view.json(), "operation") == "DestroyVmInstance" && str(view.json(), "state") == "succeeded", "job view: %s", view.body)
}

// siteUse is what the site has in use: capacity counters, addresses, MACs, VM records, and
// volume files and folders on the primary storages.
type siteUse struct {
	capacity []string
	ips      int64
	macs     int
	vms      int64
	files    []string
}

func (e *env) siteUse() siteUse {
	e.t.Helper()
	ctx := context.Background()
	var u siteUse
	used, err := e.redis.Client().HGetAll(ctx, "vmr:{cap}:used").Result()
	mustf(e.t, err == nil, "capacity: %v", err)
	for f, v := range used {
		if v != "0" {
			u.capacity = append(u.capacity, f+"="+v)
		}
	}
	sort.Strings(u.capacity)
	ix, err := e.store.LoadCatalog(ctx)
	mustf(e.t, err == nil, "catalog: %v", err)
	for l3 := range ix.Ranges {
		n, err := e.store.CountUsedIPs(ctx, l3)
		mustf(e.t, err == nil, "ips: %v", err)
		u.ips += n
	}
	macs, err := e.store.UsedMacs(ctx)
	mustf(e.t, err == nil, "macs: %v", err)
	u.macs = len(macs)
	u.vms, _ = e.store.CountVMs(ctx)
	for _, ps := range ix.PrimaryStorages {
		root := ps.URL
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			// Files, and each volume's folder; the account's folder stays (its other VMs share it),
			// and a worker's storage probe comes and goes.
			if err == nil && !strings.HasPrefix(d.Name(), probe.FilePrefix) && (!d.IsDir() || strings.HasPrefix(d.Name(), "vol-")) {
				u.files = append(u.files, p)
			}
			return nil
		})
	}
	sort.Strings(u.files)
	return u
}

func (e *env) sameUse(want, got siteUse, when string) {
	e.t.Helper()
	mustf(e.t, strings.Join(want.capacity, " ") == strings.Join(got.capacity, " "), "%s capacity in use is %v, was %v", when, got.capacity, want.capacity)
	mustf(e.t, want.ips == got.ips && want.macs == got.macs && want.vms == got.vms, "%s %d IPs, %d MACs, %d VMs are used, were %d, %d, %d",
		when, got.ips, got.macs, got.vms, want.ips, want.macs, want.vms)
	mustf(e.t, strings.Join(want.files, " ") == strings.Join(got.files, " "), "%s the primary storages hold %v, held %v", when, got.files, want.files)
}

func jsonInto(b []byte, v any) error { return json.Unmarshal(b, v) }

// cleanup is the cleanup field of a plan, as GET /api/v1/plans/{uuid} answers it.
type cleanup struct {
	UUID  string `json:"uuid"`
	State string `json:"state"`
	VMs   []struct {
		VMUUID string `json:"vmUuid"`
		Tier   int    `json:"tier"`
		State  string `json:"state"`
	} `json:"vms"`
	Freed struct {
		VMs          int   `json:"vms"`
		CPUNum       int64 `json:"cpuNum"`
		MemoryBytes  int64 `json:"memoryBytes"`
		StorageBytes int64 `json:"storageBytes"`
		IPs          int   `json:"ips"`
		MACs         int   `json:"macs"`
		Files        int   `json:"files"`
	} `json:"freed"`
}

// cleanUpPlan asks for a plan's cleanup and waits for its end.
func (e *env) cleanUpPlan(plan string, within time.Duration) cleanup {
	e.t.Helper()
	r := e.do("POST", "/api/v1/plans/"+plan+"/cleanup", e.session, nil, nil)
	mustf(e.t, r.status == 202, "cleanup: %d %s", r.status, r.body)
	return e.waitCleanup(plan, within, func(c cleanup) bool { return c.State != "running" })
}

// waitCleanup reads a plan's cleanup until done says so.
func (e *env) waitCleanup(plan string, within time.Duration, done func(cleanup) bool) cleanup {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var got struct {
			Cleanup *cleanup `json:"cleanup"`
		}
		g := e.do("GET", "/api/v1/plans/"+plan+"?items=none", e.session, nil, nil)
		mustf(e.t, g.status == 200, "get plan: %d %s", g.status, g.body)
		mustf(e.t, jsonInto(g.body, &got) == nil && got.Cleanup != nil, "the plan shows no cleanup: %s", g.body)
		if done(*got.Cleanup) {
			return *got.Cleanup
		}
		mustf(e.t, time.Now().Before(deadline), "the cleanup still runs after %s: %s", within, g.body)
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPlanRestoreAndCleanupThreeTimes restores a three-tier plan and cleans it up, three
// times on the same site: each cleanup expunges every VM, highest tier first, says what it
// freed, and leaves capacity, addresses, MACs and files exactly as they were before.
func TestPlanRestoreAndCleanupThreeTimes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	groups := writePlanGroups(t, dir, 2, 2, 2)
	e := newEnv(t, envOptions{site: withPlanStorage(dir)})
	waitIndexed(t, e, len(groups))
	before := e.siteUse()
	for round := 1; round <= 3; round++ {
		spec := planSpec("drill-"+string(rune('0'+round)), groups, nil)
		spec["tiers"] = []map[string]any{{"tier": 1, "sourceVmName": "db-*"}, {"tier": 2, "sourceVmName": "app-*"}, {"tier": 3, "sourceVmName": "web-*"}}
		r := e.do("POST", "/api/v1/plans", e.session, spec, nil)
		mustf(t, r.status == 201, "round %d: submit: %d %s", round, r.status, r.body)
		plan := str(r.json(), "uuid")
		rep := e.waitPlanEnd(plan, 3*time.Minute)
		mustf(t, rep.State == "succeeded" && rep.Counts["succeeded"] == len(groups), "round %d: plan ended %s %v", round, rep.State, rep.Counts)
		during := e.siteUse()
		mustf(t, during.vms == before.vms+int64(len(groups)), "round %d: %d VMs restored", round, during.vms-before.vms)

		c := e.cleanUpPlan(plan, 2*time.Minute)
		mustf(t, c.State == "succeeded" && len(c.VMs) == len(groups), "round %d: cleanup %+v", round, c)
		for i, v := range c.VMs {
			mustf(t, v.State == "expunged", "round %d: VM %s is %s", round, v.VMUUID, v.State)
			mustf(t, i == 0 || c.VMs[i-1].Tier >= v.Tier, "round %d: tier %d cleaned before tier %d", round, c.VMs[max(i-1, 0)].Tier, v.Tier)
			mustf(t, e.vmState(v.VMUUID) == "", "round %d: VM %s is still listed", round, v.VMUUID)
		}
		f := c.Freed
		mustf(t, f.VMs == len(groups) && f.CPUNum == int64(len(groups)) && f.MemoryBytes == int64(len(groups))<<30, "round %d: freed %+v", round, f)
		mustf(t, f.IPs == len(groups)+2 && f.MACs == len(groups)+2 && f.Files == len(groups) && f.StorageBytes >= int64(len(groups))<<30, "round %d: freed %+v", round, f)
		e.checkInvariants()
		e.sameUse(before, e.siteUse(), "after cleanup "+string(rune('0'+round)))

		// A second cleanup of the same plan finds nothing left and frees nothing.
		again := e.cleanUpPlan(plan, time.Minute)
		mustf(t, again.State == "succeeded" && again.Freed.VMs == 0, "round %d: the second cleanup freed %+v", round, again.Freed)

		// A cleaned-up plan is not run again: VMs it made now would be left behind.
		for _, op := range []string{"retry", "resume"} {
			r = e.do("POST", "/api/v1/plans/"+plan+"/"+op, e.session, nil, nil)
			mustf(t, r.status >= 400 && strings.Contains(string(r.body), "has been cleaned up"), "round %d: %s of a cleaned-up plan: %d %s", round, op, r.status, r.body)
		}
	}
}

// TestVMOperationCancelled: a VM operation cancelled before a worker runs it ends cancelled
// (SYS.1017 through the poll) and leaves the VM as it was.
func TestVMOperationCancelled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.restore(demosite.GroupWeb01UUID, webParams("web01-cancel"), nil)
	mustf(t, r.status == 200, "restore: %d %s", r.status, r.body)
	vm := str(r.json()["inventory"].(map[string]any), "uuid")
	e.worker.Stop()
	s := e.do("PUT", "/zstack/v1/vm-instances/"+vm+"/actions", e.session, map[string]any{"stopVmInstance": map[string]any{"type": "cold"}}, nil)
	mustf(t, s.status == 202, "stop: %d %s", s.status, s.body)
	loc := str(s.json(), "location")
	c := e.do("POST", "/api/v1/jobs/"+loc[len(loc)-32:]+"/cancel", e.session, nil, nil)
	mustf(t, c.status == 202 && str(c.json(), "operation") == "StopVmInstance", "cancel: %d %s", c.status, c.body)
	e.startWorker()
	wantError(t, e.poll(loc, time.Minute), "SYS.1017", "", "StopVmInstance[vm:"+vm+"] was cancelled")
	mustf(t, e.vmState(vm) == "Running", "a cancelled stop changed the VM to %s", e.vmState(vm))
}

// hostA3 is the smallest host of the demo site: 63 GiB of memory for VMs.
const hostA3 = "3b4c5d6e7f8049102b3c4d5e6f708192"

func largeOn(name, host string) map[string]any {
	return map[string]any{"name": name, "instanceOfferingUuid": demosite.OfferingLarge, "l3NetworkUuids": []string{demosite.L3ProdUUID}, "hostUuid": host}
}

// nicIPs lists the addresses of a VM's NICs as the inventory shows them ("" for none).
func nicIPs(inv map[string]any) []string {
	var ips []string
	for _, n := range inv["vmNics"].([]any) {
		ips = append(ips, str(n.(map[string]any), "ip"))
	}
	return ips
}

func (e *env) vmInventory(vm string) map[string]any {
	e.t.Helper()
	r := e.do("GET", "/zstack/v1/vm-instances/"+vm, e.session, nil, nil)
	invs := r.json()["inventories"].([]any)
	mustf(e.t, len(invs) == 1, "VM %s: %s", vm, r.body)
	return invs[0].(map[string]any)
}

// TestDestroyGivesBackHostAndAddressesAsZStack: under ZStack's default deletion policy
// (Delay) a destroyed VM gives its host's CPU and memory and its NICs' addresses back
// (VmReturnHostFlow, VmReturnReleaseNicFlow) and keeps its volumes, their bytes and its
// MACs until the expunge. A recover takes host capacity and addresses again, and fails as
// ZStack's host allocation does (HOST_ALLOCATION.1000) when other VMs took the host meanwhile,
// taking nothing; once there is room again it succeeds.
func TestDestroyGivesBackHostAndAddressesAsZStack(t *testing.T) {
	e := newEnv(t)
	before := e.siteUse()
	r := e.restore(demosite.GroupWeb01UUID, largeOn("life-a3", hostA3), nil)
	mustf(t, r.status == 200, "restore: %d %s", r.status, r.body)
	inv := r.json()["inventory"].(map[string]any)
	vm := str(inv, "uuid")
	mustf(t, str(inv, "hostUuid") == hostA3, "restored on %s, not host-a3", str(inv, "hostUuid"))
	restored := e.siteUse()
	ips := nicIPs(inv)

	destroyed := e.vmOp(e.session, "DELETE", "/zstack/v1/vm-instances/"+vm, nil)
	mustf(t, destroyed.status == 200, "destroy: %d %s", destroyed.status, destroyed.body)
	gone := e.siteUse()
	var hostFields, storage []string
	for _, f := range gone.capacity {
		if strings.HasPrefix(f, "h:"+hostA3) {
			hostFields = append(hostFields, f)
		}
		if strings.HasPrefix(f, "p:") {
			storage = append(storage, f)
		}
	}
	mustf(t, len(hostFields) == 0, "a destroyed VM still holds its host: %v", hostFields)
	mustf(t, len(storage) > 0 && gone.files != nil && strings.Join(gone.files, " ") == strings.Join(restored.files, " "), "a destroyed VM keeps its volumes and their bytes: %v %v", gone.capacity, gone.files)
	mustf(t, gone.ips == before.ips && gone.macs == restored.macs && gone.vms == restored.vms, "after destroy: %d IPs (%d before the restore), %d MACs (%d), %d VMs (%d)",
		gone.ips, before.ips, gone.macs, restored.macs, gone.vms, restored.vms)
	di := e.vmInventory(vm)
	for i, ip := range nicIPs(di) {
		nic := di["vmNics"].([]any)[i].(map[string]any)
		mustf(t, ip == "" && str(nic, "mac") != "" && str(nic, "usedIpUuid") == "", "a destroyed VM's NIC keeps its MAC, not its address: %v", nic)
	}
	e.checkInvariants()

	// Three large VMs take host-a3 (3 × 16 GiB of its 63): the recover finds no room.
	var fillers []string
	for i := 0; i < 3; i++ {
		f := e.restore(demosite.GroupWeb01UUID, largeOn("filler-"+string(rune('a'+i)), hostA3), nil)
		mustf(t, f.status == 200, "filler %d: %d %s", i, f.status, f.body)
		fillers = append(fillers, str(f.json()["inventory"].(map[string]any), "uuid"))
	}
	full := e.siteUse()
	refused := e.vmAction(vm, "recoverVmInstance", nil)
	wantError(t, refused, "SYS.1006", "HOST_ALLOCATION.1000", "can only run on host[uuid:"+hostA3+"]")
	mustf(t, e.vmState(vm) == "Destroyed", "a refused recover left the VM %s", e.vmState(vm))
	e.sameUse(full, e.siteUse(), "after a refused recover")

	mustf(t, e.vmOp(e.session, "DELETE", "/zstack/v1/vm-instances/"+fillers[0], nil).status == 200, "destroy a filler")
	recovered := e.vmAction(vm, "recoverVmInstance", nil)
	mustf(t, recovered.status == 200, "recover: %d %s", recovered.status, recovered.body)
	ri := recovered.json()["inventory"].(map[string]any)
	mustf(t, str(ri, "state") == "Stopped" && len(nicIPs(ri)) == len(ips), "recovered: %s", recovered.body)
	for i, ip := range nicIPs(ri) {
		nic := ri["vmNics"].([]any)[i].(map[string]any)
		mustf(t, ip != "" && str(nic, "usedIpUuid") != "" && len(nic["usedIps"].([]any)) == 1, "a recovered VM's NIC has an address again: %v", nic)
	}
	started := e.vmAction(vm, "startVmInstance", nil)
	mustf(t, started.status == 200 && str(started.json()["inventory"].(map[string]any), "state") == "Running", "start after recover: %d %s", started.status, started.body)
	e.checkInvariants()

	// Everything destroyed and expunged: the site is as it was.
	for _, v := range append([]string{vm}, fillers...) {
		if e.vmState(v) != "Destroyed" {
			mustf(t, e.vmOp(e.session, "DELETE", "/zstack/v1/vm-instances/"+v, nil).status == 200, "destroy %s", v)
		}
		mustf(t, e.vmAction(v, "expungeVmInstance", nil).status == 200, "expunge %s", v)
	}
	e.checkInvariants()
	e.sameUse(before, e.siteUse(), "after every VM is expunged")
}

// TestQueuedVMOperationRechecksItsAccount: an operation is checked against the VM's owner
// again when it runs, as a restore checks its group's: a SystemAdmin account that queued a
// stop on another account's VM and was made Normal before it ran finds the VM unknown, and
// the VM is left as it was.
func TestQueuedVMOperationRechecksItsAccount(t *testing.T) {
	e := newEnv(t)
	r := e.restore(demosite.GroupWeb01UUID, webParams("web01-owner"), nil)
	mustf(t, r.status == 200, "restore: %d %s", r.status, r.body)
	vm := str(r.json()["inventory"].(map[string]any), "uuid")
	pw := "pw-ops-0123456789"
	c := e.do("POST", "/api/v1/accounts", e.session, map[string]any{"name": "ops", "password": pw, "type": "SystemAdmin"}, nil)
	mustf(t, c.status == 201, "create ops: %d %s", c.status, c.body)
	ops := e.login("ops", pw)

	e.worker.Stop()
	s := e.do("PUT", "/zstack/v1/vm-instances/"+vm+"/actions", ops, map[string]any{"stopVmInstance": map[string]any{"type": "cold"}}, nil)
	mustf(t, s.status == 202, "ops stops the VM: %d %s", s.status, s.body)
	ctx := context.Background()
	a, err := e.store.GetAccount(ctx, "ops")
	mustf(t, err == nil, "ops: %v", err)
	a.Type = "Normal"
	mustf(t, e.store.PutAccount(ctx, *a) == nil, "make ops Normal")
	e.startWorker()
	res := e.poll(str(s.json(), "location"), time.Minute)
	wantError(t, res, "SYS.1007", "", "resource[uuid:"+vm+", type:VmInstanceVO] not found")
	mustf(t, e.vmState(vm) == "Running", "the refused stop changed the VM: %s", e.vmState(vm))
}
