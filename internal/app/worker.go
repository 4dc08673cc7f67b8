package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/backupindex"
	"github.com/vmrestore/vmrestore/internal/backupverify"
	"github.com/vmrestore/vmrestore/internal/httpapi"
	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/pipeline"
	"github.com/vmrestore/vmrestore/internal/plan"
	"github.com/vmrestore/vmrestore/internal/probe"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/webhook"
)

// Worker is a running worker process.
type Worker struct {
	MetricsAddr string
	run         *runGroup
}

// Wait blocks until the worker stops.
func (w *Worker) Wait() error { return w.run.wait() }

// Stop shuts the worker down and waits for it.
func (w *Worker) Stop() error { return w.run.stop() }

// StartWorker starts a worker against the configured Redis. Its parts start in this order
// and stop in the reverse one: Redis, the workers (the asynq server and the background
// loops), the metrics and health listener.
func StartWorker(parent context.Context, c Config, log *slog.Logger) (*Worker, error) {
	if c.Embedded() {
		return nil, errors.New("the worker needs REDIS_ADDR (the embedded mode runs its workers inside the api)")
	}
	r := newRunGroup(parent)
	p := &workerProcess{process: process{c: c, log: log, m: metrics.New()}, worker: &Worker{run: r}}
	if err := r.start(p.connectRedis, p.startWorkers, p.listen); err != nil {
		return nil, err
	}
	return p.worker, nil
}

// workerProcess is what the worker binary's start steps build, in order.
type workerProcess struct {
	process
	worker *Worker
	parts  *workerParts
}

func (p *workerProcess) startWorkers(r *runGroup) error {
	parts, err := startWorkerParts(r, p.process, false)
	if err != nil {
		return err
	}
	p.parts = parts
	p.startOpsMetrics(r, parts.cache)
	return nil
}

// workerShutdownWait bounds how long the metrics listener lets a scrape finish.
const workerShutdownWait = 5 * time.Second

// listen serves /metrics, /healthz and /readyz.
func (p *workerProcess) listen(r *runGroup) error {
	health := &httpapi.Server{Metrics: p.m, Log: p.log, Config: httpapi.Config{MetricsToken: p.c.MetricsToken}}
	health.Ready = func() error {
		if err := ready(context.Background(), p.st, p.parts.cache); err != nil {
			return err
		}
		return p.parts.index.Health.Err()
	}
	ln, err := net.Listen("tcp", p.c.MetricsAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (set VMRESTORE_METRICS_ADDR)", p.c.MetricsAddr, err)
	}
	p.worker.MetricsAddr = ln.Addr().String()
	serveHTTP(r, &http.Server{Handler: health.OpsHandler(), ReadHeaderTimeout: 10 * time.Second}, ln, workerShutdownWait)
	return nil
}

// storageProbeInterval is how often workers check the primary storage directories.
const storageProbeInterval = 10 * time.Second

// hostWatchInterval is how often workers check the jobs waiting for their host's worker.
const hostWatchInterval = 5 * time.Second

// workerParts is a worker's pieces, shared by the worker binary and the embedded mode.
type workerParts struct {
	process
	cache    *store.CatalogCache
	index    *backupindex.Indexer
	srv      *asynq.Server
	pipeline *pipeline.Pipeline
	runner   *plan.Runner
	// running counts handlers that have not returned: asynq's Shutdown hands their tasks
	// back and cancels them without waiting, and their last Redis writes (the job lock's
	// release) must happen before Redis is closed.
	running sync.WaitGroup
	// inFlight counts the tasks running now: scheduled backup verification waits while any do.
	inFlight atomic.Int64
	// hosts this worker is bound to (VMRESTORE_HOST_UUIDS), and its hypervisor driver.
	hosts           []string
	hypervisor      hypervisor.Driver
	closeHypervisor func()
}

// startWorkerParts starts a worker's parts in the run group: the asynq server with the
// pipeline's handlers, then its loops (backup index, storage probe, backup verification,
// plan runner, host watch, take-over). Its stop hands the running jobs back.
func startWorkerParts(r *runGroup, proc process, embedded bool) (*workerParts, error) {
	w := &workerParts{process: proc, cache: proc.st.NewCatalogCache()}
	w.index = &backupindex.Indexer{Cache: w.cache, Store: w.st, Interval: w.c.BackupScanInterval, Log: w.log, Metrics: w.m}
	var err error
	if w.hosts, err = boundHosts(r.ctx, w.c, w.cache, w.log); err != nil {
		return nil, err
	}
	if err := w.buildPipeline(r.ctx, embedded); err != nil {
		return nil, err
	}
	w.srv = queue.NewServer(w.rdb, queue.ServerConfig{
		Concurrency: w.c.Concurrency, TaskCheckInterval: w.c.TaskCheckInterval, ShutdownTimeout: w.c.ShutdownTimeout, Hosts: w.hosts,
	}, w.log)
	if err := w.srv.Start(w.handlers()); err != nil {
		w.closeHypervisor()
		return nil, fmt.Errorf("start the worker: %w", err)
	}
	r.onStop(w.stop)
	w.runLoops(r)
	return w, nil
}

// buildPipeline builds the hypervisor driver and the pipeline on the job events.
func (w *workerParts) buildPipeline(ctx context.Context, embedded bool) error {
	events, err := w.st.SubscribeEvents(ctx)
	if err != nil {
		return err
	}
	w.hypervisor, w.closeHypervisor = newHypervisor(w.c, w.st, w.m, w.hosts, embedded, w.log)
	hooks := webhook.NewClient(webhook.NewPolicy(w.c.WebHookAllow))
	mode := w.c.HostLocalMode()
	w.pipeline = &pipeline.Pipeline{
		Store: w.st, Catalog: w.cache, Events: events, Metrics: w.m, Log: w.log,
		Queue:                queue.NewClient(w.rdb, w.c.MaxRetry),
		WebHooks:             hooks,
		Hypervisor:           w.hypervisor,
		CloneParallelism:     w.c.CloneParallelism,
		CloneCheckpointEvery: w.c.CloneCheckpoint,
		Groups:               &backup.GroupCache{},
		HostLocal: pipeline.HostLocal{Bound: map[string]bool{}, Off: mode == HostLocalOff,
			All: mode == HostLocalAll, Wait: w.c.HostWait, Inspector: queue.Inspector(w.rdb)},
	}
	for _, h := range w.hosts {
		w.pipeline.HostLocal.Bound[h] = true
	}
	w.runner = &plan.Runner{Store: w.st, Queue: w.pipeline.Queue, Log: w.log, WebHooks: hooks, ReportRetention: w.c.ReportRetention}
	return nil
}

// handlers routes the queue's task types, counting the running ones.
func (w *workerParts) handlers() *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.Use(func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			w.running.Add(1)
			w.inFlight.Add(1)
			defer func() { w.inFlight.Add(-1); w.running.Done() }()
			return next.ProcessTask(ctx, t)
		})
	})
	mux.HandleFunc(queue.TypeRestore, w.pipeline.Handle)
	mux.HandleFunc(queue.TypeWebHook, w.pipeline.DeliverWebHook)
	mux.HandleFunc(queue.TypeVMOperation, w.pipeline.HandleVMOperation)
	mux.HandleFunc(queue.TypePlanCleanup, func(ctx context.Context, t *asynq.Task) error {
		if err := w.pipeline.HandlePlanCleanup(ctx, t); err != nil {
			return err
		}
		// The stored run report shows the cleanup's result as soon as it ends.
		return plan.RecordCleanup(ctx, w.st, string(t.Payload()), w.c.ReportRetention)
	})
	mux.HandleFunc(queue.TypePlanWebHook, w.runner.DeliverWebHook)
	return mux
}

// runLoops starts the worker's background loops.
func (w *workerParts) runLoops(r *runGroup) {
	host, _ := os.Hostname()
	verifier := &backupverify.Verifier{Cache: w.cache, Store: w.st, Metrics: w.m, Log: w.log, Interval: w.c.BackupVerifyEvery,
		Busy: func() bool { return w.inFlight.Load() > 0 }, Holder: fmt.Sprintf("%s:%d", host, os.Getpid())}
	takeOver := &pipeline.TakeOver{Store: w.st, Queue: w.pipeline.Queue, Metrics: w.m, Log: w.log}
	r.run(w.index.Run)
	r.run(func(ctx context.Context) { probe.Run(ctx, w.cache, w.st, storageProbeInterval, w.log) })
	r.run(verifier.Run)
	r.run(w.runner.Run)
	r.run(func(ctx context.Context) { w.pipeline.WatchHosts(ctx, hostWatchInterval) })
	r.run(takeOver.Run)
}

// handlersWait bounds how long a stopping worker waits for cancelled handlers to return.
const handlersWait = 3 * time.Second

// stop hands running jobs back within the shutdown timeout, then waits (bounded) for their
// handlers to release what they hold, so that another worker can take the jobs at once.
func (w *workerParts) stop() {
	w.srv.Shutdown()
	done := make(chan struct{})
	go func() { w.running.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(handlersWait):
		w.log.Warn("some restores did not stop in time; their jobs wait for their locks to expire", "waited", handlersWait.String())
	}
	w.closeHypervisor()
}
