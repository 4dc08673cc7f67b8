package bench

import (
	"context"
	"fmt"
	"os"
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
// one makes the overlay, starts the VM on it (time to running), then copies the disk's chain
// into the volume's file and switches the disk to it (time to hydrated). Both start a 64 MiB emulated guest on the volume (it need not boot: the
// figure is the VM running). Time to running is measured at two sizes; it should not grow
// with the data. Teardown is not timed.
func instantFigures(ctx context.Context, c Config) ([]Figure, error) {
	const unit = "s"
	rig, why, err := newLibvirtRig(ctx, c, "qemu-img", "qemu-utils", "vmrestore-bench-instant-")
	if rig == nil {
		if err != nil {
			return nil, err
		}
		return []Figure{unavailable("instant restore", unit, "", why)}, nil
	}
	defer rig.close()
	ib := &instantBench{rig}

	// One untimed start warms libvirt's capability cache and the pooled connection.
	warm := filepath.Join(rig.dir, "warm.qcow2")
	if err := rig.blankDisk(warm); err != nil {
		return nil, err
	}
	wvm := rig.vm(hypervisor.Disk{VolumeUUID: "warm", Path: warm, Format: "qcow2", Root: true})
	_, err = rig.drv.Instantiate(ctx, wvm, zstack.StrategyInstantStart, nil)
	rig.remove(wvm)
	if err != nil {
		return nil, fmt.Errorf("start a VM: %w", err)
	}
	cacheNote := "page cache dropped before each side"
	if err := dropCaches(); err != nil {
		cacheNote = "page cache NOT dropped (" + err.Error() + "): the plain copy may read from memory where the block copy reads the disk"
	}
	large, small := int64(c.pick(2<<30, 256<<20)), int64(c.pick(256<<20, 64<<20))
	var figs []Figure
	var runSmall time.Duration
	for _, size := range []int64{small, large} {
		backup := filepath.Join(rig.dir, fmt.Sprintf("backup-%d.raw", size))
		if err := writeRandom(backup, size, 0, uint64(size)); err != nil {
			return nil, err
		}
		if err := os.Chmod(backup, 0o644); err != nil {
			return nil, err
		}
		if size == small {
			c.logf("instant restore of a %d MiB volume", size>>20)
			m, err := ib.measure(backup, size, false)
			if err != nil {
				return nil, err
			}
			runSmall = m.running
			continue
		}
		// The large size runs several rounds and each figure is their median: the last
		// megabytes of either copy wait for the storage's flush, which varies by a second
		// from one run to the next on a virtual disk.
		var runs []instantRun
		for round := range c.pick(instantRounds, 1) {
			c.logf("instant restore of a %d MiB volume, round %d", size>>20, round+1)
			m, err := ib.measure(backup, size, true)
			if err != nil {
				return nil, err
			}
			c.logf("round %d: plain copy %v, running after %v, hydrated after %v (copy %v)", round+1,
				m.copy.Round(time.Millisecond), m.running.Round(time.Millisecond), m.hydrated.Round(time.Millisecond), (m.hydrated - m.running).Round(time.Millisecond))
			runs = append(runs, m)
		}
		m := medianRun(runs)
		mib := float64(size) / (1 << 20)
		rounds := fmt.Sprintf("median of %d rounds, the plain and the instant restore alternating", len(runs))
		figs = append(figs,
			figure(fmt.Sprintf("Instant restore: time to running, %.0f MiB volume", mib), m.running.Seconds(), unit, num(round(m.plainRunning.Seconds())),
				"≤ 2 s, independent of size", func(v, _ float64) bool { return v <= 2 && v <= 2*runSmall.Seconds()+0.5 },
				fmt.Sprintf("overlay made and the VM started on it; reference: the plain restore of the same backup (verified copy, then start) in the same run; at %.0f MiB the instant restore ran after %.2f s; %s",
					float64(small)/(1<<20), runSmall.Seconds(), rounds)),
			figure(fmt.Sprintf("Instant restore: time to hydrated, %.0f MiB volume", mib), m.hydrated.Seconds(), unit, num(round(m.plainRunning.Seconds())),
				"", nil, "from the request until the copy ended and the VM ran from the volume's file alone, the VM running all along; reference: the plain restore's time to running; "+rounds),
			figure("Instant restore: hydration throughput", mib/m.hydration.Seconds(), "MiB/s", num(round(mib/m.copy.Seconds())),
				"ratio ≥ 0.8", func(_, ratio float64) bool { return ratio >= 0.8 },
				"the block copy (mirror, then pivot) of a raw backup of random data, unthrottled, beside the plain restore's verified copy of it (clone.Copy with its checksum, fsync); "+rounds+"; "+cacheNote),
		)
	}
	return figs, nil
}

// instantRounds is how many rounds the large size runs (quick runs: one).
const instantRounds = 3

// medianRun is each measure's median over the runs.
func medianRun(runs []instantRun) instantRun {
	pick := func(of func(instantRun) time.Duration) time.Duration {
		d := make([]time.Duration, len(runs))
		for i, r := range runs {
			d[i] = of(r)
		}
		return sortDurations(d)[len(d)/2]
	}
	return instantRun{
		running:      pick(func(r instantRun) time.Duration { return r.running }),
		hydrated:     pick(func(r instantRun) time.Duration { return r.hydrated }),
		hydration:    pick(func(r instantRun) time.Duration { return r.hydrated - r.running }),
		copy:         pick(func(r instantRun) time.Duration { return r.copy }),
		plainRunning: pick(func(r instantRun) time.Duration { return r.plainRunning }),
	}
}

// instantBench measures instant restores on a libvirt rig.
type instantBench struct{ *libvirtRig }

type instantRun struct {
	running, hydrated  time.Duration // the instant restore's, from its request
	hydration          time.Duration // running → hydrated (medianRun's own median)
	copy, plainRunning time.Duration // the plain restore's
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

	file := filepath.Join(b.dir, "instant.qcow2")
	ovl := overlay.PathOf(file)
	defer os.Remove(file)
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
	if _, err := b.drv.Hydrate(b.ctx, vm, disk, hypervisor.HydrateOptions{Destination: file, PollInterval: 100 * time.Millisecond}); err != nil {
		return m, err
	}
	if backing, err := overlay.Backing(b.ctx, file); err != nil || backing != "" {
		return m, fmt.Errorf("the hydrated volume names the backing file %q (%v)", backing, err)
	}
	if err := os.Remove(ovl); err != nil {
		return m, err
	}
	m.hydrated = time.Since(start)
	return m, nil
}
