package plan_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/plan"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
)

var shared *redistest.Server

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Kill()
	}
	os.Exit(code)
}

// scaleFixture is a site of 1,000 hosts with 10,000 backup groups in the index.
type scaleFixture struct {
	st     *store.Store
	svc    *plan.Service
	groups []string
	l3     string
}

func newScaleFixture(b *testing.B, n int) *scaleFixture {
	b.Helper()
	if shared == nil {
		r, err := redistest.StartShared()
		if err != nil {
			b.Fatal(err)
		}
		shared = r
	}
	c := shared.Client()
	c.FlushAll(context.Background()) // our own server, started above
	return fillFixture(b, store.New(c), n, 0)
}

// fillFixture loads the site and n groups of one 40 GiB root volume holding actual bytes of
// data (0: undeclared).
func fillFixture(b testing.TB, st *store.Store, n int, actual int64) *scaleFixture {
	b.Helper()
	ctx := context.Background()
	site := demosite.Synthetic(demosite.Scale{Clusters: 10, HostsPerCluster: 100, L2s: 20, L2sPerCluster: 20, StorageDir: "/srv/bench"})
	if _, err := st.SaveCatalog(ctx, site); err != nil {
		b.Fatal(err)
	}
	f := &scaleFixture{st: st, svc: &plan.Service{Store: st, Catalog: st.NewCatalogCache()}, l3: site.L3Networks[0].UUID}
	groups := make([]store.IndexedGroup, n)
	for i := range groups {
		u := fmt.Sprintf("%032x", i+1)
		groups[i] = store.IndexedGroup{Group: backup.Group{GroupUUID: u, Name: fmt.Sprintf("vm-%05d-backup", i),
			CreateDate: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC),
			VM: backup.SourceVM{UUID: fmt.Sprintf("%032x", 1<<40+i), Name: fmt.Sprintf("vm-%05d", i), CPUNum: 2, MemorySize: 4 << 30,
				Nics: []backup.SourceNic{{L3NetworkUUID: f.l3, IP: "10.0.0.5"}}},
			Volumes: []backup.Volume{{UUID: fmt.Sprintf("%032x", 1<<41+i), Type: "Root", Format: "qcow2", Size: 40 << 30,
				ActualSize: actual, File: "root.qcow2", SHA256: fmt.Sprintf("%064x", i)}}},
			BackupStorageUUIDs: []string{site.BackupStorages[0].UUID}}
		f.groups = append(f.groups, u)
	}
	if err := st.ReplaceBackupIndex(ctx, groups); err != nil {
		b.Fatal(err)
	}
	return f
}

func (f *scaleFixture) spec(name string) *apiv1.PlanSpec {
	return &apiv1.PlanSpec{Name: name, Groups: f.groups,
		Defaults:       apiv1.PlanDefaults{KeepSourceSize: true, NameTemplate: "{{.SourceName}}-dr"},
		NetworkMapping: []apiv1.NetworkMap{{SourceL3NetworkUUID: f.l3, TargetL3NetworkUUID: f.l3}},
		Tiers:          []apiv1.TierRule{{Tier: 1, SourceVMName: "vm-00*"}}}
}

// BenchmarkSubmitPlan10k: validating and storing a plan of 10,000 groups (the API's work for
// POST /api/v1/plans). Target: at most 5 s.
func BenchmarkSubmitPlan10k(b *testing.B) {
	f := newScaleFixture(b, 10000)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := f.svc.Submit(ctx, f.spec(fmt.Sprintf("bench-%d", i)), "admin", true, false)
		if err != nil {
			b.Fatal(err)
		}
		if res.UUID == "" {
			b.Fatal("no plan")
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/plan")
}

// BenchmarkPlanProgress10k: reading (and encoding, as the API does) the progress of a
// plan of 10,000 items with every item started. Target: at most 50 ms.
func BenchmarkPlanProgress10k(b *testing.B) {
	f := newScaleFixture(b, 10000)
	ctx := context.Background()
	res, err := f.svc.Submit(ctx, f.spec("progress"), "admin", true, false)
	if err != nil {
		b.Fatal(err)
	}
	change := store.NewPlanChange(res.UUID)
	for i := 0; i < 10000; i++ {
		st := store.ItemStatus{State: store.ItemSucceeded, Stage: "commit", Job: fmt.Sprintf("%032x", i), VM: fmt.Sprintf("%032x", i), BytesDone: 40 << 30, Attempt: 1}
		if i%7 == 0 {
			st = store.ItemStatus{State: store.ItemRunning, Stage: "clone", Job: fmt.Sprintf("%032x", i), BytesDone: 1 << 30, Attempt: 1}
		}
		change.Item(i, store.ItemStatus{State: store.ItemPending}, st)
	}
	if err := f.st.ApplyPlanChange(ctx, change); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := plan.Progress(ctx, f.st, res.UUID, true, "")
		if err != nil {
			b.Fatal(err)
		}
		if len(rep.Items) != 10000 {
			b.Fatalf("%d items", len(rep.Items))
		}
		if _, err := json.Marshal(rep); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/read")
}
