package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// libvirtRig is what the figures that start VMs share: the machine's libvirtd through the
// driver (its pooled connection), a made-up host for it, and a folder the qemu user can read.
type libvirtRig struct {
	ctx  context.Context
	dir  string
	drv  *hypervisor.Libvirt
	host hypervisor.Host
}

// newLibvirtRig checks that tool and libvirtd are there (else why, for the figure's n/a) and
// makes the rig; close removes its folder and connection.
func newLibvirtRig(ctx context.Context, c Config, tool, pkg, prefix string) (rig *libvirtRig, why string, err error) {
	if _, err := exec.LookPath(tool); err != nil {
		return nil, tool + " is not installed (" + pkg + ")", nil
	}
	conn, err := net.DialTimeout("unix", "/run/libvirt/libvirt-sock", time.Second)
	if err != nil {
		return nil, "libvirtd does not answer: " + err.Error(), nil
	}
	conn.Close()
	dir, err := os.MkdirTemp(c.Dir, prefix)
	if err != nil {
		return nil, "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // libvirt's qemu user opens the files
		os.RemoveAll(dir)
		return nil, "", err
	}
	pool := &hypervisor.Pool{Template: hypervisor.LocalURI, CallTimeout: time.Minute, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return &libvirtRig{ctx: ctx, dir: dir, drv: &hypervisor.Libvirt{Pool: pool, DomainType: hypervisor.DomainQEMU, Log: pool.Log},
		host: hypervisor.Host{UUID: zstack.NewUUID(), Name: "bench", ManagementIP: "127.0.0.1"}}, "", nil
}

func (r *libvirtRig) close() {
	r.drv.Pool.Close()
	os.RemoveAll(r.dir)
}

// vm is a 64 MiB emulated guest on disk.
func (r *libvirtRig) vm(disk hypervisor.Disk) *hypervisor.VM {
	return &hypervisor.VM{UUID: zstack.NewUUID(), Name: "bench", CPUNum: 1, MemorySize: 64 << 20, Platform: hypervisor.PlatformLinux,
		JobUUID: zstack.NewUUID(), Host: r.host, Disks: []hypervisor.Disk{disk}}
}

// remove destroys and undefines vm's domain (untimed teardown).
func (r *libvirtRig) remove(vm *hypervisor.VM) {
	_ = r.drv.Destroy(context.WithoutCancel(r.ctx), vm.UUID, vm.JobUUID, r.host)
}

// blankDisk makes an empty 64 MiB qcow2 disk at path.
func (r *libvirtRig) blankDisk(path string) error {
	if out, err := exec.CommandContext(r.ctx, "qemu-img", "create", "-q", "-f", "qcow2", path, "64M").CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img create: %v: %s", err, out)
	}
	return nil
}
