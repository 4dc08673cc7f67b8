package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/units"
)

// api answers "is the API serving?": rate, errors and latency per route, the synchronous
// CreateVmFromVmBackup waits, and the health of every process.
func api() *dashboard.DashboardBuilder {
	return newDashboard("vmrestore-api", "vmrestore / API",
		"HTTP rate, errors and latency per route pattern, synchronous CreateVmFromVmBackup waits, Redis reachability and process health.").
		WithRow(row("Requests")).
		WithPanel(graph("Requests/s by route",
			"vmrestore_http_requests_total by route pattern (uuids never appear: the label is the route).",
			units.RequestsPerSecond,
			query(sumBy("method, url", rate(httpRequests)), "{{method}} {{url}}")).
			Span(12)).
		WithPanel(graph("Responses by status",
			"By HTTP status. ZStack answers a failed API with 503 and an ErrorCode, so 503 includes restores that failed.",
			units.RequestsPerSecond,
			query(sumBy("code", rate(httpRequests)), "{{code}}")).
			Span(12)).
		WithPanel(graph("Error ratio by route", "Share of 4xx and 5xx answers per route.", units.PercentUnit,
			query(ratio(sumBy("url", rate(httpRequests.where(httpErrors))), sumBy("url", rate(httpRequests))), "{{url}}")).
			Max(1).
			Span(12)).
		WithPanel(graph("Latency p95 by route",
			"0.95 quantile of vmrestore_http_request_duration_seconds per route. CreateVmFromVmBackup includes its synchronous wait.",
			units.Seconds,
			query(quantile(0.95, httpDuration, "url"), "{{url}}")).
			Span(12)).
		WithRow(row("Synchronous waits")).
		WithPanel(graph("Sync waits by outcome",
			"CreateVmFromVmBackup calls that waited for their job: finished (answered 200/503 with the result) or degraded to 202 at VMRESTORE_WAIT_LIMIT.",
			units.RequestsPerSecond,
			query(sumBy("outcome", rate(syncWait.count())), "{{outcome}}")).
			Span(8)).
		WithPanel(graph("Sync wait duration", "p50 and p95 of the wait, by outcome.", units.Seconds,
			query(quantile(0.5, syncWait, "outcome"), "p50 {{outcome}}"),
			query(quantile(0.95, syncWait, "outcome"), "p95 {{outcome}}")).
			Span(8)).
		WithPanel(graph("Degraded to 202",
			"Share of synchronous waits that reached the limit and answered 202 (the client then polls).",
			units.PercentUnit,
			query(ratio(orZero(sum(rate(syncWait.count().where(degraded)))), sum(rate(syncWait.count()))), "degraded")).
			Max(1).
			Span(8)).
		WithRow(row("Processes")).
		WithPanel(graph("Scrape targets up", "Processes Prometheus scrapes, by job.", units.Short,
			query(sumBy("job", scrapeUp.where(ourProcesses)), "{{job}}")).
			Span(6)).
		WithPanel(graph("Redis reachable", "vmrestore_redis_up per process (1: PING answered at scrape time).", units.Short,
			query(minBy("job, instance", redisUp), "{{job}} {{instance}}")).
			Max(1).
			Span(6)).
		WithPanel(graph("Memory (RSS)", "Resident memory of each process.", units.BytesIEC,
			query(residentMem.where(ourProcesses), "{{job}} {{instance}}")).
			Span(6)).
		WithPanel(graph("Goroutines", "Goroutines of each process.", units.Short,
			query(goroutines.where(ourProcesses), "{{job}} {{instance}}")).
			Span(6)).
		WithPanel(graph("Deployment metrics exporter",
			"Which process holds the Redis lease and exports the queue, capacity and worker metrics (exactly one should).",
			units.Short,
			query(maxBy("job, instance", exporter), "{{job}} {{instance}}")).
			Max(1).
			Span(12)).
		WithPanel(graph("CPU", "CPU seconds per second of each process.", units.PercentUnit,
			query(rate(cpuSeconds.where(ourProcesses)), "{{job}} {{instance}}")).
			Span(12))
}
