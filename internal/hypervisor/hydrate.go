package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// Hydrator is a driver that can move the data of an instant restore's backup into the
// volume's own file while the VM runs from an overlay over the backup.
type Hydrator interface {
	// Hydrate copies the whole chain of one instant disk of vm (running on vm.Host), its
	// overlay and the backup under it, into a new standalone qcow2 file, opt.Destination,
	// and once the copy has caught up switches the disk over to it (pivot); it returns once
	// the disk runs from the destination alone. A copy an earlier run started (the worker
	// died, libvirtd restarted) is found and followed, not started again; a disk already on
	// its destination is done. A copy that failed, or that ended without its pivot, is an
	// error.
	Hydrate(ctx context.Context, vm *VM, disk Disk, opt HydrateOptions) (*Hydrated, error)
	// Pivoted reports whether the disk of vm's domain is on destination (its copy ended in
	// its pivot): in the live definition of a running domain, or, of a stopped one, in the
	// definition libvirt saved (libvirt rewrites it at the pivot). No domain: false.
	Pivoted(ctx context.Context, vm *VM, disk Disk, destination string) (bool, error)
}

// HydrateOptions tune one copy.
type HydrateOptions struct {
	// Destination is the volume's final file: the copy creates it (a partial one an earlier
	// copy left is discarded first) and the disk runs from it after the pivot.
	Destination string
	// BandwidthBytesPerSecond limits the copy (0: unlimited).
	BandwidthBytesPerSecond int64
	// Progress is called with the bytes of the disk the copy has gone through and its
	// total, as libvirt reports them, about every PollInterval.
	Progress func(done, total int64)
	// PollInterval is how often the copy is asked where it is (default 500 ms).
	PollInterval time.Duration
}

// Hydrated is how a copy ended.
type Hydrated struct {
	// Resumed tells a copy an earlier run had started (and this one followed).
	Resumed bool
	// AlreadyDone tells a disk that already ran from its destination when asked.
	AlreadyDone bool
}

// ErrHydrationFailed is wrapped by the failures of a copy that no retry fixes by itself:
// libvirt reported the block job failed (an unreadable backup) or cancelled, or the job
// ended without the disk on its destination.
var ErrHydrationFailed = errors.New("the copy of the backup into the volume's file failed")

// vanishedGrace is how long a copy that no longer shows as a job may take to show its pivot
// in the domain's definition (libvirt updates the disk as it handles the job's end).
const vanishedGrace = 10 * time.Second

// Hydrate copies (virDomainBlockCopy, a full copy of the chain into a new qcow2 file, as a
// transient job: the domain is persistent) the disk into opt.Destination, and pivots the
// disk to it once the copy is ready (QEMU flushes the copy before it switches; libvirt then
// rewrites the domain's saved definition to the new file). Unlike a block pull, which reads
// and writes one chunk at a time, QEMU's mirror keeps several requests in flight, and it
// skips the holes of a raw backup. The end is told by the domain's live definition, not by
// the job's absence (after a pivot, a cancel or a failure libvirt shows no job): done when
// the disk's source is the destination and no backing file is left in its chain; failed
// when the job is gone and so is the disk's mirror, its source still the overlay.
//
// The copy is polled, not followed by domain events: libvirtd 9.0 has died as it freed a
// closing client's event callbacks, and a restore must never take its host's libvirtd down.
func (l *Libvirt) Hydrate(ctx context.Context, vm *VM, disk Disk, opt HydrateOptions) (*Hydrated, error) {
	if !disk.Instant() {
		return nil, fmt.Errorf("volume %s does not run from an overlay: nothing to hydrate", disk.VolumeUUID)
	}
	if !filepath.IsAbs(opt.Destination) || opt.Destination == disk.Path || opt.Destination == disk.BackingPath {
		return nil, fmt.Errorf("volume %s: the copy's destination %q must be an absolute path other than its overlay and its backup", disk.VolumeUUID, opt.Destination)
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
		return nil, fmt.Errorf("the domain of VM %s on %s is not running (%s); it is started again before the copy: %w", vm.UUID, h, zstackState(state), ErrNotRunning)
	}
	dev, _ := DiskTarget(disk, vm.Platform)
	out := &Hydrated{}
	job, err := l.blockJob(ctx, h, dom, dev)
	if err != nil {
		return nil, err
	}
	if job.found {
		if job.typ != libvirt.DomainBlockJobTypeCopy {
			return nil, fmt.Errorf("%w: disk %s of VM %s on %s has a block job of type %d, not this restore's copy; end it on the host (virsh blockjob %s %s --abort) and retry",
				ErrHydrationFailed, dev, vm.UUID, h, job.typ, vm.UUID, dev)
		}
		out.Resumed = true
		l.Log.Info("a copy of this disk is already under way (an earlier run started it); following it", "vm", vm.UUID, "disk", dev, "done", job.cur, "total", job.end)
	} else {
		st, err := l.diskState(ctx, h, dom, dev, 0)
		if err != nil {
			return nil, err
		}
		if st.source == opt.Destination {
			if st.backed {
				return nil, fmt.Errorf("%w: disk %s of VM %s on %s runs from %s, which still has a backing file", ErrHydrationFailed, dev, vm.UUID, h, opt.Destination)
			}
			out.AlreadyDone = true
			return out, nil
		}
		if st.source != disk.Path {
			return nil, fmt.Errorf("%w: disk %s of VM %s on %s runs from %s, neither its overlay %s nor its destination %s",
				ErrHydrationFailed, dev, vm.UUID, h, st.source, disk.Path, opt.Destination)
		}
		// No copy runs: whatever is at the destination is a copy cut short (its domain
		// stopped, or it failed); it is discarded, and the copy starts again.
		if err := os.Remove(opt.Destination); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove the partial copy %s of volume %s: %w", opt.Destination, disk.VolumeUUID, err)
		}
		if err := l.startCopy(ctx, h, dom, dev, vm.UUID, opt); err != nil {
			return nil, err
		}
		l.Log.Info("copy started", "vm", vm.UUID, "disk", dev, "from", disk.Path, "backing", disk.BackingPath, "to", opt.Destination, "bandwidth", opt.BandwidthBytesPerSecond)
	}
	return out, l.followCopy(ctx, vm, dom, disk, dev, opt)
}

// startCopy starts the full copy of disk dev's chain into a new qcow2 file at
// opt.Destination, as a transient job (the copy of a persistent domain's disk needs it; a
// domain that stops loses the job, and the re-run copies again).
func (l *Libvirt) startCopy(ctx context.Context, h Host, dom libvirt.Domain, dev, vmUUID string, opt HydrateOptions) error {
	dest, err := (&libvirtxml.DomainDisk{
		Device: "disk",
		Driver: &libvirtxml.DomainDiskDriver{Type: "qcow2"},
		Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: opt.Destination}},
	}).Marshal()
	if err != nil {
		return err
	}
	var params []libvirt.TypedParam
	if opt.BandwidthBytesPerSecond > 0 {
		params = append(params, libvirt.TypedParam{Field: libvirt.DomainBlockCopyBandwidth, Value: *libvirt.NewTypedParamValueUllong(uint64(opt.BandwidthBytesPerSecond))})
	}
	what := "copy disk " + dev + " of domain " + vmUUID + " into " + opt.Destination
	err = l.Pool.Call(ctx, h, what, func(lv *libvirt.Libvirt) error {
		return lv.DomainBlockCopy(dom, dev, dest, params, libvirt.DomainBlockCopyTransientJob)
	})
	if err != nil {
		return refused(what, h, err)
	}
	return nil
}

// ErrNotRunning is a domain that must run for its disks to be copied.
var ErrNotRunning = errors.New("the domain is not running")

// followCopy waits for the disk's copy to be ready, pivots the disk to its destination,
// reports progress, and tells how it ended.
func (l *Libvirt) followCopy(ctx context.Context, vm *VM, dom libvirt.Domain, disk Disk, dev string, opt HydrateOptions) error {
	h := vm.Host
	tick := time.NewTicker(opt.PollInterval)
	defer tick.Stop()
	var vanished time.Time
	refusals := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		job, err := l.blockJob(ctx, h, dom, dev)
		if err != nil {
			return err
		}
		st, err := l.diskState(ctx, h, dom, dev, 0)
		if err != nil {
			return err
		}
		if job.found {
			vanished = time.Time{}
			if opt.Progress != nil {
				opt.Progress(int64(job.cur), int64(job.end))
			}
			if !st.ready {
				continue
			}
			refusal, err := l.pivot(ctx, h, dom, dev, vm.UUID)
			if err != nil {
				return err
			}
			if refusal == "" {
				continue
			}
			if refusals++; refusals >= maxPivotRefusals {
				// Not a failure of the data: the job is retried, and follows the same copy.
				return fmt.Errorf("libvirt refused %d times to switch disk %s of VM %s on %s to its ready copy %s: %s",
					refusals, dev, vm.UUID, h, opt.Destination, refusal)
			}
			continue
		}
		if st.source == opt.Destination {
			if st.backed {
				return fmt.Errorf("%w: disk %s of VM %s on %s runs from %s, which still has a backing file", ErrHydrationFailed, dev, vm.UUID, h, opt.Destination)
			}
			l.Log.Info("copy ended: the disk runs from its own file", "vm", vm.UUID, "disk", dev, "file", opt.Destination)
			return nil
		}
		if !st.mirrored {
			// libvirt has handled the job's end (it drops the mirror then), and the disk did
			// not switch: the copy failed, or was cancelled on the host.
			return fmt.Errorf("%w: the copy of disk %s (%s) of VM %s on %s ended without switching the disk to %s: it failed (the backup %s could not be read, or %s not written: check that the backup storage is mounted and the file readable by the qemu user, and the primary storage's free space) or was cancelled on the host (virsh blockjob --abort); the disk still runs from its backup",
				ErrHydrationFailed, dev, st.source, vm.UUID, h, opt.Destination, disk.BackingPath, opt.Destination)
		}
		if vanished.IsZero() {
			vanished = time.Now()
		}
		if time.Since(vanished) >= vanishedGrace {
			return fmt.Errorf("%w: the copy of disk %s of VM %s on %s ended, and the disk still runs from %s over its backup %s (the job failed or was cancelled)",
				ErrHydrationFailed, dev, vm.UUID, h, st.source, disk.BackingPath)
		}
	}
}

// maxPivotRefusals is how many polls in a row libvirt may refuse the pivot of a ready copy
// before the follower gives up (the job is retried and follows the same copy).
const maxPivotRefusals = 20

// pivot switches disk dev to its copy (QEMU flushes the copy first), and returns libvirt's
// refusal, if it refused (a copy not ready after all): it is tried again at the next poll.
// The copy's end is read from the disk's definition, not from this call.
func (l *Libvirt) pivot(ctx context.Context, h Host, dom libvirt.Domain, dev, vmUUID string) (refusal string, err error) {
	what := "switch disk " + dev + " of domain " + vmUUID + " to its copy"
	err = l.Pool.Call(ctx, h, what, func(lv *libvirt.Libvirt) error {
		return lv.DomainBlockJobAbort(dom, dev, libvirt.DomainBlockJobAbortPivot)
	})
	var le libvirt.Error
	if errors.As(err, &le) {
		l.Log.Warn("libvirt refused the pivot; trying again", "vm", vmUUID, "disk", dev, "err", le.Message)
		return le.Message, nil
	}
	if err != nil {
		return "", fmt.Errorf("%s on %s: %w", what, h, err)
	}
	faultPoint("after-pivot")
	return "", nil
}

// Pivoted reports whether the domain's disk runs from destination: the live definition of a
// running domain, the saved one of a stopped domain.
func (l *Libvirt) Pivoted(ctx context.Context, vm *VM, disk Disk, destination string) (bool, error) {
	dom, state, owner, found, err := l.lookup(ctx, vm.Host, vm.UUID)
	if err != nil || !found || owner != vm.JobUUID {
		return false, err
	}
	var flags libvirt.DomainXMLFlags
	if !active(state) {
		flags = libvirt.DomainXMLInactive
	}
	dev, _ := DiskTarget(disk, vm.Platform)
	st, err := l.diskState(ctx, vm.Host, dom, dev, flags)
	if err != nil {
		return false, err
	}
	return st.source == destination, nil
}

type blockJobInfo struct {
	found    bool
	typ      libvirt.DomainBlockJobType
	cur, end uint64
}

func (l *Libvirt) blockJob(ctx context.Context, h Host, dom libvirt.Domain, dev string) (blockJobInfo, error) {
	var j blockJobInfo
	err := l.Pool.Call(ctx, h, "read the block job of disk "+dev+" of domain "+dom.Name, func(lv *libvirt.Libvirt) error {
		found, typ, _, cur, end, err := lv.DomainGetBlockJobInfo(dom, dev, uint32(libvirt.DomainBlockJobInfoBandwidthBytes))
		j = blockJobInfo{found: found == 1, typ: libvirt.DomainBlockJobType(typ), cur: cur, end: end}
		return err
	})
	if err != nil {
		return blockJobInfo{}, err // the call may still be writing j (see Pool.Call)
	}
	return j, nil
}

// diskOnHost is a disk as the domain's definition shows it: the file it runs from, whether
// a backing file is left in its chain, whether a copy of it runs (its mirror), and whether
// that copy is ready to pivot.
type diskOnHost struct {
	source   string
	backed   bool
	mirrored bool
	ready    bool
}

// diskState reads disk dev from the domain's definition: the live one (flags 0), which
// libvirt rewrites when a copy is ready and when the disk pivots, or the saved one
// (DomainXMLInactive).
func (l *Libvirt) diskState(ctx context.Context, h Host, dom libvirt.Domain, dev string, flags libvirt.DomainXMLFlags) (diskOnHost, error) {
	var desc string
	err := l.Pool.Call(ctx, h, "read the definition of domain "+dom.Name, func(lv *libvirt.Libvirt) error {
		var err error
		desc, err = lv.DomainGetXMLDesc(dom, flags)
		return err
	})
	if err != nil {
		return diskOnHost{}, err
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(desc); err != nil {
		return diskOnHost{}, fmt.Errorf("the definition of domain %s on %s: %w", dom.Name, h, err)
	}
	if d.Devices == nil {
		return diskOnHost{}, fmt.Errorf("domain %s on %s has no devices", dom.Name, h)
	}
	for _, disk := range d.Devices.Disks {
		if disk.Target == nil || disk.Target.Dev != dev {
			continue
		}
		var st diskOnHost
		if disk.Source != nil && disk.Source.File != nil {
			st.source = disk.Source.File.File
		}
		for b := disk.BackingStore; b != nil; b = b.BackingStore {
			if b.Source != nil && b.Source.File != nil && b.Source.File.File != "" {
				st.backed = true
			}
		}
		st.mirrored = disk.Mirror != nil
		st.ready = st.mirrored && disk.Mirror.Job == "copy" && disk.Mirror.Ready == "yes"
		return st, nil
	}
	return diskOnHost{}, fmt.Errorf("domain %s on %s has no disk %s", dom.Name, h, dev)
}
