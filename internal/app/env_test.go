package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/auth"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/openapitest"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/testenv"
	"github.com/vmrestore/vmrestore/internal/testrig"
)

const adminPassword = testrig.AdminPassword

// The demo backup groups are generated once per test binary and only read by the tests.
var (
	backupsOnce sync.Once
	backupsDir  string
	backupsErr  error
)

func sharedBackups(tb testing.TB) string {
	tb.Helper()
	backupsOnce.Do(func() {
		backupsDir, backupsErr = os.MkdirTemp("", "vmrestore-test-backups-")
		if backupsErr == nil {
			backupsErr = demosite.WriteBackups(backupsDir)
		}
	})
	if backupsErr != nil {
		tb.Fatalf("generate demo backups: %v", backupsErr)
	}
	return backupsDir
}

func TestMain(m *testing.M) {
	// The parallel tests here wait on worker processes, the queue, emulated guests and Redis
	// restarts far more than they compute.
	testenv.WaitingTests(8)
	built := prebuild()
	code := m.Run()
	built()
	if backupsDir != "" {
		os.RemoveAll(backupsDir)
	}
	removeBinaries()
	os.Exit(code)
}

// env is a running vmrestore (a testrig.Rig): a private redis-server, an api and a worker
// in this process, restoring onto the demo site generated in a temporary folder.
type env struct {
	t       testing.TB
	rig     *testrig.Rig
	redis   *redistest.Server
	api     *app.API
	worker  *app.Worker
	base    string
	session string
	paths   demosite.Paths
	store   *store.Store
	cfg     app.Config
	// planDir is the folder of an extra backup storage for generated groups, when a test has one.
	planDir string
}

type envOptions struct {
	// site edits the demo site before it is written.
	site func(*catalog.Site)
	// config edits the configuration.
	config func(*app.Config)
	// noWorker starts no in-process worker.
	noWorker bool
	// redis points the env at a Redis deployment of its own (Sentinel, Cluster) instead of
	// a private single redis-server; e.redis is then nil.
	redis func(*app.Config)
	// clock, when set, times the api's sessions (a test ages them with Advance).
	clock *testrig.Clock
}

func testLogger(tb testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newEnv(tb testing.TB, opts ...envOptions) *env {
	tb.Helper()
	var o envOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	rig := testrig.New(tb, testrig.Options{
		Site: o.site, Config: o.config, Redis: o.redis, NoWorker: o.noWorker, Clock: o.clock,
		Backups: sharedBackups(tb), Log: testLogger(tb),
	})
	e := &env{t: tb, rig: rig, redis: rig.Redis, api: rig.API, base: rig.Base, session: rig.Session,
		paths: rig.Paths, store: rig.Store(), cfg: rig.Config}
	if len(rig.Workers) > 0 {
		e.worker = rig.Workers[0]
	}
	return e
}

func (e *env) startWorker() *app.Worker {
	e.t.Helper()
	w, err := e.rig.StartWorker()
	if err != nil {
		e.t.Fatal(err)
	}
	e.worker = w
	return w
}

func (e *env) login(name, password string) string {
	e.t.Helper()
	resp := e.do("PUT", "/zstack/v1/accounts/login", "", map[string]any{
		"logInByAccount": map[string]string{"accountName": name, "password": auth.SHA512Hex(password)}}, nil)
	if resp.status != 200 {
		e.t.Fatalf("login %s: %d %s", name, resp.status, resp.body)
	}
	return resp.json()["inventory"].(map[string]any)["uuid"].(string)
}

type response struct {
	t      testing.TB
	status int
	header http.Header
	body   []byte
}

func (r response) json() map[string]any {
	r.t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		r.t.Fatalf("answer is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// errorCode returns the {"error": ...} object of a 503 answer.
func (r response) errorCode() map[string]any {
	r.t.Helper()
	if r.status != 503 {
		r.t.Fatalf("want 503 with an error, got %d: %s", r.status, r.body)
	}
	e, ok := r.json()["error"].(map[string]any)
	if !ok {
		r.t.Fatalf("503 without an error object: %s", r.body)
	}
	return e
}

// do sends a request; body may be nil, a string (sent as is) or a value (sent as JSON).
func (e *env) do(method, path, session string, body any, headers map[string]string) response {
	e.t.Helper()
	var rd io.Reader
	var sent []byte
	switch b := body.(type) {
	case nil:
	case string:
		rd, sent = strings.NewReader(b), []byte(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd, sent = bytes.NewReader(buf), buf
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if session != "" {
		req.Header.Set("Authorization", "OAuth "+session)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	openapitest.Check(e.t, req, sent, resp.StatusCode, resp.Header, b)
	return response{t: e.t, status: resp.StatusCode, header: resp.Header, body: b}
}

// submit posts CreateVmFromVmBackup for a group with the given params and returns the POST's
// own answer (202 with the poll location, unless the call was refused or waited).
func (e *env) submit(group string, params map[string]any, headers map[string]string) response {
	e.t.Helper()
	return e.do("POST", "/zstack/v1/vm-instances/from/vm-backups/"+group, e.session, map[string]any{"params": params}, headers)
}

// restore calls CreateVmFromVmBackup as ZStack's SDKs do: the POST, then, when it answers
// 202, polls the location until the job ends and returns that answer (200 with the
// inventory or 503 with the error). With a Prefer or X-Web-Hook header the POST's own answer
// is returned: those calls test the POST itself.
func (e *env) restore(group string, params map[string]any, headers map[string]string) response {
	e.t.Helper()
	r := e.submit(group, params, headers)
	if _, asked := headers["Prefer"]; asked || headers["X-Web-Hook"] != "" || r.status != 202 {
		return r
	}
	loc := str(r.json(), "location")
	mustf(e.t, strings.Contains(loc, "/zstack/v1/api-jobs/"), "202 without a poll location: %s", r.body)
	return e.poll(loc, 3*time.Minute)
}

// poll polls a job until it ends (or the deadline passes) and returns the final answer.
func (e *env) poll(location string, within time.Duration) response {
	e.t.Helper()
	path := location[strings.Index(location, "/zstack/v1/api-jobs/"):]
	var r response
	testrig.Within(within, func() bool {
		r = e.do("GET", path, e.session, nil, nil)
		return r.status != 202
	})
	return r
}

// checkInvariants fails the test if the invariant checker finds any drift or leak.
func (e *env) checkInvariants() {
	e.t.Helper()
	ctx := context.Background()
	ix, err := e.store.LoadCatalog(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	problems, err := e.store.CheckInvariants(ctx, ix)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(problems) > 0 {
		e.t.Fatalf("invariants broken:\n  %s", strings.Join(problems, "\n  "))
	}
}

func webParams(name string) map[string]any {
	return map[string]any{"name": name, "instanceOfferingUuid": demosite.OfferingSmall, "l3NetworkUuids": []string{demosite.L3ProdUUID}}
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func mustf(tb testing.TB, ok bool, format string, args ...any) {
	tb.Helper()
	if !ok {
		tb.Fatalf(format, args...)
	}
}

var _ = fmt.Sprintf
