package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/units"
)

// storage answers "is data moving, and is there room?": bytes copied per backup storage,
// clone slots, and the capacity left per cluster and primary storage.
func storage() *dashboard.DashboardBuilder {
	return newDashboard("vmrestore-storage", "vmrestore / Storage and capacity",
		"Bytes copied per backup storage, clone concurrency against each storage's slots, and the capacity left per cluster and primary storage.").
		WithRow(row("Volume copies")).
		WithPanel(graph("Clone throughput by backup storage",
			"Volume data bytes copied per second from each backup storage (holes in sparse images are not copied and not counted).",
			units.BytesPerSecondSI,
			query(sumBy("backup_storage", rate(cloneBytes)), "{{backup_storage}}")).
			Span(12)).
		WithPanel(graph("Clone concurrency",
			"Volume copies running from each backup storage, against the storage's clone slots (maxConcurrentClones, shared by every worker).",
			units.Short,
			query(sumBy("backup_storage", clonesInFlight), "running {{backup_storage}}"),
			query(maxBy("backup_storage", cloneSlots), "slots {{backup_storage}}")).
			Span(12)).
		WithPanel(graph("Clone stage duration", "p50 and p95 of the clone stage (every volume of a VM, slot waits included).", units.Seconds,
			query(quantile(0.5, stageDuration, "", cloneStage), "p50").withExemplars(),
			query(quantile(0.95, stageDuration, "", cloneStage), "p95").withExemplars()).
			Span(12)).
		WithPanel(graph("Bytes copied", "Volume data copied from each backup storage over the rate window.", units.BytesIEC,
			query(sumBy("backup_storage", increase(cloneBytes, rateWindow)), "{{backup_storage}}")).
			Span(12)).
		WithPanel(graph("Per-copy throughput",
			"p50 and p95 of the data bytes per second of each finished volume copy (slot waits excluded), by backup storage.",
			units.BytesPerSecondSI,
			query(quantile(0.5, cloneThroughput, "backup_storage"), "p50 {{backup_storage}}"),
			query(quantile(0.95, cloneThroughput, "backup_storage"), "p95 {{backup_storage}}")).
			Span(12)).
		WithPanel(graph("Volume copies by outcome",
			"Volume copies that ended per second, by backup storage and outcome (ok, failed, cancelled: a lost slot or a stopping worker).",
			units.OpsPerSecond,
			query(sumBy("backup_storage, outcome", rate(cloneDuration.count())), "{{outcome}} {{backup_storage}}")).
			Span(12)).
		WithRow(row("Capacity left")).
		WithPanel(shareLeft("Cluster vCPUs free",
			"Share of each cluster's allocatable vCPUs still free for restores (disabled or disconnected hosts count as full).",
			query(ratio(maxBy("name, cluster", clusterCPUFree), maxBy("name, cluster", clusterCPU)), "{{name}}"))).
		WithPanel(shareLeft("Cluster memory free", "Share of each cluster's allocatable memory still free for restores.",
			query(ratio(maxBy("name, cluster", clusterMemoryFree), maxBy("name, cluster", clusterMemory)), "{{name}}"))).
		WithPanel(shareLeft("Primary storage free", "Share of each primary storage's capacity that placements can still reserve.",
			query(ratio(maxBy("name, primary_storage", primaryFree), maxBy("name, primary_storage", primaryStorage)), "{{name}}"))).
		WithPanel(graph("Cluster memory free", "Memory still free for restores, per cluster.", units.BytesIEC,
			query(maxBy("name", clusterMemoryFree), "{{name}}")).
			Span(8)).
		WithPanel(graph("Cluster vCPUs free", "vCPUs still free for restores, per cluster.", units.Short,
			query(maxBy("name", clusterCPUFree), "{{name}}")).
			Span(8)).
		WithPanel(graph("Primary storage free", "Bytes placements can still reserve, per primary storage.", units.BytesIEC,
			query(maxBy("name", primaryFree), "{{name}}")).
			Span(8))
}
