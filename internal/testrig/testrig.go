// Package testrig starts a whole vmrestore for tests and benchmarks: a private
// redis-server, a site (the demo site with its backup groups, or the caller's), an api and
// in-process workers, and an admin session. Tests call New (failures end the test, stops run
// at cleanup); benchmarks that outlive one test call Start and Close.
//
// Waiting: Eventually polls a condition until a timeout instead of a hand-written
// deadline-and-sleep loop; a Clock is a settable time source for what the rig's processes
// time by (sessions), so that a test of expiry moves the clock instead of sleeping.
package testrig

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/auth"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
)

// AdminPassword is the admin's password in a rig unless Options.Env sets another.
const AdminPassword = "test-admin-password"

// Options shape a rig; the zero value is the demo site, one worker, a private redis-server.
type Options struct {
	// Dir holds the rig's files; empty: the test's TempDir (Start: a new temporary folder,
	// removed by Close).
	Dir string
	// SiteFile is a site file of the caller's; empty: the demo site, written in Dir.
	SiteFile string
	// Site edits the demo site before it is written.
	Site func(*catalog.Site)
	// Backups is a folder that already holds the demo backup groups (shared between tests,
	// only read); empty: they are written in Dir.
	Backups string
	// Redis sets REDIS_ADDR (and whatever else a Redis deployment of the caller's needs:
	// Sentinel, Cluster) on the configuration; nil: a private redis-server.
	Redis func(*app.Config)
	// Env overrides the rig's environment (REDIS_ADDR, VMRESTORE_*).
	Env map[string]string
	// Config edits the loaded configuration.
	Config func(*app.Config)
	// Workers is the number of in-process workers; NoWorker starts none (Workers is then
	// ignored); 0 means 1.
	Workers  int
	NoWorker bool
	// Log is the processes' log; nil: discarded (stderr at info level with go test -v).
	Log *slog.Logger
	// Clock, when set, is the time the processes' sessions are timed by.
	Clock *Clock
}

// Rig is a running vmrestore.
type Rig struct {
	Redis   *redistest.Server // nil when Options.Redis points elsewhere
	Paths   demosite.Paths    // the demo site's files (Dir and SiteFile only for a site of the caller's)
	Config  app.Config
	API     *app.API
	Workers []*app.Worker
	Base    string // http://host:port of the api
	Session string // an admin session
	Log     *slog.Logger
	// HTTP is the client that reaches the api: one that trusts the api's certificate when
	// it serves HTTPS (a test certificate is its own CA), else http.DefaultClient.
	HTTP *http.Client

	tb     testing.TB
	ownDir bool
}

// New starts a rig for a test; failures end the test, and the rig stops at its cleanup.
func New(tb testing.TB, o Options) *Rig {
	tb.Helper()
	if o.Dir == "" {
		o.Dir = tb.TempDir()
	}
	r := &Rig{tb: tb}
	if err := r.start(o); err != nil {
		tb.Fatal(err)
	}
	return r
}

// Start starts a rig outside a test (benchmark programs); Close stops it.
func Start(o Options) (*Rig, error) {
	r := &Rig{}
	if o.Dir == "" {
		dir, err := os.MkdirTemp("", "vmrestore-rig-")
		if err != nil {
			return nil, err
		}
		o.Dir, r.ownDir = dir, true
	}
	if err := r.start(o); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Rig) start(o Options) error {
	if err := r.startRedis(o); err != nil {
		return err
	}
	site, err := r.writeSite(o)
	if err != nil {
		return err
	}
	if err := r.loadConfig(o, site); err != nil {
		return err
	}
	r.Log = o.Log
	if r.Log == nil {
		r.Log = quietLog()
	}
	if r.API, err = app.StartAPI(context.Background(), r.Config, io.Discard, r.Log); err != nil {
		return fmt.Errorf("start api: %w", err)
	}
	if r.tb != nil {
		r.tb.Cleanup(func() { r.API.Stop() })
	}
	r.Base = app.BaseURL(r.API)
	if r.HTTP, err = trustingClient(r.Config.TLSCertFile); err != nil {
		return err
	}
	workers := max(o.Workers, 1)
	if o.NoWorker {
		workers = 0
	}
	for range workers {
		if _, err := r.StartWorker(); err != nil {
			return err
		}
	}
	password := AdminPassword
	if p := o.Env["VMRESTORE_ADMIN_PASSWORD"]; p != "" {
		password = p
	}
	r.Session, err = r.Login("admin", password)
	return err
}

func (r *Rig) startRedis(o Options) error {
	if o.Redis != nil {
		return nil
	}
	if r.tb != nil {
		r.Redis = redistest.Start(r.tb)
		return nil
	}
	var err error
	r.Redis, err = redistest.StartShared()
	return err
}

// writeSite writes the demo site (with o.Site's edits) unless o gives a site file.
func (r *Rig) writeSite(o Options) (string, error) {
	r.Paths = demosite.PathsIn(o.Dir)
	if o.SiteFile != "" {
		r.Paths.SiteFile = o.SiteFile
		return o.SiteFile, nil
	}
	if o.Backups != "" {
		r.Paths.Backup = o.Backups
	} else if err := demosite.WriteBackups(r.Paths.Backup); err != nil {
		return "", fmt.Errorf("write demo backups: %w", err)
	}
	if err := demosite.WriteSite(r.Paths); err != nil {
		return "", fmt.Errorf("write demo site: %w", err)
	}
	if o.Site != nil {
		site := demosite.Site(r.Paths)
		o.Site(site)
		b, err := yaml.Marshal(site)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(r.Paths.SiteFile, b, 0o640); err != nil {
			return "", err
		}
	}
	return r.Paths.SiteFile, nil
}

// loadConfig loads the configuration as the binaries do, from the rig's environment.
func (r *Rig) loadConfig(o Options, site string) error {
	env := map[string]string{
		"VMRESTORE_SITE":                 site,
		"VMRESTORE_HTTP_ADDR":            "127.0.0.1:0",
		"VMRESTORE_METRICS_ADDR":         "127.0.0.1:0",
		"VMRESTORE_ADMIN_PASSWORD":       AdminPassword,
		"VMRESTORE_BACKUP_SCAN_INTERVAL": "1s",
		"VMRESTORE_HYPERVISOR":           "simulator",
		"VMRESTORE_DATA_DIR":             filepath.Join(o.Dir, "data"),
	}
	if r.Redis != nil {
		env["REDIS_ADDR"] = r.Redis.Addr
	} else {
		env["REDIS_ADDR"] = "set-by-options"
	}
	maps.Copy(env, o.Env)
	cfg, err := app.LoadConfig("test", nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		return err
	}
	if o.Redis != nil {
		o.Redis(&cfg)
	}
	if o.Config != nil {
		o.Config(&cfg)
	}
	if o.Clock != nil {
		cfg.Now = o.Clock.Now
	}
	r.Config = cfg
	return nil
}

// StartWorker starts one more in-process worker with the rig's configuration.
func (r *Rig) StartWorker() (*app.Worker, error) {
	w, err := app.StartWorker(context.Background(), r.Config, r.Log)
	if err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	if r.tb != nil {
		r.tb.Cleanup(func() { w.Stop() })
	}
	r.Workers = append(r.Workers, w)
	return w, nil
}

// Store is the api's Redis store.
func (r *Rig) Store() *store.Store { return r.API.Store }

// Login logs an account in and returns its session uuid.
func (r *Rig) Login(name, password string) (string, error) {
	body, _ := json.Marshal(map[string]any{"logInByAccount": map[string]string{"accountName": name, "password": auth.SHA512Hex(password)}})
	req, err := http.NewRequest(http.MethodPut, r.Base+"/zstack/v1/accounts/login", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client().Do(req)
	if err != nil {
		return "", fmt.Errorf("login %s: %w", name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct{ Inventory struct{ UUID string } }
	if err := json.Unmarshal(b, &out); err != nil || resp.StatusCode != 200 || out.Inventory.UUID == "" {
		return "", fmt.Errorf("login %s: %d %s", name, resp.StatusCode, b)
	}
	return out.Inventory.UUID, nil
}

// Close stops a rig started with Start: its workers, the api, Redis, and its folder.
func (r *Rig) Close() {
	for _, w := range r.Workers {
		w.Stop()
	}
	if r.API != nil {
		r.API.Stop()
	}
	if r.Redis != nil && r.tb == nil {
		r.Redis.Kill()
	}
	if r.ownDir {
		os.RemoveAll(r.Paths.Dir)
	}
}

// trustingClient is a client that trusts the certificate in certFile; none is needed (nil)
// without one.
func trustingClient(certFile string) (*http.Client, error) {
	if certFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", certFile)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, nil
}

// client is the HTTP client of the rig's api: the TLS one when the api serves HTTPS.
func (r *Rig) client() *http.Client {
	if r.HTTP != nil {
		return r.HTTP
	}
	return http.DefaultClient
}

func quietLog() *slog.Logger {
	if testing.Testing() && testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
