package app_test

import (
	"net/url"
	"testing"

	"github.com/vmrestore/vmrestore/internal/demosite"
)

func TestCatalogAndVMQueries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, name := range []string{"a", "b", "c"} {
		r := e.restore(demosite.GroupWeb01UUID, webParams("web-"+name), nil)
		mustf(t, r.status == 200, "restore %s: %d %s", name, r.status, r.body)
	}
	get := func(path string, q url.Values) map[string]any {
		t.Helper()
		if q != nil {
			path += "?" + q.Encode()
		}
		r := e.do("GET", path, e.session, nil, nil)
		mustf(t, r.status == 200, "GET %s: %d %s", path, r.status, r.body)
		return r.json()
	}
	count := func(m map[string]any) int { return len(m["inventories"].([]any)) }

	mustf(t, count(get("/zstack/v1/zones", nil)) == 1, "zones")
	mustf(t, count(get("/zstack/v1/clusters", nil)) == 2, "clusters")
	mustf(t, count(get("/zstack/v1/hosts", nil)) == 5, "hosts")
	mustf(t, count(get("/zstack/v1/hosts", url.Values{"q": {"clusterUuid=" + demosite.ClusterBUUID}})) == 2, "hosts of cluster-b")
	mustf(t, count(get("/zstack/v1/hosts", url.Values{"q": {"cpuNum>16"}})) == 2, "hosts with more than 16 cores")
	mustf(t, count(get("/zstack/v1/hosts", url.Values{"q": {"name~=host-a%"}, "limit": {"2"}, "start": {"1"}})) == 2, "paging")
	c := get("/zstack/v1/hosts", url.Values{"count": {"true"}})
	mustf(t, c["total"].(float64) == 5 && c["inventories"] == nil, "count=true: %v", c)
	rc := get("/zstack/v1/hosts", url.Values{"replyWithCount": {"true"}, "limit": {"1"}})
	mustf(t, rc["total"].(float64) == 5 && count(rc) == 1, "replyWithCount: %v", rc)
	sorted := get("/zstack/v1/hosts", url.Values{"sort": {"-name"}})["inventories"].([]any)
	mustf(t, str(sorted[0].(map[string]any), "name") == "host-b2", "sort -name starts with %v", sorted[0])

	// Capacity is visible: three small VMs (2 cores, 4 GiB each) were placed somewhere.
	var usedCPU, vms float64
	for _, h := range get("/zstack/v1/hosts", nil)["inventories"].([]any) {
		hm := h.(map[string]any)
		usedCPU += hm["totalCpuCapacity"].(float64) - hm["availableCpuCapacity"].(float64)
		vms += hm["vmCount"].(float64)
	}
	mustf(t, usedCPU == 6 && vms == 3, "hosts report %v cores and %v VMs in use, want 6 and 3", usedCPU, vms)
	l3 := get("/zstack/v1/l3-networks/"+demosite.L3ProdUUID, nil)["inventories"].([]any)[0].(map[string]any)
	mustf(t, l3["usedIpCount"].(float64) == 3 && l3["totalIpCount"].(float64) == 241, "l3-prod usage %v/%v, want 3 VMs of 241 (the gateway is outside the range)", l3["usedIpCount"], l3["totalIpCount"])
	mustf(t, count(get("/zstack/v1/primary-storage", nil)) == 2 && count(get("/zstack/v1/backup-storage", nil)) == 1, "storages")
	mustf(t, count(get("/zstack/v1/instance-offerings", nil)) == 2 && count(get("/zstack/v1/l3-networks", nil)) == 4, "offerings, l3s (l3-prod, l3-mgmt and the drills' l3-drill, l3-drill-mgmt)")

	vms3 := get("/zstack/v1/vm-instances", url.Values{"q": {"name?=web-a,web-c"}})
	mustf(t, count(vms3) == 2, "name in (web-a, web-c): %d", count(vms3))
	byIP := get("/zstack/v1/vm-instances", url.Values{"q": {"vmNics.l3NetworkUuid=" + demosite.L3ProdUUID}})
	mustf(t, count(byIP) == 3, "nested query vmNics.l3NetworkUuid: %d", count(byIP))

	bad := e.do("GET", "/zstack/v1/hosts?q=nosuchfield=1", e.session, nil, nil)
	ec := bad.errorCode()
	mustf(t, str(ec, "code") == "SYS.1007", "unknown field: %s", bad.body)
	noop := e.do("GET", "/zstack/v1/hosts?q=name", e.session, nil, nil).errorCode()
	mustf(t, str(noop, "code") == "SYS.1007", "condition without operator: %v", noop)

	// Volume backups of every indexed group (the worker indexes them at start).
	vb := get("/zstack/v1/volume-backups", url.Values{"q": {"groupUuid=" + demosite.GroupDB01UUID}})["inventories"].([]any)
	mustf(t, len(vb) == 3, "db01 has 3 volume backups, got %d", len(vb))
	ref := vb[0].(map[string]any)["backupStorageRefs"].([]any)[0].(map[string]any)
	mustf(t, str(ref, "backupStorageUuid") == demosite.BackupUUID && str(ref, "installPath") != "", "backupStorageRefs %v", ref)
}
