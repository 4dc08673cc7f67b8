package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/overlay"
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

// Clone slots. A backup storage has maxConcurrentClones slots, leases in Redis shared by all
// workers, renewed every slotLease/3 while held. A job holds up to CloneParallelism of them,
// and each slot it holds copies the job's volumes one after another, so that a slot is given
// back only when the job has no volume left to start. A job takes the slots it can at once
// and waits its turn for the others (the storage's waiting list is fair: jobs holding fewer
// slots first, then older jobs), while its copies run: a copy under way is never stopped
// because another volume found no slot. Only a job that holds no slot at all and finds none
// within slotWait yields its worker slot (queue.ErrBusy), before it copies anything, so that
// restores from other storages are not held up by a busy one. A copy whose lease could not
// be kept (Redis unreachable for a whole lease, or the slot taken over) stops, as going on
// would exceed the limit: its volume goes back to wait for a slot, and resumes from its last
// checkpoint when it gets one.
const (
	slotLease = 15 * time.Second
	slotWait  = 3 * time.Second
	// slotPoll is how often a job waiting for a slot asks again when no release was
	// announced (pub/sub may drop an announcement); it asks at once on an announcement.
	slotPoll = 500 * time.Millisecond
)

// errSlotLost ends a copy whose clone slot lease was lost.
var errSlotLost = errors.New("the clone slot lease was lost")

// errNoSlot is the cause of a job's yield when its backup storage had no slot for it.
var errNoSlot = errors.New("no clone slot free")

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
	dataTotal         int64 // the backup's actualSize (its virtual size when it declares none)
	done, total, data atomic.Int64
	state             atomic.Value // string
}

// volumeWork is a volume to copy, with its opened backup file.
type volumeWork struct {
	v    job.PlannedVolume
	ps   *catalog.PrimaryStorage
	path string
	prog *volProgress
	src  *os.File
}

// volumeQueue holds the volumes of a job that no slot has started yet.
type volumeQueue struct {
	mu   sync.Mutex
	todo []volumeWork
}

func (q *volumeQueue) take() (volumeWork, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.todo) == 0 {
		return volumeWork{}, false
	}
	w := q.todo[0]
	q.todo = q.todo[1:]
	return w, true
}

// putBack returns a volume whose copy stopped with its slot, to the front.
func (q *volumeQueue) putBack(w volumeWork) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.todo = append([]volumeWork{w}, q.todo...)
}

func (q *volumeQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.todo)
}

// clone copies every volume backup to its install path, several at once, skipping volumes a
// previous run finished. Progress (per volume and for the job) is written to the job record
// every progressEvery while it runs, and once more at the end, with the stage's checkpoint.
func (p *Pipeline) clone(ctx context.Context, ix *catalog.Index, rec *job.Record) error {
	if justCreate(rec) {
		return p.Store.SaveCheckpoint(ctx, rec.UUID, job.StageClone, "", nil)
	}
	if instant(rec) {
		return p.cloneInstant(ctx, ix, rec)
	}
	r, pl := rec.Checkpoints.Resolved, rec.Checkpoints.Placement
	bs := ix.BackupStorages[r.BackupStorageUUID]
	if bs == nil {
		return zstack.Operation(zstack.Errorf(zstack.CodeBackupStorage, "backup storage[uuid:%s] was removed from the site during the restore", r.BackupStorageUUID))
	}

	var todo []volumeWork
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
		vp := &volProgress{uuid: v.UUID, backupUUID: v.BackupUUID, dataTotal: v.BackupActualSize}
		if vp.dataTotal <= 0 {
			vp.dataTotal = v.Size
		}
		vp.state.Store(volWaiting)
		vols[i] = vp
		path := InstallPath(ps.URL, rec.AccountUUID, v)
		// A volume is checkpointed only after its verified file was renamed into place.
		if f, ok := rec.Checkpoints.Volumes[v.UUID]; ok && f.InstallPath == path {
			if st, err := os.Stat(path); err == nil {
				vp.total.Store(st.Size())
				vp.done.Store(st.Size())
				vp.data.Store(vp.dataTotal)
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
		todo = append(todo, volumeWork{v: v, ps: ps, path: path, prog: vp, src: src})
		st, err := src.Stat()
		if err != nil {
			return zstack.Operation(zstack.Errorf(zstack.CodeBackupStorage,
				"cannot read volume backup[uuid:%s] from backup storage[uuid:%s]: %v", v.BackupUUID, bs.UUID, err))
		}
		vp.total.Store(st.Size())
	}

	stopProgress := p.writeProgress(ctx, rec.UUID, vols)
	var mu sync.Mutex
	left := len(todo)
	copied := func(w volumeWork, f job.ClonedFile) error {
		mu.Lock()
		if rec.Checkpoints.Volumes == nil {
			rec.Checkpoints.Volumes = map[string]job.ClonedFile{}
		}
		rec.Checkpoints.Volumes[w.v.UUID] = f
		left--
		last := left == 0
		mu.Unlock()
		// A finished volume is recorded at once, so that a later attempt skips it; the last
		// one is recorded with the stage's checkpoint, in the same write.
		if last {
			return nil
		}
		return p.Store.SaveClonedVolume(ctx, rec.UUID, w.v.UUID, f)
	}
	sched := &slotScheduler{p: p, bs: bs, job: rec.UUID, created: float64(rec.CreatedAt.UnixMilli()),
		max: max(p.CloneParallelism, 1), queue: &volumeQueue{todo: slices.Clone(todo)}}
	err := sched.run(ctx, rec, copied)
	final := stopProgress()
	if err != nil {
		if werr := p.Store.SetProgress(context.WithoutCancel(ctx), rec.UUID, final); werr != nil {
			p.Log.Debug("clone progress not recorded", "job", rec.UUID, "err", werr)
		}
		return err
	}
	return p.Store.SaveCloneCheckpoint(ctx, rec.UUID, final, rec.Checkpoints.Volumes)
}

// slotScheduler copies the volumes of one job on the clone slots it gets from their backup
// storage (see slotLease).
type slotScheduler struct {
	p       *Pipeline
	bs      *catalog.BackupStorage
	job     string
	created float64 // the job's creation, unix ms: older jobs first among equals
	max     int     // slots the job may hold
	queue   *volumeQueue

	// Copies whose reads are over are made durable (fsync, rename) beside the next copy on
	// their slot; finishing counts them, and the first of them to fail stops the stage.
	finishing sync.WaitGroup
	stop      context.CancelCauseFunc
}

// holder names the job's n-th slot. A later run of the job uses the same names, so after a
// crash it goes on with the slots its dead run still held.
func (s *slotScheduler) holder(n int) string { return s.job + "/" + strconv.Itoa(n) }

// priority orders waiters: jobs holding fewer slots first, then older jobs.
func (s *slotScheduler) priority(held int) float64 { return float64(held)*1e13 + s.created }

// slotEnd is a slot's runner ending: err is a copy's failure, lost tells a lease lost.
type slotEnd struct {
	n    int
	err  error
	lost bool
}

// run takes slots and copies the queued volumes on them until every volume is copied, a copy
// fails, ctx ends, or the job holds no slot and found none within slotWait (queue.ErrBusy).
func (s *slotScheduler) run(ctx context.Context, rec *job.Record, copied func(volumeWork, job.ClonedFile) error) error {
	p, bs := s.p, s.bs
	var wake <-chan struct{}
	if p.Events != nil {
		w, unwatch := p.Events.WatchSlots(bs.UUID)
		defer unwatch()
		wake = w
	}
	work, stop := context.WithCancelCause(ctx)
	s.stop = stop
	defer stop(nil)
	ended := make(chan slotEnd, s.max)
	held := map[int]bool{}
	asked := map[int]bool{} // slots the job waits for (a place in the waiting list)
	defer func() {
		stop(nil)
		for len(held) > 0 {
			e := <-ended
			delete(held, e.n)
		}
		s.finishing.Wait()
		var holders []string
		for n := range asked {
			holders = append(holders, s.holder(n))
		}
		if err := p.Store.WithdrawCloneSlotWait(context.WithoutCancel(ctx), bs.UUID, holders...); err != nil {
			p.Log.Debug("clone slot wait not withdrawn; it lapses by itself", "backup_storage", bs.UUID, "err", err)
		}
	}()
	idleSince := time.Now()
	for {
		want := min(s.max, len(held)+s.queue.len())
		if want == 0 {
			s.finishing.Wait()
			if err := context.Cause(work); err != nil {
				return err // a copy that was being made durable failed
			}
			return nil
		}
		for len(held) < want {
			n := 0
			for held[n] {
				n++
			}
			ok, err := p.Store.AcquireCloneSlot(work, bs.UUID, s.holder(n), bs.MaxConcurrentClones, slotLease, s.priority(len(held)))
			if err != nil {
				if len(held) == 0 {
					return err
				}
				p.Log.Debug("cannot ask for another clone slot; the copies under way go on", "backup_storage", bs.UUID, "err", err)
				break
			}
			if !ok {
				asked[n] = true
				break
			}
			delete(asked, n)
			held[n] = true
			slotCtx, release := s.keep(work, n)
			go func() {
				lost, err := s.copyOn(slotCtx, n, rec, copied)
				release()
				ended <- slotEnd{n: n, err: err, lost: lost}
			}()
		}
		if s.queue.len() == 0 && len(asked) > 0 {
			// Every volume has a slot: give up the places still held in the waiting list.
			var holders []string
			for n := range asked {
				holders = append(holders, s.holder(n))
			}
			clear(asked)
			if err := p.Store.WithdrawCloneSlotWait(work, bs.UUID, holders...); err != nil {
				p.Log.Debug("clone slot wait not withdrawn; it lapses by itself", "backup_storage", bs.UUID, "err", err)
			}
		}
		if len(held) == 0 && time.Since(idleSince) >= slotWait {
			return fmt.Errorf("backup storage %s has all %d clone slots in use and others waiting: %w: %w",
				bs.UUID, bs.MaxConcurrentClones, errNoSlot, queue.ErrBusy)
		}
		var poll <-chan time.Time
		if len(asked) > 0 {
			poll = time.After(slotPoll/2 + rand.N(slotPoll/2))
		}
		select {
		case e := <-ended:
			delete(held, e.n)
			if e.err != nil {
				stop(e.err)
				return e.err
			}
			if len(held) == 0 {
				idleSince = time.Now()
			}
		case <-wake:
		case <-poll:
		case <-work.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return context.Cause(work)
		}
	}
}

// copyOn copies queued volumes one after another on the job's n-th slot until none is left.
// A copy holds the slot while it reads the backup; once its data is read, written and
// verified, the slot goes on with the next volume while the copy is made durable (fsync,
// rename) beside it. It reports lost when the slot's lease was lost (the volume under way
// went back to the queue).
func (s *slotScheduler) copyOn(slotCtx context.Context, n int, rec *job.Record, copied func(volumeWork, job.ClonedFile) error) (lost bool, err error) {
	type result struct {
		f   job.ClonedFile
		err error
	}
	for {
		w, ok := s.queue.take()
		if !ok {
			return false, nil
		}
		verified := make(chan struct{})
		var once sync.Once
		done := make(chan result, 1)
		go func() {
			f, err := s.p.cloneVolume(slotCtx, rec, s.bs, w.ps, w.v, w.path, w.prog, w.src, func() { once.Do(func() { close(verified) }) })
			done <- result{f, err}
		}()
		select {
		case <-verified:
			s.finishing.Add(1)
			go func() {
				defer s.finishing.Done()
				r := <-done
				if _, err := s.settle(w, r.f, r.err, copied); err != nil {
					s.stop(err)
				}
			}()
		case r := <-done:
			if lost, err := s.settle(w, r.f, r.err, copied); lost || err != nil {
				return lost, err
			}
		}
	}
}

// settle records how a volume's copy ended: done, back to the queue (its slot lost), waiting
// (stopped, or Redis unreachable) or failed.
func (s *slotScheduler) settle(w volumeWork, f job.ClonedFile, err error, copied func(volumeWork, job.ClonedFile) error) (lost bool, _ error) {
	switch {
	case err == nil:
		w.prog.done.Store(w.prog.total.Load())
		w.prog.state.Store(volDone)
		return false, copied(w, f)
	case errors.Is(err, errSlotLost):
		w.prog.state.Store(volWaiting)
		s.queue.putBack(w)
		return true, nil
	case stopped(err) || store.Unavailable(err):
		w.prog.state.Store(volWaiting)
		return false, err
	}
	w.prog.state.Store(volFailed)
	return false, err
}

// stopped reports whether a copy ended because its context did.
func stopped(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// keep renews the lease of the job's n-th slot (just taken) until release is called. The
// returned context is ctx, cancelled with errSlotLost if the lease cannot be kept.
func (s *slotScheduler) keep(ctx context.Context, n int) (context.Context, func()) {
	p, bs, holder := s.p, s.bs, s.holder(n)
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
				ok, err := p.Store.AcquireCloneSlot(rctx, bs.UUID, holder, bs.MaxConcurrentClones, slotLease, s.priority(0))
				switch {
				case err == nil && ok:
					held = time.Now()
				case err == nil && !ok, time.Since(held) >= slotLease:
					p.Log.Warn("clone slot lease lost; the copy stops and resumes when the job has a slot again", "backup_storage", bs.UUID, "holder", holder, "err", err)
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
	}
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
			pr.DataBytesTotal += v.dataTotal
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

// cloneVolume copies one volume from src, its opened backup file, to path, on a clone slot
// whose context is slotCtx (cancelled with errSlotLost when the slot's lease is lost);
// verified, if set, is called when the copy's reads are over (see clone.Options.Verified).
func (p *Pipeline) cloneVolume(slotCtx context.Context, rec *job.Record, bs *catalog.BackupStorage, ps *catalog.PrimaryStorage, v job.PlannedVolume, path string, vp *volProgress, src *os.File, verified func()) (job.ClonedFile, error) {
	what := fmt.Sprintf("volume backup[uuid:%s] (%s volume, deviceId %d)", v.BackupUUID, v.Type, v.DeviceID)
	vp.state.Store(volCopying)
	inflight := p.Metrics.ClonesInFlight.WithLabelValues(bs.UUID)
	inflight.Inc()
	defer inflight.Dec()
	cloneBytes := p.Metrics.CloneBytes.WithLabelValues(bs.UUID)
	rate := int64(bs.BandwidthBytesPerSecond)
	start := time.Now()
	var lastRead int64
	opt := clone.Options{
		Digest: clone.Digest{Algorithm: v.ChecksumAlgo, Value: v.Checksum},
		Format: v.Format, VirtualSize: v.Size,
		Progress: func(pr clone.Progress) {
			cloneBytes.Add(float64(pr.Read - lastRead))
			lastRead = pr.Read
			vp.done.Store(pr.Done)
			vp.data.Store(pr.Data)
		},
		Throttle: p.throttle(bs),
		// A limited copy reserves about an eighth of a second of bandwidth per read, so its
		// progress moves several times a second.
		ChunkSize: int(min(rate/8, 1<<30)),
		Verified:  verified,
	}
	if p.CloneCheckpointEvery > 0 {
		opt.CheckpointEvery = p.CloneCheckpointEvery
		opt.Checkpoint = func(cp clone.Checkpoint) error {
			state, _ := json.Marshal(cp)
			// Not recorded (Redis unreachable): a later run resumes from an earlier one.
			if err := p.Store.SaveCopyCheckpoint(context.WithoutCancel(slotCtx), rec.UUID, v.UUID, job.CopyCheckpoint{InstallPath: path, State: state}); err != nil {
				p.Log.Debug("copy checkpoint not recorded", "volume", v.UUID, "offset", cp.Offset, "err", err)
			}
			return nil
		}
		if c, ok := rec.Checkpoints.Copies[v.UUID]; ok && c.InstallPath == path {
			var from clone.Checkpoint
			if json.Unmarshal(c.State, &from) == nil {
				opt.Resume = &from
				vp.done.Store(from.Offset)
				vp.data.Store(from.Data)
			}
		}
	}
	res, err := clone.Copy(slotCtx, src, path, opt)
	elapsed := time.Since(start)
	switch {
	case res.ResumedAt > 0:
		p.Metrics.CloneResumed.WithLabelValues(bs.UUID).Add(float64(opt.Resume.Data))
		p.Log.Info("volume copy resumed from its checkpoint", "volume_backup", v.BackupUUID, "offset", res.ResumedAt,
			"size", res.Size, "data_not_copied_again", opt.Resume.Data)
	case opt.Resume != nil:
		p.Log.Warn("volume copy could not resume from its checkpoint; it started over", "volume_backup", v.BackupUUID, "reason", res.ResumeRefused)
	}
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
	case stopped(err) && errors.Is(context.Cause(slotCtx), errSlotLost):
		outcome = "cancelled"
		return job.ClonedFile{}, fmt.Errorf("copy of %s stopped: %w", what, errSlotLost)
	case stopped(err):
		outcome = "cancelled"
		return job.ClonedFile{}, err
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

// throttle returns the bandwidth limiter of a backup storage (nil when unlimited): each
// chunk reserves its bytes in Redis and waits its turn, so the limit holds across workers.
// While Redis does not answer, the copy waits for it (its job's lock fencing bounds the
// wait) and goes on when it is back.
func (p *Pipeline) throttle(bs *catalog.BackupStorage) func(context.Context, int) error {
	rate := int64(bs.BandwidthBytesPerSecond)
	if rate <= 0 {
		return nil
	}
	return func(ctx context.Context, n int) error {
		backoff := 50 * time.Millisecond
		for {
			wait, err := p.Store.ReserveBandwidth(ctx, bs.UUID, rate, int64(n))
			if store.Unavailable(err) && ctx.Err() == nil {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, time.Second)
				continue
			}
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
		path := volumePath(rec, ps.URL, v)
		if instant(rec) {
			// An instant restore's overlay, and one cut short by a crash.
			for _, f := range []string{overlay.PathOf(path), overlay.PathOf(path) + overlay.TempSuffix} {
				if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, err)
				}
			}
		}
		if err := clone.Remove(path); err != nil {
			errs = append(errs, err)
		}
		// acct-<account> stays: other VMs of the account share it.
	}
	return errors.Join(errs...)
}
