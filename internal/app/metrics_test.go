package app_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/demosite"
)

func scrape(tb testing.TB, url string) string {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	mustf(tb, resp.StatusCode == 200, "GET %s: %d", url, resp.StatusCode)
	return string(b)
}

func TestMetricsCoverStagesOutcomesAndRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	wait := map[string]string{"Prefer": "wait=120"}
	mustf(t, e.restore(demosite.GroupWeb01UUID, webParams("m"), wait).status == 200, "restore")
	mustf(t, e.restore("0123456789abcdef0123456789abcdef", webParams("ghost"), wait).status == 503, "failed restore")
	// A call that breaks the API's rules is a job that failed at once, counted by the api.
	mustf(t, e.restore(demosite.GroupWeb01UUID, map[string]any{"name": "no-offering", "l3NetworkUuids": []string{demosite.L3ProdUUID}}, nil).status == 503, "invalid restore")

	worker := scrape(t, "http://"+e.worker.MetricsAddr+"/metrics")
	for _, want := range []string{
		`vmrestore_stage_duration_seconds_count{stage="clone"} 1`,
		`vmrestore_stage_duration_seconds_count{stage="resolve"} 2`,
		`vmrestore_jobs_total{code="",outcome="succeeded"} 1`,
		`vmrestore_jobs_total{code="SYS.1003",outcome="failed"} 1`,
		`vmrestore_clone_bytes_total{backup_storage="` + demosite.BackupUUID + `"}`,
		`vmrestore_hypervisor_simulated_vms_total{state="Running"} 1`,
		`go_goroutines`, `process_resident_memory_bytes`,
	} {
		mustf(t, strings.Contains(worker, want), "worker metrics lack %q", want)
	}
	api := scrape(t, e.base+"/metrics")
	for _, want := range []string{
		`vmrestore_sync_wait_seconds_count{outcome="finished"} 2`,
		`vmrestore_jobs_submitted_total 2`,
		`vmrestore_jobs_total{code="SYS.1007",outcome="failed"} 1`,
		`url="/zstack/v1/vm-instances/from/vm-backups/:groupUuid"`,
	} {
		mustf(t, strings.Contains(api, want), "api metrics lack %q", want)
	}
	mustf(t, !strings.Contains(api, "0123456789abcdef0123456789abcdef"), "metrics must not carry uuids in labels")
	for _, p := range []string{"/healthz", "/readyz"} {
		mustf(t, strings.Contains(scrape(t, e.base+p), `"status"`), "%s", p)
		mustf(t, strings.Contains(scrape(t, "http://"+e.worker.MetricsAddr+p), `"status"`), "worker %s", p)
	}
}
