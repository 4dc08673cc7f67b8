package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/vmrestore/vmrestore/internal/auth"
	"github.com/vmrestore/vmrestore/internal/backupindex"
	"github.com/vmrestore/vmrestore/internal/backupverify"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
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

// NewLogger builds the process logger on stderr.
//
// go-redis's own messages (reconnects) are routed to it too, so that a JSON log stays JSON.
func NewLogger(c Config, w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	h := slog.Handler(slog.NewTextHandler(w, opts))
	if c.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	log := slog.New(dedupe(h))
	redis.SetLogger(redisLog{log})
	return log
}

// redisLog adapts slog to go-redis's logger.
type redisLog struct{ l *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	r.l.WarnContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// redisClient connects to the configured Redis. Timeouts are short so that a Redis outage
// turns into a quick error instead of hung requests.
//
// The same client serves vmrestore's keys and asynq, so Sentinel failover, Cluster routing,
// ACL users and TLS apply to both.
func redisClient(c Config) (redis.UniversalClient, error) {
	opt := &redis.UniversalOptions{
		Addrs:            strings.Split(c.RedisAddr, ","),
		Username:         c.RedisUsername,
		Password:         c.RedisPassword,
		DB:               c.RedisDB,
		MasterName:       c.RedisMasterName,
		SentinelPassword: c.RedisSentinelPass,
		IsClusterMode:    c.RedisCluster,
		DialTimeout:      time.Second,
		// One dial attempt per command try: go-redis's default of five, with back-off,
		// keeps a caller waiting almost two seconds for a Redis that refuses connections.
		DialerRetries: 1,
		ReadTimeout:   time.Second,
		WriteTimeout:  time.Second,
		PoolSize:      max(4*c.Concurrency, 40),
	}
	for i := range opt.Addrs {
		opt.Addrs[i] = strings.TrimSpace(opt.Addrs[i])
	}
	if c.RedisCluster && c.RedisMasterName != "" {
		return nil, errors.New("REDIS_CLUSTER and REDIS_MASTER_NAME exclude each other")
	}
	if c.RedisCluster && c.RedisDB != 0 {
		return nil, errors.New("REDIS_DB must be 0 with REDIS_CLUSTER (a Redis Cluster has only database 0): unset REDIS_DB")
	}
	if c.RedisTLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.RedisTLSServerName}
		if tc.ServerName == "" {
			tc.ServerName, _, _ = net.SplitHostPort(opt.Addrs[0])
		}
		if c.RedisTLSCAFile != "" {
			pem, err := os.ReadFile(c.RedisTLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("REDIS_TLS_CA_FILE: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("REDIS_TLS_CA_FILE %s holds no PEM certificate", c.RedisTLSCAFile)
			}
		}
		opt.TLSConfig = tc
	}
	if c.RedisCluster {
		return clusterClient(opt), nil
	}
	return redis.NewUniversalClient(opt), nil
}

// clusterStateEvery is how often a Redis Cluster client re-reads the slot map while it is used.
const clusterStateEvery = time.Second

// clusterClient is a Redis Cluster client that follows a failover within about a second of
// the promotion: go-redis re-reads the slot map on MOVED answers and only every minute
// otherwise, and a dead master gives no MOVED (its connections are refused), so the client
// re-reads the map every clusterStateEvery while it is used, and at once when it fails to
// reach a node.
func clusterClient(opt *redis.UniversalOptions) *redis.ClusterClient {
	co := opt.Cluster()
	co.ClusterStateReloadInterval = clusterStateEvery
	cc := redis.NewClusterClient(co)
	cc.OnNewNode(func(node *redis.Client) {
		node.AddHook(reloadOnDialFailure{cc})
	})
	return cc
}

// reloadOnDialFailure asks a cluster client to re-read the slot map when a node cannot be
// reached (the re-reads are coalesced by go-redis).
type reloadOnDialFailure struct{ cc *redis.ClusterClient }

func (h reloadOnDialFailure) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			h.cc.ReloadState(context.WithoutCancel(ctx))
		}
		return conn, err
	}
}

func (h reloadOnDialFailure) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h reloadOnDialFailure) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// waitForRedis pings until Redis answers or ctx ends, logging while it waits.
func waitForRedis(ctx context.Context, st *store.Store, log *slog.Logger, addr string) error {
	for i := 0; ; i++ {
		err := st.Ping(ctx)
		if err == nil {
			return nil
		}
		if i%10 == 0 {
			log.Warn("waiting for Redis", "addr", addr, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis at %s never answered: %w", addr, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// API is a running api process.
type API struct {
	Addr     string // the address actually listened on
	TLS      bool   // the api serves HTTPS
	Password string // the generated admin password, when one was generated
	Site     string // the site file in use
	Embedded bool
	Store    *store.Store

	group  *errgroup.Group
	cancel context.CancelFunc
}

// Wait blocks until the api stops and returns why.
func (a *API) Wait() error { return a.group.Wait() }

// Stop shuts the api down and waits for it.
func (a *API) Stop() error {
	a.cancel()
	err := a.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// StartAPI starts the api (and, in embedded mode, Redis, workers and the demo site). It
// returns once the listener is bound and the catalog loaded.
func StartAPI(parent context.Context, c Config, stdout io.Writer, log *slog.Logger) (*API, error) {
	ctx, cancel := context.WithCancel(parent)
	g, gctx := errgroup.WithContext(ctx)
	embedded := c.Embedded()
	a := &API{group: g, cancel: cancel, Embedded: embedded, Site: c.SiteFile}
	fail := func(err error) (*API, error) {
		cancel()
		_ = g.Wait()
		return nil, err
	}

	var mini *miniredis.Miniredis
	if embedded {
		// Pin the demo's defaults before Redis gets an address (which ends "embedded").
		c.Hypervisor, c.HostLocal = c.HypervisorName(), c.HostLocalMode()
		mini = miniredis.NewMiniRedis()
		mini.ClockTTL(true)
		if err := mini.StartAddr("127.0.0.1:0"); err != nil {
			return fail(fmt.Errorf("start embedded redis: %w", err))
		}
		c.RedisAddr = mini.Addr()
		if c.SiteFile == "" {
			paths, err := demosite.Generate(c.DataDir)
			if err != nil {
				mini.Close()
				return fail(fmt.Errorf("generate the demo site in %s: %w", c.DataDir, err))
			}
			c.SiteFile = paths.SiteFile
			a.Site = paths.SiteFile
		}
	}
	if c.SiteFile == "" {
		return fail(errors.New("no site catalog: set VMRESTORE_SITE to a site YAML (deploy/site.example.yaml is a start)"))
	}
	site, err := catalog.LoadFile(c.SiteFile)
	if err != nil {
		if mini != nil {
			mini.Close()
		}
		return fail(err)
	}

	rdb, err := redisClient(c)
	if err != nil {
		if mini != nil {
			mini.Close()
		}
		return fail(err)
	}
	st := store.New(rdb)
	a.Store = st
	cleanup := func() {
		rdb.Close()
		if mini != nil {
			mini.Close()
		}
	}
	if err := waitForRedis(ctx, st, log, c.RedisAddr); err != nil {
		cleanup()
		return fail(err)
	}
	if _, err := st.SaveCatalog(ctx, site); err != nil {
		cleanup()
		return fail(fmt.Errorf("load the site catalog into redis: %w", err))
	}
	m := metrics.New()
	authSvc := auth.New(st, c.SessionTTL, auth.DefaultMaxSessions, c.LoginConcurrency)
	authSvc.Observe = func(outcome string) { m.LoginAttempts.WithLabelValues(outcome).Inc() }
	authSvc.Hashing = m.PasswordHashing.Add
	if err := authSvc.SyncAccounts(ctx, site.Accounts); err != nil {
		cleanup()
		return fail(err)
	}
	if a.Password, err = authSvc.EnsureAdmin(ctx, c.AdminPassword); err != nil {
		cleanup()
		return fail(fmt.Errorf("set up the admin account: %w", err))
	}
	events, err := st.SubscribeEvents(gctx)
	if err != nil {
		cleanup()
		return fail(err)
	}

	cache := st.NewCatalogCache()
	hooks := webhook.NewPolicy(c.WebHookAllow)
	srv := &httpapi.Server{
		Store: st, Catalog: cache, Events: events, Queue: queue.NewClient(rdb, c.MaxRetry), Auth: authSvc,
		Plans: &plan.Service{Store: st, Catalog: cache, WebHooks: hooks}, WebHooks: hooks,
		Metrics: m, Log: log,
		Config: httpapi.Config{WaitLimit: c.WaitLimit, MetricsToken: c.MetricsToken, PublicURL: c.PublicURL, WriteTimeout: c.HTTPWriteTimeout,
			ReportRetention: c.ReportRetention},
	}
	srv.Ready = func() error { return ready(context.Background(), st, cache) }
	startOpsMetrics(gctx, g, m, st, rdb, cache, log)

	ln, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		cleanup()
		return fail(fmt.Errorf("listen on %s: %w (set VMRESTORE_HTTP_ADDR to another address)", c.HTTPAddr, err))
	}
	a.Addr = ln.Addr().String()
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// The outer bound on reading a request; each route's body has its own, shorter or
		// equal (httpapi.readBody).
		ReadTimeout: 10*time.Second + httpapi.NativeBodyTimeout,
		// No WriteTimeout: it would cut event streams; answers get theirs per request
		// (httpapi.Config.WriteTimeout).
		IdleTimeout: 2 * time.Minute,
	}
	if c.TLSCertFile != "" || c.TLSKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			ln.Close()
			cleanup()
			return fail(fmt.Errorf("VMRESTORE_TLS_CERT_FILE/VMRESTORE_TLS_KEY_FILE: %w", err))
		}
		// Modern settings: TLS 1.2 at least, Go's default AEAD suites and curves.
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		ln = tls.NewListener(ln, hs.TLSConfig)
		a.TLS = true
	}

	var worker *workerParts
	if embedded {
		worker, err = newWorker(ctx, c, st, rdb, m, log)
		if err != nil {
			ln.Close()
			cleanup()
			return fail(err)
		}
	}

	g.Go(func() error {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	if worker != nil {
		if err := worker.start(gctx, g); err != nil {
			ln.Close()
			cleanup()
			return fail(err)
		}
	}
	g.Go(func() error { watchSite(gctx, c.SiteFile, st, authSvc, log); return nil })
	g.Go(func() error {
		<-gctx.Done()
		// Shutdown order: stop taking requests, let waits end, then stop the workers and
		// close Redis last.
		sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer scancel()
		_ = hs.Shutdown(sctx)
		if worker != nil {
			worker.stop()
		}
		cleanup()
		return gctx.Err()
	})
	return a, nil
}

// ready is the readiness check of both binaries: Redis answers and a catalog is loaded.
func ready(ctx context.Context, st *store.Store, cache *store.CatalogCache) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := st.Ping(ctx); err != nil {
		return err
	}
	if _, err := cache.Current(ctx); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errors.New("no site catalog loaded yet (the api loads VMRESTORE_SITE)")
		}
		return err
	}
	return nil
}

// watchSite reloads the site file into Redis when it changes (checked every few seconds).
// A file that no longer validates is refused and the current catalog stays.
func watchSite(ctx context.Context, path string, st *store.Store, authSvc *auth.Service, log *slog.Logger) {
	stamp := func() string {
		fi, err := os.Stat(path)
		if err != nil {
			return ""
		}
		return fmt.Sprint(fi.ModTime().UnixNano(), fi.Size())
	}
	last := stamp()
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := stamp()
		if cur == last || cur == "" {
			continue
		}
		last = cur
		site, err := catalog.LoadFile(path)
		if err != nil {
			log.Error("the site file changed but is invalid; keeping the current catalog", "file", path, "err", err)
			continue
		}
		v, err := st.SaveCatalog(ctx, site)
		if err == nil {
			err = authSvc.SyncAccounts(ctx, site.Accounts)
		}
		if err != nil {
			log.Error("reloading the site catalog failed", "err", err)
			continue
		}
		log.Info("site catalog reloaded", "file", path, "version", v)
	}
}

// storageProbeInterval is how often workers check the primary storage directories.
const storageProbeInterval = 10 * time.Second

// workerParts is a worker's pieces, shared by the worker binary and the embedded mode.
type workerParts struct {
	c        Config
	st       *store.Store
	rdb      redis.UniversalClient
	m        *metrics.Metrics
	log      *slog.Logger
	cache    *store.CatalogCache
	index    *backupindex.Indexer
	srv      *asynq.Server
	stopOnce sync.Once
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

// hostWatchInterval is how often workers check the jobs waiting for their host's worker.
const hostWatchInterval = 5 * time.Second

func newWorker(ctx context.Context, c Config, st *store.Store, rdb redis.UniversalClient, m *metrics.Metrics, log *slog.Logger) (*workerParts, error) {
	cache := st.NewCatalogCache()
	w := &workerParts{c: c, st: st, rdb: rdb, m: m, log: log, cache: cache,
		index: &backupindex.Indexer{Cache: cache, Store: st, Interval: c.BackupScanInterval, Log: log, Metrics: m}}
	hosts, err := boundHosts(ctx, c, w.cache, log)
	if err != nil {
		return nil, err
	}
	w.hosts = hosts
	w.hypervisor, w.closeHypervisor = newHypervisor(c, st, m, hosts, log)
	w.srv = queue.NewServer(rdb, queue.ServerConfig{
		Concurrency: c.Concurrency, TaskCheckInterval: c.TaskCheckInterval, ShutdownTimeout: c.ShutdownTimeout, Hosts: hosts,
	}, log)
	return w, nil
}

// start subscribes to job events, starts the asynq server and the backup index scanner.
func (w *workerParts) start(ctx context.Context, g *errgroup.Group) error {
	events, err := w.st.SubscribeEvents(ctx)
	if err != nil {
		return err
	}
	hooks := webhook.NewClient(webhook.NewPolicy(w.c.WebHookAllow))
	p := &pipeline.Pipeline{
		Store: w.st, Catalog: w.cache, Events: events, Metrics: w.m, Log: w.log,
		Queue:                queue.NewClient(w.rdb, w.c.MaxRetry),
		WebHooks:             hooks,
		Hypervisor:           w.hypervisor,
		CloneParallelism:     w.c.CloneParallelism,
		CloneCheckpointEvery: w.c.CloneCheckpoint,
		HostLocal: pipeline.HostLocal{Bound: map[string]bool{}, Off: w.c.HostLocalMode() == HostLocalOff,
			All: w.c.HostLocalMode() == HostLocalAll, Wait: w.c.HostWait, Inspector: queue.Inspector(w.rdb)},
	}
	for _, h := range w.hosts {
		p.HostLocal.Bound[h] = true
	}
	mux := asynq.NewServeMux()
	mux.Use(func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			w.running.Add(1)
			w.inFlight.Add(1)
			defer func() { w.inFlight.Add(-1); w.running.Done() }()
			return next.ProcessTask(ctx, t)
		})
	})
	mux.HandleFunc(queue.TypeRestore, p.Handle)
	mux.HandleFunc(queue.TypeWebHook, p.DeliverWebHook)
	mux.HandleFunc(queue.TypeVMOperation, p.HandleVMOperation)
	mux.HandleFunc(queue.TypePlanCleanup, p.HandlePlanCleanup)
	runner := &plan.Runner{Store: w.st, Queue: p.Queue, Log: w.log, WebHooks: hooks, ReportRetention: w.c.ReportRetention}
	mux.HandleFunc(queue.TypePlanWebHook, runner.DeliverWebHook)
	if err := w.srv.Start(mux); err != nil {
		return fmt.Errorf("start the worker: %w", err)
	}
	g.Go(func() error {
		w.index.Run(ctx)
		return nil
	})
	g.Go(func() error {
		probe.Run(ctx, w.cache, w.st, storageProbeInterval, w.log)
		return nil
	})
	host, _ := os.Hostname()
	verifier := &backupverify.Verifier{Cache: w.cache, Store: w.st, Metrics: w.m, Log: w.log, Interval: w.c.BackupVerifyEvery,
		Busy: func() bool { return w.inFlight.Load() > 0 }, Holder: fmt.Sprintf("%s:%d", host, os.Getpid())}
	g.Go(func() error {
		verifier.Run(ctx)
		return nil
	})
	g.Go(func() error {
		runner.Run(ctx)
		return nil
	})
	g.Go(func() error {
		p.WatchHosts(ctx, hostWatchInterval)
		return nil
	})
	takeOver := &pipeline.TakeOver{Store: w.st, Queue: p.Queue, Metrics: w.m, Log: w.log}
	g.Go(func() error {
		takeOver.Run(ctx)
		return nil
	})
	return nil
}

// handlersWait bounds how long a stopping worker waits for cancelled handlers to return.
const handlersWait = 3 * time.Second

// stop hands running jobs back within the shutdown timeout, then waits (bounded) for their
// handlers to release what they hold, so that another worker can take the jobs at once.
func (w *workerParts) stop() {
	w.stopOnce.Do(func() {
		w.srv.Shutdown()
		done := make(chan struct{})
		go func() { w.running.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(handlersWait):
			w.log.Warn("some restores did not stop in time; their jobs wait for their locks to expire", "waited", handlersWait.String())
		}
		w.closeHypervisor()
	})
}

// Worker is a running worker process.
type Worker struct {
	MetricsAddr string
	group       *errgroup.Group
	cancel      context.CancelFunc
}

// Wait blocks until the worker stops.
func (w *Worker) Wait() error { return w.group.Wait() }

// Stop shuts the worker down and waits for it.
func (w *Worker) Stop() error {
	w.cancel()
	err := w.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// StartWorker starts a worker against the configured Redis.
func StartWorker(parent context.Context, c Config, log *slog.Logger) (*Worker, error) {
	if c.Embedded() {
		return nil, errors.New("the worker needs REDIS_ADDR (the embedded mode runs its workers inside the api)")
	}
	ctx, cancel := context.WithCancel(parent)
	g, gctx := errgroup.WithContext(ctx)
	wk := &Worker{group: g, cancel: cancel}
	rdb, err := redisClient(c)
	if err != nil {
		cancel()
		return nil, err
	}
	st := store.New(rdb)
	if err := waitForRedis(ctx, st, log, c.RedisAddr); err != nil {
		cancel()
		rdb.Close()
		return nil, err
	}
	m := metrics.New()
	parts, err := newWorker(ctx, c, st, rdb, m, log)
	if err != nil {
		cancel()
		rdb.Close()
		return nil, err
	}
	health := &httpapi.Server{Metrics: m, Log: log, Config: httpapi.Config{MetricsToken: c.MetricsToken}}
	health.Ready = func() error {
		if err := ready(context.Background(), st, parts.cache); err != nil {
			return err
		}
		return parts.index.Health.Err()
	}
	ln, err := net.Listen("tcp", c.MetricsAddr)
	if err != nil {
		cancel()
		rdb.Close()
		return nil, fmt.Errorf("listen on %s: %w (set VMRESTORE_METRICS_ADDR)", c.MetricsAddr, err)
	}
	wk.MetricsAddr = ln.Addr().String()
	hs := &http.Server{Handler: health.OpsHandler(), ReadHeaderTimeout: 10 * time.Second}
	if err := parts.start(gctx, g); err != nil {
		ln.Close()
		cancel()
		rdb.Close()
		return nil, err
	}
	startOpsMetrics(gctx, g, m, st, rdb, parts.cache, log)
	g.Go(func() error {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		parts.stop()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = hs.Shutdown(sctx)
		rdb.Close()
		return gctx.Err()
	})
	return wk, nil
}

// Banner describes a started api for a new user: where it listens, the mode, the admin
// credentials, and a curl walk-through that restores the demo VM.
func Banner(a *API, c Config) string {
	host := a.Addr
	if strings.HasPrefix(host, "[::]:") || strings.HasPrefix(host, "0.0.0.0:") {
		host = "127.0.0.1:" + host[strings.LastIndex(host, ":")+1:]
	}
	base := "http://" + host
	if a.TLS {
		base = "https://" + host
	}
	var b strings.Builder
	fmt.Fprintf(&b, "vmrestore api listening on %s\n", base)
	if a.Embedded {
		fmt.Fprintf(&b, "  mode:       EMBEDDED: in-process Redis and workers; all state is IN MEMORY and lost when this process exits\n")
		if c.HypervisorName() == HypervisorSimulator {
			fmt.Fprintf(&b, "  hypervisor: simulator, for this demo only (volume files are really restored; no guest is started, VM states are recorded; VMRESTORE_HYPERVISOR=libvirt starts real guests)\n")
		} else {
			fmt.Fprintf(&b, "  hypervisor: libvirt (%s, domain type %s)\n", hypervisor.RedactedTemplate(c.LibvirtURI), c.LibvirtDomainType)
		}
	} else {
		fmt.Fprintf(&b, "  mode:       Redis at %s; run cmd/worker processes to execute restores\n", c.RedisAddr)
	}
	fmt.Fprintf(&b, "  site:       %s\n", a.Site)
	pw := `"$VMRESTORE_ADMIN_PASSWORD"`
	switch {
	case a.Password != "":
		pw = "'" + a.Password + "'"
		if a.Embedded {
			fmt.Fprintf(&b, "  login:      admin / %s   (new at every start: the state is in memory; set VMRESTORE_ADMIN_PASSWORD to choose it)\n", a.Password)
		} else {
			fmt.Fprintf(&b, "  login:      admin / %s   (generated for this Redis and shown only now; set VMRESTORE_ADMIN_PASSWORD to choose it)\n", a.Password)
		}
	case c.AdminPassword != "":
		fmt.Fprintf(&b, "  login:      admin / the password in VMRESTORE_ADMIN_PASSWORD\n")
	default:
		fmt.Fprintf(&b, "  login:      admin / the password set earlier (set VMRESTORE_ADMIN_PASSWORD to reset it)\n")
	}
	fmt.Fprintf(&b, "  restorectl: printf %%s %s | restorectl login --url %s --password-stdin   (go build ./cmd/restorectl)\n", pw, base)
	if a.Embedded {
		fmt.Fprintf(&b, "\nRestore the demo VM web01 (paste into a shell):\n\n")
		fmt.Fprintf(&b, "  SESSION=$(curl -s -X PUT %s/zstack/v1/accounts/login \\\n", base)
		fmt.Fprintf(&b, "    -d '{\"logInByAccount\":{\"accountName\":\"admin\",\"password\":\"'$(printf %%s %s | sha512sum | cut -d' ' -f1)'\"}}' \\\n", pw)
		fmt.Fprintf(&b, "    | sed -n 's/.*\"uuid\":\"\\([0-9a-f]*\\)\".*/\\1/p')\n")
		fmt.Fprintf(&b, "  curl -s -X POST %s/zstack/v1/vm-instances/from/vm-backups/%s \\\n", base, demosite.GroupWeb01UUID)
		fmt.Fprintf(&b, "    -H \"Authorization: OAuth $SESSION\" -H 'Content-Type: application/json' -H 'Prefer: wait=60' \\\n")
		fmt.Fprintf(&b, "    -d '{\"params\":{\"name\":\"web01-dr\",\"instanceOfferingUuid\":\"%s\",\"l3NetworkUuids\":[\"%s\"]}}'\n", demosite.OfferingSmall, demosite.L3ProdUUID)
		fmt.Fprintf(&b, "\nThe answer is the VM inventory (Prefer: wait=60 asks for it in one call; without it the call answers\n")
		fmt.Fprintf(&b, "202 with a location to poll, as ZStack does); its volumes are under %s.\n", c.DataDir)
	}
	return b.String()
}
