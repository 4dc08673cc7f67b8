// Package metrics defines vmrestore's Prometheus metrics. Every name has the vmrestore_
// prefix and base units; labels are bounded (stage, outcome, error code, filter, storage
// uuid), never a job or VM uuid. Each process owns one Metrics registered on its own
// registry, so several instances can live in one test binary.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Metrics holds the collectors the api and the worker update.
type Metrics struct {
	Registry *prometheus.Registry

	StageDuration     *prometheus.HistogramVec
	JobDuration       *prometheus.HistogramVec
	Jobs              *prometheus.CounterVec
	JobsInFlight      *prometheus.GaugeVec
	SyncWait          *prometheus.HistogramVec
	PlacementRefusals *prometheus.CounterVec
	CloneBytes        *prometheus.CounterVec
	ClonesInFlight    *prometheus.GaugeVec
	CloneThroughput   *prometheus.HistogramVec
	CloneDuration     *prometheus.HistogramVec
	CloneResumed      *prometheus.CounterVec
	JobsSubmitted     prometheus.Counter
	SimulatedVMs      *prometheus.CounterVec
	LoginAttempts     *prometheus.CounterVec
	PasswordHashing   prometheus.Gauge
	// Set by the worker's backup storage scan (package backupindex).
	BackupStorageReadable *prometheus.GaugeVec
	BackupStorageGroups   *prometheus.GaugeVec
	// Set by the worker's scheduled backup verification (package backupverify).
	BackupVerifications *prometheus.CounterVec
	BackupVerifyBytes   *prometheus.CounterVec
	BootChecks          *prometheus.CounterVec
	// Instant restores: hydrations by outcome, the bytes they pulled, the VMs running from
	// their backups now.
	InstantHydrations  *prometheus.CounterVec
	InstantPulledBytes prometheus.Counter
	InstantBackedVMs   prometheus.Gauge
	// HostsWithoutWorker counts the hosts that need a worker of their own (LocalStorage)
	// and have none; HostWithoutWorker names them; HostLocalWaiting counts the jobs waiting
	// for their host's worker.
	HostsWithoutWorker prometheus.Gauge
	HostWithoutWorker  *prometheus.GaugeVec
	HostLocalWaiting   prometheus.Gauge
	// JobHandBacks counts runs that gave their worker slot back without failing, by reason
	// (HandBack*); JobReattempts counts runs that started again after a failure or a crash.
	JobHandBacks  *prometheus.CounterVec
	JobReattempts prometheus.Counter
	// JobTakeOvers counts jobs of dead workers queued again by the take-over.
	JobTakeOvers prometheus.Counter

	stages *stageTracker
}

// stageBuckets span 1 ms (a re-run stage that finds its checkpoint) to ~2 h (a large clone).
var stageBuckets = prometheus.ExponentialBuckets(0.001, 2.5, 16)

// New creates the metrics on a fresh registry with the Go and process collectors.
func New() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: r,
		StageDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vmrestore_stage_duration_seconds", Help: "Time spent in each restore pipeline stage.",
			Buckets: stageBuckets,
		}, []string{"stage"}),
		JobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vmrestore_job_duration_seconds", Help: "Time from job creation to its end, by outcome.",
			Buckets: stageBuckets,
		}, []string{"outcome"}),
		Jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmrestore_jobs_total", Help: "Restore jobs ended, by outcome and ZStack error code (empty on success).",
		}, []string{"outcome", "code"}),
		JobsInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vmrestore_jobs_in_flight", Help: "Restore jobs being worked on by this process, by stage.",
		}, []string{"stage"}),
		SyncWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vmrestore_sync_wait_seconds", Help: "Time the synchronous API waited for a job, by outcome (finished, degraded to 202).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 17),
		}, []string{"outcome"}),
		PlacementRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmrestore_placement_refusals_total", Help: "Placements refused, by the filter that emptied the candidate list.",
		}, []string{"filter"}),
		CloneBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmrestore_clone_bytes_total", Help: "Bytes of volume data copied from each backup storage.",
		}, []string{"backup_storage"}),
		ClonesInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vmrestore_clones_in_flight", Help: "Volume copies running in this process, by backup storage.",
		}, []string{"backup_storage"}),
		CloneThroughput: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vmrestore_clone_throughput_bytes_per_second", Help: "Data bytes per second of each finished volume copy (holes excluded), by backup storage.",
			Buckets: prometheus.ExponentialBuckets(1<<20, 2, 14), // 1 MiB/s to 8 GiB/s
		}, []string{"backup_storage"}),
		CloneDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vmrestore_clone_duration_seconds", Help: "Time each volume copy took, slot wait excluded, by backup storage and outcome (ok, failed, cancelled).",
			Buckets: stageBuckets,
		}, []string{"backup_storage", "outcome"}),
		CloneResumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmrestore_clone_resumed_bytes_total", Help: "Bytes of volume data a resumed copy did not copy again (its checkpoint covered them), by backup storage.",
		}, []string{"backup_storage"}),
		JobsSubmitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmrestore_jobs_submitted_total", Help: "Restore jobs accepted by the API.",
		}),
		SimulatedVMs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmrestore_hypervisor_simulated_vms_total", Help: "VMs handed to the simulator hypervisor (no guest is really started), by resulting state.",
		}, []string{"state"}),
		LoginAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmrestore_login_attempts_total", Help: "Logins and current-password checks, by outcome: success, failure (wrong name or password), throttled (login limits), busy (no password hashing slot).",
		}, []string{"outcome"}),
		PasswordHashing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vmrestore_password_hashes_in_flight", Help: "Password hashes (argon2id, 19 MiB each) being computed by this process.",
		}),
		BackupStorageReadable: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vmrestore_backup_storage_readable", Help: "1 when this worker can read the backup storage's folder, 0 when it is missing or unreadable (worker processes only).",
		}, []string{"backup_storage", "name"}),
		BackupStorageGroups: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vmrestore_backup_storage_groups", Help: "Group folders this worker found on the backup storage at its last scan, complete or not (worker processes only).",
		}, []string{"backup_storage", "name"}),
		BackupVerifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmrestore_backup_verifications_total", Help: "Scheduled verifications of backup groups this worker finished, by backup storage and outcome (ok, failed).",
		}, []string{"backup_storage", "outcome"}),
		BackupVerifyBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmrestore_backup_verify_bytes_total", Help: "Bytes of volume data this worker re-read to verify backups, by backup storage.",
		}, []string{"backup_storage"}),
		BootChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmrestore_boot_checks_total", Help: "Boot checks of restored VMs, by mode (running, guestAgent, console) and outcome (passed, failed).",
		}, []string{"mode", "outcome"}),
		InstantHydrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmrestore_instant_hydrations_total", Help: "Hydrations of instant restores this worker ended, by outcome (hydrated; failed: the copy failed, the backup changed or failed its checksum while it backed a running VM).",
		}, []string{"outcome"}),
		InstantPulledBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmrestore_instant_pulled_bytes_total", Help: "Bytes of the disks this worker's hydrations copied into the volumes' files (as libvirt counts a block copy's progress).",
		}),
		InstantBackedVMs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vmrestore_instant_hydrations_running", Help: "Instant restores this worker is hydrating now: VMs running from their backups.",
		}),
		HostsWithoutWorker: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vmrestore_hosts_without_worker", Help: "Hosts whose restores must run on a worker of their own (LocalStorage, or VMRESTORE_HOST_LOCAL=all) and that have no live worker.",
		}),
		HostWithoutWorker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vmrestore_host_without_worker", Help: "1 for each host that needs a worker of its own and has none (only such hosts are listed).",
		}, []string{"host_uuid", "host_name"}),
		HostLocalWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vmrestore_host_local_jobs_waiting", Help: "Restore jobs handed over to a host's queue and not yet taken up by a worker of the host.",
		}),
		JobHandBacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmrestore_job_handbacks_total", Help: "Restore runs that gave their worker slot back without failing and come back later, by reason (no clone slot, Redis unreachable, worker stopping, running on another worker, placement contended).",
		}, []string{"reason"}),
		JobTakeOvers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmrestore_job_takeovers_total", Help: "Jobs of workers that stopped answering (their job lock lapsed) queued again to resume elsewhere.",
		}),
		JobReattempts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmrestore_job_reattempts_total", Help: "Restore jobs started again after a failed or crashed attempt.",
		}),
	}
	// One line per concern, so that each can change without touching the others.
	r.MustRegister(m.StageDuration, m.JobDuration, m.Jobs, m.JobsInFlight, m.SyncWait, m.PlacementRefusals, m.JobsSubmitted)
	r.MustRegister(m.CloneBytes, m.ClonesInFlight, m.CloneThroughput, m.CloneDuration, m.CloneResumed)
	r.MustRegister(m.JobHandBacks, m.JobReattempts, m.JobTakeOvers)
	r.MustRegister(m.LoginAttempts, m.PasswordHashing)
	r.MustRegister(m.BackupStorageReadable, m.BackupStorageGroups, m.BackupVerifications, m.BackupVerifyBytes)
	r.MustRegister(m.SimulatedVMs, m.BootChecks, m.HostsWithoutWorker, m.HostWithoutWorker, m.HostLocalWaiting)
	r.MustRegister(m.InstantHydrations, m.InstantPulledBytes, m.InstantBackedVMs)
	for _, o := range []string{"hydrated", "failed"} {
		m.InstantHydrations.WithLabelValues(o)
	}
	for _, o := range []string{"success", "failure", "throttled", "busy"} {
		m.LoginAttempts.WithLabelValues(o)
	}
	m.stages = newStageTracker(job.Stages)
	r.MustRegister(m.stages)
	// Series that exist from the start, so that dashboards and alerts read 0, not "no data".
	for _, s := range job.Stages {
		m.StageDuration.WithLabelValues(s)
		m.JobsInFlight.WithLabelValues(s)
	}
	m.Jobs.WithLabelValues(string(job.Succeeded), "")
	for _, r := range HandBackReasons {
		m.JobHandBacks.WithLabelValues(r)
	}
	for _, code := range failureCodes {
		m.Jobs.WithLabelValues(string(job.Failed), code)
	}
	m.Jobs.WithLabelValues(string(job.Cancelled), zstack.CodeCancelled)
	for _, o := range []job.State{job.Succeeded, job.Failed, job.Cancelled} {
		m.JobDuration.WithLabelValues(string(o))
	}
	return m
}

// Reasons a run hands its job back (vmrestore_job_handbacks_total's label).
const (
	HandBackCloneSlots       = "clone_slots"
	HandBackRedisUnreachable = "redis_unreachable"
	HandBackShutdown         = "shutdown"
	HandBackRunningElsewhere = "running_elsewhere"
	HandBackContended        = "placement_contended"
	HandBackToHost           = "host_handover"
)

// HandBackReasons lists the hand-back reasons.
var HandBackReasons = []string{HandBackCloneSlots, HandBackRedisUnreachable, HandBackShutdown, HandBackRunningElsewhere, HandBackContended, HandBackToHost}

// failureCodes are the root ZStack error codes a failed job ends with. Their series exist
// from the start: a counter series born at 1 shows no increase to rate(), so without them a
// deployment's first failure of each kind would be invisible to the failure-ratio alert.
var failureCodes = []string{
	zstack.CodeInternal, zstack.CodeTimeout, zstack.CodeNotFound, zstack.CodeOperation, zstack.CodeInvalidArgument,
	zstack.CodeHostAllocation, zstack.CodePrimaryStorage, zstack.CodeIPAllocation, zstack.CodeMACAllocation,
	zstack.CodeBackupStorage, zstack.CodeVolumeBackup,
}

// HTTPDurationBuckets are the buckets of vmrestore_http_request_duration_seconds: from 1 ms
// to past the synchronous CreateVmFromVmBackup wait (VMRESTORE_WAIT_LIMIT, 60 s by default).
var HTTPDurationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120}
