package hypervisor_test

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/hypervisor/libvirttest"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// qemuDriver starts real guests on this machine's libvirtd, emulated (domain type qemu).
func qemuDriver(t *testing.T) *hypervisor.Libvirt {
	t.Helper()
	libvirttest.NeedQEMU(t)
	pool := &hypervisor.Pool{Template: hypervisor.LocalURI, CallTimeout: 30 * time.Second, Log: quiet()}
	t.Cleanup(pool.Close)
	return &hypervisor.Libvirt{Pool: pool, DomainType: hypervisor.DomainQEMU, Log: quiet()}
}

// guestVM is a 96 MiB guest booting disk, with no NIC.
func guestVM(t *testing.T, disk string) *hypervisor.VM {
	vm := &hypervisor.VM{
		UUID: zstack.NewUUID(), Name: "testguest " + t.Name(), CPUNum: 1, MemorySize: 96 << 20, Platform: hypervisor.PlatformLinux,
		JobUUID: zstack.NewUUID(), Host: hypervisor.Host{UUID: zstack.NewUUID(), Name: "this machine", ManagementIP: "127.0.0.1"},
		Disks: []hypervisor.Disk{{VolumeUUID: "root", DeviceID: 0, Path: disk, Format: "qcow2", Root: true}},
	}
	t.Cleanup(func() { libvirttest.RemoveDomain(t, hypervisor.LocalURI, vm.UUID) })
	return vm
}

// TestQEMUBootChecks boots the test guest from its disk and checks it three ways, and
// shows that a broken disk fails the console check with the console's last lines. The broken
// guest boots beside the good one: they share nothing, and each waits on an emulated boot.
func TestQEMUBootChecks(t *testing.T) {
	t.Parallel()
	d := qemuDriver(t)
	img := libvirttest.BuildGuestImage(t)
	dir := libvirttest.GuestDir(t)
	ctx := context.Background()

	broken := filepath.Join(dir, "broken.qcow2")
	libvirttest.CopyFile(t, img.Broken, broken)
	bvm := guestVM(t, broken)
	brokenDone := make(chan error, 1)
	var brokenRuns sync.WaitGroup
	brokenRuns.Add(1)
	t.Cleanup(brokenRuns.Wait) // before its domain is removed and the pool closed
	go func() {
		defer brokenRuns.Done()
		// Its kernel panics, which fails the check at once; the limit only bounds a boot
		// slowed by the good guest's and a loaded machine's.
		check := &job.BootCheck{Mode: job.BootConsole, Pattern: regexp.QuoteMeta(libvirttest.GuestReady), Timeout: 3 * time.Minute}
		_, err := d.Instantiate(ctx, bvm, zstack.StrategyInstantStart, check)
		brokenDone <- err
	}()

	good := filepath.Join(dir, "good.qcow2")
	libvirttest.CopyFile(t, img.Good, good)
	vm := guestVM(t, good)
	check := &job.BootCheck{Mode: job.BootConsole, Pattern: regexp.QuoteMeta(libvirttest.GuestReady), Timeout: 2 * time.Minute}
	out, err := d.Instantiate(ctx, vm, zstack.StrategyInstantStart, check)
	if err != nil {
		t.Fatal(err)
	}
	if out.State != zstack.VMRunning || !strings.Contains(out.BootCheck, libvirttest.GuestReady) {
		t.Fatalf("outcome %+v", out)
	}
	t.Logf("console check: %s", out.BootCheck)

	// The same job again (a re-run after a crash): the guest boots again and passes again.
	out, err = d.Instantiate(ctx, vm, zstack.StrategyInstantStart, check)
	if err != nil || out.State != zstack.VMRunning {
		t.Fatalf("re-run: %+v %v", out, err)
	}
	if n := libvirttest.CountDomains(t, hypervisor.LocalURI, vm.UUID); n != 1 {
		t.Fatalf("%d domains after a re-run", n)
	}

	// The running guest answers its agent.
	out, err = d.Instantiate(ctx, vm, zstack.StrategyInstantStart, &job.BootCheck{Mode: job.BootGuestAgent, Timeout: time.Minute})
	if err != nil {
		t.Fatalf("guest agent: %v", err)
	}
	t.Logf("guest agent check: %s", out.BootCheck)

	if err := d.Destroy(ctx, vm.UUID, vm.JobUUID, vm.Host); err != nil {
		t.Fatal(err)
	}
	if got := libvirttest.DomainState(t, hypervisor.LocalURI, vm.UUID); got != "" {
		t.Fatalf("domain left after Destroy: %s", got)
	}

	err = <-brokenDone
	var bce *hypervisor.BootCheckError
	if !errors.As(err, &bce) {
		t.Fatalf("the broken guest passed or failed otherwise: %v", err)
	}
	if !strings.Contains(err.Error(), "kernel panicked") || !strings.Contains(err.Error(), "Kernel panic") {
		t.Fatalf("the error does not show the kernel panic: %v", err)
	}
	t.Logf("broken guest: %v", err)
	if err := d.Destroy(ctx, bvm.UUID, bvm.JobUUID, bvm.Host); err != nil {
		t.Fatal(err)
	}
}
