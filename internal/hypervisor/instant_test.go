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

// instantGuest is the test guest's disk as a raw backup (a raw pull reads the whole disk,
// holes too, so a throttled pull lasts long enough to interrupt) and a qcow2 overlay over it,
// and a VM that runs from the overlay.
func instantGuest(t *testing.T) (vm *hypervisor.VM, backup, ovl string) {
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
	ovl = filepath.Join(dir, "overlay.qcow2")
	if err := overlay.Create(context.Background(), ovl, backup, "raw"); err != nil {
		t.Fatal(err)
	}
	vm = guestVM(t, ovl)
	vm.Disks[0].BackingPath, vm.Disks[0].BackingFormat = backup, "raw"
	return vm, backup, ovl
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
// pulls the backup into the overlay with a bandwidth limit, interrupts the follower mid-pull
// and resumes it, and checks after shutdown that the overlay stands alone and equals the
// backup byte for byte, and that libvirt left the backup as it was (owner, identity).
func TestInstantRunAndHydrate(t *testing.T) {
	d := qemuDriver(t)
	vm, backup, ovl := instantGuest(t)
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

	// A pull at 8 MiB/s, whose follower stops half-way (its worker died): the pull goes on
	// in QEMU, and the next follower finds it instead of starting another.
	opt := hypervisor.HydrateOptions{BandwidthBytesPerSecond: 8 << 20, PollInterval: 200 * time.Millisecond}
	first, stop := context.WithCancel(ctx)
	var seen int64
	opt.Progress = func(done, total int64) {
		seen = done
		if done > 0 && done < total {
			stop()
		}
	}
	if _, err := d.Hydrate(first, vm, vm.Disks[0], opt); !errors.Is(err, context.Canceled) {
		t.Fatalf("the first follower ended with %v, not its cancel", err)
	}
	if seen == 0 {
		t.Fatal("no progress was reported")
	}
	if jobs, _ := libvirttest.Virsh(t, hypervisor.LocalURI, "blockjob", vm.UUID, "vda", "--info", "--bytes"); !strings.Contains(jobs, "Bandwidth limit") {
		t.Fatalf("the pull did not go on without its follower: %q", jobs)
	}
	opt.Progress = nil
	res, err := d.Hydrate(ctx, vm, vm.Disks[0], opt)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed {
		t.Fatal("the second follower started a pull of its own instead of following the first")
	}
	t.Logf("hydrated %s after %s", ovl, time.Since(start).Round(time.Millisecond))
	if b, err := overlay.Backing(ctx, ovl); err != nil || b != "" {
		t.Fatalf("the overlay still names a backing file %q (%v)", b, err)
	}
	if again, err := d.Hydrate(ctx, vm, vm.Disks[0], opt); err != nil || !again.AlreadyDone {
		t.Fatalf("hydrating a hydrated disk: %+v %v", again, err)
	}

	if err := d.Destroy(ctx, vm.UUID, vm.JobUUID, vm.Host); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "compare", "-f", "qcow2", "-F", "raw", ovl, backup).CombinedOutput(); err != nil {
		t.Fatalf("the hydrated overlay differs from the backup: %v: %s", err, out)
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

// TestInstantPullCancelledOnHost: a pull that ends without completing (here aborted on the
// host) is a failure, not a "done" — libvirt's block job info looks the same after both.
func TestInstantPullCancelledOnHost(t *testing.T) {
	d := qemuDriver(t)
	vm, _, ovl := instantGuest(t)
	ctx := context.Background()
	if _, err := d.Instantiate(ctx, vm, zstack.StrategyInstantStart, nil); err != nil {
		t.Fatal(err)
	}
	opt := hypervisor.HydrateOptions{BandwidthBytesPerSecond: 2 << 20, PollInterval: 200 * time.Millisecond}
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
		t.Fatalf("an aborted pull ended with %v", err)
	}
	t.Logf("aborted pull: %v", err)
	if b, err := overlay.Backing(ctx, ovl); err != nil || b == "" {
		t.Fatalf("the overlay lost its backing file %q after an aborted pull (%v)", b, err)
	}
}
