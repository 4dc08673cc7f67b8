package app_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/reportpage"
	"github.com/vmrestore/vmrestore/internal/testrig"
)

// drillSpec is the plan tests' plan as a drill onto the demo site's isolated networks.
func drillSpec(name string, groups []planGroup) map[string]any {
	spec := planSpec(name, groups, map[string]any{"mode": "drill"})
	spec["networkMapping"] = []map[string]any{
		{"sourceL3NetworkUuid": srcProdL3, "targetL3NetworkUuid": demosite.L3ProdUUID, "testL3NetworkUuid": demosite.L3DrillUUID},
		{"sourceL3NetworkUuid": srcMgmtL3, "targetL3NetworkUuid": demosite.L3MgmtUUID, "testL3NetworkUuid": demosite.L3DrillMgmtUUID, "ip": "keep"},
	}
	spec["defaults"].(map[string]any)["bootCheck"] = map[string]any{"mode": "running", "timeout": 30}
	return spec
}

// A drill on the demo site: the dry run shows the mode and the test networks and puts every
// NIC on them; a drill onto a production network is refused in the dry run and at apply;
// the drill runs, and its report (JSON, CSV, HTML) carries the run's figures: each VM's RTO
// is its job's end less the plan's submission, a tier's the largest of its VMs', the plan's
// the largest of all, and the stages add up to the job's run. The report is listed.
func TestDrillReport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	groups := writePlanGroups(t, dir, 2, 2, 1)
	e := newEnv(t, envOptions{site: withPlanStorage(dir)})
	waitIndexed(t, e, len(groups))

	spec := drillSpec("quarterly-drill", groups)
	dry := e.do("POST", "/api/v1/plans?dryRun=true", e.session, spec, nil)
	mustf(t, dry.status == 200, "dry run: %d %s", dry.status, dry.body)
	var d apiv1.DryRunReport
	mustf(t, json.Unmarshal(dry.body, &d) == nil && d.Mode == "drill" && len(d.TestNetworks) == 2 && d.Fits == len(groups),
		"dry run: mode %q, test networks %+v, fits %d: %s", d.Mode, d.TestNetworks, d.Fits, dry.body)
	for _, it := range d.Items {
		for _, n := range it.NICs {
			mustf(t, n.L3NetworkUUID == demosite.L3DrillUUID || n.L3NetworkUUID == demosite.L3DrillMgmtUUID, "item %s: NIC on %s, not a test network", it.Name, n.L3NetworkUUID)
		}
	}

	bad := drillSpec("bad-drill", groups)
	bad["networkMapping"].([]map[string]any)[0]["testL3NetworkUuid"] = demosite.L3ProdUUID
	for _, path := range []string{"/api/v1/plans?dryRun=true", "/api/v1/plans"} {
		r := e.do("POST", path, e.session, bad, nil)
		mustf(t, r.status == 400 && strings.Contains(string(r.body), "l3-prod ("+demosite.L3ProdUUID+"), which is not an isolated test network: a drill on it would take production addresses"),
			"%s with a production test network: %d %s", path, r.status, r.body)
	}

	r := e.do("POST", "/api/v1/plans", e.session, spec, nil)
	mustf(t, r.status == 201, "create drill: %d %s", r.status, r.body)
	uuid := str(r.json(), "uuid")
	end := e.waitPlanEnd(uuid, 90*time.Second)
	mustf(t, end.State == "succeeded", "drill ended %s %v", end.State, end.Counts)

	rep := e.runReport(uuid)
	mustf(t, rep.Mode == "drill" && rep.StartedBy == "admin" && rep.State == "succeeded" && rep.ItemCount == len(groups) && len(rep.TestNetworks) == 2,
		"report head: mode %q, by %q, state %q, items %d, test networks %d", rep.Mode, rep.StartedBy, rep.State, rep.ItemCount, len(rep.TestNetworks))
	checkRTOs(t, e, rep)
	e.checkReportCSV(uuid, rep)

	html := e.do("GET", "/api/v1/plans/"+uuid+"/report?format=html", e.session, nil, nil)
	mustf(t, html.status == 200 && strings.HasPrefix(html.header.Get("Content-Type"), "text/html"), "html: %d %s", html.status, html.header)
	page := string(html.body)
	for _, want := range []string{"<svg id=\"timeline\"", "quarterly-drill", "drill", "Tier 1", "Tier 3", "l3-drill", "db-000-dr", "passed: running", "check: running"} {
		mustf(t, strings.Contains(page, want), "the page lacks %q", want)
	}
	rest := strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, "")
	mustf(t, !strings.Contains(rest, "http:") && !strings.Contains(rest, "https:") && !strings.Contains(rest, "src="), "the page names a URL: it must load nothing")

	list := e.do("GET", "/api/v1/reports", e.session, nil, nil)
	var l apiv1.RunReportList
	mustf(t, list.status == 200 && json.Unmarshal(list.body, &l) == nil && len(l.Reports) == 1 && l.Reports[0].PlanUUID == uuid &&
		l.Reports[0].RTOSeconds != nil && *l.Reports[0].RTOSeconds == *rep.RTOSeconds, "report list: %d %s", list.status, list.body)

	// The drill's cleanup: the report keeps what it freed, after the VMs are gone.
	// The stored report gets the cleanup's outcome as the cleanup ends, before anyone reads it.
	e.cleanUpPlan(uuid, time.Minute)
	var stored apiv1.RunReport
	testrig.Eventually(t, 10*time.Second, func() bool {
		b, err := e.store.GetReport(context.Background(), uuid)
		return err == nil && json.Unmarshal(b, &stored) == nil && stored.Cleanup != nil && stored.Cleanup.State != apiv1.CleanupRunning
	}, "the stored report did not get the ended cleanup: %+v", stored.Cleanup)
	rep = e.runReport(uuid)
	mustf(t, rep.Cleanup != nil && rep.Cleanup.UUID == stored.Cleanup.UUID && rep.Cleanup.State == stored.Cleanup.State, "the report read %+v, the stored one %+v", rep.Cleanup, stored.Cleanup)
	f := rep.Cleanup.Freed
	mustf(t, rep.Cleanup.State == apiv1.CleanupSucceeded && f.VMs == len(groups) && f.IPs == 7 && f.CPUNum == int64(len(groups)) && f.Files == len(groups),
		"cleanup %s freed %+v", rep.Cleanup.State, f)
	checkRTOs(t, e, rep) // the figures are the stored ones
	lines, _ := csv.NewReader(bytes.NewReader(e.do("GET", "/api/v1/plans/"+uuid+"/report?format=csv", e.session, nil, nil).body)).ReadAll()
	mustf(t, len(lines) == len(groups)+1 && lines[1][len(lines[1])-7] == "expunged" && lines[1][len(lines[1])-3] == "2" && lines[1][len(lines[1])-1] == "1", "csv after cleanup (db-000 freed 2 IPs and 1 file): %v", lines[1])
	html = e.do("GET", "/api/v1/plans/"+uuid+"/report?format=html", e.session, nil, nil)
	mustf(t, strings.Contains(string(html.body), "VMs destroyed and expunged"), "the page shows no cleanup")
	list = e.do("GET", "/api/v1/reports", e.session, nil, nil)
	l = apiv1.RunReportList{}
	mustf(t, json.Unmarshal(list.body, &l) == nil && l.Reports[0].Freed != nil && l.Reports[0].Freed.VMs == len(groups), "report list after cleanup: %s", list.body)

	// Another account sees neither the report nor its listing.
	other := e.newTenant("auditor-elsewhere")
	hidden := e.do("GET", "/api/v1/plans/"+uuid+"/report", other.session, nil, nil)
	mustf(t, hidden.status == 404, "another account's report: %d %s", hidden.status, hidden.body)
	list = e.do("GET", "/api/v1/reports", other.session, nil, nil)
	mustf(t, list.status == 200 && strings.Contains(string(list.body), `"reports":[]`), "another account's list: %s", list.body)

	bogus := e.do("GET", "/api/v1/plans/"+uuid+"/report?format=pdf", e.session, nil, nil)
	mustf(t, bogus.status == 400 && strings.Contains(string(bogus.body), "must be json, html or csv"), "format=pdf: %d %s", bogus.status, bogus.body)
}

func (e *env) runReport(uuid string) apiv1.RunReport {
	e.t.Helper()
	r := e.do("GET", "/api/v1/plans/"+uuid+"/report", e.session, nil, nil)
	mustf(e.t, r.status == 200, "report: %d %s", r.status, r.body)
	var rep apiv1.RunReport
	if err := json.Unmarshal(r.body, &rep); err != nil {
		e.t.Fatal(err)
	}
	return rep
}

// checkRTOs holds the report's RTOs and stages to the jobs' own timings.
func checkRTOs(t *testing.T, e *env, rep apiv1.RunReport) {
	t.Helper()
	near := func(a, b float64) bool { return math.Abs(a-b) < 0.002 }
	tierMax := map[int]float64{}
	overall := 0.0
	for _, vm := range rep.VMs {
		j := e.do("GET", "/api/v1/jobs/"+vm.JobUUID, e.session, nil, nil)
		var job apiv1.Job
		mustf(t, j.status == 200 && json.Unmarshal(j.body, &job) == nil && job.FinishedAt != nil && job.StartedAt != nil, "job of %s: %d %s", vm.Name, j.status, j.body)
		want := job.FinishedAt.Sub(rep.SubmittedAt).Seconds()
		mustf(t, vm.RTOSeconds != nil && near(*vm.RTOSeconds, want), "%s: RTO %v, its job ended %.3f s after submission", vm.Name, vm.RTOSeconds, want)
		mustf(t, vm.State == "succeeded" && vm.DataBytes > 0 && vm.BootCheck == "running" && strings.HasPrefix(vm.BootCheckResult, "passed: "),
			"%s: state %s, data %d, boot check %q %q", vm.Name, vm.State, vm.DataBytes, vm.BootCheck, vm.BootCheckResult)
		var stages []string
		sum := 0.0
		for _, s := range vm.Stages {
			stages = append(stages, s.Stage)
			sum += s.Seconds
		}
		mustf(t, strings.Join(stages, ",") == "resolve,place,network,clone,instantiate,commit", "%s: stages %v", vm.Name, stages)
		mustf(t, near(sum, job.FinishedAt.Sub(*job.StartedAt).Seconds()), "%s: stages add up to %.3f s, the job ran %.3f s", vm.Name, sum, job.FinishedAt.Sub(*job.StartedAt).Seconds())
		tierMax[vm.Tier] = max(tierMax[vm.Tier], want)
		overall = max(overall, want)
	}
	mustf(t, len(rep.Tiers) == 3, "tiers %+v", rep.Tiers)
	for _, tr := range rep.Tiers {
		mustf(t, tr.Complete && tr.RTOSeconds != nil && near(*tr.RTOSeconds, tierMax[tr.Tier]), "tier %d: RTO %v, its last VM %.3f", tr.Tier, tr.RTOSeconds, tierMax[tr.Tier])
	}
	mustf(t, rep.RTOSeconds != nil && near(*rep.RTOSeconds, overall), "plan RTO %v, last VM %.3f", rep.RTOSeconds, overall)
	mustf(t, *rep.Tiers[0].RTOSeconds <= *rep.Tiers[1].RTOSeconds && *rep.Tiers[1].RTOSeconds <= *rep.Tiers[2].RTOSeconds, "strict tiers end in order")
}

// checkReportCSV reads the CSV and finds the JSON's figures on each VM's line.
func (e *env) checkReportCSV(uuid string, rep apiv1.RunReport) {
	e.t.Helper()
	r := e.do("GET", "/api/v1/plans/"+uuid+"/report?format=csv", e.session, nil, nil)
	mustf(e.t, r.status == 200 && strings.HasPrefix(r.header.Get("Content-Type"), "text/csv"), "csv: %d %s", r.status, r.body)
	lines, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	mustf(e.t, err == nil && len(lines) == len(rep.VMs)+1, "csv: %v, %d lines", err, len(lines))
	col := map[string]int{}
	for i, h := range lines[0] {
		col[h] = i
	}
	mustf(e.t, strings.Join(lines[0], ",") == strings.Join(reportpage.CSVHeader(), ","), "header %v", lines[0])
	for i, vm := range rep.VMs {
		l := lines[i+1]
		rto, _ := strconv.ParseFloat(l[col["vm_rto_seconds"]], 64)
		data, _ := strconv.ParseInt(l[col["data_bytes"]], 10, 64)
		mustf(e.t, l[col["vm_name"]] == vm.Name && l[col["mode"]] == "drill" && l[col["started_by"]] == "admin" && math.Abs(rto-*vm.RTOSeconds) < 0.001 &&
			data == vm.DataBytes && l[col["clone_seconds"]] != "" && l[col["boot_check"]] == "running", "csv line %d: %v", i+1, l)
	}
}
