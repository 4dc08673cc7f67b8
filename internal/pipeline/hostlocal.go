package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/hibiken/asynq"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Host-local work. A volume on LocalStorage lives on its host's own disk, which only a
// worker on that host can write. Such a job is placed and given its addresses by any worker;
// then it is handed over to its host's own queue, where a worker bound to the host resumes
// it from its checkpoint: the clone and instantiate stages run there, against the host's own
// libvirt. A host without a worker is noticed: its jobs fail after HostLocal.Wait, by name.

// HostLocal configures host-local work for a pipeline.
type HostLocal struct {
	// Bound are the hosts this worker runs on (VMRESTORE_HOST_UUIDS).
	Bound map[string]bool
	// Off lets any worker run every job: every storage is reachable from every worker (the
	// simulator's demo and tests).
	Off bool
	// All makes every job host-local, not only those with volumes on LocalStorage.
	All bool
	// Wait bounds how long a job waits for a worker of its host.
	Wait time.Duration
	// Inspector reads which hosts have live workers and takes unstarted tasks back.
	Inspector *asynq.Inspector
}

// errHandedOver ends an attempt whose job continues on its host's queue.
var errHandedOver = errors.New("handed over to the host's queue")

// hostOfLocalJob is the host a job must continue on, or "" if any worker may run it.
func (p *Pipeline) hostOfLocalJob(ix *catalog.Index, rec *job.Record) string {
	pl := rec.Checkpoints.Placement
	if pl == nil || justCreate(rec) || p.HostLocal.Off {
		return ""
	}
	if p.HostLocal.All {
		return pl.HostUUID
	}
	for _, ps := range pl.VolumeStorage {
		if s := ix.PrimaryStorages[ps]; s != nil && s.Type == catalog.PSLocalStorage {
			return pl.HostUUID
		}
	}
	return ""
}

// goHostLocal is called before the clone stage: a host-local job on a worker not bound to
// its host is handed over (errHandedOver); on the host's worker it carries on.
func (p *Pipeline) goHostLocal(ctx context.Context, ix *catalog.Index, rec *job.Record) error {
	host := p.hostOfLocalJob(ix, rec)
	if host == "" {
		return nil
	}
	if p.HostLocal.Bound[host] {
		return p.Store.ClearHostWait(ctx, rec.UUID, host)
	}
	if err := p.Store.AddHostWait(ctx, rec.UUID, host, time.Now()); err != nil {
		return err
	}
	// The host's worker continues this attempt: a hand-over is no failure.
	p.handBack(ctx, rec.UUID, metrics.HandBackToHost)
	if err := p.Queue.EnqueueRestoreOnHost(ctx, rec.UUID, host, rec.Deadline()); err != nil {
		return err
	}
	p.Log.Info("job handed over to its host's queue; a worker bound to the host continues it", "host", host, "stage", rec.Stage)
	return errHandedOver
}

// WatchHosts runs on every worker until ctx ends: it fails the host-local jobs that waited
// too long for a worker of their host (or were cancelled while waiting), and keeps the
// metrics of hosts without a worker current.
func (p *Pipeline) WatchHosts(ctx context.Context, interval time.Duration) {
	if p.HostLocal.Inspector == nil || p.HostLocal.Off {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := p.watchHostsOnce(ctx); err != nil && ctx.Err() == nil {
			p.Log.Warn("checking host-local jobs failed; it is retried", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Pipeline) watchHostsOnce(ctx context.Context) error {
	ix, err := p.Catalog.Current(ctx)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	}
	served, err := queue.HostsServed(p.HostLocal.Inspector)
	if err != nil {
		return err
	}
	waits, err := p.Store.HostWaits(ctx)
	if err != nil {
		return err
	}
	p.countHostsWithoutWorker(ix, served, len(waits))
	for _, w := range waits {
		if err := p.expireHostWait(ctx, ix, w, served[w.Host]); err != nil {
			p.Log.Warn("a job waiting for its host's worker could not be checked", "job", w.Job, "host", w.Host, "err", err)
		}
	}
	return nil
}

// expireHostWait ends a waiting job whose host has had no worker for too long, or that was
// cancelled while waiting. It first takes the job's task back from the host's queue, so no
// worker of the host can start it meanwhile.
func (p *Pipeline) expireHostWait(ctx context.Context, ix *catalog.Index, w store.HostWait, served bool) error {
	rec, err := p.Store.GetJob(ctx, w.Job)
	if errors.Is(err, store.ErrNotFound) {
		return p.Store.ClearHostWait(ctx, w.Job, w.Host)
	}
	if err != nil {
		return err
	}
	if rec.State.Terminal() {
		return p.Store.ClearHostWait(ctx, w.Job, w.Host)
	}
	waited := time.Since(w.Since)
	if !rec.CancelAsked && (served || waited < p.HostLocal.Wait) {
		return nil
	}
	taken, err := queue.TakeBackFromHost(p.HostLocal.Inspector, w.Job, w.Host)
	if err != nil || !taken {
		return err // a worker of the host runs it now
	}
	token := zstack.NewUUID()
	ok, err := p.Store.LockJob(ctx, w.Job, token, lockTTL, "")
	if err != nil || !ok {
		return err
	}
	defer p.Store.UnlockJob(context.WithoutCancel(ctx), w.Job, token)
	if rec, err = p.Store.GetJob(ctx, w.Job); err != nil {
		return err
	}
	if rec.State.Terminal() {
		return p.Store.ClearHostWait(ctx, w.Job, w.Host)
	}
	h, _ := hostOf(ix, w.Host)
	var failErr error
	if rec.CancelAsked {
		failErr = p.fail(ctx, rec, job.Cancelled, zstack.Errorf(zstack.CodeCancelled,
			"the restore of group[uuid:%s] was cancelled while it waited for a worker of %s; everything it had allocated was released", rec.Request.GroupUUID, h))
	} else {
		p.Log.Warn("no worker serves the job's host; the job fails", "job", w.Job, "host", w.Host, "waited", waited.Round(time.Second).String())
		failErr = p.fail(ctx, rec, job.Failed, zstack.Operation(zstack.Errorf(zstack.CodeOperation,
			"no worker serves %s: the restore waited %s for one; its volumes go to that host's LocalStorage, which only a worker running on the host can write. Start a worker there with VMRESTORE_HOST_UUIDS=%s (or auto), then retry",
			h, waited.Round(time.Second), w.Host)))
	}
	if failErr != nil && !errors.Is(failErr, asynq.SkipRetry) {
		return failErr
	}
	return p.Store.ClearHostWait(ctx, w.Job, w.Host)
}

// countHostsWithoutWorker sets the metrics of hosts that need a worker of their own (their
// cluster has LocalStorage, or every host with VMRESTORE_HOST_LOCAL=all) and have none.
func (p *Pipeline) countHostsWithoutWorker(ix *catalog.Index, served map[string]bool, waiting int) {
	p.Metrics.HostWithoutWorker.Reset()
	missing := 0
	for i := range ix.Site.Hosts {
		h := &ix.Site.Hosts[i]
		if h.State != catalog.StateEnabled || served[h.UUID] || !p.needsOwnWorker(ix, h) {
			continue
		}
		missing++
		p.Metrics.HostWithoutWorker.WithLabelValues(h.UUID, h.Name).Set(1)
	}
	p.Metrics.HostsWithoutWorker.Set(float64(missing))
	p.Metrics.HostLocalWaiting.Set(float64(waiting))
}

func (p *Pipeline) needsOwnWorker(ix *catalog.Index, h *catalog.Host) bool {
	if p.HostLocal.All {
		return true
	}
	for _, ps := range ix.StoragesByCluster[h.ClusterUUID] {
		if ps.Type == catalog.PSLocalStorage {
			return true
		}
	}
	return false
}
