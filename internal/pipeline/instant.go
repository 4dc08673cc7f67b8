package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/overlay"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Instant restores. The clone stage makes a qcow2 overlay over each volume's backup on the
// primary storage instead of a copy (a few milliseconds, whatever the size), beside the
// volume's file (overlay.PathOf); instantiate starts the VM on its overlays, with the backups
// as their backing files; hydrate copies each disk's chain into the volume's file while the
// VM runs (libvirt's block copy, at the backup storage's bandwidth, on one of its clone
// slots), switches the disk to it (pivot), checks that it stands alone, records it
// (ClonedFile.Hydrated) and removes the overlay. The job's records name the volume's file
// from the start, as a plain restore's do. While
// the VM runs from a group, the group is marked in Redis (store.MarkBacking) and its backups
// are checked: each is verified against its checksum beside the copy, and its identity
// (size, times, inode) must be the one it had when its overlay was made, before and after
// the copy. Any failure fails the job, loudly: never a silent "done".

// Volume states of a hydration in the job's progress.
const (
	volHydrating = "hydrating"
	volHydrated  = "hydrated"
)

func instant(rec *job.Record) bool { return rec.Request != nil && rec.Request.Instant }

// volumePath is where a job's volume file lands: an instant restore's is a qcow2 file (its
// overlay stands beside it until the VM runs from it).
func volumePath(rec *job.Record, psURL string, v job.PlannedVolume) string {
	if instant(rec) {
		v.Format = "qcow2"
	}
	return InstallPath(psURL, rec.AccountUUID, v)
}

// hydrator is the pipeline's driver as a Hydrator, or a clear refusal.
func (p *Pipeline) hydrator() (hypervisor.Hydrator, error) {
	if h, ok := p.Hypervisor.(hypervisor.Hydrator); ok {
		return h, nil
	}
	return nil, zstack.Operation(zstack.Errorf(zstack.CodeOperation,
		"an instant restore runs the VM from its backups and copies the data in through libvirt, which the %s hypervisor does not do; set VMRESTORE_HYPERVISOR=libvirt on the workers, or restore without instantRestore::true",
		p.Hypervisor.Name()))
}

// cloneInstant makes the overlays of an instant restore, records each backup's identity,
// and marks the group as backing a running VM.
func (p *Pipeline) cloneInstant(ctx context.Context, ix *catalog.Index, rec *job.Record) error {
	if _, err := p.hydrator(); err != nil {
		return err
	}
	r, pl := rec.Checkpoints.Resolved, rec.Checkpoints.Placement
	bs := ix.BackupStorages[r.BackupStorageUUID]
	if bs == nil {
		return zstack.Operation(zstack.Errorf(zstack.CodeBackupStorage, "backup storage[uuid:%s] was removed from the site during the restore", r.BackupStorageUUID))
	}
	if err := p.markBacking(ctx, bs, rec); err != nil {
		return err
	}
	files := map[string]job.ClonedFile{}
	prog := job.Progress{UpdatedAt: time.Now()}
	for _, v := range r.Volumes {
		ps := ix.PrimaryStorages[pl.VolumeStorage[v.UUID]]
		if ps == nil {
			return zstack.Operation(zstack.Errorf(zstack.CodePrimaryStorage, "primary storage[uuid:%s] was removed from the site during the restore", pl.VolumeStorage[v.UUID]))
		}
		backing, err := p.backingOf(bs, rec, v)
		if err != nil {
			return err
		}
		path := volumePath(rec, ps.URL, v)
		ovl := overlay.PathOf(path)
		if err := overlay.Create(ctx, ovl, backing.Path, backing.Format); err != nil {
			return zstack.Operation(zstack.Errorf(zstack.CodePrimaryStorage,
				"cannot make the overlay of volume backup[uuid:%s] on primary storage[uuid:%s] at %s: %v", v.BackupUUID, ps.UUID, ovl, err))
		}
		st, err := os.Stat(ovl)
		if err != nil {
			return err
		}
		files[v.UUID] = job.ClonedFile{InstallPath: path, ActualSize: st.Size(), Backing: backing}
		prog.Volumes = append(prog.Volumes, job.VolumeProgress{UUID: v.UUID, BackupUUID: v.BackupUUID, BytesTotal: backing.Identity.Size, State: volWaiting})
		prog.BytesTotal += backing.Identity.Size
		prog.DataBytesTotal += v.BackupActualSize
	}
	rec.Checkpoints.Volumes = files
	p.Log.Info("overlays made over the backups; the VM runs from them", "volumes", len(files))
	return p.Store.SaveCloneCheckpoint(ctx, rec.UUID, prog, files)
}

// markBacking marks the group as backing the job's VM: in Redis (backupverify and the api
// read it) and, if the backup storage can be written, in the group's folder (restorectl
// backup delete reads it).
func (p *Pipeline) markBacking(ctx context.Context, bs *catalog.BackupStorage, rec *job.Record) error {
	if err := p.Store.MarkBacking(ctx, rec.Request.GroupUUID, rec.UUID); err != nil {
		return err
	}
	if err := backup.MarkBacking(bs.URL, rec.Request.GroupUUID, rec.UUID); err != nil {
		p.Log.Warn("the group's folder could not be marked as backing a running VM (a read-only backup storage?); only Redis says so, which restorectl backup delete does not read", "err", err)
	}
	return nil
}

// unmarkBacking removes both marks of markBacking.
func (p *Pipeline) unmarkBacking(ctx context.Context, ix *catalog.Index, rec *job.Record) error {
	if r := rec.Checkpoints.Resolved; r != nil {
		if bs := ix.BackupStorages[r.BackupStorageUUID]; bs != nil {
			if err := backup.UnmarkBacking(bs.URL, rec.Request.GroupUUID, rec.UUID); err != nil {
				p.Log.Warn("the group's folder keeps its mark of a VM that no longer runs from it; remove it by hand", "file", backup.BackingPrefix+rec.UUID, "err", err)
			}
		}
	}
	return p.Store.UnmarkBacking(ctx, rec.Request.GroupUUID, rec.UUID)
}

// backingOf is a volume's backup file as an overlay's backing file: its absolute path
// (opened first, safely inside its group folder) and its identity.
func (p *Pipeline) backingOf(bs *catalog.BackupStorage, rec *job.Record, v job.PlannedVolume) (*job.Backing, error) {
	src, err := p.openSource(bs, rec, v)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	path, err := filepath.Abs(filepath.Join(backup.GroupDir(bs.URL, rec.Request.GroupUUID), v.File))
	if err != nil {
		return nil, err
	}
	id, err := overlay.IdentityOf(path)
	if err != nil {
		return nil, zstack.Operation(zstack.Errorf(zstack.CodeBackupStorage, "cannot read volume backup[uuid:%s] at %s: %v", v.BackupUUID, path, err))
	}
	if opened, err := overlay.IdentityOfFile(src); err != nil || opened != id {
		return nil, zstack.Operation(zstack.Errorf(zstack.CodeVolumeBackup,
			"volume backup[uuid:%s] at %s is not the file its group folder holds (a link out of the folder?); an instant restore runs only from files inside the group's folder", v.BackupUUID, path))
	}
	return &job.Backing{Path: path, Format: v.Format, Identity: id}, nil
}

// errBackupChanged fails a hydration whose backup is no longer the file its overlay was made
// over.
var errBackupChanged = errors.New("the backup changed while it backed the running VM")

// checkBacking compares a backup file with the identity it had when its overlay was made.
func checkBacking(v job.PlannedVolume, b *job.Backing, when string) error {
	now, err := overlay.IdentityOf(b.Path)
	if err != nil {
		return zstack.Operation(zstack.Errorf(zstack.CodeBackupStorage,
			"%s, volume backup[uuid:%s] at %s cannot be read: %v; the running VM reads its data from it: check the backup storage's mount", when, v.BackupUUID, b.Path, err))
	}
	if diff := b.Identity.Diff(now); diff != "" {
		return zstack.Operation(zstack.Errorf(zstack.CodeVolumeBackup,
			"%s, volume backup[uuid:%s] at %s is not the file the VM started from (%s): %v; the VM may have read data that is no longer in its backup: restore it again from an intact backup",
			when, v.BackupUUID, b.Path, diff, errBackupChanged))
	}
	return nil
}

// hydrate copies an instant restore's disks into its volumes' files while its VM runs, and
// records when it ended; other restores have nothing to hydrate.
func (p *Pipeline) hydrate(ctx context.Context, ix *catalog.Index, rec *job.Record) error {
	if !hydrates(rec) {
		return p.Store.SaveCheckpoint(ctx, rec.UUID, job.StageHydrate, "", nil)
	}
	err := p.hydrateVolumes(ctx, ix, rec)
	if _, definitive := zstack.AsErrorCode(err); definitive {
		p.Metrics.InstantHydrations.WithLabelValues("failed").Inc()
		in := instantOf(rec)
		in.State = job.InstantFailed
		if serr := p.Store.SetInstant(context.WithoutCancel(ctx), rec.UUID, in); serr != nil {
			p.Log.Warn("hydration failure not recorded in the job's instant course", "err", serr)
		}
		p.Log.Error("hydration failed: the VM ran from a backup that cannot be trusted or read", "err", err)
	}
	if err != nil {
		return err
	}
	p.Metrics.InstantHydrations.WithLabelValues("hydrated").Inc()
	in := instantOf(rec)
	in.State, in.HydratedAt = job.InstantHydrated, time.Now()
	rec.Instant = &in
	if err := p.Store.SetInstant(ctx, rec.UUID, in); err != nil {
		return err
	}
	if err := p.unmarkBacking(ctx, ix, rec); err != nil {
		return err
	}
	p.Log.Info("hydrated: every overlay holds its data and stands alone", "running_for", in.HydratedAt.Sub(in.RunningAt).Round(time.Millisecond).String())
	return p.Store.SaveCheckpoint(ctx, rec.UUID, job.StageHydrate, "", nil)
}

// hydrates reports whether the job has a hydrate stage to run: an instant restore that
// built a VM. The instantiate checkpoint of any other job passes the stage.
func hydrates(rec *job.Record) bool { return instant(rec) && !justCreate(rec) }

// instantOf is the job's instant course so far.
func instantOf(rec *job.Record) job.Instant {
	if rec.Instant != nil {
		return *rec.Instant
	}
	return job.Instant{State: job.InstantRunning}
}

// hydrateVolumes makes sure the VM runs, then copies its volumes one after another on a clone
// slot of the backup storage while the backups are verified against their checksums.
func (p *Pipeline) hydrateVolumes(ctx context.Context, ix *catalog.Index, rec *job.Record) error {
	hy, err := p.hydrator()
	if err != nil {
		return err
	}
	r := rec.Checkpoints.Resolved
	bs := ix.BackupStorages[r.BackupStorageUUID]
	if bs == nil {
		return zstack.Operation(zstack.Errorf(zstack.CodeBackupStorage, "backup storage[uuid:%s] was removed from the site during the restore", r.BackupStorageUUID))
	}
	if err := p.settleHydrated(ctx, ix, hy, rec); err != nil {
		return err
	}
	vm, err := p.domainSpec(ix, rec)
	if err != nil {
		return err
	}
	// A host or libvirtd that restarted may have stopped the VM: it starts again, from XML
	// built now (the overlays of the volumes not yet copied, over their backups), and their
	// copies start again.
	if _, err := p.Hypervisor.Instantiate(ctx, vm, zstack.StrategyInstantStart, nil); err != nil {
		return err
	}
	p.Metrics.InstantBackedVMs.Inc()
	defer p.Metrics.InstantBackedVMs.Dec()

	work, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	verified := p.verifyBackings(work, stop, bs, rec)
	slotCtx, release, err := p.hydrationSlot(work, bs, rec)
	if err != nil {
		return err
	}
	vols := make([]*volProgress, len(r.Volumes))
	for i, v := range r.Volumes {
		vols[i] = &volProgress{uuid: v.UUID, backupUUID: v.BackupUUID, dataTotal: v.BackupActualSize}
		vols[i].state.Store(volWaiting)
	}
	stopProgress := p.writeProgress(ctx, rec.UUID, vols)
	err = p.copyAll(slotCtx, hy, vm, rec, vols, bs)
	release()
	if err == nil {
		err = <-verified
	}
	final := stopProgress()
	if werr := p.Store.SetProgress(context.WithoutCancel(ctx), rec.UUID, final); werr != nil {
		p.Log.Debug("hydration progress not recorded", "err", werr)
	}
	if cause := context.Cause(work); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		return cause // a verification failed and stopped the copy
	}
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(slotCtx), errSlotLost) {
		// As in the clone stage: the job gives its worker slot back (not an attempt spent)
		// and follows the copy, which QEMU goes on with, once it has a slot again.
		return fmt.Errorf("hydration stopped following its copy: %w: %w", errSlotLost, queue.ErrBusy)
	}
	return err
}

// copyAll copies every volume of the VM into its file, checking each backup before and after
// its copy and each file after it; the overlay of a volume recorded hydrated is removed.
func (p *Pipeline) copyAll(ctx context.Context, hy hypervisor.Hydrator, vm *hypervisor.VM, rec *job.Record, vols []*volProgress, bs *catalog.BackupStorage) error {
	r := rec.Checkpoints.Resolved
	for i, v := range r.Volumes {
		f := rec.Checkpoints.Volumes[v.UUID]
		if f.Backing == nil {
			return fmt.Errorf("volume %s has no overlay recorded; the clone stage of this instant restore did not finish", v.UUID)
		}
		vp := vols[i]
		if f.Hydrated {
			// An earlier run copied it: its VM no longer reads the backup.
			if err := removeOverlay(f); err != nil {
				return err
			}
			vp.total.Store(f.Backing.Identity.Size)
			vp.done.Store(f.Backing.Identity.Size)
			vp.data.Store(vp.dataTotal)
			vp.state.Store(volHydrated)
			continue
		}
		var disk hypervisor.Disk
		for _, d := range vm.Disks {
			if d.VolumeUUID == v.UUID {
				disk = d
			}
		}
		if err := checkBacking(v, f.Backing, "before its copy"); err != nil {
			return err
		}
		vp.state.Store(volHydrating)
		var last atomic.Int64
		opt := hypervisor.HydrateOptions{Destination: f.InstallPath, BandwidthBytesPerSecond: int64(bs.BandwidthBytesPerSecond), Progress: func(done, total int64) {
			vp.done.Store(done)
			vp.total.Store(total)
			vp.data.Store(min(done, vp.dataTotal))
			p.Metrics.InstantPulledBytes.Add(float64(max(done-last.Swap(done), 0)))
		}}
		out, err := hy.Hydrate(ctx, vm, disk, opt)
		if errors.Is(err, hypervisor.ErrHydrationFailed) {
			vp.state.Store(volFailed)
			return zstack.Operation(zstack.Errorf(zstack.CodeVolumeBackup, "hydration of volume backup[uuid:%s] into %s: %v", v.BackupUUID, f.InstallPath, err))
		}
		if err != nil {
			return err
		}
		if out.Resumed {
			p.Log.Info("followed a copy an earlier run had started", "volume", v.UUID)
		}
		if err := checkBacking(v, f.Backing, "after its copy"); err != nil {
			vp.state.Store(volFailed)
			return err
		}
		if b, err := overlay.Backing(ctx, f.InstallPath); err != nil || b != "" {
			vp.state.Store(volFailed)
			return zstack.Operation(zstack.Errorf(zstack.CodePrimaryStorage,
				"after its copy, the file %s of volume %s should stand alone, and it names the backing file %q (%v)", f.InstallPath, v.UUID, b, err))
		}
		if err := p.recordHydrated(ctx, rec, v.UUID, f); err != nil {
			return err
		}
		if err := removeOverlay(f); err != nil {
			return err
		}
		vp.done.Store(vp.total.Load())
		vp.data.Store(vp.dataTotal)
		vp.state.Store(volHydrated)
	}
	return nil
}

// settleHydrated records as hydrated each volume whose disk already runs from the volume's
// file though the job does not say so (an earlier run's copy ended in its pivot, and the run
// stopped before it recorded it): the VM, if it is started again, must not get its overlay
// and backup back. The domain tells: its live definition if it runs, else the one libvirt
// saved, which it rewrites at the pivot (read before the VM is defined again from XML built
// now).
func (p *Pipeline) settleHydrated(ctx context.Context, ix *catalog.Index, hy hypervisor.Hydrator, rec *job.Record) error {
	vm, err := p.domainSpec(ix, rec)
	if err != nil {
		return err
	}
	for _, disk := range vm.Disks {
		f, ok := rec.Checkpoints.Volumes[disk.VolumeUUID]
		if !ok || !f.RunsFromBacking() {
			continue
		}
		pivoted, err := hy.Pivoted(ctx, vm, disk, f.InstallPath)
		if err != nil {
			return err
		}
		if !pivoted {
			continue
		}
		if b, err := overlay.Backing(ctx, f.InstallPath); err != nil || b != "" {
			return zstack.Operation(zstack.Errorf(zstack.CodePrimaryStorage,
				"the VM runs from the file %s of volume %s, which should stand alone, and it names the backing file %q (%v)", f.InstallPath, disk.VolumeUUID, b, err))
		}
		p.Log.Info("the VM already runs from the volume's file (an earlier run's copy ended); recorded as hydrated", "volume", disk.VolumeUUID, "file", f.InstallPath)
		if err := p.recordHydrated(ctx, rec, disk.VolumeUUID, f); err != nil {
			return err
		}
	}
	return nil
}

// removeOverlay removes the overlay of a hydrated volume (no longer in its VM's chain).
func removeOverlay(f job.ClonedFile) error {
	ovl := overlay.PathOf(f.InstallPath)
	if err := os.Remove(ovl); err != nil && !errors.Is(err, os.ErrNotExist) {
		return zstack.Operation(zstack.Errorf(zstack.CodePrimaryStorage,
			"cannot remove the overlay %s of a hydrated volume (its VM no longer reads it): %v; remove it by hand", ovl, err))
	}
	return nil
}

// recordHydrated records a volume as hydrated (its VM runs from its file alone), with the
// file's allocated size, which the VM's inventory shows. The file gets the mode of a copied
// volume's (libvirt makes the copy's file 0600).
func (p *Pipeline) recordHydrated(ctx context.Context, rec *job.Record, volume string, f job.ClonedFile) error {
	st, err := os.Stat(f.InstallPath)
	if err != nil {
		return err
	}
	if st.Mode().Perm() != clone.FileMode {
		if err := os.Chmod(f.InstallPath, clone.FileMode); err != nil {
			p.Log.Warn("the hydrated volume's file keeps the mode the hypervisor gave it; set it by hand if other tools read the primary storage",
				"volume", volume, "file", f.InstallPath, "mode", st.Mode().Perm().String(), "want", clone.FileMode.String(), "err", err)
		}
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		f.ActualSize = sys.Blocks * 512
	}
	f.Hydrated = true
	rec.Checkpoints.Volumes[volume] = f
	return p.Store.SaveClonedVolume(ctx, rec.UUID, volume, f)
}

// verifyBackings re-reads every backup of the job against its checksum beside the copy, at
// the backup storage's bandwidth; a mismatch or a read failure stops the copy (stop) with
// the reason. The returned channel gives the outcome once all are read.
func (p *Pipeline) verifyBackings(ctx context.Context, stop context.CancelCauseFunc, bs *catalog.BackupStorage, rec *job.Record) <-chan error {
	out := make(chan error, 1)
	go func() {
		err := p.verifyEach(ctx, bs, rec)
		if err != nil && ctx.Err() == nil {
			stop(err)
		}
		out <- err
	}()
	return out
}

func (p *Pipeline) verifyEach(ctx context.Context, bs *catalog.BackupStorage, rec *job.Record) error {
	for _, v := range rec.Checkpoints.Resolved.Volumes {
		src, err := p.openSource(bs, rec, v)
		if err != nil {
			return err
		}
		_, err = clone.Verify(ctx, src, clone.Options{
			Digest: clone.Digest{Algorithm: v.ChecksumAlgo, Value: v.Checksum},
			Format: v.Format, VirtualSize: v.Size, Throttle: p.throttle(bs),
		})
		src.Close()
		var srcErr *clone.SourceError
		switch {
		case err == nil:
			continue
		case stopped(err) || store.Unavailable(err):
			return err
		case errors.As(err, &srcErr):
			return zstack.Operation(zstack.Errorf(zstack.CodeBackupStorage,
				"volume backup[uuid:%s], which the running VM reads from, cannot be read to verify it: %v", v.BackupUUID, srcErr.Err))
		}
		return zstack.Operation(zstack.Errorf(zstack.CodeVolumeBackup,
			"volume backup[uuid:%s], which the running VM reads from, failed its verification: %v; the VM may have read damaged data: restore it again from an intact backup", v.BackupUUID, err))
	}
	p.Log.Info("the backups the VM runs from passed their checksums")
	return nil
}

// hydrationSlot takes a clone slot of the backup storage for the job's copies, waiting for
// one as long as it takes (the VM runs meanwhile); the slot's lease is renewed until release.
func (p *Pipeline) hydrationSlot(ctx context.Context, bs *catalog.BackupStorage, rec *job.Record) (context.Context, func(), error) {
	s := &slotScheduler{p: p, bs: bs, job: rec.UUID + "/hydrate", created: float64(rec.CreatedAt.UnixMilli())}
	for {
		ok, err := p.Store.AcquireCloneSlot(ctx, bs.UUID, s.holder(0), bs.MaxConcurrentClones, slotLease, s.priority(0))
		if err != nil {
			return nil, nil, err
		}
		if ok {
			slotCtx, release := s.keep(ctx, 0)
			return slotCtx, release, nil
		}
		select {
		case <-ctx.Done():
			_ = p.Store.WithdrawCloneSlotWait(context.WithoutCancel(ctx), bs.UUID, s.holder(0))
			return nil, nil, ctx.Err()
		case <-time.After(slotPoll):
		}
	}
}
