package metrics

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/store"
)

// Deployment-wide metrics describe shared state (the asynq queue, site capacity, live
// workers), not one process. Every api and worker process can compute them from Redis, but
// only the process holding the exporter lease in Redis exports them, so that they exist once
// per deployment whatever the number of replicas (sum() over them stays right). The lease is
// renewed every LeaseTTL/3; when its holder dies another process takes it within LeaseTTL.
// A process that loses Redis stops exporting at once (its lease may still run: for up to
// LeaseTTL no process exports, rather than two).
// Every process exports vmrestore_deployment_metrics_exporter (1 on the holder).
const (
	LeaseName = "metrics-exporter"
	LeaseTTL  = 15 * time.Second
)

// collectTimeout bounds the Redis reads of one scrape.
const collectTimeout = 2 * time.Second

// Deployment collects the deployment-wide metrics while this process holds the lease.
type Deployment struct {
	store     *store.Store
	catalog   *store.CatalogCache
	inspector *asynq.Inspector
	log       *slog.Logger
	leader    atomic.Bool // holds the lease
	redisUp   atomic.Bool // the last PING answered
	// leaseEvery is how often the lease is taken or renewed (LeaseTTL/3; tests shorten it).
	leaseEvery time.Duration

	exporter, redisUpDesc                   *prometheus.Desc
	clusterCPU, clusterCPUFree              *prometheus.Desc
	clusterMem, clusterMemFree              *prometheus.Desc
	psCapacity, psFree                      *prometheus.Desc
	bsSlots, workersAlive, slots, slotsBusy *prometheus.Desc
	bsFailedVerification                    *prometheus.Desc
	drillRTO, drillLastSuccess              *prometheus.Desc
}

// RegisterDeployment adds the Redis-backed collectors to m's registry: vmrestore_redis_up
// (every process, pinged at scrape time) and the lease-gated deployment-wide metrics
// (vmrestore_cluster_*, vmrestore_primary_storage_*, vmrestore_backup_storage_clone_slots,
// vmrestore_workers_alive, vmrestore_worker_slots*, and asynq's queue collector, asynq_*).
// They report nothing deployment-wide until Run wins the lease.
func (m *Metrics) RegisterDeployment(st *store.Store, cache *store.CatalogCache, inspector *asynq.Inspector, log *slog.Logger) *Deployment {
	d := &Deployment{
		store: st, catalog: cache, inspector: inspector, log: log, leaseEvery: LeaseTTL / 3,
		exporter: prometheus.NewDesc("vmrestore_deployment_metrics_exporter",
			"1 when this process holds the Redis lease and exports the deployment-wide metrics (queue, capacity, workers), else 0.", nil, nil),
		redisUpDesc: prometheus.NewDesc("vmrestore_redis_up",
			"1 when this process's last PING to Redis (one a second) answered within a second, else 0.", nil, nil),
		clusterCPU: prometheus.NewDesc("vmrestore_cluster_cpu_capacity",
			"Allocatable vCPUs of every host of the cluster (after over-provisioning), from the site catalog.", []string{"cluster", "name"}, nil),
		clusterCPUFree: prometheus.NewDesc("vmrestore_cluster_cpu_free",
			"vCPUs not reserved on the cluster's hosts that can receive VMs (disabled or disconnected hosts count 0).", []string{"cluster", "name"}, nil),
		clusterMem: prometheus.NewDesc("vmrestore_cluster_memory_capacity_bytes",
			"Allocatable memory of every host of the cluster (after over-provisioning and the host reserve), from the site catalog.", []string{"cluster", "name"}, nil),
		clusterMemFree: prometheus.NewDesc("vmrestore_cluster_memory_free_bytes",
			"Memory not reserved on the cluster's hosts that can receive VMs (disabled or disconnected hosts count 0).", []string{"cluster", "name"}, nil),
		psCapacity: prometheus.NewDesc("vmrestore_primary_storage_capacity_bytes",
			"Allocatable bytes of the primary storage (LocalStorage: summed over its hosts), from the site catalog.", []string{"primary_storage", "name", "type"}, nil),
		psFree: prometheus.NewDesc("vmrestore_primary_storage_free_bytes",
			"Bytes placements can still reserve on the primary storage (0 when it is disabled, disconnected or found down).", []string{"primary_storage", "name", "type"}, nil),
		bsSlots: prometheus.NewDesc("vmrestore_backup_storage_clone_slots",
			"Volume copies the backup storage allows at once across every worker (maxConcurrentClones).", []string{"backup_storage", "name"}, nil),
		workersAlive: prometheus.NewDesc("vmrestore_workers_alive",
			"Worker processes (asynq servers) with a fresh heartbeat in Redis and taking jobs.", nil, nil),
		slots: prometheus.NewDesc("vmrestore_worker_slots",
			"Restore jobs the live workers can run at once (sum of their VMRESTORE_CONCURRENCY).", nil, nil),
		slotsBusy: prometheus.NewDesc("vmrestore_worker_slots_busy",
			"Tasks the live workers are running now.", nil, nil),
		bsFailedVerification: prometheus.NewDesc("vmrestore_backup_groups_failed_verification",
			"Indexed backup groups whose last scheduled verification on the backup storage failed (VMRESTORE_BACKUP_VERIFY_INTERVAL).", []string{"backup_storage", "name"}, nil),
		drillRTO: prometheus.NewDesc("vmrestore_drill_rto_seconds",
			"Achieved RTO of the latest drill of each plan name (submission to the last VM verified running), per tier and for the whole plan (tier=\"all\"), from the stored run reports.", []string{"plan", "tier"}, nil),
		drillLastSuccess: prometheus.NewDesc("vmrestore_drill_last_success_timestamp_seconds",
			"When the latest drill that restored every VM ended (Unix seconds), from the stored run reports; 0 when none has.", nil, nil),
	}
	m.Registry.MustRegister(d, &leaderOnly{leader: d.Leader, inner: asynqmetrics.NewQueueMetricsCollector(inspector)})
	return d
}

// Leader reports whether this process holds the exporter lease and exports the
// deployment-wide metrics (it does not while Redis does not answer).
func (d *Deployment) Leader() bool { return d.leader.Load() && d.redisUp.Load() }

// pingEvery is how often a process checks that Redis answers (vmrestore_redis_up); the
// check runs in the background so that a scrape never waits on a dead Redis.
const pingEvery = time.Second

// Run keeps this process's view of Redis current until ctx ends: a PING every second for
// vmrestore_redis_up, and the exporter lease taken or renewed every LeaseTTL/3. On return it
// gives the lease up. holder must be unique to the process.
func (d *Deployment) Run(ctx context.Context, holder string) {
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	var tried time.Time // the last lease attempt
	for {
		pctx, cancel := context.WithTimeout(ctx, pingEvery)
		up := d.store.Ping(pctx) == nil
		cancel()
		d.redisUp.Store(up)
		if !up {
			tried = time.Time{} // cannot prove we hold it: stop exporting rather than export twice
			d.setLeader(false, holder)
		} else if time.Since(tried) >= d.leaseEvery {
			tried = time.Now()
			hctx, cancel := context.WithTimeout(ctx, collectTimeout)
			ok, err := d.store.HoldLease(hctx, LeaseName, holder, LeaseTTL)
			cancel()
			d.setLeader(ok && err == nil, holder)
		}
		select {
		case <-ctx.Done():
			d.leader.Store(false)
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = d.store.ReleaseLease(rctx, LeaseName, holder)
			cancel()
			return
		case <-t.C:
		}
	}
}

func (d *Deployment) setLeader(ok bool, holder string) {
	if was := d.leader.Swap(ok); was != ok {
		d.log.Info("deployment-wide metrics exporter lease", "held", ok, "holder", holder)
	}
}

func (d *Deployment) Describe(ch chan<- *prometheus.Desc) {
	for _, desc := range []*prometheus.Desc{d.exporter, d.redisUpDesc, d.clusterCPU, d.clusterCPUFree, d.clusterMem,
		d.clusterMemFree, d.psCapacity, d.psFree, d.bsSlots, d.workersAlive, d.slots, d.slotsBusy, d.bsFailedVerification,
		d.drillRTO, d.drillLastSuccess} {
		ch <- desc
	}
}

func (d *Deployment) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(d.redisUpDesc, prometheus.GaugeValue, boolFloat(d.redisUp.Load()))
	leader := d.Leader()
	ch <- prometheus.MustNewConstMetric(d.exporter, prometheus.GaugeValue, boolFloat(leader))
	if !leader {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	if err := d.collectCapacity(ctx, ch); err != nil {
		d.log.Warn("capacity metrics not collected", "err", err)
	}
	if err := d.collectVerifications(ctx, ch); err != nil {
		d.log.Warn("backup verification metrics not collected", "err", err)
	}
	if err := d.collectDrills(ctx, ch); err != nil {
		d.log.Warn("drill metrics not collected", "err", err)
	}
	servers, err := d.inspector.Servers()
	if err != nil {
		d.log.Warn("worker metrics not collected", "err", err)
		return
	}
	var alive, slots, busy int
	for _, s := range servers {
		if s.Status != "active" {
			continue
		}
		alive++
		slots += s.Concurrency
		busy += len(s.ActiveWorkers)
	}
	ch <- prometheus.MustNewConstMetric(d.workersAlive, prometheus.GaugeValue, float64(alive))
	ch <- prometheus.MustNewConstMetric(d.slots, prometheus.GaugeValue, float64(slots))
	ch <- prometheus.MustNewConstMetric(d.slotsBusy, prometheus.GaugeValue, float64(busy))
}

// collectCapacity reads the catalog and every capacity field in one Redis round trip; the
// series are bounded by the site's size (one per cluster, primary and backup storage).
func (d *Deployment) collectCapacity(ctx context.Context, ch chan<- prometheus.Metric) error {
	ix, err := d.catalog.Current(ctx)
	if err != nil {
		return err
	}
	var fields []string
	for _, h := range ix.Site.Hosts {
		fields = append(fields, store.FieldHostCPU(h.UUID), store.FieldHostMemory(h.UUID))
	}
	type psField struct {
		ps    *catalog.PrimaryStorage
		field string
		total int64
	}
	var psFields []psField
	for i := range ix.Site.PrimaryStorages {
		ps := &ix.Site.PrimaryStorages[i]
		if ps.Type != catalog.PSLocalStorage {
			total, _ := ix.StorageCapacity(ps, nil)
			psFields = append(psFields, psField{ps, store.FieldStorageBytes(ps.UUID, ""), total})
			continue
		}
		for _, cl := range ix.ClustersByStorage[ps.UUID] {
			for _, h := range ix.HostsByCluster[cl.UUID] {
				total, _ := ix.StorageCapacity(ps, h)
				psFields = append(psFields, psField{ps, store.FieldStorageBytes(ps.UUID, h.UUID), total})
			}
		}
	}
	for _, f := range psFields {
		fields = append(fields, f.field)
	}
	usage, err := d.store.Usage(ctx, fields)
	if err != nil {
		return err
	}
	free := func(u store.FieldUsage) int64 {
		if u.Limit < 0 {
			return 0
		}
		return max(u.Limit-u.Used, 0)
	}

	type clusterSum struct{ cpu, cpuFree, mem, memFree int64 }
	clusters := map[string]*clusterSum{}
	for i := range ix.Site.Hosts {
		h := &ix.Site.Hosts[i]
		c := clusters[h.ClusterUUID]
		if c == nil {
			c = &clusterSum{}
			clusters[h.ClusterUUID] = c
		}
		capa := ix.HostCapacity(h)
		c.cpu += capa.CPU
		c.mem += capa.Memory
		c.cpuFree += free(usage[2*i])
		c.memFree += free(usage[2*i+1])
	}
	for _, cl := range ix.Site.Clusters {
		c := clusters[cl.UUID]
		if c == nil {
			c = &clusterSum{}
		}
		ch <- prometheus.MustNewConstMetric(d.clusterCPU, prometheus.GaugeValue, float64(c.cpu), cl.UUID, cl.Name)
		ch <- prometheus.MustNewConstMetric(d.clusterCPUFree, prometheus.GaugeValue, float64(c.cpuFree), cl.UUID, cl.Name)
		ch <- prometheus.MustNewConstMetric(d.clusterMem, prometheus.GaugeValue, float64(c.mem), cl.UUID, cl.Name)
		ch <- prometheus.MustNewConstMetric(d.clusterMemFree, prometheus.GaugeValue, float64(c.memFree), cl.UUID, cl.Name)
	}

	type psSum struct{ total, free int64 }
	pss := map[string]*psSum{}
	base := 2 * len(ix.Site.Hosts)
	for i, f := range psFields {
		s := pss[f.ps.UUID]
		if s == nil {
			s = &psSum{}
			pss[f.ps.UUID] = s
		}
		s.total += f.total
		s.free += free(usage[base+i])
	}
	for _, ps := range ix.Site.PrimaryStorages {
		s := pss[ps.UUID]
		if s == nil {
			s = &psSum{}
		}
		ch <- prometheus.MustNewConstMetric(d.psCapacity, prometheus.GaugeValue, float64(s.total), ps.UUID, ps.Name, ps.Type)
		ch <- prometheus.MustNewConstMetric(d.psFree, prometheus.GaugeValue, float64(s.free), ps.UUID, ps.Name, ps.Type)
	}
	for _, bs := range ix.Site.BackupStorages {
		ch <- prometheus.MustNewConstMetric(d.bsSlots, prometheus.GaugeValue, float64(bs.MaxConcurrentClones), bs.UUID, bs.Name)
	}
	return nil
}

// collectVerifications counts, per backup storage of the catalog, the groups whose last
// scheduled verification failed (a series per storage, 0 when none did).
func (d *Deployment) collectVerifications(ctx context.Context, ch chan<- prometheus.Metric) error {
	ix, err := d.catalog.Current(ctx)
	if err != nil {
		return err
	}
	fails, err := d.store.VerificationFailures(ctx)
	if err != nil {
		return err
	}
	failed := map[string]int{}
	for _, f := range fails {
		failed[f.BackupStorageUUID]++
	}
	for _, bs := range ix.Site.BackupStorages {
		ch <- prometheus.MustNewConstMetric(d.bsFailedVerification, prometheus.GaugeValue, float64(failed[bs.UUID]), bs.UUID, bs.Name)
	}
	return nil
}

// collectDrills exports, from the run reports kept, the RTOs of each drill plan's latest run
// and when a drill last restored every VM. The series are bounded by the drill plans' names.
func (d *Deployment) collectDrills(ctx context.Context, ch chan<- prometheus.Metric) error {
	raw, err := d.store.ReportSummaries(ctx)
	if err != nil {
		return err
	}
	latest := map[string]apiv1.RunReportSummary{}
	var lastSuccess time.Time
	for _, b := range raw {
		var s apiv1.RunReportSummary
		if json.Unmarshal(b, &s) != nil || s.Mode != apiv1.ModeDrill || s.FinishedAt == nil {
			continue
		}
		if s.Succeeded() && s.FinishedAt.After(lastSuccess) {
			lastSuccess = *s.FinishedAt
		}
		if prev, ok := latest[s.PlanName]; !ok || s.FinishedAt.After(*prev.FinishedAt) {
			latest[s.PlanName] = s
		}
	}
	var last float64
	if !lastSuccess.IsZero() {
		last = float64(lastSuccess.UnixMilli()) / 1000
	}
	ch <- prometheus.MustNewConstMetric(d.drillLastSuccess, prometheus.GaugeValue, last)
	for name, s := range latest {
		if s.RTOSeconds != nil {
			ch <- prometheus.MustNewConstMetric(d.drillRTO, prometheus.GaugeValue, *s.RTOSeconds, name, "all")
		}
		for _, t := range s.Tiers {
			if t.RTOSeconds != nil {
				ch <- prometheus.MustNewConstMetric(d.drillRTO, prometheus.GaugeValue, *t.RTOSeconds, name, strconv.Itoa(t.Tier))
			}
		}
	}
	return nil
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// leaderOnly passes a collector's metrics through only while leader is set. It describes
// nothing (an unchecked collector): asynq's queue collector describes itself by collecting,
// which would read Redis at registration.
type leaderOnly struct {
	leader func() bool
	inner  prometheus.Collector
}

func (l *leaderOnly) Describe(chan<- *prometheus.Desc) {}

func (l *leaderOnly) Collect(ch chan<- prometheus.Metric) {
	if l.leader() {
		l.inner.Collect(ch)
	}
}
