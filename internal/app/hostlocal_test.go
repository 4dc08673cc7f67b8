package app_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/testrig"
)

// The demo site's cluster B keeps its volumes on LocalStorage, on hosts b1 and b2.
const (
	hostB1 = "4c5d6e7f80914a213c4d5e6f708192a3"
	hostB2 = "5d6e7f8091a24b324d5e6f708192a3b4"
)

func localParams(name string) map[string]any {
	p := webParams(name)
	p["clusterUuid"] = demosite.ClusterBUUID
	return p
}

// metric returns the lines of a worker's /metrics that start with name.
func workerMetric(t *testing.T, w *app.Worker, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + w.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestHostLocalJobsRunOnTheirHostsWorker: a LocalStorage job is placed by a worker that is
// not on the host, waits on the host's own queue (visible in /metrics), and is finished by a
// worker bound to the host; a shared-storage job is not held up.
func TestHostLocalJobsRunOnTheirHostsWorker(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{config: func(c *app.Config) { c.HostLocal = app.HostLocalStorage; c.HostWait = time.Minute }})

	r := e.restore(demosite.GroupWeb01UUID, localParams("local-1"), map[string]string{"Prefer": "respond-async"})
	mustf(t, r.status == 202, "restore: %d %s", r.status, r.body)
	loc := str(r.json(), "location")
	// Shared storage runs anywhere.
	sharedParams := webParams("shared-1")
	sharedParams["clusterUuid"] = demosite.ClusterAUUID // NFS
	shared := e.restore(demosite.GroupWeb01UUID, sharedParams, map[string]string{"Prefer": "wait=30"})
	mustf(t, shared.status == 200, "a shared-storage restore waited for a host worker: %d %s", shared.status, shared.body)

	testrig.Eventually(t, 20*time.Second, func() bool {
		return strings.Contains(workerMetric(t, e.worker, "vmrestore_host_local_jobs_waiting"), " 1")
	}, "the LocalStorage job is not waiting for its host's worker")
	m := workerMetric(t, e.worker, "vmrestore_host")
	mustf(t, strings.Contains(m, "vmrestore_hosts_without_worker 2") && strings.Contains(m, `host_name="host-b1"`),
		"/metrics does not name the hosts without a worker:\n%s", m)
	mustf(t, e.poll(loc, time.Second).status == 202, "the job finished without its host's worker")

	cfg := e.cfg
	cfg.HostUUIDs = hostB1 + "," + hostB2
	bound, err := app.StartWorker(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bound.Stop() })
	done := e.poll(loc, 30*time.Second)
	mustf(t, done.status == 200, "the host's worker did not finish the job: %d %s", done.status, done.body)
	host := str(done.json()["inventory"].(map[string]any), "hostUuid")
	mustf(t, host == hostB1 || host == hostB2, "placed on %s", host)
	// The hand-over to the host's queue continues the attempt: it is no failure.
	rec, err := e.store.GetJob(context.Background(), loc[strings.LastIndex(loc, "/")+1:])
	mustf(t, err == nil && rec.Attempts == 1 && rec.HandBacks == 1, "attempts %d, hand-backs %d (%v)", rec.Attempts, rec.HandBacks, err)

	testrig.Eventually(t, 20*time.Second, func() bool {
		return strings.Contains(workerMetric(t, e.worker, "vmrestore_hosts_without_worker"), "vmrestore_hosts_without_worker 0")
	}, "hosts still reported without a worker")
	e.checkInvariants()
}

// TestHostLocalJobFailsWithoutAWorker: with no worker for the host, the job fails after the
// bounded wait with an error that names the host, and releases everything.
func TestHostLocalJobFailsWithoutAWorker(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{config: func(c *app.Config) { c.HostLocal = app.HostLocalStorage; c.HostWait = 2 * time.Second }})
	r := e.restore(demosite.GroupWeb01UUID, localParams("local-orphan"), map[string]string{"Prefer": "respond-async"})
	mustf(t, r.status == 202, "restore: %d %s", r.status, r.body)
	start := time.Now()
	ec := e.poll(str(r.json(), "location"), 30*time.Second).errorCode()
	details := errorDetails(ec)
	mustf(t, strings.Contains(details, "no worker serves host[uuid:") && strings.Contains(details, "VMRESTORE_HOST_UUIDS="),
		"the failure does not name the host and the fix: %v", ec)
	mustf(t, strings.Contains(details, "host-b1") || strings.Contains(details, "host-b2"), "no host name in %q", details)
	t.Logf("failed after %s: %s", time.Since(start).Round(100*time.Millisecond), details)
	e.checkInvariants()
}
