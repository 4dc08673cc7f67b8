package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/demosite"
)

// drillPlan is cleanPlan with the demo site's isolated test networks.
var drillPlan = fmt.Sprintf(`name: quarterly
groups: [%s, %s, %s]
defaults: {keepSourceSize: true, nameTemplate: "{{.SourceName}}-drill"}
networkMapping:
  - {sourceL3NetworkUuid: %s, targetL3NetworkUuid: %s, testL3NetworkUuid: %s}
  - {sourceL3NetworkUuid: %s, targetL3NetworkUuid: %s, testL3NetworkUuid: %s}
tiers:
  - {tier: 1, sourceVmName: "db*"}
`, demosite.GroupWeb01UUID, demosite.GroupApp01UUID, demosite.GroupDB01UUID,
	demosite.L3ProdUUID, demosite.L3ProdUUID, demosite.L3DrillUUID, demosite.L3MgmtUUID, demosite.L3MgmtUUID, demosite.L3DrillMgmtUUID)

// restorectl plan drill runs the whole rehearsal (dry run, restore with boot checks, hold,
// cleanup, report) twice on one site, once held until a key; the reports are listed, and
// restorectl plan report saves them as CSV and JSON. A drill onto a production network is
// refused before anything is restored.
func TestRestorectlDrill(t *testing.T) {
	h := newHarness(t)
	h.must(0, adminPassword+"\n", "login", "--password-stdin")
	plan := h.writeFile("drill.yaml", drillPlan)
	dir := t.TempDir()

	page := filepath.Join(dir, "first.html")
	r := h.must(0, "", "plan", "drill", "-f", plan, "--hold", "1s", "--report", page, "--plain")
	mustContain(t, r, "stderr", `plan "quarterly" runs as a drill`, "drill 1/5: dry run", "Mode: drill", "test network l3-drill ("+demosite.L3DrillUUID+")",
		"drill 2/5", "3/3 VM(s) succeeded", "drill 3/5: hold: the VMs stay up 1s more", "drill 4/5: cleanup", "cleanup succeeded: freed 3 VMs",
		"drill 5/5: report", "written to "+page)
	mustContain(t, r, "stdout", "Drill quarterly (", "succeeded: 3/3 VM(s) restored, RTO ", "TIER", "VMS")
	b, err := os.ReadFile(page)
	if err != nil || !strings.Contains(string(b), "<svg id=\"timeline\"") || !strings.Contains(string(b), "VMs destroyed and expunged") {
		t.Fatalf("the saved page: %v, %d bytes", err, len(b))
	}

	// Again on the same site, held until Enter; its VMs' names are free again after the cleanup.
	r = h.must(0, "\n", "plan", "drill", "-f", plan, "--hold-until-key", "--report-format", "json", "--report", filepath.Join(dir, "second.json"), "--plain")
	mustContain(t, r, "stderr", "press Enter to clean up", "cleanup succeeded: freed 3 VMs")
	mustContain(t, r, "stdout", "succeeded: 3/3 VM(s) restored")
	if strings.Contains(r.stderr, "warning") {
		t.Errorf("the second drill warned (names of the first drill's VMs left?): %s", r.stderr)
	}
	keepScreenshotReport(t, filepath.Join(dir, "second.json"))

	r = h.must(0, "", "report", "list")
	mustContain(t, r, "stdout", "PLAN", "quarterly", "drill", "succeeded", "admin", "3/3", "3 VMs")
	var list apiv1.RunReportList
	if err := json.Unmarshal([]byte(h.must(0, "", "report", "list", "-o", "json").stdout), &list); err != nil || len(list.Reports) != 2 {
		t.Fatalf("report list -o json: %v, %+v", err, list)
	}
	uuid := list.Reports[0].PlanUUID
	csvFile := filepath.Join(dir, "r.csv")
	h.must(0, "", "plan", "report", uuid, "--format", "csv", "--save", csvFile)
	f, _ := os.Open(csvFile)
	lines, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(lines) != 4 || lines[0][0] != "plan_uuid" || lines[1][2] != "drill" {
		t.Fatalf("csv: %v %v", err, lines)
	}
	var rep apiv1.RunReport
	if err := json.Unmarshal([]byte(h.must(0, "", "plan", "report", uuid).stdout), &rep); err != nil || rep.PlanUUID != uuid || rep.Cleanup == nil || rep.RTOSeconds == nil {
		t.Fatalf("plan report: %v %+v", err, rep)
	}
	r = h.must(2, "", "plan", "report", uuid, "--format", "pdf")
	mustContain(t, r, "stderr", `--format "pdf" must be json, html or csv`)

	// A drill onto a production network stops at the dry run.
	bad := h.writeFile("bad.yaml", strings.Replace(drillPlan, demosite.L3DrillUUID, demosite.L3ProdUUID, 1))
	r = h.must(1, "", "plan", "drill", "-f", bad)
	mustContain(t, r, "stderr", "not an isolated test network: a drill on it would take production addresses")
	if n := len(h.planList()); n != 2 {
		t.Fatalf("%d plans after the refused drill; want the 2 drills", n)
	}
}

// screenshotReport is the report the documentation's screenshot shows (internal/reportpage
// renders it in Chromium): a real drill on the demo site, this test's second, as
// restorectl saved it. VMRESTORE_UPDATE_SCREENSHOT=1 rewrites it.
const screenshotReport = "../../docs/img/drill-report.json"

func keepScreenshotReport(t *testing.T, saved string) {
	t.Helper()
	if os.Getenv("VMRESTORE_UPDATE_SCREENSHOT") != "1" {
		return
	}
	b, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(screenshotReport, append(indented.Bytes(), '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) planList() []apiv1.PlanReport {
	h.t.Helper()
	var plans []apiv1.PlanReport
	if err := json.Unmarshal([]byte(h.must(0, "", "plan", "list", "-o", "json").stdout), &plans); err != nil {
		h.t.Fatal(err)
	}
	return plans
}
