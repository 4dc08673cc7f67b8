package hypervisor_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/hypervisor/libvirttest"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testDriver is the libvirt driver on libvirt's test driver (test:///default), which keeps
// its domains in the daemon's memory and starts no process.
func testDriver(t *testing.T) *hypervisor.Libvirt {
	t.Helper()
	libvirttest.Need(t)
	pool := &hypervisor.Pool{Template: "test:///default", CallTimeout: 10 * time.Second, Log: quiet()}
	t.Cleanup(pool.Close)
	return &hypervisor.Libvirt{Pool: pool, DomainType: hypervisor.DomainQEMU, Log: quiet()}
}

func testVM() *hypervisor.VM {
	vm := goldenVM(hypervisor.PlatformLinux, 1)
	vm.UUID = zstack.NewUUID()
	vm.JobUUID = zstack.NewUUID()
	vm.MemorySize = 64 << 20
	return vm
}

func TestLibvirtStrategies(t *testing.T) {
	d := testDriver(t)
	ctx := context.Background()
	for _, tt := range []struct{ strategy, state string }{
		{zstack.StrategyJustCreate, zstack.VMCreated},
		{zstack.StrategyCreateStopped, zstack.VMStopped},
		{zstack.StrategyInstantStart, zstack.VMRunning},
	} {
		vm := testVM()
		out, err := d.Instantiate(ctx, vm, tt.strategy, nil)
		if err != nil {
			t.Fatalf("%s: %v", tt.strategy, err)
		}
		if out.State != tt.state {
			t.Fatalf("%s: state %s, want %s", tt.strategy, out.State, tt.state)
		}
		got := libvirttest.DomainState(t, "test:///default", vm.UUID)
		want := map[string]string{zstack.StrategyJustCreate: "", zstack.StrategyCreateStopped: "shut off", zstack.StrategyInstantStart: "running"}[tt.strategy]
		if got != want {
			t.Fatalf("%s: virsh says %q, want %q", tt.strategy, got, want)
		}
		if err := d.Destroy(ctx, vm.UUID, vm.JobUUID, vm.Host); err != nil {
			t.Fatal(err)
		}
		if got := libvirttest.DomainState(t, "test:///default", vm.UUID); got != "" {
			t.Fatalf("%s: after Destroy virsh still says %q", tt.strategy, got)
		}
	}
}

// TestLibvirtAtLeastOnce: a re-run finds the domain by uuid and carries on; Destroy of an
// unknown domain is done; a domain another job made is neither reused nor destroyed.
func TestLibvirtAtLeastOnce(t *testing.T) {
	d := testDriver(t)
	ctx := context.Background()
	vm := testVM()
	t.Cleanup(func() { _ = d.Destroy(context.Background(), vm.UUID, vm.JobUUID, vm.Host) })

	// A first attempt that only defined (a crash before the start).
	if out, err := d.Instantiate(ctx, vm, zstack.StrategyCreateStopped, nil); err != nil || out.State != zstack.VMStopped {
		t.Fatalf("define: %+v %v", out, err)
	}
	for i := 0; i < 2; i++ { // defined → start; running → done
		out, err := d.Instantiate(ctx, vm, zstack.StrategyInstantStart, &job.BootCheck{Mode: job.BootRunning, Timeout: time.Second})
		if err != nil || out.State != zstack.VMRunning || out.BootCheck == "" {
			t.Fatalf("attempt %d: %+v %v", i, out, err)
		}
	}
	if n := libvirttest.CountDomains(t, "test:///default", vm.UUID); n != 1 {
		t.Fatalf("%d domains with the VM's uuid", n)
	}

	other := *vm
	other.JobUUID = zstack.NewUUID()
	if _, err := d.Instantiate(ctx, &other, zstack.StrategyInstantStart, nil); !errors.Is(err, hypervisor.ErrNotBootable) || !strings.Contains(err.Error(), "did not make") {
		t.Fatalf("another job's domain was taken over: %v", err)
	}
	if err := d.Destroy(ctx, vm.UUID, other.JobUUID, vm.Host); err != nil {
		t.Fatal(err)
	}
	if got := libvirttest.DomainState(t, "test:///default", vm.UUID); got != "running" {
		t.Fatalf("another job's Destroy touched the domain: %q", got)
	}
	if err := d.Destroy(ctx, zstack.NewUUID(), vm.JobUUID, vm.Host); err != nil {
		t.Fatalf("destroying an unknown domain: %v", err)
	}
}

func TestLibvirtRefusesABadDomain(t *testing.T) {
	d := testDriver(t)
	vm := testVM()
	vm.Disks[0].Format = "vmdk"
	_, err := d.Instantiate(context.Background(), vm, zstack.StrategyInstantStart, nil)
	if !errors.Is(err, hypervisor.ErrNotBootable) {
		t.Fatalf("got %v", err)
	}
}

func TestLibvirtUnreachableHost(t *testing.T) {
	ctx := context.Background()
	refused, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := refused.Addr().String()
	refused.Close() // nothing listens there now

	pool := &hypervisor.Pool{Template: "qemu+tcp://{managementIp}:" + addr[strings.LastIndex(addr, ":")+1:] + "/system", CallTimeout: 2 * time.Second, Log: quiet()}
	d := &hypervisor.Libvirt{Pool: pool, DomainType: hypervisor.DomainQEMU, Log: quiet()}
	vm := testVM()
	vm.Host.ManagementIP = "127.0.0.1"
	_, err := d.Instantiate(ctx, vm, zstack.StrategyInstantStart, nil)
	if !errors.Is(err, hypervisor.ErrUnreachable) || !strings.Contains(err.Error(), vm.Host.UUID) {
		t.Fatalf("got %v", err)
	}

	// A daemon that accepts and never answers: the call ends at its deadline.
	hung, _ := net.Listen("tcp", "127.0.0.1:0")
	defer hung.Close()
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(hung.Addr().String())
	pool = &hypervisor.Pool{Template: "qemu+tcp://{managementIp}:" + port + "/system", CallTimeout: 300 * time.Millisecond, Log: quiet()}
	d = &hypervisor.Libvirt{Pool: pool, DomainType: hypervisor.DomainQEMU, Log: quiet()}
	start := time.Now()
	_, err = d.Instantiate(ctx, vm, zstack.StrategyInstantStart, nil)
	if !errors.Is(err, hypervisor.ErrUnreachable) || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("the hung call took %s", time.Since(start))
	}

	// No managementIp in the catalog.
	vm.Host.ManagementIP = ""
	if _, err := d.Instantiate(ctx, vm, zstack.StrategyInstantStart, nil); !errors.Is(err, hypervisor.ErrNotBootable) || !strings.Contains(err.Error(), "no managementIp") {
		t.Fatalf("got %v", err)
	}
}

func TestCheckURITemplate(t *testing.T) {
	for _, ok := range []string{
		hypervisor.DefaultURITemplate, "qemu:///system", "qemu+ssh://root@{managementIp}/system?keyfile=/etc/vmrestore/id_ed25519",
		"qemu+libssh://root@{managementIp}/system?keyfile=/k&known_hosts=/etc/vmrestore/known_hosts", "qemu+tcp://{managementIp}:16509/system",
		"qemu+tls://{managementIp}/system?pkipath=/etc/vmrestore/pki", "test:///default",
	} {
		if err := hypervisor.CheckURITemplate(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"xen:///system", "qemu+tls://{managementIp}/system?no_verify=1", "qemu+libssh://{managementIp}/system?known_hosts_verify=ignore",
		"qemu+libssh://{managementIp}/system?known_hosts_verify=auto", "qemu+http://{managementIp}/system", "::not a uri",
	} {
		if err := hypervisor.CheckURITemplate(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	uri, err := hypervisor.ExpandURI("qemu+ssh://u:secret@{managementIp}/system", hypervisor.Host{ManagementIP: "10.1.2.3"})
	if err != nil || uri != "qemu+ssh://u:secret@10.1.2.3/system" {
		t.Fatalf("%s %v", uri, err)
	}
}

// TestLibvirtNeverShowsThePassword: an error for a URI with a password names the URI
// without it.
func TestLibvirtNeverShowsThePassword(t *testing.T) {
	pool := &hypervisor.Pool{Template: "qemu+ssh://root:hunter2@{managementIp}:1/system", CallTimeout: time.Second, Log: quiet()}
	d := &hypervisor.Libvirt{Pool: pool, DomainType: hypervisor.DomainQEMU, Log: quiet()}
	vm := testVM()
	vm.Host.ManagementIP = "127.0.0.1"
	_, err := d.Instantiate(context.Background(), vm, zstack.StrategyInstantStart, nil)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("got %v", err)
	}
}
