package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/testrig"
)

// builds are the commands built for this test binary, by name, each once.
var builds sync.Map // name → *build

type build struct {
	once sync.Once
	path string
	err  error
}

// binary builds a command of the module once per test binary, the first time a test asks
// for it, and returns its path. Commands are built with -tags faultinject, so that the fault
// tests need no build of their own (a race build links for a minute on a loaded machine):
// the tag adds only the fault points that VMRESTORE_FAULT_EXIT_AT turns on
// (internal/hypervisor/faultpoint_inject.go); without it the binaries run as release builds.
func binary(tb testing.TB, name string) string {
	tb.Helper()
	path, err := buildBinary(name)
	if err != nil {
		tb.Fatal(err)
	}
	return path
}

func buildBinary(name string) (string, error) {
	v, _ := builds.LoadOrStore(name, &build{})
	b := v.(*build)
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "vmrestore-test-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, name)
		out, err := exec.Command("go", "build", "-race", "-tags", "faultinject", "-o", b.path, "github.com/vmrestore/vmrestore/cmd/"+name).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build -race -tags faultinject ./cmd/%s: %v: %s", name, err, out)
		}
	})
	return b.path, b.err
}

// prebuild builds the worker binary in the background when the whole package runs (no -run,
// no -short): the tests that start it run in parallel once the serial tests have ended, and
// find it built instead of each waiting for the build in the middle of their own timing
// (two of them while holding one of the guest slots). It returns what waits for the build.
func prebuild() (wait func()) {
	if testing.Short() || flag.Lookup("test.run").Value.String() != "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = buildBinary("worker") // a failure is reported to the first test that asks
	}()
	return func() { <-done }
}

// removeBinaries removes what binary built.
func removeBinaries() {
	builds.Range(func(_, v any) bool {
		if b := v.(*build); b.path != "" {
			os.RemoveAll(filepath.Dir(b.path))
		}
		return true
	})
}

// process is a vmrestore binary started by a test.
type process struct {
	cmd *exec.Cmd
	out *strings.Builder
	mu  sync.Mutex
}

func startProcess(tb testing.TB, bin string, env []string) *process {
	tb.Helper()
	p := &process{out: &strings.Builder{}}
	p.cmd = exec.Command(bin)
	p.cmd.Env = append(os.Environ(), env...)
	w := &lockedWriter{p: p}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", bin, err)
	}
	tb.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
		if tb.Failed() {
			tb.Logf("output of %s:\n%s", bin, p.output())
		}
	})
	return p
}

type lockedWriter struct{ p *process }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *process) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
}

// writeBigGroup writes a group whose data volume holds size bytes of dense data, so that a
// bandwidth-limited clone of it takes a while.
func writeBigGroup(tb testing.TB, storage, group string, size int64) {
	tb.Helper()
	dir := backup.GroupDir(storage, group)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		tb.Fatal(err)
	}
	rootFile, dataFile := "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0.qcow2", "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0.raw"
	if err := demosite.WriteQcow2(filepath.Join(dir, rootFile), 10<<30, 16, group); err != nil {
		tb.Fatal(err)
	}
	if err := demosite.WriteRaw(filepath.Join(dir, dataFile), size, int(size/(64<<10)), group); err != nil {
		tb.Fatal(err)
	}
	sum := func(f string) string {
		fh, err := os.Open(filepath.Join(dir, f))
		if err != nil {
			tb.Fatal(err)
		}
		defer fh.Close()
		h := sha256.New()
		io.Copy(h, fh)
		return hex.EncodeToString(h.Sum(nil))
	}
	g := backup.Group{GroupUUID: group, Name: "big", VM: backup.SourceVM{Name: "big", CPUNum: 1, MemorySize: 1 << 30},
		Volumes: []backup.Volume{
			{UUID: "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0", Type: "Root", Format: "qcow2", Size: 10 << 30, File: rootFile, SHA256: sum(rootFile)},
			{UUID: "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0", Type: "Data", DeviceID: 1, Format: "raw", Size: size, File: dataFile, SHA256: sum(dataFile)},
		}}
	b, _ := json.Marshal(g)
	if err := os.WriteFile(filepath.Join(dir, "group.json"), b, 0o640); err != nil {
		tb.Fatal(err)
	}
}

// TestWorkerKilledMidCloneFinishesOnce kills a real worker process (SIGKILL) while it copies
// a volume, with another worker running: the other worker takes the job over within 15 s
// (the job lock lapses, not asynq's lease), resumes the copy from its last checkpoint, and the
// job finishes exactly once: one VM, every volume equal to its backup, no partial file, no
// capacity drift, little copied twice.
func TestWorkerKilledMidCloneFinishesOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs worker binaries")
	}
	t.Parallel()
	binary(t, "worker")
	const group = "c0ffee00c0ffee00c0ffee00c0ffee00"
	e := newEnv(t, envOptions{noWorker: true, site: func(s *catalog.Site) {
		s.BackupStorages[0].BandwidthBytesPerSecond = 8 << 20 // 64 MiB take 8 s
	}})
	writeBigGroup(t, e.paths.Backup, group, 64<<20)
	t.Cleanup(func() { os.RemoveAll(backup.GroupDir(e.paths.Backup, group)) })

	const every = 8 << 20
	w1, w1Addr := startWorkerBinary(t, e, "VMRESTORE_LOG_LEVEL=info", fmt.Sprintf("VMRESTORE_CLONE_CHECKPOINT=%d", every))
	r := e.restore(group, map[string]any{"name": "big", "cpuNum": 1, "memorySize": 1 << 30,
		"l3NetworkUuids": []string{demosite.L3ProdUUID}}, map[string]string{"Prefer": "respond-async"})
	mustf(t, r.status == 202, "submit: %d %s", r.status, r.body)
	loc := str(r.json(), "location")
	jobUUID := loc[strings.LastIndex(loc, "/")+1:]

	// Wait until the copy is half-way, start the second worker, then kill the first.
	ctx := context.Background()
	testrig.Eventually(t, time.Minute, func() bool {
		rec, err := e.store.GetJob(ctx, jobUUID)
		return err == nil && rec.Stage == "clone" && rec.Progress != nil && rec.Progress.DataBytes > 28<<20
	}, "the clone never got half-way")
	w2, w2Addr := startWorkerBinary(t, e, "VMRESTORE_LOG_LEVEL=info", fmt.Sprintf("VMRESTORE_CLONE_CHECKPOINT=%d", every))
	before, _ := e.store.GetJob(ctx, jobUUID)
	readBeforeKill := metricSum(scrape(t, "http://"+w1Addr+"/metrics"), "vmrestore_clone_bytes_total")
	w1.kill()
	killedAt := time.Now()
	parts, _ := filepath.Glob(filepath.Join(e.paths.NFS, "*", "*", "*", "*.part"))
	parts2, _ := filepath.Glob(filepath.Join(e.paths.Local, "*", "*", "*", "*.part"))
	mustf(t, len(parts)+len(parts2) > 0, "the kill should leave a partial file behind for the re-run to resume")

	testrig.Eventually(t, 90*time.Second, func() bool {
		rec, err := e.store.GetJob(ctx, jobUUID)
		return err == nil && (rec.Attempts > before.Attempts || rec.State.Terminal())
	}, "the job never ran again after the kill")
	resumedAfter := time.Since(killedAt)
	done := e.poll(loc, 2*time.Minute)
	mustf(t, done.status == 200, "after the kill the job ends with %d: %s", done.status, done.body)
	inv := done.json()["inventory"].(map[string]any)
	m2 := scrape(t, "http://"+w2Addr+"/metrics")
	readAfter := metricSum(m2, "vmrestore_clone_bytes_total")
	resumed := metricSum(m2, "vmrestore_clone_resumed_bytes_total")
	takeOvers := metricSum(m2, "vmrestore_job_takeovers_total")
	rec, err := e.store.GetJob(ctx, jobUUID)
	mustf(t, err == nil, "%v", err)
	data := float64(64<<20 + 16*64<<10) // the data volume and the root's 16 clusters
	again := readBeforeKill + readAfter - data
	t.Logf("killed with %.1f MiB read; running again on the other worker %v after the kill (take-overs %v); it resumed %.1f MiB in and read %.1f MiB: %.1f MiB copied twice; attempts %d, job ended %v after the kill",
		readBeforeKill/(1<<20), resumedAfter.Round(10*time.Millisecond), takeOvers, resumed/(1<<20), readAfter/(1<<20), again/(1<<20),
		rec.Attempts, time.Since(killedAt).Round(100*time.Millisecond))
	mustf(t, resumedAfter <= 15*time.Second, "the job ran again %v after its worker died, want within 15 s", resumedAfter.Round(100*time.Millisecond))
	mustf(t, rec.Attempts == before.Attempts+1, "attempts %d after one crash (was %d)", rec.Attempts, before.Attempts)
	mustf(t, resumed > 0 && again <= every+1<<20, "%.1f MiB copied twice, the checkpoints are %d MiB apart", again/(1<<20), every>>20)
	vms := e.do("GET", "/zstack/v1/vm-instances", e.session, nil, nil).json()["inventories"].([]any)
	mustf(t, len(vms) == 1 && str(vms[0].(map[string]any), "uuid") == str(inv, "uuid"), "want exactly one VM, got %d", len(vms))
	checkRestoredFiles(t, e, group, inv)
	for _, dir := range []string{e.paths.NFS, e.paths.Local} {
		for _, pattern := range []string{"*.part", "*.part-sums"} {
			p, _ := filepath.Glob(filepath.Join(dir, "*", "*", "*", pattern))
			mustf(t, len(p) == 0, "partial files left: %v", p)
		}
	}
	e.checkInvariants()
	n, _ := e.store.CountUsedIPs(ctx, demosite.L3ProdUUID)
	mustf(t, n == 1, "one address in use, got %d", n)
	checkProcessLogs(t, []*process{w2})
}

var _ = redistest.FreePort

// A late second delivery of a finished job's task (asynq recovering a dead worker's task after
// the job was taken over and ended elsewhere) does nothing: no new attempt, no second VM.
func TestLateRedeliveryOfAFinishedJobIsANoOp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.restore(demosite.GroupWeb01UUID, webParams("once"), map[string]string{"Prefer": "respond-async"})
	mustf(t, r.status == 202, "submit: %d %s", r.status, r.body)
	loc := str(r.json(), "location")
	jobUUID := loc[strings.LastIndex(loc, "/")+1:]
	mustf(t, e.poll(loc, time.Minute).status == 200, "the restore did not succeed")
	ctx := context.Background()
	before, err := e.store.GetJob(ctx, jobUUID)
	mustf(t, err == nil, "%v", err)

	rdb := e.redis.Client()
	taskID := jobUUID + "-late"
	err = queue.NewClient(rdb, 3).EnqueueTakeOver(ctx, jobUUID, "", taskID, before.Deadline())
	mustf(t, err == nil, "enqueue: %v", err)
	insp := queue.Inspector(rdb)
	testrig.Eventually(t, 30*time.Second, func() bool {
		info, err := insp.GetTaskInfo(queue.QueueRestore, taskID)
		return err != nil || info.State == asynq.TaskStateCompleted
	}, "the second delivery never ran")
	after, err := e.store.GetJob(ctx, jobUUID)
	mustf(t, err == nil, "%v", err)
	mustf(t, after.Attempts == before.Attempts && after.State == before.State && after.FinishedAt.Equal(before.FinishedAt),
		"the late delivery changed the job: attempts %d → %d, state %s → %s", before.Attempts, after.Attempts, before.State, after.State)
	vms, err := e.store.ListVMs(ctx, "")
	mustf(t, err == nil && len(vms) == 1, "%d VMs after a second delivery (%v)", len(vms), err)
	locked, _ := rdb.ZCard(ctx, "vmr:jobs:locked").Result()
	mustf(t, locked == 0, "%d jobs still listed as locked", locked)
}
