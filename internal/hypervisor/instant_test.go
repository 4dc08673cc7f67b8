package hypervisor_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/hypervisor/libvirttest"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/overlay"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// instantGuest is the test guest's disk as a raw backup (40 MiB, 14 MiB of data) and a qcow2
// overlay over it beside the volume's file (not there yet), and a VM that runs from the
// overlay.
func instantGuest(t *testing.T) (vm *hypervisor.VM, backup, ovl, file string) {
	t.Helper()
	img := libvirttest.BuildGuestImage(t)
	dir := libvirttest.GuestDir(t)
	backup = filepath.Join(dir, "backup.raw")
	if out, err := exec.Command("qemu-img", "convert", "-O", "raw", img.Good, backup).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, out)
	}
	if err := os.Chmod(backup, 0o644); err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(dir, "volume.qcow2")
	ovl = overlay.PathOf(file)
	if err := overlay.Create(context.Background(), ovl, backup, "raw"); err != nil {
		t.Fatal(err)
	}
	vm = guestVM(t, ovl)
	vm.Disks[0].BackingPath, vm.Disks[0].BackingFormat = backup, "raw"
	return vm, backup, ovl, file
}

// followHalfway follows the disk's copy until it has gone part of the way, then stops
// following (as a worker that dies), and reports whether the copy was a new one.
func followHalfway(t *testing.T, d *hypervisor.Libvirt, vm *hypervisor.VM, opt hypervisor.HydrateOptions) *hypervisor.Hydrated {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var seen int64
	opt.Progress = func(done, total int64) {
		seen = done
		if done > 0 && done < total {
			stop()
		}
	}
	out, err := d.Hydrate(ctx, vm, vm.Disks[0], opt)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("the follower ended with %+v %v, not its cancel (the copy ended before it could be seen half-way?)", out, err)
	}
	if seen == 0 {
		t.Fatal("no progress was reported")
	}
	jobs, _ := libvirttest.Virsh(t, hypervisor.LocalURI, "blockjob", vm.UUID, "vda", "--info", "--bytes")
	if !strings.Contains(jobs, "Bandwidth limit") {
		t.Fatalf("the copy did not go on without its follower: %q", jobs)
	}
	return out
}

func owner(t *testing.T, path string) uint32 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Uid
}

// TestInstantRunAndHydrate runs a guest from an overlay over its backup, shows that a guest
// started again from a saved definition (empty <backingStore/>) still boots from the backup,
// then copies the disk into the volume's file with a bandwidth limit: a copy whose domain is
// stopped half-way (a host restart) is started again from the overlay (the partial copy
// discarded); a copy whose follower stops half-way is followed to its end by the next
// follower, not started again. After the pivot the domain, live and saved, runs from the
// volume's file, which stands alone and, after shutdown, equals the backup byte for byte;
// libvirt left the backup as it was (owner, identity).
func TestInstantRunAndHydrate(t *testing.T) {
	t.Parallel()
	d := qemuDriver(t)
	vm, backup, ovl, file := instantGuest(t)
	ctx := context.Background()
	before, err := overlay.IdentityOf(backup)
	if err != nil {
		t.Fatal(err)
	}
	uid := owner(t, backup)
	check := &job.BootCheck{Mode: job.BootConsole, Pattern: regexp.QuoteMeta(libvirttest.GuestReady), Timeout: 2 * time.Minute}

	start := time.Now()
	out, err := d.Instantiate(ctx, vm, zstack.StrategyInstantStart, nil)
	if err != nil || out.State != zstack.VMRunning {
		t.Fatalf("instant start: %+v %v", out, err)
	}
	t.Logf("running from the overlay %s after %s", ovl, time.Since(start).Round(time.Millisecond))

	// Trap 2: a definition saved by libvirt has an empty <backingStore/>. A re-run must not
	// start the guest from it (it would see zeros and never boot): the console check proves
	// the guest booted from the backup again.
	xml, err := libvirttest.Virsh(t, hypervisor.LocalURI, "dumpxml", "--inactive", vm.UUID)
	if err != nil {
		t.Fatal(err)
	}
	saved := regexp.MustCompile(`(?s)<backingStore type='file'>.*?</backingStore>\s*(<backingStore/>)?`).ReplaceAllString(xml, "<backingStore/>")
	if saved == xml {
		t.Fatalf("the definition has no backing store to empty:\n%s", xml)
	}
	if _, err := libvirttest.Virsh(t, hypervisor.LocalURI, "destroy", vm.UUID); err != nil {
		t.Fatal(err)
	}
	savedFile := filepath.Join(t.TempDir(), "saved.xml")
	if err := os.WriteFile(savedFile, []byte(saved), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := libvirttest.Virsh(t, hypervisor.LocalURI, "define", savedFile); err != nil {
		t.Fatal(err)
	}
	if _, err = d.Instantiate(ctx, vm, zstack.StrategyInstantStart, check); err != nil {
		t.Fatalf("a re-run from the saved definition did not boot from the backup: %v", err)
	}

	// Trap 1: libvirt did not take the backup over.
	if got := owner(t, backup); got != uid {
		t.Fatalf("libvirt changed the backup's owner from %d to %d (relabel)", uid, got)
	}

	// A copy at 2 MiB/s whose domain stops half-way (a host restart): the copy is lost with
	// its domain, which still runs from the overlay (libvirt's saved definition says so);
	// started again from XML built now, the domain gets a new copy, the partial one discarded.
	opt := hypervisor.HydrateOptions{Destination: file, BandwidthBytesPerSecond: 2 << 20, PollInterval: 200 * time.Millisecond}
	if first := followHalfway(t, d, vm, opt); first.Resumed {
		t.Fatal("the first copy was taken for a resumed one")
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the copy has not created the volume's file: %v", err)
	}
	if _, err := libvirttest.Virsh(t, hypervisor.LocalURI, "destroy", vm.UUID); err != nil {
		t.Fatal(err)
	}
	if pivoted, err := d.Pivoted(ctx, vm, vm.Disks[0], file); err != nil || pivoted {
		t.Fatalf("a domain stopped mid-copy is taken for pivoted: %v %v", pivoted, err)
	}
	if _, err := d.Instantiate(ctx, vm, zstack.StrategyInstantStart, nil); err != nil {
		t.Fatal(err)
	}

	// The new copy's follower stops half-way (its worker died): the copy goes on in QEMU,
	// and the next follower finds it instead of starting another.
	if again := followHalfway(t, d, vm, opt); again.Resumed {
		t.Fatal("the copy of a restarted domain was taken for the lost one")
	}
	res, err := d.Hydrate(ctx, vm, vm.Disks[0], opt)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed {
		t.Fatal("the second follower started a copy of its own instead of following the first")
	}
	t.Logf("hydrated into %s after %s", file, time.Since(start).Round(time.Millisecond))
	if b, err := overlay.Backing(ctx, file); err != nil || b != "" {
		t.Fatalf("the volume's file names a backing file %q (%v)", b, err)
	}
	if again, err := d.Hydrate(ctx, vm, vm.Disks[0], opt); err != nil || !again.AlreadyDone {
		t.Fatalf("hydrating a hydrated disk: %+v %v", again, err)
	}
	if pivoted, err := d.Pivoted(ctx, vm, vm.Disks[0], file); err != nil || !pivoted {
		t.Fatalf("the running domain is not on the volume's file after the pivot: %v %v", pivoted, err)
	}
	// A host restart after the pivot: libvirt's saved definition names the volume's file.
	if _, err := libvirttest.Virsh(t, hypervisor.LocalURI, "destroy", vm.UUID); err != nil {
		t.Fatal(err)
	}
	if pivoted, err := d.Pivoted(ctx, vm, vm.Disks[0], file); err != nil || !pivoted {
		t.Fatalf("the saved definition is not on the volume's file after the pivot: %v %v", pivoted, err)
	}

	if err := d.Destroy(ctx, vm.UUID, vm.JobUUID, vm.Host); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "compare", "-f", "qcow2", "-F", "raw", file, backup).CombinedOutput(); err != nil {
		t.Fatalf("the hydrated volume differs from the backup: %v: %s", err, out)
	}
	after, err := overlay.IdentityOf(backup)
	if err != nil {
		t.Fatal(err)
	}
	if diff := before.Diff(after); diff != "" {
		t.Fatalf("the backup changed while it backed the VM: %s", diff)
	}
	if got := owner(t, backup); got != uid {
		t.Fatalf("libvirt changed the backup's owner from %d to %d", uid, got)
	}
}

// TestInstantCopyCancelledOnHost: a copy that ends without its pivot (here aborted on the
// host) is a failure, not a "done" — libvirt's block job info looks the same after both.
func TestInstantCopyCancelledOnHost(t *testing.T) {
	t.Parallel()
	d := qemuDriver(t)
	vm, _, ovl, file := instantGuest(t)
	ctx := context.Background()
	if _, err := d.Instantiate(ctx, vm, zstack.StrategyInstantStart, nil); err != nil {
		t.Fatal(err)
	}
	opt := hypervisor.HydrateOptions{Destination: file, BandwidthBytesPerSecond: 1 << 20, PollInterval: 200 * time.Millisecond}
	aborted := false
	opt.Progress = func(done, total int64) {
		if !aborted && done > 0 {
			aborted = true
			if _, err := libvirttest.Virsh(t, hypervisor.LocalURI, "blockjob", vm.UUID, "vda", "--abort"); err != nil {
				t.Error(err)
			}
		}
	}
	_, err := d.Hydrate(ctx, vm, vm.Disks[0], opt)
	if !errors.Is(err, hypervisor.ErrHydrationFailed) {
		t.Fatalf("an aborted copy ended with %v", err)
	}
	t.Logf("aborted copy: %v", err)
	if pivoted, err := d.Pivoted(ctx, vm, vm.Disks[0], file); err != nil || pivoted {
		t.Fatalf("an aborted copy pivoted: %v %v", pivoted, err)
	}
	if b, err := overlay.Backing(ctx, ovl); err != nil || b == "" {
		t.Fatalf("the overlay lost its backing file %q after an aborted copy (%v)", b, err)
	}
}
