package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/testrig"
	"github.com/vmrestore/vmrestore/internal/tlstest"
)

const adminPassword = testrig.AdminPassword

// harness is a running vmrestore (a private redis-server, an api and a worker in this
// process, restoring onto the demo site in a temporary folder) and a restorectl config file.
type harness struct {
	t       *testing.T
	base    string
	cfgFile string
	api     *app.API
}

// newHarness starts the harness; settings, if given, override the api's environment.
func newHarness(t *testing.T, settings ...map[string]string) *harness {
	t.Helper()
	checkAPIExchanges(t)
	extra := map[string]string{}
	for _, m := range settings {
		for k, v := range m {
			extra[k] = v
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	rig := testrig.New(t, testrig.Options{Env: extra, Log: log})
	api := rig.API
	// Plans resolve groups from the backup index, which the worker fills.
	testrig.Eventually(t, 20*time.Second, func() bool {
		groups, err := api.Store.ListBackupGroups(context.Background())
		return err == nil && len(groups) >= 3
	}, "the demo groups were not indexed")
	return &harness{t: t, base: rig.Base, cfgFile: filepath.Join(t.TempDir(), "restorectl", "session.json"), api: api}
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs restorectl against the harness's api (unless args give another --url).
// with is the harness for a subtest, so that its failures end the subtest.
func (h *harness) with(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}

func (h *harness) run(stdin string, args ...string) result {
	h.t.Helper()
	env := map[string]string{"RESTORECTL_CONFIG": h.cfgFile, "RESTORECTL_URL": h.base}
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	code := run(ctx, args, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// must runs restorectl and fails the test unless it exits with want.
func (h *harness) must(want int, stdin string, args ...string) result {
	h.t.Helper()
	r := h.run(stdin, args...)
	if r.code != want {
		h.t.Fatalf("restorectl %s: want exit %d, got %s", strings.Join(args, " "), want, r)
	}
	return r
}

func (h *harness) writeFile(name, text string) string {
	h.t.Helper()
	p := filepath.Join(h.t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		h.t.Fatal(err)
	}
	return p
}

func (h *harness) planJSON(args ...string) apiv1.PlanReport {
	h.t.Helper()
	r := h.must(0, "", append(args, "-o", "json")...)
	var rep apiv1.PlanReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		h.t.Fatalf("restorectl %s -o json is not a plan report: %v\n%s", strings.Join(args, " "), err, r)
	}
	return rep
}

// cleanPlan restores the three demo groups in two tiers, onto the demo site's own networks.
var cleanPlan = fmt.Sprintf(`# the three demo groups, the database first
name: drill
groups:
  - %s
  - %s
  - %s
defaults:
  keepSourceSize: true
  nameTemplate: "{{.SourceName}}-dr"
networkMapping:
  - {sourceL3NetworkUuid: %s, targetL3NetworkUuid: %s}
  - {sourceL3NetworkUuid: %s, targetL3NetworkUuid: %s}
tiers:
  - {tier: 1, sourceVmName: "db*"}
`, demosite.GroupWeb01UUID, demosite.GroupApp01UUID, demosite.GroupDB01UUID,
	demosite.L3ProdUUID, demosite.L3ProdUUID, demosite.L3MgmtUUID, demosite.L3MgmtUUID)

// failingPlan is cleanPlan with db01 asking for more CPUs than any host has.
var failingPlan = strings.Replace(cleanPlan, "name: drill", "name: drill-too-big", 1) + fmt.Sprintf(`overrides:
  %s: {cpuNum: 1000, memorySize: 1073741824}
`, demosite.GroupDB01UUID)

var createdRE = regexp.MustCompile(`plan ([0-9a-f]{32}) created`)

func createdUUID(t *testing.T, r result) string {
	t.Helper()
	m := createdRE.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no 'plan <uuid> created' line: %s", r)
	}
	return m[1]
}

func mustContain(t *testing.T, r result, stream string, parts ...string) {
	t.Helper()
	text := r.stdout
	if stream == "stderr" {
		text = r.stderr
	}
	for _, p := range parts {
		if !strings.Contains(text, p) {
			t.Fatalf("%s lacks %q: %s", stream, p, r)
		}
	}
}

func TestRestorectlAgainstARealAPI(t *testing.T) {
	h := newHarness(t)
	clean := h.writeFile("clean.yaml", cleanPlan)
	failing := h.writeFile("failing.yaml", failingPlan)
	var cleanUUID, failingUUID, failedJob string

	t.Run("login", func(t *testing.T) {
		h := h.with(t)
		r := h.must(1, "", "plan", "list")
		mustContain(t, r, "stderr", "not logged in to "+h.base, "restorectl login")

		r = h.must(1, "wrong-password\n", "login", "--password-stdin")
		mustContain(t, r, "stderr", "error: ID.1000", "hint: check the account")
		if _, err := os.Stat(h.cfgFile); err == nil {
			t.Fatal("a failed login saved a session")
		}

		r = h.must(0, adminPassword+"\n", "login", "--password-stdin", "--account", "admin")
		mustContain(t, r, "stdout", "Logged in to "+h.base+" as admin")
		fi, err := os.Stat(h.cfgFile)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("session file mode %v, want 0600", fi.Mode().Perm())
		}
		f, err := loadSessions(h.cfgFile)
		if err != nil {
			t.Fatal(err)
		}
		if s := f.Sessions[h.base]; len(s.UUID) != 32 || s.Account != "admin" {
			t.Fatalf("saved sessions: %+v", f.Sessions)
		}
	})

	t.Run("unknown fields are refused", func(t *testing.T) {
		h := h.with(t)
		bad := h.writeFile("bad.yaml", strings.Replace(cleanPlan, "groups:", "groupz:", 1))
		r := h.must(1, "", "plan", "apply", "-f", bad)
		mustContain(t, r, "stderr", `unknown field "groupz"`, `did you mean "groups"?`, "line 3")
		badJSON := h.writeFile("bad.json", `{"name": "x", "groups": ["`+demosite.GroupWeb01UUID+`"], "defaults": {"stratgy": "JustCreate"}}`)
		r = h.must(1, "", "plan", "apply", "-f", badJSON)
		mustContain(t, r, "stderr", `unknown field "stratgy"`, `did you mean "strategy"?`)
		// The api's own validation comes back as its error code.
		r = h.must(1, `{"name": "x", "groups": ["not-a-uuid"]}`, "plan", "apply", "-f", "-")
		mustContain(t, r, "stderr", "error: SYS.1007: ", "not-a-uuid")
		var plans []apiv1.PlanReport
		json.Unmarshal([]byte(h.must(0, "", "plan", "list", "-o", "json").stdout), &plans)
		if len(plans) != 0 {
			t.Fatalf("refused plans were stored: %d", len(plans))
		}
	})

	t.Run("dry run", func(t *testing.T) {
		h := h.with(t)
		r := h.must(0, "", "plan", "apply", "-f", clean, "--dry-run")
		mustContain(t, r, "stdout", `Dry run of plan "drill": 3 of 3 VM(s) fit, 0 refused`, "Would land:", "db01-dr", "TOTALS", "NEEDED", "FREE",
			"host-", "ps-", "the real host or storage may differ")
		if strings.Contains(r.stdout, "Warnings") {
			t.Fatalf("a dry run warned with no VM restored yet:\n%s", r)
		}

		r = h.must(exitPlanFailed, "", "plan", "apply", "-f", failing, "--dry-run")
		mustContain(t, r, "stdout", "2 of 3 VM(s) fit, 1 refused", "Would be refused:", "HOST_ALLOCATION.1000", "cpu[1000]")

		r = h.must(exitPlanFailed, "", "plan", "apply", "-f", failing, "--dry-run", "-o", "json")
		var dr apiv1.DryRunReport
		if err := json.Unmarshal([]byte(r.stdout), &dr); err != nil {
			t.Fatalf("dry run -o json: %v\n%s", err, r)
		}
		if dr.Fits != 2 || dr.Refused != 1 || dr.Refusals["HOST_ALLOCATION.1000"] != 1 || dr.Needed.CPU != 2+4+1000 || dr.Free.CPU < dr.Needed.CPU-1000 {
			t.Fatalf("dry run report: %+v", dr)
		}
		var plans []apiv1.PlanReport
		json.Unmarshal([]byte(h.must(0, "", "plan", "list", "-o", "json").stdout), &plans)
		if len(plans) != 0 {
			t.Fatalf("a dry run stored a plan")
		}
	})

	t.Run("apply and watch a clean plan", func(t *testing.T) {
		h := h.with(t)
		r := h.must(0, "", "plan", "apply", "-f", clean, "--watch", "--interval", "1s")
		cleanUUID = createdUUID(t, r)
		mustContain(t, r, "stdout", "plan "+cleanUUID+" (drill) succeeded: 3/3 VM(s) succeeded", "VMs 3/3", "[tier 1 1/1, tier 2 2/2]")
		if strings.ContainsAny(r.stdout, "\r\x1b") {
			t.Fatalf("output to a non-terminal carries bar control characters: %q", r.stdout)
		}
		if !regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d running  VMs \d/3`).MatchString(r.stdout) {
			t.Fatalf("no plain progress line: %s", r)
		}
		// The same plan again would make a second VM of each name: its dry run says so.
		r = h.must(0, "", "plan", "apply", "-f", clean, "--dry-run")
		mustContain(t, r, "stdout", "3 with warnings", "Warnings:", `a VM named "web01-dr" already exists on the recovery site`)
	})

	t.Run("apply and watch a plan with a failing item", func(t *testing.T) {
		h := h.with(t)
		r := h.must(exitPlanFailed, "", "plan", "apply", "-f", failing, "--watch")
		failingUUID = createdUUID(t, r)
		mustContain(t, r, "stdout", "(drill-too-big) failed: 2/3 VM(s) succeeded (1 failed)", "Items that did not succeed:",
			"db01-dr", "HOST_ALLOCATION.1000: filter[HostCapacity]: no host having cpu[1000]", "restorectl plan retry "+failingUUID)
		// Watching an ended plan says the same and exits the same.
		r = h.must(exitPlanFailed, "", "plan", "watch", failingUUID)
		mustContain(t, r, "stdout", "Items that did not succeed:", "HOST_ALLOCATION.1000")
		h.must(0, "", "plan", "watch", cleanUUID)
	})

	t.Run("list and get", func(t *testing.T) {
		h := h.with(t)
		var plans []apiv1.PlanReport
		r := h.must(0, "", "plan", "list", "-o", "json")
		if err := json.Unmarshal([]byte(r.stdout), &plans); err != nil {
			t.Fatalf("plan list -o json: %v\n%s", err, r)
		}
		states := map[string]string{}
		for _, p := range plans {
			states[p.UUID] = p.State
		}
		if len(plans) != 2 || states[cleanUUID] != "succeeded" || states[failingUUID] != "failed" {
			t.Fatalf("plan list: %v", states)
		}
		r = h.must(0, "", "plan", "list")
		mustContain(t, r, "stdout", "UUID", cleanUUID, "succeeded", failingUUID, "3/3")

		rep := h.planJSON("plan", "get", failingUUID)
		if len(rep.Items) != 3 || rep.Counts["failed"] != 1 || rep.Counts["succeeded"] != 2 {
			t.Fatalf("plan get: %+v", rep)
		}
		for _, it := range rep.Items {
			if it.Name == "db01-dr" {
				if it.State != "failed" || it.ErrorCode != "HOST_ALLOCATION.1000" || it.JobUUID == "" {
					t.Fatalf("the failed item: %+v", it)
				}
				failedJob = it.JobUUID
			}
		}
		r = h.must(0, "", "plan", "get", failingUUID)
		mustContain(t, r, "stdout", "State:", "failed", "INDEX", "web01-dr", "app01-dr", "db01-dr", "HOST_ALLOCATION.1000")

		r = h.must(0, "", "plan", "get", failingUUID, "-o", "yaml", "--items", "failed")
		var y struct {
			UUID  string `yaml:"uuid"`
			Items []struct {
				Name string `yaml:"name"`
			} `yaml:"items"`
		}
		if err := yaml.Unmarshal([]byte(r.stdout), &y); err != nil || y.UUID != failingUUID || len(y.Items) != 1 || y.Items[0].Name != "db01-dr" {
			t.Fatalf("plan get -o yaml --items failed: %+v %v\n%s", y, err, r)
		}

		r = h.must(1, "", "plan", "get", "0123456789abcdef0123456789abcdef")
		mustContain(t, r, "stderr", "error: SYS.1003: plan 0123456789abcdef0123456789abcdef does not exist")
	})

	t.Run("retry", func(t *testing.T) {
		h := h.with(t)
		r := h.must(0, "", "plan", "retry", failingUUID)
		mustContain(t, r, "stdout", "1 item(s) requeued")
		r = h.must(exitPlanFailed, "", "plan", "watch", failingUUID)
		mustContain(t, r, "stdout", "HOST_ALLOCATION.1000")
		rep := h.planJSON("plan", "get", failingUUID, "--items", "failed")
		if len(rep.Items) != 1 || rep.Items[0].Attempt != 2 {
			t.Fatalf("the retried item: %+v", rep.Items)
		}
	})

	t.Run("pause, resume, cancel, retry", func(t *testing.T) {
		h := h.with(t)
		// Tier 2 cannot start before db01 has ended, so the plan cannot end between
		// these commands, which follow each other within milliseconds.
		r := h.must(0, "", "plan", "apply", "-f", clean)
		uuid := createdUUID(t, r)
		mustContain(t, r, "stdout", "watch it: restorectl plan watch "+uuid)
		r = h.must(0, "", "plan", "pause", uuid)
		mustContain(t, r, "stdout", "plan "+uuid+": paused (paused by the operator)")
		if rep := h.planJSON("plan", "get", uuid, "--items", "none"); rep.State != "paused" || len(rep.Items) != 0 {
			t.Fatalf("after pause: %s, %d items", rep.State, len(rep.Items))
		}
		r = h.must(1, "", "plan", "pause", cleanUUID)
		mustContain(t, r, "stderr", "error: SYS.1006: ", cleanUUID)
		h.must(0, "", "plan", "resume", uuid)
		h.must(0, "", "plan", "pause", uuid)
		// The answer is "cancelling" while db01 still runs, "cancelled" when it had already
		// ended (a fast machine): the paused plan then has nothing running to wait for.
		r = h.must(0, "", "plan", "cancel", uuid)
		if !strings.Contains(r.stdout, "plan "+uuid+": cancelling") && !strings.Contains(r.stdout, "plan "+uuid+": cancelled") {
			t.Fatalf("plan cancel: want cancelling or cancelled\n%s", r)
		}
		r = h.must(exitPlanFailed, "", "plan", "watch", uuid)
		mustContain(t, r, "stdout", "cancelled", "Items that did not succeed:", "SYS.1017")
		r = h.must(0, "", "plan", "retry", uuid, "--watch")
		mustContain(t, r, "stdout", "item(s) requeued", "succeeded: 3/3 VM(s) succeeded")
	})

	t.Run("watch falls back to polling when the stream breaks", func(t *testing.T) {
		h := h.with(t)
		old := pollEvery
		pollEvery = 200 * time.Millisecond
		defer func() { pollEvery = old }()
		proxy := brokenStreamProxy(t, h.base)
		f, _ := loadSessions(h.cfgFile)
		r := h.must(0, "", "--url", proxy, "--session", f.Sessions[h.base].UUID, "plan", "apply", "-f", clean, "--watch")
		mustContain(t, r, "stdout", "the event stream broke", "polling every 200ms", "succeeded: 3/3 VM(s) succeeded")
	})

	t.Run("vm list", func(t *testing.T) {
		h := h.with(t)
		r := h.must(0, "", "vm", "list", "-o", "json")
		var vms []map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &vms); err != nil {
			t.Fatalf("vm list -o json: %v\n%s", err, r)
		}
		// Succeeded: the clean plan (3), the failing one (2), the cancelled-and-retried one (3), the proxied one (3).
		if len(vms) != 11 {
			t.Fatalf("vm list: %d VMs, want 11", len(vms))
		}
		r = h.must(0, "", "vm", "list", "--q", "name=db01-dr", "--q", "state=Running", "-o", "json")
		vms = nil
		json.Unmarshal([]byte(r.stdout), &vms)
		if len(vms) != 3 {
			t.Fatalf("vm list --q name=db01-dr: %d VMs, want 3", len(vms))
		}
		for _, vm := range vms {
			if vm["name"] != "db01-dr" || len(vm["vmNics"].([]any)) != 2 {
				t.Fatalf("vm list --q name=db01-dr: %v", vm)
			}
		}
		r = h.must(0, "", "vm", "list", "--q", "name=web01-dr")
		mustContain(t, r, "stdout", "NAME", "web01-dr", "Running", "10.10.0.")
		r = h.must(1, "", "vm", "list", "--q", "nmae=x")
		mustContain(t, r, "stderr", "error: SYS.1007: ", "nmae")
	})

	t.Run("job get and cancel", func(t *testing.T) {
		h := h.with(t)
		r := h.must(0, "", "job", "get", failedJob, "-o", "json")
		var j apiv1.Job
		if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
			t.Fatalf("job get -o json: %v\n%s", err, r)
		}
		if j.UUID != failedJob || j.State != "failed" || j.PlanUUID != failingUUID || j.Error == nil || j.Error.Root().Code != "HOST_ALLOCATION.1000" {
			t.Fatalf("job get: %+v", j)
		}
		r = h.must(0, "", "job", "get", failedJob)
		mustContain(t, r, "stdout", "State:", "failed", "Cause:", "HOST_ALLOCATION.1000")
		r = h.must(1, "", "job", "cancel", failedJob)
		mustContain(t, r, "stderr", "error: SYS.1006: job "+failedJob+" has already ended")
	})

	t.Run("errors", func(t *testing.T) {
		h := h.with(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := "http://" + ln.Addr().String()
		ln.Close()
		r := h.must(1, "", "--url", closed, "--session", "x", "plan", "list")
		mustContain(t, r, "stderr", "error: cannot reach the vmrestore api at "+closed, "connection refused", "hint: nothing listens")
		h.must(exitUsage, "", "plan", "watch")
		r = h.must(exitUsage, "", "plan", "lst")
		mustContain(t, r, "stderr", `unknown command "lst"`, `did you mean "list"?`)
		h.must(exitUsage, "", "-o", "xml", "plan", "list")
		h.must(exitUsage, "", "plan", "apply")
	})

	t.Run("logout", func(t *testing.T) {
		h := h.with(t)
		f, _ := loadSessions(h.cfgFile)
		old := f.Sessions[h.base].UUID
		r := h.must(0, "", "logout")
		mustContain(t, r, "stdout", "Logged out of "+h.base)
		r = h.must(1, "", "plan", "list")
		mustContain(t, r, "stderr", "not logged in")
		r = h.must(1, "", "--session", old, "plan", "list")
		mustContain(t, r, "stderr", "error: ID.1001", "hint: the session is unknown, expired or logged out")
	})
}

// brokenStreamProxy forwards everything to the api except event streams, which it cuts
// after half an event, as a failing proxy or network would.
func brokenStreamProxy(t *testing.T, target string) string {
	t.Helper()
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/events") {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, "event: progress\ndata: {\"uuid\":")
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestCAFileTrustsAnHTTPSAPI: against an api serving HTTPS with a certificate no system CA
// signed, restorectl refuses to talk until --ca-file names the certificate's CA.
func TestCAFileTrustsAnHTTPSAPI(t *testing.T) {
	certFile, keyFile, _ := tlstest.SelfSigned(t, t.TempDir())
	h := newHarness(t, map[string]string{"VMRESTORE_TLS_CERT_FILE": certFile, "VMRESTORE_TLS_KEY_FILE": keyFile})

	r := h.must(1, adminPassword+"\n", "login", "--password-stdin")
	mustContain(t, r, "stderr", "certificate is not trusted here", "--ca-file")
	r = h.must(1, adminPassword+"\n", "login", "--password-stdin", "--ca-file", keyFile)
	mustContain(t, r, "stderr", "holds no PEM certificate")
	h.must(0, adminPassword+"\n", "login", "--password-stdin", "--ca-file", certFile)
	h.must(0, "", "vm", "list", "--ca-file", certFile)
	h.must(0, "", "logout", "--ca-file", certFile)
}
