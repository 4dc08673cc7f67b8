package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/job"
)

// The crash figures: two worker processes, a restore of one large volume, and the worker
// copying it SIGKILLed half-way. How long until the copy goes on on the other worker (the
// job lock lapses, the take-over claims it, the copy resumes from its last checkpoint), and
// how much of the volume is copied twice.
const crashGroup = "be0c6001be0c6001be0c6001be0c6001"

func crashCost(ctx context.Context, c Config) ([]Figure, error) {
	const size = 1 << 30
	bin, err := buildBinaries(c, "worker")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(bin)
	r, err := newRigWith(ctx, c, rigOptions{concurrency: 20,
		groups: func(dir string) error { return writeOneVolumeGroup(filepath.Join(dir, "backup"), crashGroup, size) }})
	if err != nil {
		return nil, err
	}
	defer r.close()
	env := append(os.Environ(), "REDIS_ADDR="+r.redis.Addr, "VMRESTORE_METRICS_ADDR=127.0.0.1:0", "VMRESTORE_LOG_LEVEL=error")
	var workers []*workerProcess
	defer func() {
		for _, w := range workers {
			w.kill()
		}
	}()
	for range 2 {
		w, err := startWorkerProcess(filepath.Join(bin, "worker"), env)
		if err != nil {
			return nil, err
		}
		workers = append(workers, w)
	}
	time.Sleep(time.Second) // let both index the group
	status, body, err := r.restoreGroup(crashGroup, "crash", true)
	if err != nil || status != 202 {
		return nil, fmt.Errorf("restore: %d %s %v", status, body, err)
	}
	id := jobOf(body)

	// The worker copying is the one whose clone bytes move; it is stopped (SIGSTOP) at half
	// the volume, what it read is taken from /proc (an upper bound: its other reads count
	// too), and it is killed.
	var victim, survivor *workerProcess
	deadline := time.Now().Add(2 * time.Minute)
	for victim == nil {
		for i, w := range workers {
			if n, err := scrapeMetric(w.metrics, "vmrestore_clone_bytes_total"); err == nil && n >= float64(size)/2 {
				victim, survivor = w, workers[1-i]
			}
		}
		if time.Now().After(deadline) {
			rec, err := r.store().GetJob(ctx, id)
			if err != nil {
				return nil, fmt.Errorf("the copy never reached half the volume: %v", err)
			}
			return nil, fmt.Errorf("the copy never reached half the volume: job %s, stage %s, attempts %d, error %v", rec.State, rec.Stage, rec.Attempts, rec.Error)
		}
		time.Sleep(5 * time.Millisecond)
	}
	victim.cmd.Process.Signal(syscall.SIGSTOP)
	read, err := victim.readBytes()
	victim.cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	if err != nil {
		return nil, err
	}
	var goneOn time.Duration
	for goneOn == 0 {
		if n, err := scrapeMetric(survivor.metrics, "vmrestore_clone_bytes_total"); err == nil && n > 0 {
			goneOn = time.Since(killed)
		}
		if time.Since(killed) > 3*time.Minute {
			return nil, fmt.Errorf("the copy did not go on within 3 minutes of the kill")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		rec, err := r.store().GetJob(ctx, id)
		if err == nil && rec.State.Terminal() {
			if rec.State != job.Succeeded {
				return nil, fmt.Errorf("job %s ended %s: %v", id, rec.State, rec.Error)
			}
			break
		}
		if time.Since(killed) > 5*time.Minute {
			return nil, fmt.Errorf("job %s did not end within 5 minutes of the kill", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
	after, err := scrapeMetric(survivor.metrics, "vmrestore_clone_bytes_total")
	if err != nil {
		return nil, err
	}
	resumed, _ := scrapeMetric(survivor.metrics, "vmrestore_clone_resumed_bytes_total")
	again := max(float64(read)+after-float64(size), 0)
	c.logf("killed at %.0f MiB of %d MiB read; the copy went on %v later, resumed at %.0f MiB, and read %.0f MiB more: %.1f MiB copied twice",
		float64(read)/(1<<20), int64(size)>>20, goneOn.Round(10*time.Millisecond), resumed/(1<<20), after/(1<<20), again/(1<<20))
	note := fmt.Sprintf("a %d MiB volume of random data, two worker processes, the one copying SIGKILLed at %.0f %% read", int64(size)>>20, 100*float64(read)/float64(size))
	return []Figure{
		figure("crash: kill to copy going on", goneOn.Seconds(), "s", nil, "≤ 15", func(v, _ float64) bool { return v <= 15 },
			note+"; until the other worker reads again (job lock lapses after 8 s, the take-over confirms it 1.5 s later)"),
		figure("crash: copied twice", 100*again/float64(size), "% volume", nil, "≤ 5", func(v, _ float64) bool { return v <= 5 },
			fmt.Sprintf("read by the killed worker (/proc rchar, an upper bound) and the other (vmrestore_clone_bytes_total) beyond the volume; resumed at %.0f MiB, checkpoints every 32 MiB", resumed/(1<<20))),
	}, nil
}

// workerProcess is a worker binary the bench runs.
type workerProcess struct {
	cmd     *exec.Cmd
	metrics string // its /metrics URL
	rchar0  int64  // bytes read when it was ready
	done    sync.Once
}

func startWorkerProcess(bin string, env []string) (*workerProcess, error) {
	cmd := exec.Command(bin)
	cmd.Env = env
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &workerProcess{cmd: cmd}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case line <- sc.Text():
			default:
			}
		}
	}()
	select {
	case l := <-line:
		const mark = "metrics on http://"
		i := strings.Index(l, mark)
		j := strings.Index(l, "/metrics,")
		if i < 0 || j < i {
			w.kill()
			return nil, fmt.Errorf("worker start line: %q", l)
		}
		w.metrics = "http://" + l[i+len(mark):j] + "/metrics"
	case <-time.After(30 * time.Second):
		w.kill()
		return nil, fmt.Errorf("the worker did not start within 30 s: %s", stderr.String())
	}
	w.rchar0, err = rchar(cmd.Process.Pid)
	return w, err
}

// readBytes is what the process read since it was ready.
func (w *workerProcess) readBytes() (int64, error) {
	n, err := rchar(w.cmd.Process.Pid)
	return n - w.rchar0, err
}

func (w *workerProcess) kill() {
	w.done.Do(func() {
		w.cmd.Process.Kill()
		w.cmd.Wait()
	})
}

// rchar reads the bytes a process read (read and pread calls) from /proc/<pid>/io.
func rchar(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "rchar:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no rchar in /proc/%d/io", pid)
}

// writeOneVolumeGroup writes a group of one dense raw root volume of random data.
func writeOneVolumeGroup(storage, group string, size int64) error {
	dir := backup.GroupDir(storage, group)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	uuid := group[:30] + "00"
	path := filepath.Join(dir, uuid+".raw")
	if err := writeRandom(path, size, 0, 11); err != nil {
		return err
	}
	sum, err := clone.SumFile(path, clone.XXH3Chunked)
	if err != nil {
		return err
	}
	g := backup.Group{GroupUUID: group, Name: "crash", VM: backup.SourceVM{Name: "crash", CPUNum: 1, MemorySize: 1 << 30},
		Volumes: []backup.Volume{{UUID: uuid, Type: "Root", Format: "raw", Size: size, ActualSize: size, File: uuid + ".raw",
			Checksum: &backup.Checksum{Algorithm: clone.XXH3Chunked, Value: sum}}}}
	b, _ := json.Marshal(g)
	return os.WriteFile(filepath.Join(dir, "group.json"), b, 0o640)
}
