package metrics

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
)

// family gathers m and returns the named family's metrics (nil when absent).
func family(tb testing.TB, m *Metrics, name string) []*dto.Metric {
	tb.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	return nil
}

// labeled returns the metric of a family whose labels include want.
func labeled(tb testing.TB, m *Metrics, name string, want map[string]string) *dto.Metric {
	tb.Helper()
	for _, mt := range family(tb, m, name) {
		match := true
		for k, v := range want {
			found := false
			for _, l := range mt.GetLabel() {
				found = found || (l.GetName() == k && l.GetValue() == v)
			}
			match = match && found
		}
		if match {
			return mt
		}
	}
	tb.Fatalf("no %s%v", name, want)
	return nil
}

func TestStartStageTracksInFlightOldestAndExemplar(t *testing.T) {
	m := New()
	now := time.Unix(1000, 0)
	m.stages.now = func() time.Time { return now }
	const job = "0123456789abcdef0123456789abcdef"
	end := m.StartStage("clone", job)
	m.StartStage("clone", "fedcba9876543210fedcba9876543210") // still running at the end
	now = now.Add(90 * time.Second)
	if g := labeled(t, m, "vmrestore_jobs_in_flight", map[string]string{"stage": "clone"}).GetGauge().GetValue(); g != 2 {
		t.Errorf("in flight %v, want 2", g)
	}
	if g := labeled(t, m, "vmrestore_stage_oldest_running_seconds", map[string]string{"stage": "clone"}).GetGauge().GetValue(); g != 90 {
		t.Errorf("oldest running %v s, want 90", g)
	}
	if g := labeled(t, m, "vmrestore_stage_oldest_running_seconds", map[string]string{"stage": "commit"}).GetGauge().GetValue(); g != 0 {
		t.Errorf("oldest running commit %v s, want 0 (none runs)", g)
	}
	end()
	end() // a second call changes nothing
	if g := labeled(t, m, "vmrestore_jobs_in_flight", map[string]string{"stage": "clone"}).GetGauge().GetValue(); g != 1 {
		t.Errorf("in flight after end %v, want 1", g)
	}
	h := labeled(t, m, "vmrestore_stage_duration_seconds", map[string]string{"stage": "clone"}).GetHistogram()
	if h.GetSampleCount() != 1 {
		t.Fatalf("stage observed %d times, want 1", h.GetSampleCount())
	}
	var exemplars []string
	for _, b := range h.GetBucket() {
		for _, l := range b.GetExemplar().GetLabel() {
			exemplars = append(exemplars, l.GetName()+"="+l.GetValue())
		}
	}
	if len(exemplars) != 1 || exemplars[0] != ExemplarLabel+"="+job {
		t.Errorf("exemplars %v, want one %s=%s", exemplars, ExemplarLabel, job)
	}
}

func TestJobEndedAndSeriesThatExistFromTheStart(t *testing.T) {
	m := New()
	for _, code := range failureCodes {
		if v := labeled(t, m, "vmrestore_jobs_total", map[string]string{"outcome": "failed", "code": code}).GetCounter().GetValue(); v != 0 {
			t.Errorf("failed %s starts at %v", code, v)
		}
	}
	for _, s := range []string{"resolve", "place", "network", "clone", "instantiate", "commit"} {
		labeled(t, m, "vmrestore_stage_duration_seconds", map[string]string{"stage": s})
	}
	m.JobEnded("failed", "SYS.1003", "0123456789abcdef0123456789abcdef", 3*time.Second)
	c := labeled(t, m, "vmrestore_jobs_total", map[string]string{"outcome": "failed", "code": "SYS.1003"}).GetCounter()
	if c.GetValue() != 1 || len(c.GetExemplar().GetLabel()) != 1 || c.GetExemplar().GetLabel()[0].GetValue() != "0123456789abcdef0123456789abcdef" {
		t.Errorf("jobs_total after a failure: %v", c)
	}
	if n := labeled(t, m, "vmrestore_job_duration_seconds", map[string]string{"outcome": "failed"}).GetHistogram().GetSampleSum(); n != 3 {
		t.Errorf("job duration sum %v, want 3", n)
	}
}

// deploymentSite is the demo site with cluster-b's hosts disabled.
func deploymentSite(tb testing.TB) *catalog.Site {
	tb.Helper()
	site := demosite.Site(demosite.PathsIn(tb.TempDir()))
	for i := range site.Hosts {
		if site.Hosts[i].ClusterUUID == demosite.ClusterBUUID {
			site.Hosts[i].State = catalog.StateDisabled
		}
	}
	b, err := yaml.Marshal(site)
	if err != nil {
		tb.Fatal(err)
	}
	parsed, err := catalog.Parse(b)
	if err != nil {
		tb.Fatal(err)
	}
	return parsed
}

func TestDeploymentMetricsComeFromTheLeaseHolderOnly(t *testing.T) {
	r := redistest.Start(t)
	rdb := r.Client()
	st := store.New(rdb)
	ctx := context.Background()
	site := deploymentSite(t)
	if _, err := st.SaveCatalog(ctx, site); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	type process struct {
		m      *Metrics
		d      *Deployment
		cancel context.CancelFunc
		done   chan struct{}
	}
	var procs []*process
	for i := range 2 {
		p := &process{m: New(), done: make(chan struct{})}
		p.d = p.m.RegisterDeployment(st, st.NewCatalogCache(), asynq.NewInspectorFromRedisClient(rdb), log)
		p.d.leaseEvery = 100 * time.Millisecond
		var pctx context.Context
		pctx, p.cancel = context.WithCancel(ctx)
		go func() { defer close(p.done); p.d.Run(pctx, "holder-"+string(rune('a'+i))) }()
		t.Cleanup(func() { p.cancel(); <-p.done })
		procs = append(procs, p)
	}
	exporter := func(p *process) float64 {
		return family(t, p.m, "vmrestore_deployment_metrics_exporter")[0].GetGauge().GetValue()
	}
	leader := func() *process {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			var holders []*process
			for _, p := range procs {
				if exporter(p) == 1 {
					holders = append(holders, p)
				}
			}
			if len(holders) > 1 {
				t.Fatal("two processes export the deployment-wide metrics")
			}
			if len(holders) == 1 {
				return holders[0]
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("no process took the exporter lease")
		return nil
	}
	first := leader()
	for _, p := range procs {
		if up := family(t, p.m, "vmrestore_redis_up")[0].GetGauge().GetValue(); up != 1 {
			t.Errorf("vmrestore_redis_up = %v", up)
		}
		if p != first && family(t, p.m, "vmrestore_cluster_cpu_free") != nil {
			t.Error("a process without the lease exports capacity")
		}
	}

	// Capacity: cluster-a's hosts are all free, cluster-b's are disabled (nothing free).
	ix := catalog.NewIndex(site, 0)
	nfsTotal, nfsReserved := ix.StorageCapacity(ix.PrimaryStorages[demosite.NFSUUID], nil)
	var cpuA, memA, cpuB int64
	for i := range site.Hosts {
		h := &site.Hosts[i]
		c := ix.HostCapacity(h)
		if h.ClusterUUID == demosite.ClusterAUUID {
			cpuA, memA = cpuA+c.CPU, memA+c.Memory
		} else {
			cpuB += c.CPU
		}
	}
	// One group failed its last verification, another passed it after failing before.
	for _, v := range []store.Verification{
		{BackupStorageUUID: demosite.BackupUUID, GroupUUID: demosite.GroupWeb01UUID, OK: false, Problem: "bit rot"},
		{BackupStorageUUID: demosite.BackupUUID, GroupUUID: demosite.GroupDB01UUID, OK: false, Problem: "bit rot"},
		{BackupStorageUUID: demosite.BackupUUID, GroupUUID: demosite.GroupDB01UUID, OK: true},
	} {
		if err := st.SaveVerification(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	// Drills: the latest of plan "quarterly" failed (its tier 2 restored nothing), the one
	// before succeeded; a recovery plan is no drill.
	lastSuccess := saveDrillReports(t, st)
	if n := len(family(t, first.m, "vmrestore_drill_rto_seconds")); n != 2 {
		t.Errorf("%d drill RTO series; want 2 (the latest drill's plan and tier 1: its tier 2 restored nothing, a recovery is no drill)", n)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"vmrestore_drill_rto_seconds", map[string]string{"plan": "quarterly", "tier": "all"}, 400},
		{"vmrestore_drill_rto_seconds", map[string]string{"plan": "quarterly", "tier": "1"}, 100},
		{"vmrestore_drill_last_success_timestamp_seconds", nil, float64(lastSuccess.Unix())},
		{"vmrestore_backup_groups_failed_verification", map[string]string{"backup_storage": demosite.BackupUUID, "name": "bs-main"}, 1},
		{"vmrestore_cluster_cpu_capacity", map[string]string{"name": "cluster-a"}, float64(cpuA)},
		{"vmrestore_cluster_cpu_free", map[string]string{"name": "cluster-a"}, float64(cpuA)},
		{"vmrestore_cluster_memory_free_bytes", map[string]string{"name": "cluster-a"}, float64(memA)},
		{"vmrestore_cluster_cpu_capacity", map[string]string{"cluster": demosite.ClusterBUUID}, float64(cpuB)},
		{"vmrestore_cluster_cpu_free", map[string]string{"cluster": demosite.ClusterBUUID}, 0},
		{"vmrestore_primary_storage_capacity_bytes", map[string]string{"name": "ps-nfs"}, float64(nfsTotal)},
		{"vmrestore_primary_storage_free_bytes", map[string]string{"name": "ps-nfs", "type": "NFS"}, float64(nfsTotal - nfsReserved)},
		{"vmrestore_primary_storage_capacity_bytes", map[string]string{"name": "ps-local"}, 2 << 40},
		{"vmrestore_backup_storage_clone_slots", map[string]string{"backup_storage": demosite.BackupUUID}, 4},
		{"vmrestore_workers_alive", nil, 0},
	} {
		if got := labeled(t, first.m, c.name, c.labels).GetGauge().GetValue(); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// The holder stops: the other takes the lease over.
	first.cancel()
	<-first.done
	if exporter(first) != 0 {
		t.Error("a stopped process still claims the lease")
	}
	if second := leader(); second == first {
		t.Error("the lease did not move")
	}
}

// saveDrillReports stores the reports of two drills of one plan and of a recovery, and
// returns when the drill that succeeded ended.
func saveDrillReports(t *testing.T, st *store.Store) time.Time {
	t.Helper()
	rto := func(v float64) *float64 { return &v }
	ok := time.Now().Add(-100 * 24 * time.Hour).Truncate(time.Second)
	failed := time.Now().Add(-2 * 24 * time.Hour).Truncate(time.Second)
	recovered := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i, s := range []apiv1.RunReportSummary{
		{PlanUUID: strings.Repeat("1", 32), PlanName: "quarterly", Mode: apiv1.ModeDrill, State: "succeeded", FinishedAt: &ok, RTOSeconds: rto(300),
			Tiers: []apiv1.TierRTO{{Tier: 1, Complete: true, RTOSeconds: rto(120)}, {Tier: 2, Complete: true, RTOSeconds: rto(300)}}},
		{PlanUUID: strings.Repeat("2", 32), PlanName: "quarterly", Mode: apiv1.ModeDrill, State: "failed", FinishedAt: &failed, RTOSeconds: rto(400),
			Tiers: []apiv1.TierRTO{{Tier: 1, Complete: true, RTOSeconds: rto(100)}, {Tier: 2}}},
		{PlanUUID: strings.Repeat("3", 32), PlanName: "dc-east", Mode: apiv1.ModeRecovery, State: "succeeded", FinishedAt: &recovered, RTOSeconds: rto(50)},
	} {
		b, _ := json.Marshal(s)
		if err := st.SaveReport(context.Background(), store.StoredReport{Plan: s.PlanUUID, Account: "acct", FinishedAt: *s.FinishedAt, Summary: b, Body: []byte("{}")}, 400*24*time.Hour); err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
	}
	return ok
}
