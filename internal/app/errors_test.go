package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/store"
)

func TestValidationFailuresAnswerSYS1007WithDetails(t *testing.T) {
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
		{"wrong type", g, map[string]any{"name": "x", "cpuNum": "two", "memorySize": 1, "l3NetworkUuids": []string{demosite.L3ProdUUID}},
			"field[params.cpuNum] must be an integer"},
		{"huge number", g, map[string]any{"name": "x", "cpuNum": 1, "memorySize": 1e30, "l3NetworkUuids": []string{demosite.L3ProdUUID}},
			"field[params.memorySize] must be an integer"},
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
			r := e.restore(tc.group, tc.params, nil)
			ec := r.errorCode()
			mustf(t, str(ec, "code") == "SYS.1007", "code %q, want SYS.1007: %s", str(ec, "code"), r.body)
			mustf(t, strings.Contains(str(ec, "details"), tc.details), "details %q do not contain %q", str(ec, "details"), tc.details)
		})
	}
	// Nothing was left behind by any of them.
	checkNothingAllocated(t, e)
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
	// A volume file that does not match its checksum fails the clone stage after the
	// placement and the addresses were taken: all of it must be given back.
	e := newEnv(t)
	group := copyGroup(t, e, demosite.GroupWeb01UUID, "0f0e0d0c0b0a49088786858483828180", func(dir string) {
		f := filepath.Join(dir, "35cafdc7a0234be7c4eeaafbe07e3993.raw")
		b, _ := os.ReadFile(f)
		b[0] ^= 0xff
		os.WriteFile(f, b, 0o640)
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
		b, err := os.ReadFile(filepath.Join(src, en.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		if en.Name() == "group.json" {
			b = []byte(strings.ReplaceAll(string(b), from, to))
		}
		if err := os.WriteFile(filepath.Join(dst, en.Name()), b, 0o640); err != nil {
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
	e := newEnv(t, envOptions{config: func(c *app.Config) { c.SessionTTL = time.Second }})
	path := "/zstack/v1/vm-instances"
	r := e.do("GET", path, "", nil, nil)
	mustf(t, r.status == 400 && string(r.body) == "missing header 'Authorization'", "no header: %d %q", r.status, r.body)
	r = e.do("GET", path, "", nil, map[string]string{"Authorization": "Bearer " + e.session})
	mustf(t, r.status == 400 && string(r.body) == "Authorization type must be 'OAuth'", "bad scheme: %d %q", r.status, r.body)
	r = e.do("GET", path, "ffffffffffffffffffffffffffffffff", nil, nil)
	mustf(t, str(r.errorCode(), "code") == "ID.1001", "unknown session: %s", r.body)
	mustf(t, e.do("GET", path, e.session, nil, nil).status == 200, "a live session works")
	time.Sleep(1500 * time.Millisecond)
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

func TestUnknownPathAndMethod(t *testing.T) {
	e := newEnv(t, envOptions{noWorker: true})
	r := e.do("GET", "/zstack/v1/no-such-thing", e.session, nil, nil)
	mustf(t, r.status == 404 && string(r.body) == "no api mapping to /zstack/v1/no-such-thing", "unknown path: %d %q", r.status, r.body)
	r = e.do("PUT", "/zstack/v1/vm-instances/from/vm-backups/"+demosite.GroupWeb01UUID, e.session, "{}", nil)
	mustf(t, r.status == 405, "wrong method: %d %q", r.status, r.body)
}

func TestResourceUUIDIsIdempotent(t *testing.T) {
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
