package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/redistest"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binary builds a command of the module once per test binary and returns its path.
func binary(tb testing.TB, name string) string {
	tb.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "vmrestore-test-bin-")
		if buildErr != nil {
			return
		}
		for _, cmd := range []string{"api", "worker"} {
			out, err := exec.Command("go", "build", "-race", "-o", filepath.Join(binDir, cmd), "github.com/vmrestore/vmrestore/cmd/"+cmd).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v: %s", cmd, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
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
// a volume, starts another, and checks that the job finishes exactly once: one VM, every
// volume equal to its backup, no partial file, no capacity drift.
func TestWorkerKilledMidCloneFinishesOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for asynq to recover the task (about a minute)")
	}
	// Most of its time is spent waiting for asynq to recover a task: let it overlap with other tests.
	t.Parallel()
	worker := binary(t, "worker")
	const group = "c0ffee00c0ffee00c0ffee00c0ffee00"
	e := newEnv(t, envOptions{noWorker: true, site: func(s *catalog.Site) {
		s.BackupStorages[0].BandwidthBytesPerSecond = 8 << 20 // 64 MiB take 8 s
	}})
	writeBigGroup(t, e.paths.Backup, group, 64<<20)
	t.Cleanup(func() { os.RemoveAll(backup.GroupDir(e.paths.Backup, group)) })

	env := []string{"REDIS_ADDR=" + e.redis.Addr, "VMRESTORE_METRICS_ADDR=127.0.0.1:0", "VMRESTORE_LOG_LEVEL=info", "VMRESTORE_HYPERVISOR=simulator"}
	w1 := startProcess(t, worker, env)
	r := e.restore(group, map[string]any{"name": "big", "cpuNum": 1, "memorySize": 1 << 30,
		"l3NetworkUuids": []string{demosite.L3ProdUUID}}, map[string]string{"Prefer": "respond-async"})
	mustf(t, r.status == 202, "submit: %d %s", r.status, r.body)
	loc := str(r.json(), "location")
	jobUUID := loc[strings.LastIndex(loc, "/")+1:]

	// Wait until the copy is under way, then kill the worker.
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		rec, err := e.store.GetJob(ctx, jobUUID)
		if err == nil && rec.Stage == "clone" && rec.Progress != nil && rec.Progress.BytesDone > 8<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the clone never started: %+v %v", rec, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	w1.kill()
	parts, _ := filepath.Glob(filepath.Join(e.paths.NFS, "*", "*", "*", "*.part"))
	parts2, _ := filepath.Glob(filepath.Join(e.paths.Local, "*", "*", "*", "*.part"))
	mustf(t, len(parts)+len(parts2) > 0, "the kill should leave a partial file behind for the re-run to clean up")

	killedAt := time.Now()
	startProcess(t, worker, env)
	done := e.poll(loc, 4*time.Minute)
	mustf(t, done.status == 200, "after the restart the job ends with %d: %s", done.status, done.body)
	t.Logf("job finished %v after the kill", time.Since(killedAt).Round(time.Second))
	inv := done.json()["inventory"].(map[string]any)

	rec, err := e.store.GetJob(ctx, jobUUID)
	mustf(t, err == nil && rec.Attempts >= 2, "the job should have run twice, attempts %d (%v)", rec.Attempts, err)
	vms := e.do("GET", "/zstack/v1/vm-instances", e.session, nil, nil).json()["inventories"].([]any)
	mustf(t, len(vms) == 1 && str(vms[0].(map[string]any), "uuid") == str(inv, "uuid"), "want exactly one VM, got %d", len(vms))
	checkRestoredFiles(t, e, group, inv)
	for _, dir := range []string{e.paths.NFS, e.paths.Local} {
		p, _ := filepath.Glob(filepath.Join(dir, "*", "*", "*", "*.part"))
		mustf(t, len(p) == 0, "partial files left: %v", p)
	}
	e.checkInvariants()
	n, _ := e.store.CountUsedIPs(ctx, demosite.L3ProdUUID)
	mustf(t, n == 1, "one address in use, got %d", n)
}

var _ = redistest.FreePort
