package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/units"
)

// stages answers "where does the time go?": each pipeline stage's latency, runs, work in
// flight and stuck stages, and why placements are refused.
func stages() *dashboard.DashboardBuilder {
	d := newDashboard("vmrestore-stages", "vmrestore / Pipeline stages",
		"Latency of each restore stage (resolve, place, network, clone, instantiate, commit), stages in flight, stuck stages and placement refusals. Exemplars carry the job uuid.")
	for _, q := range []struct {
		name string
		phi  float64
	}{{"p50", 0.5}, {"p95", 0.95}, {"p99", 0.99}} {
		d.WithPanel(graph("Stage duration "+q.name,
			fmt.Sprintf("%g quantile of vmrestore_stage_duration_seconds by stage. Exemplars (dots) name a job uuid: search it in the worker logs (\"job\").", q.phi),
			units.Seconds,
			query(quantile(q.phi, stageDuration, "stage"), "{{stage}}").withExemplars()).
			Span(8))
	}
	return d.
		WithPanel(graph("Mean stage duration", "Time spent per stage run (sum / count).", units.Seconds,
			query(mean(stageDuration, "stage"), "{{stage}}")).
			Span(12)).
		WithPanel(graph("Stage runs/s", "Stages run per second. A re-run after a crash or a busy clone slot runs a stage again.", units.OpsPerSecond,
			query(sumBy("stage", rate(stageDuration.count())), "{{stage}}")).
			Span(12)).
		WithPanel(graph("In flight by stage", "Jobs inside each stage now, summed over the workers.", units.Short,
			query(sumBy("stage", jobsInFlight), "{{stage}}")).
			Span(12)).
		WithPanel(graph("Oldest running stage",
			"Age of the oldest stage still running, by stage, over every worker. VmrestoreStageStuck fires past 10 minutes outside clone.",
			units.Seconds,
			query(maxBy("stage", stageOldest), "{{stage}}")).
			Span(12)).
		WithPanel(graph("Placement refusals by filter",
			"Placements refused, by the allocator filter that emptied the candidate list (capacity, state, tags, ...).",
			units.OpsPerSecond,
			query(sumBy("filter", rate(placementRefuse)), "{{filter}}")).
			Span(12)).
		WithPanel(graph("VMs handed to the hypervisor", "VMs the (simulated) hypervisor recorded, by resulting state.", units.OpsPerSecond,
			query(sumBy("state", rate(hypervisorVMs)), "{{state}}")).
			Span(12))
}
