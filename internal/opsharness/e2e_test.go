package opsharness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/testrig"
)

// Alerts that must fire on the harness's site once its restores ran: failed restores (a
// third of them), and the capacity of cluster-b and ps-local, which the harness disables
// (disabled capacity counts as none left).
var firingHealthy = map[string]bool{
	"VmrestoreJobFailureRatioHigh":          true,
	"VmrestoreClusterCPUNearlyExhausted":    true,
	"VmrestoreClusterMemoryNearlyExhausted": true,
	"VmrestorePrimaryStorageNearlyFull":     true,
}

// Alerts that must fire once the harness stopped the workers, then killed Redis.
var firingOutage = map[string]bool{
	"VmrestoreNoWorkerAlive":            true,
	"VmrestoreTargetDown":               true,
	"VmrestoreRedisUnreachable":         true,
	"VmrestoreDeploymentMetricsMissing": true,
}

// Alerts the harness never makes fire: they need a stage stuck for 10 minutes, copies making
// no progress for 10 minutes, tasks queued for 5 minutes, a backup storage unreadable for
// 5 minutes, a backup gone bad under scheduled verification, or a LocalStorage host without a
// worker for 5 minutes (the harness's workers run the simulator, where no job is host-local),
// or 90 days without a successful drill (the harness rehearses one).
// Their expressions must still parse, name only exported metrics and return nothing while all
// is well; their firing is proven by promtool test rules (deploy/prometheus/tests).
var neverFiring = map[string]bool{
	"VmrestoreStageStuck":               true,
	"VmrestoreCloneStalled":             true,
	"VmrestoreQueueLatencyHigh":         true,
	"VmrestoreBackupStorageUnreadable":  true,
	"VmrestoreBackupFailedVerification": true,
	"VmrestoreHostWithoutWorker":        true,
	"VmrestoreNoDrillSucceeded":         true,
	"VmrestoreInstantHydrationFailed":   true,
}

// syncBuffer collects log lines from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// stack is a running vmrestore: Redis, an api and two workers in this process.
type stack struct {
	t       testing.TB
	redis   *redistest.Server
	api     *app.API
	workers []*app.Worker
	base    string
	session string
	logs    *syncBuffer
}

func startStack(t testing.TB) *stack {
	t.Helper()
	s := &stack{t: t, logs: &syncBuffer{}}
	rig := testrig.New(t, testrig.Options{
		Site: func(site *catalog.Site) {
			for i := range site.Hosts {
				if site.Hosts[i].ClusterUUID == demosite.ClusterBUUID {
					site.Hosts[i].State = catalog.StateDisabled
				}
			}
			for i := range site.PrimaryStorages {
				if site.PrimaryStorages[i].UUID == demosite.LocalUUID {
					site.PrimaryStorages[i].State = catalog.StateDisabled
				}
			}
		},
		Env:     map[string]string{"VMRESTORE_SHUTDOWN_TIMEOUT": "2s"},
		Log:     app.NewLogger(app.Config{LogFormat: "json", LogLevel: "debug"}, s.logs),
		Workers: 2,
	})
	s.redis, s.api, s.workers, s.base, s.session = rig.Redis, rig.API, rig.Workers, rig.Base, rig.Session
	return s
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with the session (when there is one and headers do not say otherwise).
func (s *stack) do(method, path string, body any, headers map[string]string) answer {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if s.session != "" {
		req.Header.Set("Authorization", "OAuth "+s.session)
	}
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// drill rehearses web01 on the isolated test network until the drill ends, so that the drill
// metrics (and the drill panels) have series and the no-drill alert stays quiet.
func (s *stack) drill() {
	s.t.Helper()
	spec := map[string]any{"name": "opsharness-drill", "mode": "drill", "groups": []string{demosite.GroupWeb01UUID},
		"defaults": map[string]any{"instanceOfferingUuid": demosite.OfferingSmall, "nameTemplate": "{{.SourceName}}-drill"},
		"networkMapping": []map[string]any{{"sourceL3NetworkUuid": demosite.L3ProdUUID, "targetL3NetworkUuid": demosite.L3ProdUUID,
			"testL3NetworkUuid": demosite.L3DrillUUID}}}
	a := s.do("POST", "/api/v1/plans", spec, nil)
	var plan struct{ UUID, State string }
	if a.status != 201 || json.Unmarshal(a.body, &plan) != nil {
		s.t.Fatalf("drill: %d %s", a.status, a.body)
	}
	succeeded := testrig.Within(30*time.Second, func() bool {
		json.Unmarshal(s.do("GET", "/api/v1/plans/"+plan.UUID+"?items=none", nil, nil).body, &plan)
		return plan.State == "succeeded"
	})
	if !succeeded {
		s.t.Fatalf("the drill did not succeed: %s", plan.State)
	}
}

// restore posts CreateVmFromVmBackup with a chosen job uuid and returns the final answer
// (polling when the call answered 202).
func (s *stack) restore(group, jobUUID string, params map[string]any, headers map[string]string) answer {
	s.t.Helper()
	h := map[string]string{"X-Job-UUID": jobUUID}
	for k, v := range headers {
		h[k] = v
	}
	a := s.do("POST", "/zstack/v1/vm-instances/from/vm-backups/"+group, map[string]any{"params": params}, h)
	if a.status == 202 {
		testrig.Within(30*time.Second, func() bool {
			a = s.do("GET", "/zstack/v1/api-jobs/"+jobUUID, nil, nil)
			return a.status != 202
		})
	}
	return a
}

func jobUUID(i int) string { return fmt.Sprintf("0b5e0000000040008000%012x", i) }

// writeScrapeConfig writes the harness's Prometheus configuration: the repository's rules,
// the api and the workers under the job names the rules and dashboards expect, every second.
func writeScrapeConfig(t testing.TB, root string, s *stack) string {
	t.Helper()
	var workers []string
	for _, w := range s.workers {
		workers = append(workers, w.MetricsAddr)
	}
	cfg := map[string]any{
		"global":     map[string]any{"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
		"rule_files": []string{filepath.Join(root, "deploy/prometheus/rules/*.yml")},
		"scrape_configs": []any{
			map[string]any{"job_name": "vmrestore-api", "static_configs": []any{map[string]any{"targets": []string{s.api.Addr}}}},
			map[string]any{"job_name": "vmrestore-worker", "static_configs": []any{map[string]any{"targets": workers}}},
		},
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// eventually retries check (as testrig.Within does) until it passes or within ends, then
// fails with its last complaint.
func eventually(t testing.TB, within time.Duration, what string, check func() error) {
	t.Helper()
	var err error
	if !testrig.Within(within, func() bool { err = check(); return err == nil }) {
		t.Fatalf("%s: still not true after %s: %v", what, within, err)
	}
}

// TestOperationsEndToEnd runs restores through a real api and two workers, has a real
// Prometheus scrape them with the repository's alert rules loaded, and runs every dashboard
// and rule expression against it. It then stops the workers and kills Redis, and checks that
// the outage alerts fire.
func TestOperationsEndToEnd(t *testing.T) {
	promBin, promtool := NeedPrometheus(t)
	root := RepoRoot(t)
	start := time.Now()
	ctx := context.Background()

	dash, err := DashboardExprs(filepath.Join(root, "dashboards"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := RuleExprs(filepath.Join(root, "deploy/prometheus/rules/*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		n := 0
		for _, set := range []map[string]bool{firingHealthy, firingOutage, neverFiring} {
			if set[r.Alert] {
				n++
			}
		}
		if n != 1 {
			t.Errorf("alert %s must be listed in exactly one of firingHealthy, firingOutage and neverFiring (is in %d)", r.Alert, n)
		}
	}

	s := startStack(t)
	cfgFile := writeScrapeConfig(t, root, s)
	Promtool(t, promtool, root, "check", "config", cfgFile)
	prom := StartPrometheus(t, promBin, cfgFile)
	eventually(t, 20*time.Second, "every target scraped", func() error {
		ts, err := prom.Targets(ctx)
		if err != nil {
			return err
		}
		if len(ts) != 3 {
			return fmt.Errorf("%d targets", len(ts))
		}
		for _, tg := range ts {
			if tg.Health != "up" {
				return fmt.Errorf("%s %s is %s: %s", tg.Job, tg.Instance, tg.Health, tg.LastError)
			}
		}
		return nil
	})

	// Restores: successes, failures of two kinds (an unknown group, a placement refused for
	// lack of CPU), an async restore, and a request refused before any job (no session).
	web := func(name string) map[string]any {
		return map[string]any{"name": name, "instanceOfferingUuid": demosite.OfferingSmall, "l3NetworkUuids": []string{demosite.L3ProdUUID}}
	}
	ghost := "0123456789abcdef0123456789abcdef"
	steps := []struct {
		group   string
		params  map[string]any
		headers map[string]string
		want    int
		body    string // in the answer
	}{
		// Some calls ask for the synchronous wait, so that its metrics have series.
		{demosite.GroupWeb01UUID, web("web01-dr"), map[string]string{"X-Request-Id": "opsharness-request-1", "Prefer": "wait=60"}, 200, `"web01-dr"`},
		{ghost, web("ghost-1"), nil, 503, "SYS.1003"},
		{demosite.GroupApp01UUID, web("app01-dr"), map[string]string{"Prefer": "respond-async"}, 200, `"app01-dr"`},
		{demosite.GroupWeb01UUID, map[string]any{"name": "huge", "cpuNum": 1000, "memorySize": 1 << 30,
			"l3NetworkUuids": []string{demosite.L3ProdUUID}}, map[string]string{"Prefer": "wait=60"}, 503, "HOST_ALLOCATION"},
		{demosite.GroupDB01UUID, map[string]any{"name": "db01-dr", "instanceOfferingUuid": demosite.OfferingLarge,
			"l3NetworkUuids": []string{demosite.L3ProdUUID, demosite.L3MgmtUUID}, "defaultL3NetworkUuid": demosite.L3ProdUUID}, nil, 200, `"db01-dr"`},
		{ghost, web("ghost-2"), nil, 503, "SYS.1003"},
	}
	var jobs []string
	for i, st := range steps {
		id := jobUUID(i)
		jobs = append(jobs, id)
		if a := s.restore(st.group, id, st.params, st.headers); a.status != st.want || !bytes.Contains(a.body, []byte(st.body)) {
			t.Fatalf("restore %d (%s): want %d with %s, got %d: %s", i, st.params["name"], st.want, st.body, a.status, a.body)
		}
	}
	s.drill()
	if a := s.do("GET", "/zstack/v1/vm-instances", nil, map[string]string{"Authorization": ""}); a.status != 400 {
		t.Fatalf("request without a session: want 400, got %d", a.status)
	}
	for _, base := range []string{s.base, "http://" + s.workers[0].MetricsAddr} {
		for _, p := range []string{"/healthz", "/readyz"} {
			resp, err := http.Get(base + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s%s: %d", base, p, resp.StatusCode)
			}
		}
	}
	eventually(t, 15*time.Second, "the restores' outcomes scraped", func() error {
		v, err := prom.Query(ctx, `sum(vmrestore_jobs_total)`)
		if err != nil {
			return err
		}
		if len(v) != 1 || v[0].Float() < float64(len(steps)) {
			d, _ := prom.Query(ctx, `vmrestore_jobs_total`)
			return fmt.Errorf("sum(vmrestore_jobs_total) = %v, want %d: %v", v, len(steps), d)
		}
		return nil
	})
	time.Sleep(2500 * time.Millisecond) // a few more scrapes and rule evaluations
	restoresDone := time.Now()

	// Every metric an expression names is exported by some process.
	names, err := prom.MetricNames(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all := append(append([]Expr{}, dash...), rules...)
	for _, e := range all {
		for _, n := range MetricNames(e.Query) {
			if !names[n] {
				t.Errorf("%s: metric %s is not exported by the api or the workers", e.Where, n)
			}
		}
	}

	// Every dashboard query parses and returns series.
	for _, e := range dash {
		q, err := Substitute(e.Query)
		if err != nil {
			t.Errorf("%s: %v", e.Where, err)
			continue
		}
		v, err := prom.Query(ctx, q)
		switch {
		case err != nil:
			t.Errorf("%s: %s: %v", e.Where, q, err)
		case len(v) == 0:
			t.Errorf("%s: no series for %s", e.Where, q)
		}
	}
	// Every rule parses; the alerts of firingHealthy return series, the others none.
	checkRules(t, prom, rules, firingHealthy)
	health, err := prom.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(health) != len(rules) {
		t.Errorf("prometheus loaded %d rules, the rule files hold %d", len(health), len(rules))
	}
	for _, h := range health {
		if h.Health != "ok" {
			t.Errorf("rule %s/%s evaluates with health %q: %s", h.Group, h.Name, h.Health, h.LastError)
		}
	}

	// Deployment-wide metrics come from exactly one process.
	for q, want := range map[string]float64{
		`sum(vmrestore_deployment_metrics_exporter)`:              1,
		`count(count by (instance) (asynq_queue_size))`:           1,
		`count(count by (instance) (vmrestore_cluster_cpu_free))`: 1,
		`max(vmrestore_workers_alive)`:                            2,
		`sum(vmrestore_redis_up)`:                                 3,
	} {
		v, err := prom.Query(ctx, q)
		if err != nil || len(v) != 1 || v[0].Float() != want {
			t.Errorf("%s: want %v, got %v (%v)", q, want, v, err)
		}
	}
	// The HTTP metrics count the status the client got (a restore call answers 202, the poll
	// of a failed restore 503, a missing session 400), by route pattern.
	for _, q := range []string{
		`vmrestore_http_requests_total{code="202",url="/zstack/v1/vm-instances/from/vm-backups/:groupUuid"}`,
		`vmrestore_http_requests_total{code="503",url="/zstack/v1/api-jobs/:uuid"}`,
		`vmrestore_http_requests_total{code="400",url="/zstack/v1/vm-instances"}`,
		`vmrestore_placement_refusals_total`,
	} {
		if v, err := prom.Query(ctx, q); err != nil || len(v) == 0 {
			t.Errorf("%s: no series (%v)", q, err)
		}
	}
	// Stage histograms carry the job uuid as exemplar (scraped as OpenMetrics).
	ex, err := prom.Exemplars(ctx, `vmrestore_stage_duration_seconds_bucket`, time.Since(start)+time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, j := range jobs {
		known[j] = true
	}
	found := 0
	for _, e := range ex {
		if known[e.Labels["job_uuid"]] {
			found++
		}
	}
	if found == 0 {
		t.Errorf("no exemplar of vmrestore_stage_duration_seconds names a restored job (%d exemplars: %v)", len(ex), ex)
	}
	checkLogs(t, s.logs.String())

	// Outage: no worker, then no Redis.
	for _, w := range s.workers {
		if err := w.Stop(); err != nil {
			t.Fatalf("stop worker: %v", err)
		}
	}
	s.redis.Kill()
	eventually(t, 20*time.Second, "the outage alerts' expressions return series", func() error {
		var missing []string
		for _, r := range rules {
			if !firingOutage[r.Alert] {
				continue
			}
			v, err := prom.Query(ctx, r.Query)
			if err != nil {
				return fmt.Errorf("%s: %v", r.Where, err)
			}
			if len(v) == 0 {
				missing = append(missing, r.Alert)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("not firing: %v", missing)
		}
		return nil
	})
	t.Logf("%d dashboard and %d rule expressions checked; restores and scrapes took %s, the outage %s",
		len(dash), len(rules), restoresDone.Sub(start).Round(time.Millisecond), time.Since(restoresDone).Round(time.Millisecond))
}

// checkRules runs every rule expression: each must parse; alerts in firing must return
// series, every other alert none.
func checkRules(t *testing.T, prom *Prometheus, rules []Expr, firing map[string]bool) {
	t.Helper()
	for _, r := range rules {
		v, err := prom.Query(context.Background(), r.Query)
		if err != nil {
			t.Errorf("%s: %v", r.Where, err)
			continue
		}
		switch {
		case r.Alert == "":
		case firing[r.Alert] && len(v) == 0:
			t.Errorf("%s should fire on the harness's data but returns nothing:\n%s", r.Where, r.Query)
		case !firing[r.Alert] && len(v) > 0:
			t.Errorf("%s fires while all is well: %v", r.Where, v)
		}
	}
}

// pipelineMessages are the messages the restore pipeline logs (and the hypervisor it drives).
var pipelineMessages = []string{"restore ", "simulated hypervisor", "clone ", "compensation", "web hook delivered"}

// checkLogs checks the JSON logs: every line parses, every request line carries its request
// id (the client's X-Request-Id when it sent one), every pipeline line its job uuid, once.
func checkLogs(t *testing.T, logs string) {
	t.Helper()
	var problems []string
	var requests, pipeline int
	sawClientID := false
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			problems = append(problems, fmt.Sprintf("not JSON (%v): %s", err, line))
			continue
		}
		msg, _ := m["msg"].(string)
		if msg == "http request" || msg == "request failed" {
			requests++
			id, _ := m["request_id"].(string)
			if id == "" {
				problems = append(problems, "request line without request_id: "+line)
			}
			sawClientID = sawClientID || id == "opsharness-request-1"
		}
		for _, p := range pipelineMessages {
			if strings.HasPrefix(msg, p) && m["component"] == nil {
				pipeline++
				if j, _ := m["job"].(string); j == "" {
					problems = append(problems, "pipeline line without job: "+line)
				}
				if n := strings.Count(line, `"job":`); n != 1 {
					problems = append(problems, fmt.Sprintf("pipeline line with %d job keys: %s", n, line))
				}
				break
			}
		}
	}
	if requests == 0 || pipeline == 0 || !sawClientID {
		problems = append(problems, fmt.Sprintf("the logs hold %d request lines and %d pipeline lines; the client's request id seen: %v", requests, pipeline, sawClientID))
	}
	if len(problems) > 0 {
		t.Errorf("logs:\n  %s\nthe whole log:\n%s", strings.Join(problems, "\n  "), logs)
	}
}
