package app_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/hypervisor/libvirttest"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/overlay"
)

const instantTag = "instantRestore::true"

// instantEnv is guestEnv whose backup storage the qemu user can read (an instant restore's
// VM reads its backups) and whose bandwidth is limited to bytesPerSecond (a raw 40 MiB test
// disk then takes 40 MiB / bytesPerSecond to hydrate).
func instantEnv(t *testing.T, bytesPerSecond int, noWorker bool) (*env, *libvirttest.GuestImage, string) {
	t.Helper()
	backups := sharedBackups(t)
	for _, dir := range []string{backups, backup.GroupsDir(backups)} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e, img := guestEnvWith(t, nil, noWorker, func(s *catalog.Site) {
		for i := range s.BackupStorages {
			s.BackupStorages[i].BandwidthBytesPerSecond = catalog.Bytes(bytesPerSecond)
		}
	})
	return e, img, backups
}

// instantJob is a job and its only volume file (the overlay, with its backing).
func (e *env) instantJob(jobUUID string) (*job.Record, job.ClonedFile) {
	e.t.Helper()
	rec, err := e.store.GetJob(context.Background(), jobUUID)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, f := range rec.Checkpoints.Volumes {
		return rec, f
	}
	return rec, job.ClonedFile{}
}

// waitHydrating waits until the job pulls its backup, and returns its record then.
func (e *env) waitHydrating(jobUUID string, within time.Duration) *job.Record {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		rec, err := e.store.GetJob(context.Background(), jobUUID)
		if err == nil && rec.Stage == job.StageHydrate && rec.Progress != nil && rec.Progress.BytesDone > 0 && rec.Progress.BytesDone < rec.Progress.BytesTotal {
			return rec
		}
		if err == nil && rec.State.Terminal() {
			e.t.Fatalf("the job ended before its hydration could be seen: %s %v", rec.State, rec.Error)
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("the job did not start hydrating within %s", within)
	return nil
}

func postRestore(e *env, group string, params map[string]any, tags []string) string {
	e.t.Helper()
	r := e.do("POST", "/zstack/v1/vm-instances/from/vm-backups/"+group, e.session,
		map[string]any{"params": params, "systemTags": tags}, map[string]string{"Prefer": "respond-async"})
	mustf(e.t, r.status == 202, "restore: %d %s", r.status, r.body)
	return str(r.json(), "location")
}

func jobOf(location string) string { return location[strings.LastIndex(location, "/")+1:] }

// TestInstantRestoreHydrates: an instant restore boots its guest from the backup (the console
// check passes) long before the data is in, pulls it at the storage's bandwidth, and ends
// with both times recorded, the overlay standing alone and, after the guest is shut down,
// equal to the backup byte for byte; the backup was never taken over by libvirt, and the
// group is no longer marked as backing a VM.
func TestInstantRestoreHydrates(t *testing.T) {
	e, img, backups := instantEnv(t, 4<<20, false)
	group := libvirttest.WriteRawGroup(t, backups, "testguest-instant", img.Good, demosite.L3ProdUUID)
	ctx := context.Background()

	loc := postRestore(e, group, guestParams("guest-instant"), []string{instantTag, guestReadyTag})
	jobUUID := jobOf(loc)
	running := e.waitHydrating(jobUUID, 3*time.Minute)
	mustf(t, running.Instant != nil && running.Instant.State == job.InstantRunning && !running.Instant.RunningAt.IsZero(),
		"the job does not say its VM runs while it hydrates: %+v", running.Instant)
	marked, err := e.store.BackingJobs(ctx, group)
	mustf(t, err == nil && len(marked) == 1 && marked[0] == jobUUID, "the group is not marked as backing the VM: %v %v", marked, err)
	view := e.do("GET", "/api/v1/jobs/"+jobUUID, e.session, nil, nil)
	mustf(t, view.status == 200 && strings.Contains(string(view.body), `"instant":{"state":"Running"`), "the job view does not show the instant course: %s", view.body)

	r := e.poll(loc, 4*time.Minute)
	mustf(t, r.status == 200, "instant restore: %d %s", r.status, r.body)
	vmUUID := str(r.json()["inventory"].(map[string]any), "uuid")
	t.Cleanup(func() { libvirttest.RemoveDomain(t, hypervisor.LocalURI, vmUUID) })
	rec, f := e.instantJob(jobUUID)
	in := rec.Instant
	mustf(t, in != nil && in.State == job.InstantHydrated && in.HydratedAt.After(in.RunningAt), "the job's instant course: %+v", in)
	t.Logf("running %s after the request, hydrated %s after it", in.RunningAt.Sub(rec.CreatedAt).Round(time.Millisecond), in.HydratedAt.Sub(rec.CreatedAt).Round(time.Millisecond))
	mustf(t, in.HydratedAt.Sub(in.RunningAt) > 5*time.Second, "a 40 MiB pull at 4 MiB/s took %s: the bandwidth was not applied", in.HydratedAt.Sub(in.RunningAt))
	mustf(t, f.Backing != nil, "no backing recorded")
	b, err := overlay.Backing(ctx, f.InstallPath)
	mustf(t, err == nil && b == "", "the overlay still names a backing file %q (%v)", b, err)
	marked, _ = e.store.BackingJobs(ctx, group)
	mustf(t, len(marked) == 0, "the group is still marked as backing %v", marked)
	st, err := os.Stat(f.Backing.Path)
	mustf(t, err == nil && st.Sys().(*syscall.Stat_t).Uid == 0, "libvirt took the backup over: %v %v", err, st)

	if _, err := libvirttest.Virsh(t, hypervisor.LocalURI, "destroy", vmUUID); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "compare", "-f", "qcow2", "-F", "raw", f.InstallPath, f.Backing.Path).CombinedOutput(); err != nil {
		t.Fatalf("the hydrated volume differs from its backup: %v: %s", err, out)
	}
	e.checkInvariants()
}

// TestInstantRestoreTruncatedBackupFails: a backup cut short while it backs the running VM
// (its pull would "complete" with zeros) fails the job loudly, never "Hydrated", and the job
// is compensated.
func TestInstantRestoreTruncatedBackupFails(t *testing.T) {
	e, img, backups := instantEnv(t, 4<<20, false)
	group := libvirttest.WriteRawGroup(t, backups, "testguest-truncated", img.Good, demosite.L3ProdUUID)
	loc := postRestore(e, group, guestParams("guest-truncated"), []string{instantTag})
	jobUUID := jobOf(loc)
	e.waitHydrating(jobUUID, 3*time.Minute)
	_, f := e.instantJob(jobUUID)
	if err := os.Truncate(f.Backing.Path, 8<<20); err != nil {
		t.Fatal(err)
	}
	r := e.poll(loc, 3*time.Minute)
	ec := r.errorCode()
	details := errorDetails(ec)
	mustf(t, r.status == 503 && strings.Contains(details, "volume backup[uuid:"), "a truncated backup did not fail the job by name: %d %s", r.status, r.body)
	t.Logf("truncated backup: %s", details)
	rec, _ := e.instantJob(jobUUID)
	mustf(t, rec.State == job.Failed && rec.Instant != nil && rec.Instant.State == job.InstantFailed, "state %s, instant %+v", rec.State, rec.Instant)
	mustf(t, libvirttest.CountDomains(t, hypervisor.LocalURI, rec.VMUUID) == 0, "the failed restore's domain was left")
	_, err := os.Stat(f.InstallPath)
	mustf(t, os.IsNotExist(err), "the failed restore's overlay was left: %v", err)
	marked, _ := e.store.BackingJobs(context.Background(), group)
	mustf(t, len(marked) == 0, "the group is still marked as backing %v", marked)
	e.checkInvariants()
}

// TestInstantWorkerKilledMidHydration: the worker dies while the backup is being pulled; the
// pull goes on in QEMU, and the next worker follows it (it does not start another: nothing
// is copied twice) to Hydrated.
func TestInstantWorkerKilledMidHydration(t *testing.T) {
	e, img, backups := instantEnv(t, 2<<20, true)
	group := libvirttest.WriteRawGroup(t, backups, "testguest-instant-kill", img.Good, demosite.L3ProdUUID)
	env := []string{"REDIS_ADDR=" + e.redis.Addr, "VMRESTORE_METRICS_ADDR=127.0.0.1:0", "VMRESTORE_LOG_LEVEL=info",
		"VMRESTORE_HYPERVISOR=libvirt", "VMRESTORE_LIBVIRT_URI=" + hypervisor.LocalURI, "VMRESTORE_LIBVIRT_DOMAIN_TYPE=qemu"}
	first := startProcess(t, binary(t, "worker"), env)
	loc := postRestore(e, group, guestParams("guest-instant-kill"), []string{instantTag})
	jobUUID := jobOf(loc)
	e.waitHydrating(jobUUID, 3*time.Minute)
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()

	second := startProcess(t, binary(t, "worker"), env)
	r := e.poll(loc, 4*time.Minute)
	mustf(t, r.status == 200, "the job did not resume after the worker died: %d %s", r.status, r.body)
	vmUUID := str(r.json()["inventory"].(map[string]any), "uuid")
	t.Cleanup(func() { libvirttest.RemoveDomain(t, hypervisor.LocalURI, vmUUID) })
	mustf(t, strings.Contains(second.output(), "already under way"), "the second worker did not follow the first one's pull:\n%s", second.output())
	rec, f := e.instantJob(jobUUID)
	mustf(t, rec.Instant != nil && rec.Instant.State == job.InstantHydrated, "instant course %+v", rec.Instant)
	b, err := overlay.Backing(context.Background(), f.InstallPath)
	mustf(t, err == nil && b == "", "the overlay still names a backing file %q (%v)", b, err)
	mustf(t, libvirttest.CountDomains(t, hypervisor.LocalURI, vmUUID) == 1, "duplicate or missing domain")
	e.checkInvariants()
}

// TestInstantRestoreNeedsLibvirt: on the simulator (which runs no VM) an instant restore is
// refused by name, through the native API's "instant": true, and leaves nothing behind; a
// malformed tag is refused before anything is queued.
func TestInstantRestoreNeedsLibvirt(t *testing.T) {
	e := newEnv(t)
	body := map[string]any{"groupUuid": demosite.GroupWeb01UUID, "instant": true, "params": webParams("instant-sim")}
	r := e.do("POST", "/api/v1/restores", e.session, body, nil)
	ec, _ := r.json()["error"].(map[string]any)
	details := errorDetails(ec)
	mustf(t, r.status == 409 && str(ec, "code") == "SYS.1006" && strings.Contains(details, "VMRESTORE_HYPERVISOR=libvirt") && strings.Contains(details, "simulator"),
		"an instant restore on the simulator: %d %s", r.status, r.body)
	marked, err := e.store.BackingJobs(context.Background(), demosite.GroupWeb01UUID)
	mustf(t, err == nil && len(marked) == 0, "the group is left marked: %v %v", marked, err)

	r = e.do("POST", "/zstack/v1/vm-instances/from/vm-backups/"+demosite.GroupWeb01UUID, e.session,
		map[string]any{"params": webParams("instant-bad-tag"), "systemTags": []string{"instantRestore::yes"}}, map[string]string{"Prefer": "wait=60"})
	mustf(t, strings.Contains(string(r.body), "instantRestore::true or instantRestore::false"), "a malformed tag: %d %s", r.status, r.body)
	e.checkInvariants()
}
