package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/vmrestore/vmrestore/internal/auth"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/httpapi"
	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/plan"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/webhook"
)

// API is a running api process.
type API struct {
	Addr     string // the address actually listened on
	TLS      bool   // the api serves HTTPS
	Password string // the generated admin password, when one was generated
	Site     string // the site file in use
	Embedded bool   // the api runs its own Redis and workers (see internal/embedded)
	Store    *store.Store

	run *runGroup
}

// Wait blocks until the api stops and returns why.
func (a *API) Wait() error { return a.run.wait() }

// Stop shuts the api down and waits for it.
func (a *API) Stop() error { return a.run.stop() }

// APIOptions is what the embedded mode adds to an api process (internal/embedded); the api
// binary with REDIS_ADDR set needs none of it.
type APIOptions struct {
	// Embedded runs workers inside the api and marks the api as embedded.
	Embedded bool
	// Stop, when set, runs after everything else has stopped (the embedded Redis).
	Stop func()
}

// StartAPI starts the api against the configured Redis. It returns once the listener is
// bound and the catalog loaded.
func StartAPI(parent context.Context, c Config, stdout io.Writer, log *slog.Logger) (*API, error) {
	if c.Embedded() {
		return nil, errors.New("REDIS_ADDR is unset: the embedded mode is started by the api binary (internal/embedded)")
	}
	return StartAPIWith(parent, c, log, APIOptions{})
}

// StartAPIWith starts an api with the embedded mode's additions. Its parts start in this
// order and stop in the reverse one: Redis, the catalog and accounts, the HTTP server's
// handlers, the workers (embedded mode), the site watcher, the listener. Stopping therefore
// first stops taking requests and lets the running ones end, then stops the workers, then
// closes Redis.
func StartAPIWith(parent context.Context, c Config, log *slog.Logger, opts APIOptions) (*API, error) {
	r := newRunGroup(parent)
	p := &apiProcess{process: process{c: c, log: log, m: metrics.New()}, opts: opts,
		api: &API{run: r, Embedded: opts.Embedded, Site: c.SiteFile}}
	if opts.Stop != nil {
		r.onStop(opts.Stop)
	}
	err := r.start(p.loadSite, p.connectRedis, p.loadCatalog, p.startAuth, p.buildHandlers,
		p.startWorkers, p.watchSite, p.listen)
	if err != nil {
		return nil, err
	}
	return p.api, nil
}

// apiProcess is what the api's start steps build, in order.
type apiProcess struct {
	process
	opts  APIOptions
	api   *API
	site  *catalog.Site
	auth  *auth.Service
	cache *store.CatalogCache
	srv   *httpapi.Server
}

func (p *apiProcess) loadSite(*runGroup) error {
	if p.c.SiteFile == "" {
		return errors.New("no site catalog: set VMRESTORE_SITE to a site YAML (deploy/site.example.yaml is a start)")
	}
	site, err := catalog.LoadFile(p.c.SiteFile)
	p.site = site
	return err
}

func (p *apiProcess) loadCatalog(r *runGroup) error {
	p.api.Store = p.st
	if _, err := p.st.SaveCatalog(r.ctx, p.site); err != nil {
		return fmt.Errorf("load the site catalog into redis: %w", err)
	}
	return nil
}

// startAuth syncs the site file's accounts and sets up the admin account.
func (p *apiProcess) startAuth(r *runGroup) error {
	p.auth = auth.New(p.st, p.c.SessionTTL, auth.DefaultMaxSessions, p.c.LoginConcurrency)
	p.auth.Observe = func(outcome string) { p.m.LoginAttempts.WithLabelValues(outcome).Inc() }
	p.auth.Hashing = p.m.PasswordHashing.Add
	p.auth.Now = p.c.Now
	if err := p.auth.SyncAccounts(r.ctx, p.site.Accounts); err != nil {
		return err
	}
	var err error
	if p.api.Password, err = p.auth.EnsureAdmin(r.ctx, p.c.AdminPassword); err != nil {
		return fmt.Errorf("set up the admin account: %w", err)
	}
	return nil
}

// buildHandlers builds the HTTP API on the job events and the catalog.
func (p *apiProcess) buildHandlers(r *runGroup) error {
	events, err := p.st.SubscribeEvents(r.ctx)
	if err != nil {
		return err
	}
	p.cache = p.st.NewCatalogCache()
	hooks := webhook.NewPolicy(p.c.WebHookAllow)
	p.srv = &httpapi.Server{
		Store: p.st, Catalog: p.cache, Events: events, Queue: queue.NewClient(p.rdb, p.c.MaxRetry), Auth: p.auth,
		Plans: &plan.Service{Store: p.st, Catalog: p.cache, WebHooks: hooks}, WebHooks: hooks,
		Metrics: p.m, Log: p.log,
		Config: httpapi.Config{WaitLimit: p.c.WaitLimit, MetricsToken: p.c.MetricsToken, PublicURL: p.c.PublicURL, WriteTimeout: p.c.HTTPWriteTimeout,
			ReportRetention: p.c.ReportRetention},
	}
	p.srv.Ready = func() error { return ready(context.Background(), p.st, p.cache) }
	p.startOpsMetrics(r, p.cache)
	return nil
}

// startWorkers runs the embedded mode's workers in the api process.
func (p *apiProcess) startWorkers(r *runGroup) error {
	if !p.opts.Embedded {
		return nil
	}
	_, err := startWorkerParts(r, p.process, true)
	return err
}

func (p *apiProcess) watchSite(r *runGroup) error {
	r.run(func(ctx context.Context) { watchSite(ctx, p.c.SiteFile, p.st, p.auth, p.log) })
	return nil
}

// apiShutdownWait bounds how long a stopping api lets running requests (waits) finish.
const apiShutdownWait = 15 * time.Second

// listen binds the api's address (with TLS when configured) and serves the API.
func (p *apiProcess) listen(r *runGroup) error {
	c := p.c
	hs := &http.Server{
		Handler:           p.srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// The outer bound on reading a request; each route's body has its own, shorter or
		// equal (httpapi.readBody).
		ReadTimeout: 10*time.Second + httpapi.NativeBodyTimeout,
		// No WriteTimeout: it would cut event streams; answers get theirs per request
		// (httpapi.Config.WriteTimeout).
		IdleTimeout: 2 * time.Minute,
	}
	var cert tls.Certificate
	if c.TLSCertFile != "" || c.TLSKeyFile != "" {
		var err error
		if cert, err = tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			return fmt.Errorf("VMRESTORE_TLS_CERT_FILE/VMRESTORE_TLS_KEY_FILE: %w", err)
		}
	}
	ln, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (set VMRESTORE_HTTP_ADDR to another address)", c.HTTPAddr, err)
	}
	p.api.Addr = ln.Addr().String()
	if len(cert.Certificate) > 0 {
		// Modern settings: TLS 1.2 at least, Go's default AEAD suites and curves.
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		ln = tls.NewListener(ln, hs.TLSConfig)
		p.api.TLS = true
	}
	serveHTTP(r, hs, ln, apiShutdownWait)
	return nil
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
