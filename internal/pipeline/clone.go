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

// A volume copy holds one of its backup storage's clone slots, as a lease renewed while it
// runs. A volume that finds no free slot within slotWait makes its job yield the worker slot
// (queue.ErrBusy) so that restores from other storages are not held up by a busy one.
const (
	slotLease = 15 * time.Second
	slotWait  = 3 * time.Second
)

// clone copies every volume backup to its install path, several at once, skipping volumes a
// previous run finished.
func (p *Pipeline) clone(ctx context.Context, ix *catalog.Index, rec *job.Record) error {
	if justCreate(rec) {
		return p.Store.SaveCheckpoint(ctx, rec.UUID, job.StageClone, "", nil)
	}
	r, pl := rec.Checkpoints.Resolved, rec.Checkpoints.Placement
	bs := ix.BackupStorages[r.BackupStorageUUID]
	if bs == nil {
		return zstack.Operation(zstack.Errorf(zstack.CodeBackupStorage, "backup storage[uuid:%s] was removed from the site during the restore", r.BackupStorageUUID))
	}

	var total int64
	for _, v := range r.Volumes {
		total += v.Size
	}
	done := make([]atomic.Int64, len(r.Volumes))
	var mu sync.Mutex
	last := time.Time{}
	report := func(force bool) {
		mu.Lock()
		defer mu.Unlock()
		if !force && time.Since(last) < progressEvery {
			return
		}
		last = time.Now()
		var sum int64
		for i := range done {
			sum += done[i].Load()
		}
		_ = p.Store.SetProgress(ctx, rec.UUID, job.Progress{BytesDone: sum, BytesTotal: total})
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(p.CloneParallelism, 1))
	for i, v := range r.Volumes {
		ps := ix.PrimaryStorages[pl.VolumeStorage[v.UUID]]
		if ps == nil {
			return zstack.Operation(zstack.Errorf(zstack.CodePrimaryStorage, "primary storage[uuid:%s] was removed from the site during the restore", pl.VolumeStorage[v.UUID]))
		}
		path := InstallPath(ps.URL, rec.AccountUUID, v)
		// A volume is checkpointed only after its verified file was renamed into place.
		if f, ok := rec.Checkpoints.Volumes[v.UUID]; ok && f.InstallPath == path {
			if _, err := os.Stat(path); err == nil {
				done[i].Store(v.Size)
				continue
			}
		}
		g.Go(func() error {
			f, err := p.cloneVolume(gctx, rec, bs, ps, v, path, func(n int64) {
				done[i].Store(n)
				report(false)
			})
			if err != nil {
				return err
			}
			done[i].Store(v.Size)
			if err := p.Store.SaveClonedVolume(ctx, rec.UUID, v.UUID, f); err != nil {
				return err
			}
			mu.Lock()
			if rec.Checkpoints.Volumes == nil {
				rec.Checkpoints.Volumes = map[string]job.ClonedFile{}
			}
			rec.Checkpoints.Volumes[v.UUID] = f
			mu.Unlock()
			return nil
		})
	}
	err := g.Wait()
	report(true)
	if err != nil {
		return err
	}
	return p.Store.SaveCheckpoint(ctx, rec.UUID, job.StageClone, "", nil)
}

func (p *Pipeline) cloneVolume(ctx context.Context, rec *job.Record, bs *catalog.BackupStorage, ps *catalog.PrimaryStorage, v job.PlannedVolume, path string, progress func(int64)) (job.ClonedFile, error) {
	what := fmt.Sprintf("volume backup[uuid:%s] (%s volume, deviceId %d)", v.BackupUUID, v.Type, v.DeviceID)
	src, err := backup.OpenVolume(bs.URL, rec.Request.GroupUUID, &backup.Volume{UUID: v.BackupUUID, File: v.File})
	if err != nil {
		if ec, ok := zstack.AsErrorCode(err); ok {
			return job.ClonedFile{}, zstack.Operation(ec)
		}
		return job.ClonedFile{}, err
	}
	defer src.Close()

	release, err := p.acquireSlot(ctx, bs, rec.UUID+"/"+v.UUID)
	if err != nil {
		return job.ClonedFile{}, err
	}
	defer release()
	inflight := p.Metrics.ClonesInFlight.WithLabelValues(bs.UUID)
	inflight.Inc()
	defer inflight.Dec()
	var copied int64
	res, err := clone.Copy(ctx, src, path, clone.Options{
		Digest: clone.Digest{Algorithm: v.ChecksumAlgo, Value: v.Checksum},
		Format: v.Format, VirtualSize: v.Size,
		Progress: func(n int64) {
			p.Metrics.CloneBytes.WithLabelValues(bs.UUID).Add(float64(n - copied))
			copied = n
			progress(n)
		},
		Throttle: p.throttle(bs),
	})
	var srcErr *clone.SourceError
	var dstErr *clone.DestError
	switch {
	case err == nil:
		return job.ClonedFile{InstallPath: path, ActualSize: res.ActualSize}, nil
	case ctx.Err() != nil:
		return job.ClonedFile{}, ctx.Err()
	case errors.Is(err, clone.ErrChecksum), errors.Is(err, clone.ErrFormat):
		return job.ClonedFile{}, zstack.Operation(zstack.Errorf(zstack.CodeVolumeBackup, "%s: %v", what, err))
	case errors.As(err, &srcErr):
		return job.ClonedFile{}, zstack.Operation(zstack.Errorf(zstack.CodeBackupStorage,
			"cannot read %s from backup storage[uuid:%s]: %v", what, bs.UUID, srcErr.Err))
	case errors.As(err, &dstErr) && clone.NoSpace(err):
		return job.ClonedFile{}, zstack.Operation(zstack.Errorf(zstack.CodePrimaryStorage,
			"primary storage[uuid:%s] at %s is full while writing %s; free space or choose another primary storage", ps.UUID, ps.URL, what))
	case errors.As(err, &dstErr):
		return job.ClonedFile{}, zstack.Operation(zstack.Errorf(zstack.CodePrimaryStorage,
			"cannot write %s to primary storage[uuid:%s]: %v", what, ps.UUID, dstErr.Err))
	}
	return job.ClonedFile{}, zstack.Operation(zstack.Errorf(zstack.CodeVolumeBackup, "%s: %v", what, err))
}

// acquireSlot takes one of the backup storage's clone slots for holder and keeps its lease
// renewed until the returned release is called. It gives up after slotWait with queue.ErrBusy.
func (p *Pipeline) acquireSlot(ctx context.Context, bs *catalog.BackupStorage, holder string) (release func(), err error) {
	deadline := time.Now().Add(slotWait)
	for {
		ok, err := p.Store.AcquireCloneSlot(ctx, bs.UUID, holder, bs.MaxConcurrentClones, slotLease)
		if err != nil {
			return nil, err
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("backup storage %s has all %d clone slots in use: %w", bs.UUID, bs.MaxConcurrentClones, queue.ErrBusy)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100*time.Millisecond + rand.N(200*time.Millisecond)):
		}
	}
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		t := time.NewTicker(slotLease / 3)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				_, _ = p.Store.AcquireCloneSlot(rctx, bs.UUID, holder, bs.MaxConcurrentClones, slotLease)
			}
		}
	}()
	return func() {
		stop()
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
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
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
