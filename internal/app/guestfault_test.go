package app_test

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/hypervisor/libvirttest"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/testenv"
	"github.com/vmrestore/vmrestore/internal/testrig"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// waitDomain polls virsh until the VM's domain is in one of the states.
func waitDomain(t *testing.T, vmUUID string, within time.Duration, states ...string) string {
	t.Helper()
	var st string
	ok := testrig.Within(within, func() bool {
		st = libvirttest.DomainState(t, hypervisor.LocalURI, vmUUID)
		return slices.Contains(states, st)
	})
	mustf(t, ok, "domain %s is %q, not %v, after %s", vmUUID, st, states, within)
	return st
}

// TestLibvirtdKilledMidStartAndMidHydration kills libvirtd (SIGKILL) twice during one instant
// restore, and starts it again each time: first while the instantiate stage is starting the
// guest and waiting for its boot (the job resumes, finds the domain by its uuid and boots it
// again for the console check), then while the hydrate stage copies the disk (the copy goes
// on inside QEMU; the job follows it again once libvirtd answers, and never starts another).
// The job ends Hydrated with one running domain, whose volume equals its backup.
func TestLibvirtdKilledMidStartAndMidHydration(t *testing.T) {
	if !testenv.InCI() && os.Getenv("VMRESTORE_TEST_KILL_LIBVIRTD") != "1" {
		t.Skip("kills and restarts this machine's libvirtd: runs under CI=true, or with VMRESTORE_TEST_KILL_LIBVIRTD=1")
	}
	t.Parallel() // beside the tests that do not use libvirtd; those that do wait for its lock
	worker := binary(t, "worker")
	libvirttest.NeedExclusive(t)
	e, img, backups := instantEnv(t, 1<<20, true)
	group := libvirttest.WriteRawGroup(t, backups, "testguest-libvirtd-kill", img.Good, demosite.L3ProdUUID)
	w := startProcess(t, worker, []string{"REDIS_ADDR=" + e.redis.Addr, "VMRESTORE_METRICS_ADDR=127.0.0.1:0", "VMRESTORE_LOG_LEVEL=info",
		"VMRESTORE_HYPERVISOR=libvirt", "VMRESTORE_LIBVIRT_URI=" + hypervisor.LocalURI, "VMRESTORE_LIBVIRT_DOMAIN_TYPE=qemu"})
	vmUUID := zstack.NewUUID()
	t.Cleanup(func() { libvirttest.RemoveDomain(t, hypervisor.LocalURI, vmUUID) })

	p := guestParams("guest-libvirtd-kill")
	p["resourceUuid"] = vmUUID
	loc := postRestore(e, group, p, []string{instantTag, guestReadyTag})
	jobUUID := jobOf(loc)

	waitDomain(t, vmUUID, 3*time.Minute, "running", "paused")
	killLibvirtd(t, "while the guest was starting")
	e.waitHydrating(jobUUID, 4*time.Minute)
	killLibvirtd(t, "while the disk was being copied")

	done := e.poll(loc, 4*time.Minute)
	mustf(t, done.status == 200, "the job did not survive libvirtd's deaths: %d %s", done.status, done.body)
	mustf(t, str(done.json()["inventory"].(map[string]any), "state") == "Running", "not Running: %s", done.body)
	mustf(t, strings.Count(w.output(), "copy started") == 1, "the disk's copy was started again after libvirtd came back:\n%s", w.output())
	rec, f := e.instantJob(jobUUID)
	mustf(t, rec.Instant != nil && rec.Instant.State == job.InstantHydrated && f.Hydrated, "instant course %+v, file %+v", rec.Instant, f)
	e.checkHydratedFile(vmUUID, f)
	mustf(t, libvirttest.CountDomains(t, hypervisor.LocalURI, vmUUID) == 1, "duplicate or missing domain")
	mustf(t, libvirttest.DomainState(t, hypervisor.LocalURI, vmUUID) == "running", "the guest is not running")
	if _, err := libvirttest.Virsh(t, hypervisor.LocalURI, "destroy", vmUUID); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "compare", "-f", "qcow2", "-F", "raw", f.InstallPath, f.Backing.Path).CombinedOutput(); err != nil {
		t.Fatalf("the hydrated volume differs from its backup: %v: %s", err, out)
	}
	e.checkInvariants()
}

// killLibvirtd SIGKILLs the machine's libvirtd, leaves it dead 2 s (the job meets a libvirtd
// that is not there), then starts it again and waits until it answers.
func killLibvirtd(t *testing.T, when string) {
	t.Helper()
	pidText, err := os.ReadFile("/run/libvirtd.pid")
	if err != nil {
		t.Fatalf("libvirtd's pid: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill libvirtd %d: %v", pid, err)
	}
	t.Logf("killed libvirtd (pid %d) %s", pid, when)
	testrig.Eventually(t, 30*time.Second, func() bool { return syscall.Kill(pid, 0) != nil }, "libvirtd (pid %d) did not die of SIGKILL", pid)
	time.Sleep(2 * time.Second)
	if out, err := exec.Command("libvirtd", "-d").CombinedOutput(); err != nil {
		t.Fatalf("restart libvirtd: %v: %s", err, out)
	}
	testrig.Eventually(t, 30*time.Second, func() bool {
		_, err := libvirttest.Virsh(t, hypervisor.LocalURI, "version")
		return err == nil
	}, "libvirtd did not come back")
}

// TestWorkerKilledBetweenDefineAndStart: a worker dies right after libvirt defined the
// domain, before it started it. The next worker finds the defined domain by its uuid,
// starts it (no second domain), passes the boot check, and the job ends Running.
func TestWorkerKilledBetweenDefineAndStart(t *testing.T) {
	t.Parallel()
	worker := binary(t, "worker") // before it holds a guest slot
	e, img := guestEnvWith(t, nil, true)
	group := libvirttest.WriteGroup(t, sharedBackups(t), "testguest-worker-kill", img.Good, demosite.L3ProdUUID)
	vmUUID := zstack.NewUUID()
	t.Cleanup(func() { libvirttest.RemoveDomain(t, hypervisor.LocalURI, vmUUID) })
	env := []string{"REDIS_ADDR=" + e.redis.Addr, "VMRESTORE_METRICS_ADDR=127.0.0.1:0", "VMRESTORE_LOG_LEVEL=info",
		"VMRESTORE_HYPERVISOR=libvirt", "VMRESTORE_LIBVIRT_URI=" + hypervisor.LocalURI, "VMRESTORE_LIBVIRT_DOMAIN_TYPE=qemu"}

	crashing := startProcess(t, worker, append(env, "VMRESTORE_FAULT_EXIT_AT=after-define"))
	p := guestParams("guest-worker-kill")
	p["resourceUuid"] = vmUUID
	r := e.do("POST", "/zstack/v1/vm-instances/from/vm-backups/"+group, e.session,
		map[string]any{"params": p, "systemTags": []string{guestReadyTag}}, map[string]string{"Prefer": "respond-async"})
	mustf(t, r.status == 202, "restore: %d %s", r.status, r.body)
	loc := str(r.json(), "location")

	err := crashing.cmd.Wait()
	mustf(t, err != nil && crashing.cmd.ProcessState.ExitCode() == 3, "the worker did not stop at the fault point: %v\n%s", err, crashing.output())
	mustf(t, libvirttest.DomainState(t, hypervisor.LocalURI, vmUUID) == "shut off", "after the crash the domain should be defined, not started")

	startProcess(t, worker, env)
	done := e.poll(loc, 4*time.Minute)
	mustf(t, done.status == 200, "the job did not resume after the crash: %d %s", done.status, done.body)
	mustf(t, libvirttest.CountDomains(t, hypervisor.LocalURI, vmUUID) == 1, "duplicate or missing domain")
	mustf(t, libvirttest.DomainState(t, hypervisor.LocalURI, vmUUID) == "running", "the guest is not running")
	e.checkInvariants()
}

// TestHostUnreachable: a host whose libvirtd cannot be reached fails the job once its
// retries are spent, with an error naming the host and the URI, and nothing is left: no
// domain was ever defined, so compensation does not need the host.
func TestHostUnreachable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{config: func(c *app.Config) {
		// Port 1 of this machine: nothing listens there (the test sends nothing elsewhere).
		c.Hypervisor, c.LibvirtURI, c.MaxRetry = app.HypervisorLibvirt, "qemu+tcp://127.0.0.1:1/system", 1
		c.LibvirtTimeout = 2 * time.Second
		c.HostLocal = app.HostLocalOff
	}})
	r := e.restore(demosite.GroupWeb01UUID, webParams("unreachable"), map[string]string{"Prefer": "respond-async"})
	mustf(t, r.status == 202, "restore: %d %s", r.status, r.body)
	ec := e.poll(str(r.json(), "location"), time.Minute).errorCode()
	details := errorDetails(ec)
	mustf(t, strings.Contains(details, "libvirt unreachable") && strings.Contains(details, "host[uuid:") &&
		strings.Contains(details, "qemu+tcp://127.0.0.1:1/system"), "the failure does not say which host could not be reached: %v", ec)
	loc := str(r.json(), "location")
	rec, err := e.store.GetJob(context.Background(), loc[strings.LastIndex(loc, "/")+1:])
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rec.Checkpoints.Volumes {
		if _, err := os.Stat(f.InstallPath); !os.IsNotExist(err) {
			t.Fatalf("volume %s was left: %v", f.InstallPath, err)
		}
	}
	e.checkInvariants()
}
