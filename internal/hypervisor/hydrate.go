package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// Hydrator is a driver that can pull the data of an instant restore's backup into the
// overlay a running VM uses, while it runs.
type Hydrator interface {
	// Hydrate pulls the backing data of one instant disk of vm (running on vm.Host) into
	// its overlay, and returns once the overlay stands alone. A pull an earlier run started
	// (the worker died, libvirtd restarted) is found and followed, not started again; a
	// pull that failed, or that ended with the backing file still in the chain, is an error.
	Hydrate(ctx context.Context, vm *VM, disk Disk, opt HydrateOptions) (*Hydrated, error)
}

// HydrateOptions tune one pull.
type HydrateOptions struct {
	// BandwidthBytesPerSecond limits the pull (0: unlimited).
	BandwidthBytesPerSecond int64
	// Progress is called with the bytes of the disk the pull has gone through and its
	// total, as libvirt reports them, about every PollInterval.
	Progress func(done, total int64)
	// PollInterval is how often the pull is asked where it is (default 500 ms).
	PollInterval time.Duration
}

// Hydrated is how a pull ended.
type Hydrated struct {
	// Resumed tells a pull an earlier run had started (and this one followed).
	Resumed bool
	// AlreadyDone tells a disk whose overlay already stood alone when asked.
	AlreadyDone bool
}

// ErrHydrationFailed is wrapped by the failures of a pull that no retry fixes by itself:
// libvirt reported the block job failed (an unreadable backup), or the job ended and the
// backup is still in the disk's chain.
var ErrHydrationFailed = errors.New("the pull of the backup into the overlay failed")

// vanishedGrace is how long a pull that no longer shows as a job may take to show as done in
// the domain's definition (libvirt updates the chain as it handles the job's end).
const vanishedGrace = 10 * time.Second

// Hydrate pulls (virDomainBlockPull) the backup into the disk's overlay. Completion is told
// by the domain's live definition, not by the job's absence: after a success and after a
// failure libvirt's block job info looks the same (no job), so the disk's chain decides —
// done when the backup is gone from it. A BLOCK_JOB failure event (go-libvirt decodes the
// first block job event, DomainEventIDBlockJob, not BlockJob2) fails the pull at once.
func (l *Libvirt) Hydrate(ctx context.Context, vm *VM, disk Disk, opt HydrateOptions) (*Hydrated, error) {
	if !disk.Instant() {
		return nil, fmt.Errorf("volume %s does not run from an overlay: nothing to hydrate", disk.VolumeUUID)
	}
	if opt.PollInterval <= 0 {
		opt.PollInterval = 500 * time.Millisecond
	}
	h := vm.Host
	dom, state, owner, found, err := l.lookup(ctx, h, vm.UUID)
	switch {
	case err != nil:
		return nil, err
	case !found:
		return nil, fmt.Errorf("%w: the domain of VM %s is not on %s", ErrHydrationFailed, vm.UUID, h)
	case owner != vm.JobUUID:
		return nil, fmt.Errorf("%w: the domain of VM %s on %s was made by another restore (%q)", ErrHydrationFailed, vm.UUID, h, owner)
	case !active(state):
		return nil, fmt.Errorf("the domain of VM %s on %s is not running (%s); it is started again before the pull: %w", vm.UUID, h, zstackState(state), ErrNotRunning)
	}
	dev, _ := DiskTarget(disk, vm.Platform)
	events, stopEvents := l.blockJobEvents(ctx, h, dom)
	defer stopEvents()

	out := &Hydrated{}
	job, err := l.blockJob(ctx, h, dom, dev)
	if err != nil {
		return nil, err
	}
	if job.found {
		out.Resumed = true
		l.Log.Info("a pull of this disk is already under way (an earlier run started it); following it", "vm", vm.UUID, "disk", dev, "done", job.cur, "total", job.end)
	} else {
		backed, err := l.backed(ctx, h, dom, dev, disk.BackingPath)
		if err != nil {
			return nil, err
		}
		if !backed {
			out.AlreadyDone = true
			return out, nil
		}
		err = l.Pool.Call(ctx, h, "pull the backup into disk "+dev+" of domain "+vm.UUID, func(lv *libvirt.Libvirt) error {
			return lv.DomainBlockPull(dom, dev, uint64(max(opt.BandwidthBytesPerSecond, 0)), libvirt.DomainBlockPullBandwidthBytes)
		})
		if err != nil {
			return nil, refused("pull the backup into disk "+dev+" of domain "+vm.UUID, h, err)
		}
		l.Log.Info("pull started", "vm", vm.UUID, "disk", dev, "backing", disk.BackingPath, "bandwidth", opt.BandwidthBytesPerSecond)
	}
	return out, l.followPull(ctx, vm, dom, disk, dev, events, opt)
}

// ErrNotRunning is a domain that must run for its disks to be pulled.
var ErrNotRunning = errors.New("the domain is not running")

// followPull waits for the disk's pull to end, reporting progress, and tells how it ended.
func (l *Libvirt) followPull(ctx context.Context, vm *VM, dom libvirt.Domain, disk Disk, dev string, events <-chan blockJobEvent, opt HydrateOptions) error {
	h := vm.Host
	tick := time.NewTicker(opt.PollInterval)
	defer tick.Stop()
	var vanished time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-events:
			if ev.path != disk.Path && ev.path != dev {
				continue
			}
			switch libvirt.ConnectDomainEventBlockJobStatus(ev.status) {
			case libvirt.DomainBlockJobCanceled:
				return fmt.Errorf("%w: the block job of disk %s (%s) of VM %s on %s was cancelled on the host (virsh blockjob --abort?); the backup %s is still its backing file",
					ErrHydrationFailed, dev, disk.Path, vm.UUID, h, disk.BackingPath)
			case libvirt.DomainBlockJobFailed:
				return fmt.Errorf("%w: libvirt reports the block job of disk %s (%s) of VM %s on %s failed: the backup %s could not be read; check that the backup storage is mounted and the file readable by the qemu user",
					ErrHydrationFailed, dev, disk.Path, vm.UUID, h, disk.BackingPath)
			}
		case <-tick.C:
		}
		job, err := l.blockJob(ctx, h, dom, dev)
		if err != nil {
			return err
		}
		if job.found {
			vanished = time.Time{}
			if opt.Progress != nil {
				opt.Progress(int64(job.cur), int64(job.end))
			}
			continue
		}
		backed, err := l.backed(ctx, h, dom, dev, disk.BackingPath)
		if err != nil {
			return err
		}
		if !backed {
			return nil
		}
		if vanished.IsZero() {
			vanished = time.Now()
		}
		if time.Since(vanished) >= vanishedGrace {
			return fmt.Errorf("%w: the block job of disk %s of VM %s on %s ended, and the backup %s is still its backing file (the job failed or was cancelled)",
				ErrHydrationFailed, dev, vm.UUID, h, disk.BackingPath)
		}
	}
}

type blockJobInfo struct {
	found    bool
	cur, end uint64
}

func (l *Libvirt) blockJob(ctx context.Context, h Host, dom libvirt.Domain, dev string) (blockJobInfo, error) {
	var j blockJobInfo
	err := l.Pool.Call(ctx, h, "read the block job of disk "+dev+" of domain "+dom.Name, func(lv *libvirt.Libvirt) error {
		found, _, _, cur, end, err := lv.DomainGetBlockJobInfo(dom, dev, uint32(libvirt.DomainBlockJobInfoBandwidthBytes))
		j = blockJobInfo{found: found == 1, cur: cur, end: end}
		return err
	})
	return j, err
}

// backed reports whether the running domain's disk dev still has backing in its chain (the
// live definition, which libvirt rewrites when a pull completes).
func (l *Libvirt) backed(ctx context.Context, h Host, dom libvirt.Domain, dev, backing string) (bool, error) {
	var desc string
	err := l.Pool.Call(ctx, h, "read the definition of domain "+dom.Name, func(lv *libvirt.Libvirt) error {
		var err error
		desc, err = lv.DomainGetXMLDesc(dom, 0)
		return err
	})
	if err != nil {
		return false, err
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(desc); err != nil {
		return false, fmt.Errorf("the definition of domain %s on %s: %w", dom.Name, h, err)
	}
	if d.Devices == nil {
		return false, fmt.Errorf("domain %s on %s has no devices", dom.Name, h)
	}
	for _, disk := range d.Devices.Disks {
		if disk.Target == nil || disk.Target.Dev != dev {
			continue
		}
		for b := disk.BackingStore; b != nil; b = b.BackingStore {
			if b.Source != nil && b.Source.File != nil && b.Source.File.File != "" {
				return true, nil
			}
		}
		return false, nil
	}
	return false, fmt.Errorf("domain %s on %s has no disk %s", dom.Name, h, dev)
}

// blockJobEvent is a block job event of the domain: the disk (its path) and the status.
type blockJobEvent struct {
	path   string
	status int32
}

// blockJobEvents delivers the domain's block job events on a connection of its own,
// re-subscribing after libvirtd drops it (a restart), until stop is called. Events only
// speed failures up: the pull's end is read from the domain's definition.
func (l *Libvirt) blockJobEvents(ctx context.Context, h Host, dom libvirt.Domain) (<-chan blockJobEvent, func()) {
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan blockJobEvent, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			l.subscribeOnce(ctx, h, dom, out)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return out, func() { cancel(); <-done }
}

func (l *Libvirt) subscribeOnce(ctx context.Context, h Host, dom libvirt.Domain, out chan<- blockJobEvent) {
	c, err := l.Pool.Open(ctx, h)
	if err != nil {
		return
	}
	defer c.Close()
	sub, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := c.lv.SubscribeEvents(sub, libvirt.DomainEventIDBlockJob, libvirt.OptDomain{dom})
	if err != nil {
		l.Log.Debug("block job events not subscribed; the pull is followed by polling alone", "host", h.UUID, "err", err)
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.lv.Disconnected():
			return
		case e, ok := <-ch:
			if !ok {
				return
			}
			if m, ok := e.(*libvirt.DomainEventCallbackBlockJobMsg); ok {
				select {
				case out <- blockJobEvent{path: m.Msg.Path, status: m.Msg.Status}:
				default:
				}
			}
		}
	}
}
