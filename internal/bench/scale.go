package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/placement"
	"github.com/vmrestore/vmrestore/internal/plan"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
)

// placementLatency: placement, capacity reservation, IP and MAC allocation of one VM on a
// site of 10,000 hosts in 100 clusters with 200 L3 networks and 50,000 addresses in use.
func placementLatency(ctx context.Context, c Config) ([]Figure, error) {
	r, err := redistest.StartShared()
	if err != nil {
		return nil, err
	}
	defer r.Kill()
	rdb := r.Client()
	defer rdb.Close()
	st := store.New(rdb)
	site := demosite.Synthetic(demosite.Scale{Clusters: 100, HostsPerCluster: 100, L2s: 200, L2sPerCluster: 6, StorageDir: "/srv/bench"})
	if _, err := st.SaveCatalog(ctx, site); err != nil {
		return nil, err
	}
	ix, err := st.LoadCatalog(ctx)
	if err != nil {
		return nil, err
	}
	used := c.pick(50000, 10000)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	sem := make(chan struct{}, 32)
	for i, l3 := range site.L3Networks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			for k := 0; k < used/len(site.L3Networks); k++ {
				if _, err := st.AllocateIP(ctx, l3.UUID, ix.Ranges[l3.UUID], fmt.Sprintf("preload-%d-%d", i, k), store.IPFirstAvailable, 0); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	n := c.pick(3000, 400)
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		job := fmt.Sprintf("%032x", i+1)
		l3 := site.L3Networks[rand.IntN(len(site.L3Networks))].UUID
		t0 := time.Now()
		req := placement.Request{CPU: 2, Memory: 4 << 30, L3NetworkUUIDs: []string{l3},
			Volumes: []placement.Volume{{UUID: job, Size: 20 << 30, Root: true}}}
		if _, err := placement.Place(ctx, ix, st, job, req); err != nil {
			return nil, err
		}
		mac := fmt.Sprintf("fa:%02x:%02x:%02x:%02x:00", i>>24&255, i>>16&255, i>>8&255, i&255)
		// IPExisting: Redis did not know a script yet, and the pipeline was sent again.
		if res, err := st.AllocateNIC(ctx, l3, ix.Ranges[l3], job+"/0", store.IPRandom, 0, mac); err != nil ||
			res.IP.Outcome != store.IPAllocated && res.IP.Outcome != store.IPExisting || res.Mac != mac {
			return nil, fmt.Errorf("allocate ip and mac: %+v %v", res, err)
		}
		lat = append(lat, time.Since(t0))
	}
	sortDurations(lat)
	note := fmt.Sprintf("%d placements (host, storage, IP, MAC) one at a time; 10,000 hosts, 200 L3s, %d addresses in use", n, used)
	return []Figure{
		figure("placement p50, 10,000 hosts", percentile(lat, 0.5), "ms", nil, "", nil, note),
		figure("placement p99, 10,000 hosts", percentile(lat, 0.99), "ms", nil, "≤ 5", func(v, _ float64) bool { return v <= 5 }, note),
	}, nil
}

// plans: accepting a plan of 10,000 groups, and reading its progress with every item.
func plans(ctx context.Context, c Config) ([]Figure, error) {
	n := c.pick(10000, 2000)
	r, err := redistest.StartShared()
	if err != nil {
		return nil, err
	}
	defer r.Kill()
	rdb := r.Client()
	defer rdb.Close()
	st := store.New(rdb)
	site := demosite.Synthetic(demosite.Scale{Clusters: 10, HostsPerCluster: 100, L2s: 20, L2sPerCluster: 20, StorageDir: "/srv/bench"})
	if _, err := st.SaveCatalog(ctx, site); err != nil {
		return nil, err
	}
	l3 := site.L3Networks[0].UUID
	groups := make([]store.IndexedGroup, n)
	uuids := make([]string, n)
	for i := range groups {
		u := fmt.Sprintf("%032x", i+1)
		uuids[i] = u
		groups[i] = store.IndexedGroup{Group: backup.Group{GroupUUID: u, Name: fmt.Sprintf("vm-%05d-backup", i),
			VM: backup.SourceVM{UUID: fmt.Sprintf("%032x", 1<<40+i), Name: fmt.Sprintf("vm-%05d", i), CPUNum: 2, MemorySize: 4 << 30,
				Nics: []backup.SourceNic{{L3NetworkUUID: l3}}},
			Volumes: []backup.Volume{{UUID: fmt.Sprintf("%032x", 1<<41+i), Type: "Root", Format: "qcow2", Size: 40 << 30, File: "root.qcow2",
				SHA256: fmt.Sprintf("%064x", i)}}},
			BackupStorageUUIDs: []string{site.BackupStorages[0].UUID}}
	}
	if err := st.ReplaceBackupIndex(ctx, groups); err != nil {
		return nil, err
	}
	svc := &plan.Service{Store: st, Catalog: st.NewCatalogCache()}
	spec := &apiv1.PlanSpec{Name: "bench", Groups: uuids, Defaults: apiv1.PlanDefaults{KeepSourceSize: true, NameTemplate: "{{.SourceName}}-dr"},
		NetworkMapping: []apiv1.NetworkMap{{SourceL3NetworkUUID: l3, TargetL3NetworkUUID: l3}},
		Tiers:          []apiv1.TierRule{{Tier: 1, SourceVMName: "vm-00*"}}}
	t0 := time.Now()
	res, err := svc.Submit(ctx, spec, "admin", true, false)
	if err != nil {
		return nil, err
	}
	accept := time.Since(t0)
	change := store.NewPlanChange(res.UUID)
	for i := 0; i < n; i++ {
		s := store.ItemStatus{State: store.ItemSucceeded, Stage: "commit", Job: fmt.Sprintf("%032x", i), VM: fmt.Sprintf("%032x", i), BytesDone: 40 << 30, Attempt: 1}
		change.Item(i, store.ItemStatus{State: store.ItemPending}, s)
	}
	if err := st.ApplyPlanChange(ctx, change); err != nil {
		return nil, err
	}
	var reads []float64
	for i := 0; i < 7; i++ {
		t0 := time.Now()
		rep, err := plan.Progress(ctx, st, res.UUID, true, "")
		if err != nil {
			return nil, err
		}
		if _, err := json.Marshal(rep); err != nil {
			return nil, err
		}
		reads = append(reads, float64(time.Since(t0).Microseconds())/1000)
	}
	sizeNote := fmt.Sprintf("%d groups", n)
	return []Figure{
		figure(fmt.Sprintf("plan accepted, %d groups", n), accept.Seconds(), "s", nil, "≤ 5", func(v, _ float64) bool { return v <= 5 },
			sizeNote+": validation, item requests, storage in Redis"),
		figure(fmt.Sprintf("plan progress read, %d items", n), median(reads), "ms", nil, "≤ 50", func(v, _ float64) bool { return v <= 50 },
			sizeNote+" every one started; read and JSON-encoded as the API does, median of 7"),
	}, nil
}
