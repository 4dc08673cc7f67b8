package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/testrig"
)

func TestCancelAPendingJobItNeverStarts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noWorker: true})
	r := e.restore(demosite.GroupWeb01UUID, webParams("never"), map[string]string{"Prefer": "respond-async"})
	loc := str(r.json(), "location")
	job := loc[strings.LastIndex(loc, "/")+1:]
	c := e.do("POST", "/api/v1/jobs/"+job+"/cancel", e.session, nil, nil)
	mustf(t, c.status == 202, "cancel: %d %s", c.status, c.body)
	e.startWorker()
	ec := e.poll(loc, 30*time.Second).errorCode()
	mustf(t, str(ec, "code") == "SYS.1017", "a cancelled job answers SYS.1017: %v", ec)
	rec, _ := e.store.GetJob(context.Background(), job)
	mustf(t, rec.Checkpoints.Resolved == nil, "a job cancelled before it started must not have run a stage")
	checkNothingAllocated(t, e)
	again := e.do("POST", "/api/v1/jobs/"+job+"/cancel", e.session, nil, nil)
	mustf(t, again.status == 409, "cancelling an ended job is a conflict: %d %s", again.status, again.body)
	nf := e.do("GET", "/api/v1/jobs/00000000000000000000000000000000", e.session, nil, nil)
	mustf(t, nf.status == 404, "unknown job: %d", nf.status)
}

func TestCancelARunningJobStopsAndCompensates(t *testing.T) {
	t.Parallel()
	const group = "c0ffee11c0ffee11c0ffee11c0ffee11"
	e := newEnv(t, envOptions{site: func(s *catalog.Site) { s.BackupStorages[0].BandwidthBytesPerSecond = 4 << 20 }})
	writeBigGroup(t, e.paths.Backup, group, 64<<20)
	t.Cleanup(func() { removeGroup(e, group) })
	r := e.restore(group, map[string]any{"name": "big", "cpuNum": 1, "memorySize": 1 << 30,
		"l3NetworkUuids": []string{demosite.L3ProdUUID}}, map[string]string{"Prefer": "respond-async"})
	loc := str(r.json(), "location")
	job := loc[strings.LastIndex(loc, "/")+1:]
	var j map[string]any
	testrig.Eventually(t, 30*time.Second, func() bool {
		j = e.do("GET", "/api/v1/jobs/"+job, e.session, nil, nil).json()
		return str(j, "stage") == "clone" && j["progress"] != nil
	}, "the clone never started: %v", &j)
	asked := time.Now()
	mustf(t, e.do("POST", "/api/v1/jobs/"+job+"/cancel", e.session, nil, nil).status == 202, "cancel")
	ans := e.poll(loc, 30*time.Second)
	took := time.Since(asked)
	ec := ans.errorCode()
	mustf(t, str(ec, "code") == "SYS.1017" && strings.Contains(str(ec, "details"), "clone stage"), "cancelled mid-clone: %v", ec)
	mustf(t, took < 5*time.Second, "the cancel took %v", took)
	t.Logf("a running job stopped %v after its cancel", took.Round(time.Millisecond))
	checkNothingAllocated(t, e)
}

// removeGroup deletes a group a test wrote into the shared backup folder.
func removeGroup(e *env, group string) {
	_ = os.RemoveAll(filepath.Join(e.paths.Backup, "vm-backups", group))
}

func TestAPITimeoutFailsTheJobWithSYS1001(t *testing.T) {
	t.Parallel()
	const group = "c0ffee22c0ffee22c0ffee22c0ffee22"
	e := newEnv(t, envOptions{site: func(s *catalog.Site) { s.BackupStorages[0].BandwidthBytesPerSecond = 4 << 20 }})
	writeBigGroup(t, e.paths.Backup, group, 64<<20) // 16 s of copying at 4 MiB/s
	t.Cleanup(func() { removeGroup(e, group) })
	start := time.Now()
	r := e.restore(group, map[string]any{"name": "slow", "cpuNum": 1, "memorySize": 1 << 30,
		"l3NetworkUuids": []string{demosite.L3ProdUUID}}, map[string]string{"X-API-Timeout": "2"})
	ec := r.errorCode()
	mustf(t, str(ec, "code") == "SYS.1001" && strings.Contains(str(ec, "details"), "timeout after 2s"), "a job past X-API-Timeout: %s", r.body)
	mustf(t, time.Since(start) < 6*time.Second, "the timeout answered after %v", time.Since(start))
	checkNothingAllocated(t, e)
	bad := e.restore(group, webParams("x"), map[string]string{"X-API-Timeout": "soon"})
	mustf(t, bad.status == 400 && strings.HasPrefix(string(bad.body), "Invalid header[X-API-Timeout]"), "malformed X-API-Timeout: %d %s", bad.status, bad.body)
}
