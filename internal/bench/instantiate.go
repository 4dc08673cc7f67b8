package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// instantiateFigure is the instantiate stage's cost per VM against the plainest way to do
// the same: `virsh define` then `virsh start` of the same domain XML, on the same libvirtd, in
// the same run, rounds interleaved. The driver looks the domain up, defines it, starts it and
// reads its state back over its pooled connection; virsh connects twice. Both start a 64 MiB
// emulated guest (domain type qemu) on a blank disk; teardown is not timed.
func instantiateFigure(ctx context.Context, c Config) ([]Figure, error) {
	const name, unit, target = "instantiate rate, libvirt driver vs virsh define+start", "VMs/s", "ratio ≥ 0.9"
	rig, why, err := newLibvirtRig(ctx, c, "virsh", "libvirt-clients", "vmrestore-bench-instantiate-")
	if rig == nil {
		if err != nil {
			return nil, err
		}
		return []Figure{unavailable(name, unit, target, why)}, nil
	}
	defer rig.close()
	disk := filepath.Join(rig.dir, "blank.qcow2")
	if err := rig.blankDisk(disk); err != nil {
		return nil, err
	}
	newVM := func() *hypervisor.VM {
		return rig.vm(hypervisor.Disk{VolumeUUID: "blank", Path: disk, Format: "qcow2", Root: true})
	}
	drv, dir, remove := rig.drv, rig.dir, rig.remove
	virsh := func(args ...string) error {
		out, err := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", hypervisor.LocalURI}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("virsh %v: %v: %s", args, err, out)
		}
		return nil
	}

	// One untimed round of each warms libvirt's capability cache and the pooled connection.
	rounds := c.pick(12, 3)
	var ours, theirs []float64
	for i := -1; i < rounds; i++ {
		vm := newVM()
		start := time.Now()
		if _, err := drv.Instantiate(ctx, vm, zstack.StrategyInstantStart, nil); err != nil {
			remove(vm)
			return nil, fmt.Errorf("driver: %w", err)
		}
		d := time.Since(start)
		remove(vm)

		ref := newVM()
		xml, err := hypervisor.DomainXML(ref, hypervisor.DomainQEMU)
		if err != nil {
			return nil, err
		}
		file := filepath.Join(dir, ref.UUID+".xml")
		if err := os.WriteFile(file, []byte(xml), 0o644); err != nil {
			return nil, err
		}
		start = time.Now()
		err = virsh("define", file)
		if err == nil {
			err = virsh("start", ref.UUID)
		}
		r := time.Since(start)
		remove(ref)
		if err != nil {
			return nil, err
		}
		if i >= 0 {
			ours, theirs = append(ours, 1/d.Seconds()), append(theirs, 1/r.Seconds())
		}
	}
	value, ref := median(ours), median(theirs)
	note := fmt.Sprintf("median of %d interleaved rounds; one VM at a time (64 MiB, emulated); driver %.0f ms, virsh %.0f ms per VM",
		rounds, 1000/value, 1000/ref)
	return []Figure{figure(name, value, unit, num(round(ref)), target, func(_, ratio float64) bool { return ratio >= 0.9 }, note)}, nil
}
