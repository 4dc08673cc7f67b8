package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// memory: peak resident memory (VmHWM) of the api and of a worker, as separate processes,
// with 10,000 jobs queued.
func memory(ctx context.Context, c Config) ([]Figure, error) {
	n := c.pick(10000, 2000)
	bin, err := buildBinaries(c, "api", "worker")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(bin)
	// A rig without worker gives the site and Redis; its in-process api is not measured.
	r, err := newRig(ctx, c, concurrency, false)
	if err != nil {
		return nil, err
	}
	defer r.close()
	env := append(os.Environ(), "REDIS_ADDR="+r.redis.Addr, "VMRESTORE_SITE="+filepath.Join(r.dir, "site.yaml"),
		"VMRESTORE_ADMIN_PASSWORD="+benchPassword, "VMRESTORE_METRICS_ADDR=127.0.0.1:0", "VMRESTORE_LOG_LEVEL=error", "VMRESTORE_HYPERVISOR=simulator",
		fmt.Sprintf("VMRESTORE_CONCURRENCY=%d", concurrency))
	port := freePort()
	api := exec.Command(filepath.Join(bin, "api"))
	api.Env = append(env, fmt.Sprintf("VMRESTORE_HTTP_ADDR=127.0.0.1:%d", port))
	if err := api.Start(); err != nil {
		return nil, err
	}
	defer func() { api.Process.Kill(); api.Wait() }()
	measured := &rig{base: fmt.Sprintf("http://127.0.0.1:%d", port), redis: r.redis, cfg: r.cfg}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if measured.session, err = measured.login(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the api process never answered: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	err = fanOut(ctx, 16, n, func(context.Context, int) error {
		if status, body, err := measured.restore("mem", true); err != nil || status != 202 {
			return fmt.Errorf("submit: %d %s %v", status, body, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	apiPeak, err := vmHWM(api.Process.Pid)
	if err != nil {
		return nil, err
	}
	worker := exec.Command(filepath.Join(bin, "worker"))
	worker.Env = env
	if err := worker.Start(); err != nil {
		return nil, err
	}
	defer func() { worker.Process.Kill(); worker.Wait() }()
	time.Sleep(time.Duration(c.pick(15, 5)) * time.Second)
	workerPeak, err := vmHWM(worker.Process.Pid)
	if err != nil {
		return nil, err
	}
	if p, err := vmHWM(api.Process.Pid); err == nil {
		apiPeak = max(apiPeak, p)
	}
	note := fmt.Sprintf("%d restore jobs submitted to the api process before a worker process (concurrency %d) starts on them", n, concurrency)
	return []Figure{
		figure(fmt.Sprintf("api peak RSS, %d jobs queued", n), apiPeak, "MiB", nil, "", nil, note),
		figure(fmt.Sprintf("worker peak RSS, %d jobs queued", n), workerPeak, "MiB", nil, "", nil,
			fmt.Sprintf("after %d s working through them", c.pick(15, 5))),
	}, nil
}

// buildBinaries builds vmrestore's commands into a new folder under c.Dir.
func buildBinaries(c Config, cmds ...string) (string, error) {
	bin, err := os.MkdirTemp(c.Dir, "vmrestore-bench-bin-")
	if err != nil {
		return "", err
	}
	for _, cmd := range cmds {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, cmd), "github.com/vmrestore/vmrestore/cmd/"+cmd).CombinedOutput(); err != nil {
			os.RemoveAll(bin)
			return "", fmt.Errorf("go build %s: %v %s", cmd, err, out)
		}
	}
	return bin, nil
}

// vmHWM reads a process's peak resident set, in MiB.
func vmHWM(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM for pid %d", pid)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 18080
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
