package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// InstallPath is where a restored volume lands, in ZStack's layout:
// <ps url>/rootVolumes|dataVolumes/acct-<account>/vol-<volume>/<volume>.<format>.
func InstallPath(psURL, account string, v job.PlannedVolume) string {
	kind := "dataVolumes"
	if v.Type == backup.VolumeRoot {
		kind = "rootVolumes"
	}
	return filepath.Join(psURL, kind, "acct-"+account, "vol-"+v.UUID, v.UUID+"."+v.Format)
}

// progressEvery is how often clone progress is written to the job record.
const progressEvery = time.Second

// A volume copy holds one of its backup storage's clone slots, as a lease renewed every
// slotLease/3 while it runs. A volume that finds no free slot within slotWait makes its job
// yield the worker slot (queue.ErrBusy) so that restores from other storages are not held up
// by a busy one. A copy whose lease could not be renewed (Redis unreachable for a whole
// lease, or the slot taken over) stops and yields too: going on would exceed the limit.
const (
	slotLease = 15 * time.Second
	slotWait  = 3 * time.Second
)

// errSlotLost ends a copy whose clone slot lease was lost.
var errSlotLost = errors.New("the clone slot lease was lost")

// Volume copy states in the job's progress.
const (
	volWaiting = "waiting"
	volCopying = "copying"
	volDone    = "done"
	volFailed  = "failed"
)

// volProgress is one volume's live progress, shared by its copy and the progress writer.
type volProgress struct {
	uuid, backupUUID  string
	done, total, data atomic.Int64
	state             atomic.Value // string
}

// clone copies every volume backup to its install path, several at once, skipping volumes a
// previous run finished. Progress (per volume and for the job) is written to the job record
// every progressEvery while it runs, and once more at the end, with the stage's checkpoint.
func (p *Pipeline) clone(ctx context.Context, ix *catalog.Index, rec *job.Record) error {
	if justCreate(rec) {
		return p.Store.SaveCheckpoint(ctx, rec.UUID, job.StageClone, "", nil)
	}
	r, pl := rec.Checkpoints.Resolved, rec.Checkpoints.Placement
	bs := ix.BackupStorages[r.BackupStorageUUID]
	if bs == nil {
		return zstack.Operation(zstack.Errorf(zstack.CodeBackupStorage, "backup storage[uuid:%s] was removed from the site during the restore", r.BackupStorageUUID))
	}

	type work struct {
		v    job.PlannedVolume
		ps   *catalog.PrimaryStorage
		path string
		prog *volProgress
		src  *os.File
	}
	var todo []work
	defer func() {
		for _, w := range todo {
			w.src.Close()
		}
	}()
	vols := make([]*volProgress, len(r.Volumes))
	for i, v := range r.Volumes {
		ps := ix.PrimaryStorages[pl.VolumeStorage[v.UUID]]
		if ps == nil {
			return zstack.Operation(zstack.Errorf(zstack.CodePrimaryStorage, "primary storage[uuid:%s] was removed from the site during the restore", pl.VolumeStorage[v.UUID]))
		}
		vp := &volProgress{uuid: v.UUID, backupUUID: v.BackupUUID}
		vp.state.Store(volWaiting)
		vols[i] = vp
		path := InstallPath(ps.URL, rec.AccountUUID, v)
		// A volume is checkpointed only after its verified file was renamed into place.
		if f, ok := rec.Checkpoints.Volumes[v.UUID]; ok && f.InstallPath == path {
			if st, err := os.Stat(path); err == nil {
				vp.total.Store(st.Size())
				vp.done.Store(st.Size())
				vp.state.Store(volDone)
				continue
			}
		}
		// Every backup file is opened before any copy starts, so a missing one fails the
		// stage at once; its length is the progress total.
		src, err := p.openSource(bs, rec, v)
		if err != nil {
			return err
		}
		todo = append(todo, work{v: v, ps: ps, path: path, prog: vp, src: src})
		st, err := src.Stat()
		if err != nil {
			return zstack.Operation(zstack.Errorf(zstack.CodeBackupStorage,
				"cannot read volume backup[uuid:%s] from backup storage[uuid:%s]: %v", v.BackupUUID, bs.UUID, err))
		}
		vp.total.Store(st.Size())
	}

	stopProgress := p.writeProgress(ctx, rec.UUID, vols)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(p.CloneParallelism, 1))
	var mu sync.Mutex
	left := len(todo)
	for _, w := range todo {
		g.Go(func() error {
			f, err := p.cloneVolume(gctx, rec, bs, w.ps, w.v, w.path, w.prog, w.src)
			if err != nil {
				w.prog.state.Store(volFailed)
				return err
			}
			w.prog.done.Store(w.prog.total.Load())
			w.prog.state.Store(volDone)
			mu.Lock()
			if rec.Checkpoints.Volumes == nil {
				rec.Checkpoints.Volumes = map[string]job.ClonedFile{}
			}
			rec.Checkpoints.Volumes[w.v.UUID] = f
			left--
			last := left == 0
			mu.Unlock()
			// A finished volume is recorded at once, so that a later attempt skips it; the
			// last one is recorded with the stage's checkpoint, in the same write.
			if last {
				return nil
			}
			return p.Store.SaveClonedVolume(ctx, rec.UUID, w.v.UUID, f)
		})
	}
	err := g.Wait()
	final := stopProgress()
	if err != nil {
		if werr := p.Store.SetProgress(context.WithoutCancel(ctx), rec.UUID, final); werr != nil {
			p.Log.Debug("clone progress not recorded", "job", rec.UUID, "err", werr)
		}
		return err
	}
	return p.Store.SaveCloneCheckpoint(ctx, rec.UUID, final, rec.Checkpoints.Volumes)
}

// writeProgress writes the clone progress to the job record every progressEvery until the
// returned stop is called, which returns the progress at that moment for the caller to
// record: with the stage's checkpoint when the copies are done, in one write. A clone that
// ends within progressEvery costs no progress write of its own.
func (p *Pipeline) writeProgress(ctx context.Context, jobUUID string, vols []*volProgress) (stop func() job.Progress) {
	var lastData int64
	lastAt := time.Now()
	measure := func() job.Progress {
		now := time.Now()
		pr := job.Progress{UpdatedAt: now, Volumes: make([]job.VolumeProgress, len(vols))}
		for i, v := range vols {
			vp := job.VolumeProgress{UUID: v.uuid, BackupUUID: v.backupUUID, BytesDone: v.done.Load(),
				BytesTotal: v.total.Load(), DataBytes: v.data.Load(), State: v.state.Load().(string)}
			pr.Volumes[i] = vp
			pr.BytesDone += vp.BytesDone
			pr.BytesTotal += vp.BytesTotal
			pr.DataBytes += vp.DataBytes
		}
		if dt := now.Sub(lastAt).Seconds(); dt > 0 {
			pr.BytesPerSecond = int64(float64(pr.DataBytes-lastData) / dt)
		}
		lastData, lastAt = pr.DataBytes, now
		return pr
	}
	write := func(pr job.Progress) {
		if err := p.Store.SetProgress(context.WithoutCancel(ctx), jobUUID, pr); err != nil {
			p.Log.Debug("clone progress not recorded", "job", jobUUID, "err", err)
		}
	}
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				write(measure())
			}
		}
	}()
	return func() job.Progress {
		close(done)
		<-exited
		return measure()
	}
}

// openSource opens a volume's backup file, safely inside its group folder.
func (p *Pipeline) openSource(bs *catalog.BackupStorage, rec *job.Record, v job.PlannedVolume) (*os.File, error) {
	src, err := backup.OpenVolume(bs.URL, rec.Request.GroupUUID, &backup.Volume{UUID: v.BackupUUID, File: v.File})
	if err != nil {
		if ec, ok := zstack.AsErrorCode(err); ok {
			return nil, zstack.Operation(ec)
		}
		return nil, err
	}
	return src, nil
}

// cloneVolume copies one volume from src, its opened backup file, to path.
func (p *Pipeline) cloneVolume(ctx context.Context, rec *job.Record, bs *catalog.BackupStorage, ps *catalog.PrimaryStorage, v job.PlannedVolume, path string, vp *volProgress, src *os.File) (job.ClonedFile, error) {
	what := fmt.Sprintf("volume backup[uuid:%s] (%s volume, deviceId %d)", v.BackupUUID, v.Type, v.DeviceID)
	slotCtx, release, err := p.acquireSlot(ctx, bs, rec.UUID+"/"+v.UUID)
	if err != nil {
		return job.ClonedFile{}, err
	}
	defer release()
	vp.state.Store(volCopying)
	inflight := p.Metrics.ClonesInFlight.WithLabelValues(bs.UUID)
	inflight.Inc()
	defer inflight.Dec()
	cloneBytes := p.Metrics.CloneBytes.WithLabelValues(bs.UUID)
	rate := int64(bs.BandwidthBytesPerSecond)
	start := time.Now()
	var lastData int64
	res, err := clone.Copy(slotCtx, src, path, clone.Options{
		Digest: clone.Digest{Algorithm: v.ChecksumAlgo, Value: v.Checksum},
		Format: v.Format, VirtualSize: v.Size,
		Progress: func(pr clone.Progress) {
			cloneBytes.Add(float64(pr.Data - lastData))
			lastData = pr.Data
			vp.done.Store(pr.Done)
			vp.data.Store(pr.Data)
		},
		Throttle: p.throttle(bs),
		// A limited copy reserves about an eighth of a second of bandwidth per read, so its
		// progress moves several times a second.
		ChunkSize: int(min(rate/8, 1<<30)),
	})
	elapsed := time.Since(start)
	outcome := "failed"
	defer func() { p.Metrics.CloneDuration.WithLabelValues(bs.UUID, outcome).Observe(elapsed.Seconds()) }()
	var srcErr *clone.SourceError
	var dstErr *clone.DestError
	switch {
	case err == nil:
		outcome = "ok"
		if s := elapsed.Seconds(); s > 0 && res.DataBytes > 0 {
			p.Metrics.CloneThroughput.WithLabelValues(bs.UUID).Observe(float64(res.DataBytes) / s)
		}
		return job.ClonedFile{InstallPath: path, ActualSize: res.ActualSize}, nil
	case ctx.Err() != nil:
		outcome = "cancelled"
		return job.ClonedFile{}, ctx.Err()
	case errors.Is(context.Cause(slotCtx), errSlotLost):
		outcome = "cancelled"
		return job.ClonedFile{}, fmt.Errorf("copy of %s stopped: %w: %w", what, errSlotLost, queue.ErrBusy)
	case errors.Is(err, clone.ErrChecksum), errors.Is(err, clone.ErrFormat):
		return job.ClonedFile{}, zstack.Operation(zstack.Errorf(zstack.CodeVolumeBackup, "%s: %v", what, err))
	case errors.As(err, &srcErr):
		return job.ClonedFile{}, zstack.Operation(zstack.Errorf(zstack.CodeBackupStorage,
			"cannot read %s from backup storage[uuid:%s]: %v; check that the backup storage is mounted and readable", what, bs.UUID, srcErr.Err))
	case errors.As(err, &dstErr) && clone.NoSpace(err):
		return job.ClonedFile{}, zstack.Operation(zstack.Errorf(zstack.CodePrimaryStorage,
			"primary storage[uuid:%s] at %s is full while writing %s; free space or choose another primary storage", ps.UUID, ps.URL, what))
	case errors.As(err, &dstErr):
		return job.ClonedFile{}, zstack.Operation(zstack.Errorf(zstack.CodePrimaryStorage,
			"cannot write %s to primary storage[uuid:%s]: %v", what, ps.UUID, dstErr.Err))
	case store.Unavailable(err):
		// The bandwidth reservation could not reach Redis: the copy pauses, not fails.
		outcome = "cancelled"
		return job.ClonedFile{}, fmt.Errorf("copy of %s paused: %w", what, err)
	}
	return job.ClonedFile{}, zstack.Operation(zstack.Errorf(zstack.CodeVolumeBackup, "%s: %v", what, err))
}

// acquireSlot takes one of the backup storage's clone slots for holder and keeps its lease
// renewed until release is called. It gives up after slotWait with queue.ErrBusy. The
// returned context is ctx, cancelled with errSlotLost if the lease cannot be kept.
func (p *Pipeline) acquireSlot(ctx context.Context, bs *catalog.BackupStorage, holder string) (context.Context, func(), error) {
	deadline := time.Now().Add(slotWait)
	for {
		ok, err := p.Store.AcquireCloneSlot(ctx, bs.UUID, holder, bs.MaxConcurrentClones, slotLease)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("backup storage %s has all %d clone slots in use: %w", bs.UUID, bs.MaxConcurrentClones, queue.ErrBusy)
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(100*time.Millisecond + rand.N(200*time.Millisecond)):
		}
	}
	held := time.Now()
	slotCtx, lose := context.WithCancelCause(ctx)
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(slotLease / 3)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				ok, err := p.Store.AcquireCloneSlot(rctx, bs.UUID, holder, bs.MaxConcurrentClones, slotLease)
				switch {
				case err == nil && ok:
					held = time.Now()
				case err == nil && !ok, time.Since(held) >= slotLease:
					p.Log.Warn("clone slot lease lost; the copy stops and will be retried", "backup_storage", bs.UUID, "holder", holder, "err", err)
					lose(errSlotLost)
					return
				}
			}
		}
	}()
	return slotCtx, func() {
		stop()
		<-renewed
		lose(nil)
		_ = p.Store.ReleaseCloneSlot(context.WithoutCancel(ctx), bs.UUID, holder)
	}, nil
}

// throttle returns the bandwidth limiter of a backup storage (nil when unlimited): each
// chunk reserves its bytes in Redis and waits its turn, so the limit holds across workers.
func (p *Pipeline) throttle(bs *catalog.BackupStorage) func(context.Context, int) error {
	rate := int64(bs.BandwidthBytesPerSecond)
	if rate <= 0 {
		return nil
	}
	return func(ctx context.Context, n int) error {
		wait, err := p.Store.ReserveBandwidth(ctx, bs.UUID, rate, int64(n))
		if err != nil || wait <= 0 {
			return err
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
}

// removeVolumes deletes every file the job may have written (finished or partial).
func (p *Pipeline) removeVolumes(ctx context.Context, rec *job.Record) error {
	pl := rec.Checkpoints.Placement
	if pl == nil {
		return nil // no placement checkpoint: no file can have been written
	}
	ix, err := p.Catalog.Current(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range rec.Checkpoints.Resolved.Volumes {
		ps := ix.PrimaryStorages[pl.VolumeStorage[v.UUID]]
		if ps == nil {
			continue
		}
		path := InstallPath(ps.URL, rec.AccountUUID, v)
		if err := clone.Remove(path); err != nil {
			errs = append(errs, err)
		}
		// acct-<account> stays: other VMs of the account share it.
	}
	return errors.Join(errs...)
}
