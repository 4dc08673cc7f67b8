package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/units"
)

// overview answers "is the restore going well?": restores per second, success, work in
// flight, the queue and the workers.
func overview() *dashboard.DashboardBuilder {
	return newDashboard("vmrestore-overview", "vmrestore / Overview",
		"Restores per second, success ratio, jobs in flight, queue depth and latency, live workers.").
		WithRow(row("Now")).
		WithPanel(single("Restores/s", "Jobs that ended with a VM, per second.", units.OpsPerSecond,
			query(sum(rate(jobs.where(succeeded))), "__auto"))).
		WithPanel(single("Success ratio",
			"Share of the jobs that ended in the dashboard's time range which ended with a VM (cancelled jobs count as not succeeded).",
			units.PercentUnit,
			query(ratio(sum(increase(jobs.where(succeeded), rangeWindow)), sum(increase(jobs, rangeWindow))), "__auto")).
			Decimals(1).
			Thresholds(thresholds(red, step{0.9, orange}, step{0.98, green})).
			ColorScheme(colorByThresholds())).
		WithPanel(single("Jobs in flight", "Jobs inside a pipeline stage on some worker now.", units.Short,
			query(sum(jobsInFlight), "__auto"))).
		WithPanel(single("Queue depth", "Restore tasks waiting in the asynq queue (pending, scheduled and retry).", units.Short,
			query(sum(queueTasks.where(restoreQueue, waiting)), "__auto"))).
		WithPanel(single("Queue latency", "How long the oldest pending restore task has waited for a worker.", units.Seconds,
			query(maxOf(queueLatency.where(restoreQueue)), "__auto")).
			Thresholds(thresholds(green, step{60, orange}, step{300, red})).
			ColorScheme(colorByThresholds())).
		WithPanel(single("Workers alive", "Worker processes with a fresh heartbeat in Redis.", units.Short,
			query(maxOf(workersAlive), "__auto")).
			Thresholds(thresholds(red, step{1, green})).
			ColorScheme(colorByThresholds())).
		WithRow(row("Drills")).
		WithPanel(single("Days since a drill succeeded",
			"Days since the latest drill (restorectl plan drill) that restored every VM ended; an alert fires past 90 days. A deployment that never rehearsed shows days since 1970.",
			units.Short,
			query(daysSince(maxOf(drillLastSuccess)), "__auto")).
			Decimals(0).
			Thresholds(thresholds(green, step{60, orange}, step{90, red})).
			ColorScheme(colorByThresholds())).
		WithPanel(graph("Drill history: achieved RTO",
			"vmrestore_drill_rto_seconds: the RTO of each drill plan's latest run (submission to the last VM verified running), for the whole plan and per tier; each step is a new drill. The run reports: restorectl report list.",
			units.Seconds,
			query(maxBy("plan", drillRTO.where(`tier="all"`)), "{{plan}}"),
			query(maxBy("plan, tier", drillRTO.where(`tier!="all"`)), "{{plan}} tier {{tier}}")).
			Span(18)).
		WithRow(row("Throughput and outcomes")).
		WithPanel(graph("Restores ended by outcome",
			"vmrestore_jobs_total by outcome (succeeded, failed, cancelled), per second; and jobs accepted by the API.",
			units.OpsPerSecond,
			query(sumBy("outcome", rate(jobs)), "{{outcome}}"),
			query(sum(rate(jobsSubmitted)), "submitted")).
			Span(12)).
		WithPanel(graph("Failures by ZStack error code",
			"Jobs that ended without a VM, by the root ZStack error code (SYS.1006 capacity, L3.1000 addresses, VOL_BACKUP.1000 data, ...).",
			units.OpsPerSecond,
			query(sumBy("outcome, code", rate(jobs.where(notSucceeded))), "{{outcome}} {{code}}")).
			Span(12)).
		WithPanel(graph("Success ratio", "Succeeded / ended, over the rate window.", units.PercentUnit,
			query(ratio(sum(rate(jobs.where(succeeded))), sum(rate(jobs))), "success ratio")).
			Max(1).
			Span(12)).
		WithPanel(graph("Job duration (creation to end)",
			"p50 and p95 of vmrestore_job_duration_seconds by outcome; includes the time queued.",
			units.Seconds,
			query(quantile(0.5, jobDuration, "outcome"), "p50 {{outcome}}").withExemplars(),
			query(quantile(0.95, jobDuration, "outcome"), "p95 {{outcome}}").withExemplars()).
			Span(12)).
		WithRow(row("Work in progress and queue")).
		WithPanel(graph("Jobs in flight by stage", "Jobs inside each pipeline stage, summed over the workers.", units.Short,
			query(sumBy("stage", jobsInFlight), "{{stage}}")).
			Span(8)).
		WithPanel(graph("Queue by state", "Tasks of the restore queue by asynq state (web hook deliveries share the queue).", units.Short,
			query(sumBy("state", queueTasks.where(restoreQueue)), "{{state}}")).
			Span(8)).
		WithPanel(graph("Queue latency", "Age of the oldest pending task. It rises when every worker slot is busy.", units.Seconds,
			query(maxBy("queue", queueLatency), "{{queue}}")).
			Span(8)).
		WithPanel(graph("Worker slots",
			"Restore slots of the live workers (sum of VMRESTORE_CONCURRENCY) and how many run a task.",
			units.Short,
			query(maxOf(workerSlots), "slots"),
			query(maxOf(workerSlotsBusy), "busy"),
			query(maxOf(workersAlive), "workers")).
			Span(12)).
		WithPanel(graph("asynq tasks processed and failed",
			"asynq's own counters for the restore queue (a failed task is retried or archived; busy jobs and crashes do not count).",
			units.OpsPerSecond,
			query(sum(rate(queueProcessed.where(restoreQueue))), "processed"),
			query(sum(rate(queueFailed.where(restoreQueue))), "failed")).
			Span(12))
}
