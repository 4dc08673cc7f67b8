package dashboards

import (
	"fmt"
	"strings"
)

// The metrics the dashboards read. A metric's name is written once, here: a typo in a panel
// is then a compile error, and a renamed metric is one edit. The real-Prometheus test in
// internal/opsharness checks that the api or a worker exports each of them.
var (
	// Restore jobs (internal/metrics).
	jobs            = metric("vmrestore_jobs_total")
	jobsSubmitted   = metric("vmrestore_jobs_submitted_total")
	jobsInFlight    = metric("vmrestore_jobs_in_flight")
	jobDuration     = histogram("vmrestore_job_duration_seconds")
	stageDuration   = histogram("vmrestore_stage_duration_seconds")
	stageOldest     = metric("vmrestore_stage_oldest_running_seconds")
	placementRefuse = metric("vmrestore_placement_refusals_total")
	hypervisorVMs   = metric("vmrestore_hypervisor_simulated_vms_total")
	syncWait        = histogram("vmrestore_sync_wait_seconds")

	// Volume copies.
	cloneBytes      = metric("vmrestore_clone_bytes_total")
	clonesInFlight  = metric("vmrestore_clones_in_flight")
	cloneSlots      = metric("vmrestore_backup_storage_clone_slots")
	cloneThroughput = histogram("vmrestore_clone_throughput_bytes_per_second")
	cloneDuration   = histogram("vmrestore_clone_duration_seconds")

	// Deployment-wide figures, exported by the one process that holds the Redis lease.
	exporter          = metric("vmrestore_deployment_metrics_exporter")
	workersAlive      = metric("vmrestore_workers_alive")
	workerSlots       = metric("vmrestore_worker_slots")
	workerSlotsBusy   = metric("vmrestore_worker_slots_busy")
	clusterCPU        = metric("vmrestore_cluster_cpu_capacity")
	clusterCPUFree    = metric("vmrestore_cluster_cpu_free")
	clusterMemory     = metric("vmrestore_cluster_memory_capacity_bytes")
	clusterMemoryFree = metric("vmrestore_cluster_memory_free_bytes")
	primaryStorage    = metric("vmrestore_primary_storage_capacity_bytes")
	primaryFree       = metric("vmrestore_primary_storage_free_bytes")
	drillRTO          = metric("vmrestore_drill_rto_seconds")
	drillLastSuccess  = metric("vmrestore_drill_last_success_timestamp_seconds")

	// The asynq queue (asynq's own exporter, run by the lease holder).
	queueTasks     = metric("asynq_tasks_enqueued_total") // a gauge despite its name: tasks now, by state
	queueLatency   = metric("asynq_queue_latency_seconds")
	queueProcessed = metric("asynq_tasks_processed_total")
	queueFailed    = metric("asynq_tasks_failed_total")

	// HTTP and process health.
	httpRequests = metric("vmrestore_http_requests_total")
	httpDuration = histogram("vmrestore_http_request_duration_seconds")
	redisUp      = metric("vmrestore_redis_up")
	scrapeUp     = metric("up")
	residentMem  = metric("process_resident_memory_bytes")
	goroutines   = metric("go_goroutines")
	cpuSeconds   = metric("process_cpu_seconds_total")
)

// The label matchers the dashboards share.
const (
	// ourProcesses selects the api and the workers by the scrape job names that
	// deploy/prometheus (and the alert rules) give them.
	ourProcesses = `job=~"vmrestore-api|vmrestore-worker"`
	// restoreQueue is the asynq queue of restore tasks (web hook deliveries share it).
	restoreQueue = `queue="restore"`
	succeeded    = `outcome="succeeded"`
	notSucceeded = `outcome!="succeeded"`
	cloneStage   = `stage="clone"`
	httpErrors   = `code=~"4..|5.."`
	waiting      = `state=~"pending|scheduled|retry"`
	degraded     = `outcome="degraded"`
)

// Grafana's windows: the rate window adapts to the scrape interval and the zoom, the range is
// the dashboard's time range.
const (
	rateWindow  = "$__rate_interval"
	rangeWindow = "$__range"
)

// A series is a metric narrowed by label matchers: vmrestore_jobs_total{outcome="succeeded"}.
type series struct {
	name     string
	matchers []string
}

func metric(name string) series { return series{name: name} }

// where narrows the series by more label matchers.
func (s series) where(matchers ...string) series {
	return series{name: s.name, matchers: append(append([]string(nil), s.matchers...), matchers...)}
}

func (s series) String() string {
	if len(s.matchers) == 0 {
		return s.name
	}
	return s.name + "{" + strings.Join(s.matchers, ",") + "}"
}

// A histogram is a Prometheus histogram by its base name; its series are _bucket, _sum and
// _count.
type histogram string

func (h histogram) bucket() series { return metric(string(h) + "_bucket") }
func (h histogram) sum() series    { return metric(string(h) + "_sum") }
func (h histogram) count() series  { return metric(string(h) + "_count") }

// An expr is a PromQL expression. The functions below take expressions or series (both
// fmt.Stringer) and write PromQL as Grafana shows it.
type expr string

func (e expr) String() string { return string(e) }

// rate is the per-second rate of a counter over Grafana's rate window.
func rate(s series) expr { return expr(fmt.Sprintf("rate(%s[%s])", s, rateWindow)) }

// increase is how much a counter grew over window.
func increase(s series, window string) expr {
	return expr(fmt.Sprintf("increase(%s[%s])", s, window))
}

// aggregate writes op(e), or op by (labels) (e) when labels are given.
func aggregate(op, labels string, e fmt.Stringer) expr {
	if labels == "" {
		return expr(op + "(" + e.String() + ")")
	}
	return expr(op + " by (" + labels + ") (" + e.String() + ")")
}

func sum(e fmt.Stringer) expr                  { return aggregate("sum", "", e) }
func sumBy(labels string, e fmt.Stringer) expr { return aggregate("sum", labels, e) }
func maxOf(e fmt.Stringer) expr                { return aggregate("max", "", e) }
func maxBy(labels string, e fmt.Stringer) expr { return aggregate("max", labels, e) }
func minBy(labels string, e fmt.Stringer) expr { return aggregate("min", labels, e) }

// ratio divides numerator by denominator, series by series.
func ratio(numerator, denominator fmt.Stringer) expr {
	return expr(numerator.String() + " / " + denominator.String())
}

// daysSince is how many days ago the Unix time e was.
func daysSince(e fmt.Stringer) expr { return expr("(time() - " + e.String() + ") / 86400") }

// orZero reads as 0 where e has no series (a label value not seen yet).
func orZero(e fmt.Stringer) expr { return expr("(" + e.String() + " or vector(0))") }

// quantile is the phi-quantile of a histogram over the rate window, kept apart by labels
// (comma-separated, or "" for one series); matchers narrow the buckets.
func quantile(phi float64, h histogram, labels string, matchers ...string) expr {
	by := "le"
	if labels != "" {
		by += ", " + labels
	}
	return expr(fmt.Sprintf("histogram_quantile(%g, %s)", phi, sumBy(by, rate(h.bucket().where(matchers...)))))
}

// mean is a histogram's mean observation over the rate window, kept apart by labels.
func mean(h histogram, labels string) expr {
	return ratio(sumBy(labels, rate(h.sum())), sumBy(labels, rate(h.count())))
}
