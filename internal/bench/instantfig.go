package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/overlay"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// instantFigures measure an instant restore against the plain restore of the same backup in
// the same run, through the same code the clone, instantiate and hydrate stages call: the
// plain restore copies and verifies the volume (clone.Copy) then starts the VM; the instant
// one makes the overlay, starts the VM on it (time to running), then pulls the backup in
// (time to hydrated). Both start a 64 MiB emulated guest on the volume (it need not boot: the
// figure is the VM running). Time to running is measured at two sizes; it should not grow
// with the data. Teardown is not timed.
func instantFigures(ctx context.Context, c Config) ([]Figure, error) {
	const unit = "s"
	if _, err := exec.LookPath("qemu-img"); err != nil {
		return []Figure{unavailable("instant restore", unit, "", "qemu-img is not installed (qemu-utils)")}, nil
	}
	if conn, err := net.DialTimeout("unix", "/run/libvirt/libvirt-sock", time.Second); err != nil {
		return []Figure{unavailable("instant restore", unit, "", "libvirtd does not answer: "+err.Error())}, nil
	} else {
		conn.Close()
	}
	dir, err := os.MkdirTemp(c.Dir, "vmrestore-bench-instant-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil { // libvirt's qemu user opens the files
		return nil, err
	}
	pool := &hypervisor.Pool{Template: hypervisor.LocalURI, CallTimeout: time.Minute, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	defer pool.Close()
	ib := &instantBench{ctx: ctx, dir: dir, drv: &hypervisor.Libvirt{Pool: pool, DomainType: hypervisor.DomainQEMU, Log: pool.Log},
		host: hypervisor.Host{UUID: zstack.NewUUID(), Name: "bench", ManagementIP: "127.0.0.1"}}

	// One untimed start warms libvirt's capability cache and the pooled connection.
	warm := filepath.Join(dir, "warm.qcow2")
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", warm, "64M").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("qemu-img create: %v: %s", err, out)
	}
	wvm := ib.vm(hypervisor.Disk{VolumeUUID: "warm", Path: warm, Format: "qcow2", Root: true})
	_, err = ib.drv.Instantiate(ctx, wvm, zstack.StrategyInstantStart, nil)
	ib.remove(wvm)
	if err != nil {
		return nil, fmt.Errorf("start a VM: %w", err)
	}
	cacheNote := "page cache dropped before each side"
	if err := dropCaches(); err != nil {
		cacheNote = "page cache NOT dropped (" + err.Error() + "): the plain copy may read from memory where the pull reads the disk"
	}
	large, small := int64(c.pick(2<<30, 256<<20)), int64(c.pick(256<<20, 64<<20))
	var figs []Figure
	var runSmall time.Duration
	for _, size := range []int64{small, large} {
		backup := filepath.Join(dir, fmt.Sprintf("backup-%d.raw", size))
		if err := writeRandom(backup, size, 0, uint64(size)); err != nil {
			return nil, err
		}
		if err := os.Chmod(backup, 0o644); err != nil {
			return nil, err
		}
		c.logf("instant restore of a %d MiB volume", size>>20)
		m, err := ib.measure(backup, size, size == large)
		if err != nil {
			return nil, err
		}
		if size == small {
			runSmall = m.running
			continue
		}
		mib := float64(size) / (1 << 20)
		figs = append(figs,
			figure(fmt.Sprintf("Instant restore: time to running, %.0f MiB volume", mib), m.running.Seconds(), unit, num(round(m.plainRunning.Seconds())),
				"≤ 2 s, independent of size", func(v, _ float64) bool { return v <= 2 && v <= 2*runSmall.Seconds()+0.5 },
				fmt.Sprintf("overlay made and the VM started on it; reference: the plain restore of the same backup (verified copy, then start) in the same run; at %.0f MiB the instant restore ran after %.2f s",
					float64(small)/(1<<20), runSmall.Seconds())),
			figure(fmt.Sprintf("Instant restore: time to hydrated, %.0f MiB volume", mib), m.hydrated.Seconds(), unit, num(round(m.plainRunning.Seconds())),
				"", nil, "from the request until the pull ended and the overlay stood alone, the VM running all along; reference: the plain restore's time to running"),
			figure("Instant restore: hydration throughput", mib/(m.hydrated-m.running).Seconds(), "MiB/s", num(round(mib/m.copy.Seconds())),
				"ratio ≥ 0.8", func(_, ratio float64) bool { return ratio >= 0.8 },
				"the block pull of a raw backup of random data, unthrottled, beside the plain restore's verified copy of it (clone.Copy with its checksum, fsync); "+cacheNote),
		)
	}
	return figs, nil
}

type instantBench struct {
	ctx  context.Context
	dir  string
	drv  *hypervisor.Libvirt
	host hypervisor.Host
}

type instantRun struct {
	running, hydrated  time.Duration // the instant restore's
	copy, plainRunning time.Duration // the plain restore's
}

func (b *instantBench) vm(disk hypervisor.Disk) *hypervisor.VM {
	return &hypervisor.VM{UUID: zstack.NewUUID(), Name: "bench", CPUNum: 1, MemorySize: 64 << 20, Platform: hypervisor.PlatformLinux,
		JobUUID: zstack.NewUUID(), Host: b.host, Disks: []hypervisor.Disk{disk}}
}

func (b *instantBench) remove(vm *hypervisor.VM) {
	_ = b.drv.Destroy(context.WithoutCancel(b.ctx), vm.UUID, vm.JobUUID, b.host)
}

// measure restores backup plainly, then instantly (and hydrates it when hydrate is set).
func (b *instantBench) measure(backup string, size int64, hydrate bool) (instantRun, error) {
	var m instantRun
	sum, err := clone.SumFile(backup, clone.XXH3Chunked)
	if err != nil {
		return m, err
	}
	copyPath := filepath.Join(b.dir, "plain.raw")
	_ = dropCaches()
	start := time.Now()
	src, err := os.Open(backup)
	if err != nil {
		return m, err
	}
	_, err = clone.Copy(b.ctx, src, copyPath, clone.Options{Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: sum}, Format: "raw", VirtualSize: size})
	src.Close()
	if err != nil {
		return m, err
	}
	m.copy = time.Since(start)
	plain := b.vm(hypervisor.Disk{VolumeUUID: "plain", Path: copyPath, Format: "raw", Root: true})
	if _, err := b.drv.Instantiate(b.ctx, plain, zstack.StrategyInstantStart, nil); err != nil {
		b.remove(plain)
		return m, fmt.Errorf("plain restore: %w", err)
	}
	m.plainRunning = time.Since(start)
	b.remove(plain)
	os.Remove(copyPath)

	ovl := filepath.Join(b.dir, "overlay.qcow2")
	_ = dropCaches()
	start = time.Now()
	if err := overlay.Create(b.ctx, ovl, backup, "raw"); err != nil {
		return m, err
	}
	disk := hypervisor.Disk{VolumeUUID: "instant", Path: ovl, Format: "qcow2", Root: true, BackingPath: backup, BackingFormat: "raw"}
	vm := b.vm(disk)
	defer b.remove(vm)
	if _, err := b.drv.Instantiate(b.ctx, vm, zstack.StrategyInstantStart, nil); err != nil {
		return m, fmt.Errorf("instant restore: %w", err)
	}
	m.running = time.Since(start)
	if !hydrate {
		return m, nil
	}
	if _, err := b.drv.Hydrate(b.ctx, vm, disk, hypervisor.HydrateOptions{PollInterval: 100 * time.Millisecond}); err != nil {
		return m, err
	}
	if backing, err := overlay.Backing(b.ctx, ovl); err != nil || backing != "" {
		return m, fmt.Errorf("the hydrated overlay names the backing file %q (%v)", backing, err)
	}
	m.hydrated = time.Since(start)
	return m, nil
}
