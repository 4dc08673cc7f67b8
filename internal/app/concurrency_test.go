package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/testrig"
)

const (
	tinyGroup      = "7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a"
	raceL3         = "1a2b3c4d5e6f40718293a4b5c6d7e8f0"
	raceL2         = "2b3c4d5e6f7041829304b5c6d7e8f901"
	raceNFS        = "3c4d5e6f708142939405c6d7e8f90a12"
	raceLocal      = "4d5e6f70819243a4a516d7e8f90a1b23"
	raceOfferingLV = "5e6f708192a344b5b627e8f90a1b2c34"
)

// writeTinyGroup writes a group with a 1 GiB (virtual) qcow2 root volume of a few clusters.
func writeTinyGroup(tb testing.TB, storage string) {
	tb.Helper()
	dir := backup.GroupDir(storage, tinyGroup)
	if _, err := os.Stat(filepath.Join(dir, "group.json")); err == nil {
		return
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		tb.Fatal(err)
	}
	file := "7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b.qcow2"
	if err := demosite.WriteQcow2(filepath.Join(dir, file), 1<<30, 2, tinyGroup); err != nil {
		tb.Fatal(err)
	}
	f, _ := os.Open(filepath.Join(dir, file))
	h := sha256.New()
	io.Copy(h, f)
	f.Close()
	g := backup.Group{GroupUUID: tinyGroup, Name: "tiny", VM: backup.SourceVM{Name: "tiny", CPUNum: 1, MemorySize: 1 << 30},
		Volumes: []backup.Volume{{UUID: "7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b", Type: "Root", Format: "qcow2", Size: 1 << 30,
			File: file, SHA256: hex.EncodeToString(h.Sum(nil))}}}
	b, _ := json.Marshal(g)
	if err := os.WriteFile(filepath.Join(dir, "group.json"), b, 0o640); err != nil {
		tb.Fatal(err)
	}
}

// raceSite holds about half of 500 one-core VMs: 8 hosts on NFS (room for 200 volumes) and
// 2 hosts on LocalStorage (30 each), 30 cores per host, and 250 addresses in two ranges.
func raceSite(s *catalog.Site) {
	zone := s.Zones[0].UUID
	s.Clusters = []catalog.Cluster{
		{UUID: "6f708192a3b445c6c738f90a1b2c3d45", Name: "race-a", ZoneUUID: zone, CPUOverProvisioningRatio: 1,
			L2NetworkUUIDs: []string{raceL2}, PrimaryStorageUUIDs: []string{raceNFS}},
		{UUID: "708192a3b4c546d7d849a0b1c2d3e456", Name: "race-b", ZoneUUID: zone, CPUOverProvisioningRatio: 1,
			L2NetworkUUIDs: []string{raceL2}, PrimaryStorageUUIDs: []string{raceNFS}},
		{UUID: "8192a3b4c5d647e8e95ab1c2d3e4f567", Name: "race-c", ZoneUUID: zone, CPUOverProvisioningRatio: 1,
			L2NetworkUUIDs: []string{raceL2}, PrimaryStorageUUIDs: []string{raceLocal}},
	}
	s.Hosts = nil
	for i := 0; i < 10; i++ {
		cl := s.Clusters[i%2].UUID
		if i >= 8 {
			cl = s.Clusters[2].UUID
		}
		s.Hosts = append(s.Hosts, catalog.Host{UUID: fmt.Sprintf("9a%030x", i), Name: fmt.Sprintf("race-h%d", i),
			ClusterUUID: cl, CPUNum: 30, MemorySize: 200 << 30})
	}
	nfs, local := s.PrimaryStorages[0], s.PrimaryStorages[1]
	nfs.UUID, nfs.TotalCapacity = raceNFS, 201<<30
	local.UUID, local.CapacityPerHost = raceLocal, 31<<30
	s.PrimaryStorages = []catalog.PrimaryStorage{nfs, local}
	s.L2Networks = []catalog.L2Network{{UUID: raceL2, Name: "race-l2", ZoneUUID: zone}}
	s.L3Networks = []catalog.L3Network{{UUID: raceL3, Name: "race-l3", L2NetworkUUID: raceL2, IPRanges: []catalog.IPRange{
		{UUID: "a1b2c3d4e5f6478899aabbccddeeff01", StartIP: "10.50.0.10", EndIP: "10.50.0.159", Netmask: "255.255.0.0", Gateway: "10.50.0.1"},
		{UUID: "a1b2c3d4e5f6478899aabbccddeeff02", StartIP: "10.50.1.1", EndIP: "10.50.1.100", Netmask: "255.255.0.0", Gateway: "10.50.0.1"},
	}}}
	s.InstanceOfferings = append(s.InstanceOfferings, catalog.InstanceOffering{UUID: raceOfferingLV, Name: "one-lv",
		CPUNum: 1, MemorySize: 1 << 30, AllocatorStrategy: catalog.HostLeastVmPreferred})
}

// TestConcurrentRestoresNeverOvercommit races 500 restores through two worker processes
// (concurrency 50 each) against a site that holds about half of them. While they run, no
// capacity counter may exceed its limit; at the end every job has ended, every refusal says
// why, no address or MAC is duplicated, and the invariant checker finds nothing.
func TestConcurrentRestoresNeverOvercommit(t *testing.T) {
	if testing.Short() {
		t.Skip("500 restores through two worker processes")
	}
	t.Parallel()
	worker := binary(t, "worker")
	e := newEnv(t, envOptions{noWorker: true, site: raceSite})
	writeTinyGroup(t, e.paths.Backup)
	for i := 0; i < 2; i++ {
		startProcess(t, worker, []string{"REDIS_ADDR=" + e.redis.Addr, "VMRESTORE_METRICS_ADDR=127.0.0.1:0", "VMRESTORE_CONCURRENCY=50", "VMRESTORE_HYPERVISOR=simulator"})
	}

	const n = 500
	locations := make([]string, n)
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				p := map[string]any{"name": fmt.Sprintf("race-%03d", i), "l3NetworkUuids": []string{raceL3}}
				if i%2 == 0 {
					p["instanceOfferingUuid"] = raceOfferingLV
				} else {
					p["cpuNum"], p["memorySize"] = 1, 1<<30
				}
				r := e.restore(tinyGroup, p, map[string]string{"Prefer": "respond-async"})
				if r.status != 202 {
					t.Errorf("submit %d: %d %s", i, r.status, r.body)
					return
				}
				locations[i] = str(r.json(), "location")
			}
		}()
	}

	// Sample capacity while the restores run.
	ctx := context.Background()
	stop, done := make(chan struct{}), make(chan struct{})
	var samples atomic.Int64
	var sampleProblems []string
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			p, err := overCommit(ctx, e.store)
			if err != nil {
				p = []string{err.Error()}
			}
			sampleProblems = append(sampleProblems, p...)
			samples.Add(1)
		}
	}()
	wg.Wait()
	testrig.Within(5*time.Minute, func() bool { return pending(ctx, e) == 0 })
	close(stop)
	<-done
	mustf(t, len(sampleProblems) == 0, "over-commit seen while running:\n%s", strings.Join(sampleProblems, "\n"))

	var ok, refused int
	reasons := map[string]int{}
	for i, loc := range locations {
		r := e.poll(loc, time.Second)
		switch r.status {
		case 200:
			ok++
		case 503:
			refused++
			ec := r.errorCode()
			cause, _ := ec["cause"].(map[string]any)
			mustf(t, str(ec, "code") == "SYS.1006" && cause != nil, "job %d failed without a specific cause: %s", i, r.body)
			code := str(cause, "code")
			mustf(t, code == "HOST_ALLOCATION.1000" || code == "L3.1000", "job %d failed with %s: %s", i, code, r.body)
			mustf(t, len(str(cause, "details")) > 20, "job %d refusal does not say why: %s", i, r.body)
			reasons[code+" "+str(cause, "details")[:40]]++
		default:
			t.Fatalf("job %d did not end: %d %s", i, r.status, r.body)
		}
	}
	t.Logf("%d restored, %d refused (%d capacity samples taken while running); refusals: %v", ok, refused, samples.Load(), reasons)
	mustf(t, ok > 150 && ok <= 250, "the site holds at most 250 VMs (addresses), %d restored", ok)
	mustf(t, refused > 0, "some restores must be refused")
	vms := e.do("GET", "/zstack/v1/vm-instances?count=true", e.session, nil, nil).json()
	mustf(t, int(vms["total"].(float64)) == ok, "%d VMs stored for %d successful jobs", int(vms["total"].(float64)), ok)
	e.checkInvariants()
}

// overCommit lists every capacity field used beyond its limit right now, plus any L3 with
// more addresses in use than its ranges hold.
func overCommit(ctx context.Context, st *store.Store) ([]string, error) {
	p, err := st.OverCommitted(ctx)
	if err != nil {
		return nil, err
	}
	if n, err := st.CountUsedIPs(ctx, raceL3); err != nil || n > 250 {
		p = append(p, fmt.Sprintf("l3 %s has %d addresses in use of 250 (%v)", raceL3, n, err))
	}
	return p, nil
}

// pending counts the jobs not ended yet.
func pending(ctx context.Context, e *env) int {
	keys, _ := e.redis.Client().Keys(ctx, "vmr:job:*").Result()
	pipe := e.redis.Client().Pipeline()
	var cmds []interface{ Val() string }
	for _, k := range keys {
		if !strings.HasSuffix(k, ":lock") {
			cmds = append(cmds, pipe.HGet(ctx, k, "state"))
		}
	}
	pipe.Exec(ctx)
	n := 0
	for _, c := range cmds {
		if st := c.Val(); st == "pending" || st == "running" {
			n++
		}
	}
	return n
}
