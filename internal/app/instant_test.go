package app_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/hypervisor/libvirttest"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/overlay"
	"github.com/vmrestore/vmrestore/internal/testrig"
)

const instantTag = "instantRestore::true"

// instantEnv is guestEnv whose backup storage the qemu user can read (an instant restore's
// VM reads its backups) and whose bandwidth is limited to bytesPerSecond (the raw 40 MiB test
// disk holds 14 MiB of data, which its copy moves in about 14 MiB / bytesPerSecond).
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

// instantJob is a job and its only volume file (with its backing).
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

// waitHydrating waits until the job copies its backup, and returns its record then.
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

// checkHydratedFile checks that the volume's file stands alone with a copied volume's mode,
// that its overlay is gone, and that the VM's domain (live and saved) runs from the file.
func (e *env) checkHydratedFile(vmUUID string, f job.ClonedFile) {
	e.t.Helper()
	b, err := overlay.Backing(context.Background(), f.InstallPath)
	mustf(e.t, err == nil && b == "", "the volume's file %s names a backing file %q (%v)", f.InstallPath, b, err)
	_, err = os.Stat(overlay.PathOf(f.InstallPath))
	mustf(e.t, os.IsNotExist(err), "the overlay of the hydrated volume was left: %v", err)
	st, err := os.Stat(f.InstallPath)
	mustf(e.t, err == nil && st.Mode().Perm() == clone.FileMode, "the hydrated volume's file has the mode %v (%v), not a copied volume's %v", st.Mode().Perm(), err, clone.FileMode)
	for _, args := range [][]string{{"dumpxml", vmUUID}, {"dumpxml", "--inactive", vmUUID}} {
		xml, err := libvirttest.Virsh(e.t, hypervisor.LocalURI, args...)
		mustf(e.t, err == nil && strings.Contains(xml, "'"+f.InstallPath+"'") && !strings.Contains(xml, overlay.Suffix+"'") && !strings.Contains(xml, f.Backing.Path),
			"virsh %v does not run the VM from its volume's file %s alone: %v\n%s", args, f.InstallPath, err, xml)
	}
}

func postRestore(e *env, group string, params map[string]any, tags []string) string {
	e.t.Helper()
	r := e.do("POST", "/zstack/v1/vm-instances/from/vm-backups/"+group, e.session,
		map[string]any{"params": params, "systemTags": tags}, map[string]string{"Prefer": "respond-async"})
	mustf(e.t, r.status == 202, "restore: %d %s", r.status, r.body)
	return str(r.json(), "location")
}

func jobOf(location string) string { return location[strings.LastIndex(location, "/")+1:] }

// TestInstantRestoreHydrates: an instant restore of a VM with a root and a data volume boots
// its guest from the backups (the console check passes) long before the data is in, copies
// each into its volume's file at the storage's bandwidth, and ends with both times recorded,
// the VM running from the volumes' files, which stand alone and, after the guest is shut
// down, equal their backups byte for byte; the overlays are gone, the backups were never
// taken over by libvirt, and the group is no longer marked as backing a VM.
func TestInstantRestoreHydrates(t *testing.T) {
	t.Parallel()
	e, img, backups := instantEnv(t, 2<<20, false)
	group := libvirttest.WriteRawGroup(t, backups, "testguest-instant", img.Good, demosite.L3ProdUUID)
	libvirttest.AddDataVolume(t, backups, group, 4<<20)
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
	view = e.do("GET", "/api/v1/jobs/"+jobUUID, e.session, nil, nil)
	mustf(t, view.status == 200 && str(view.json(), "state") == "succeeded" && str(view.json(), "outcome") == "Hydrated",
		"the job view of a hydrated instant restore does not say so: %s", view.body)
	rec, err := e.store.GetJob(ctx, jobUUID)
	if err != nil {
		t.Fatal(err)
	}
	in := rec.Instant
	mustf(t, in != nil && in.State == job.InstantHydrated && in.HydratedAt.After(in.RunningAt), "the job's instant course: %+v", in)
	t.Logf("running %s after the request, hydrated %s after it", in.RunningAt.Sub(rec.CreatedAt).Round(time.Millisecond), in.HydratedAt.Sub(rec.CreatedAt).Round(time.Millisecond))
	mustf(t, in.HydratedAt.Sub(in.RunningAt) > 6*time.Second, "a copy of 18 MiB of data at 2 MiB/s took %s: the bandwidth was not applied", in.HydratedAt.Sub(in.RunningAt))
	mustf(t, len(rec.Checkpoints.Volumes) == 2, "the job restored %d volumes, not the root and the data volume", len(rec.Checkpoints.Volumes))
	for _, f := range rec.Checkpoints.Volumes {
		mustf(t, f.Backing != nil && f.Hydrated, "no backing recorded, or not hydrated: %+v", f)
		e.checkHydratedFile(vmUUID, f)
		st, err := os.Stat(f.Backing.Path)
		mustf(t, err == nil && st.Sys().(*syscall.Stat_t).Uid == 0, "libvirt took the backup over: %v %v", err, st)
	}
	marked, _ = e.store.BackingJobs(ctx, group)
	mustf(t, len(marked) == 0, "the group is still marked as backing %v", marked)

	if _, err := libvirttest.Virsh(t, hypervisor.LocalURI, "destroy", vmUUID); err != nil {
		t.Fatal(err)
	}
	for _, f := range rec.Checkpoints.Volumes {
		if out, err := exec.Command("qemu-img", "compare", "-f", "qcow2", "-F", "raw", f.InstallPath, f.Backing.Path).CombinedOutput(); err != nil {
			t.Fatalf("the hydrated volume %s differs from its backup: %v: %s", f.InstallPath, err, out)
		}
	}
	e.checkInvariants()
}

// TestInstantRestoreTruncatedBackupFails: a backup cut short while it backs the running VM
// (its pull would "complete" with zeros) fails the job loudly, never "Hydrated", and the job
// is compensated.
func TestInstantRestoreTruncatedBackupFails(t *testing.T) {
	t.Parallel()
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
	for _, path := range []string{f.InstallPath, overlay.PathOf(f.InstallPath)} {
		_, err := os.Stat(path)
		mustf(t, os.IsNotExist(err), "the failed restore's file %s was left: %v", path, err)
	}
	marked, _ := e.store.BackingJobs(context.Background(), group)
	mustf(t, len(marked) == 0, "the group is still marked as backing %v", marked)
	e.checkInvariants()
}

// TestInstantWorkerKilledMidHydration: the worker dies while the backup is being copied; the
// copy goes on in QEMU, and the next worker follows it (it does not start another: nothing
// is copied twice) to its pivot, and dies right after it, before it recorded the volume
// hydrated or removed its overlay; the third finds the VM on the volume's file, records it
// and only cleans up, to Hydrated.
func TestInstantWorkerKilledMidHydration(t *testing.T) {
	t.Parallel()
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

	second := startProcess(t, binary(t, "worker"), append(env, "VMRESTORE_FAULT_EXIT_AT=after-pivot"))
	testrig.Eventually(t, 4*time.Minute, func() bool { return strings.Contains(second.output(), "exiting at after-pivot") },
		"the second worker did not stop after the pivot:\n%s", second.output())
	_ = second.cmd.Wait()
	mustf(t, strings.Contains(second.output(), "already under way"), "the second worker did not follow the first one's copy:\n%s", second.output())
	_, f := e.instantJob(jobUUID)
	mustf(t, !f.Hydrated, "the volume was recorded hydrated before the worker died")
	_, err := os.Stat(overlay.PathOf(f.InstallPath))
	mustf(t, err == nil, "the overlay is gone before the job recorded its volume hydrated: %v", err)

	third := startProcess(t, binary(t, "worker"), env)
	r := e.poll(loc, 4*time.Minute)
	mustf(t, r.status == 200, "the job did not resume after the workers died: %d %s", r.status, r.body)
	vmUUID := str(r.json()["inventory"].(map[string]any), "uuid")
	t.Cleanup(func() { libvirttest.RemoveDomain(t, hypervisor.LocalURI, vmUUID) })
	mustf(t, strings.Contains(third.output(), "already runs from the volume's file") && !strings.Contains(third.output(), "copy started"),
		"the third worker did not find the VM on the volume's file, or copied again:\n%s", third.output())
	rec, f := e.instantJob(jobUUID)
	mustf(t, rec.Instant != nil && rec.Instant.State == job.InstantHydrated && f.Hydrated, "instant course %+v, file %+v", rec.Instant, f)
	e.checkHydratedFile(vmUUID, f)
	mustf(t, libvirttest.CountDomains(t, hypervisor.LocalURI, vmUUID) == 1, "duplicate or missing domain")
	e.checkInvariants()
}

// TestInstantRestoreNeedsLibvirt: on the simulator (which runs no VM) an instant restore is
// refused by name, through the native API's "instant": true, and leaves nothing behind; a
// malformed tag is refused before anything is queued.
func TestInstantRestoreNeedsLibvirt(t *testing.T) {
	t.Parallel()
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

// TestInstantSlotLostMidHydrationHandsBack: a job whose clone slot is taken from it while it
// follows its pull gives its worker slot back, as the clone stage does (a hand-back, not an
// attempt spent); the copy goes on in QEMU, and once a slot is free again the job follows it
// to Hydrated.
func TestInstantSlotLostMidHydrationHandsBack(t *testing.T) {
	t.Parallel()
	e, img, backups := instantEnv(t, 2<<20, false)
	group := libvirttest.WriteRawGroup(t, backups, "testguest-instant-slot", img.Good, demosite.L3ProdUUID)
	ctx := context.Background()
	loc := postRestore(e, group, guestParams("guest-instant-slot"), []string{instantTag})
	jobUUID := jobOf(loc)
	rec := e.waitHydrating(jobUUID, 3*time.Minute)
	bs := rec.Checkpoints.Resolved.BackupStorageUUID

	// Every slot of the storage goes to others, the job's own with them.
	const hogs = 64
	if err := e.store.ReleaseCloneSlot(ctx, bs, jobUUID+"/hydrate/0"); err != nil {
		t.Fatal(err)
	}
	for i := range hogs {
		ok, err := e.store.AcquireCloneSlot(ctx, bs, fmt.Sprintf("hog/%d", i), hogs, 10*time.Minute, 0)
		mustf(t, err == nil && ok, "hog %d: %v %v", i, ok, err)
	}
	testrig.Eventually(t, 2*time.Minute, func() bool {
		rec, _ := e.instantJob(jobUUID)
		return rec.HandBacks > 0
	}, "the job that lost its slot gave no worker slot back")
	for i := range hogs {
		if err := e.store.ReleaseCloneSlot(ctx, bs, fmt.Sprintf("hog/%d", i)); err != nil {
			t.Fatal(err)
		}
	}

	r := e.poll(loc, 4*time.Minute)
	mustf(t, r.status == 200, "the job did not come back to its pull: %d %s", r.status, r.body)
	vmUUID := str(r.json()["inventory"].(map[string]any), "uuid")
	t.Cleanup(func() { libvirttest.RemoveDomain(t, hypervisor.LocalURI, vmUUID) })
	rec, f := e.instantJob(jobUUID)
	mustf(t, rec.Attempts == 1 && rec.HandBacks >= 1, "a lost slot spent an attempt: attempts %d, hand-backs %d", rec.Attempts, rec.HandBacks)
	mustf(t, rec.Instant != nil && rec.Instant.State == job.InstantHydrated, "instant course %+v", rec.Instant)
	e.checkHydratedFile(vmUUID, f)
	e.checkInvariants()
}
