package app_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/auth"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/httpapi"
	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/testrig"
	"github.com/vmrestore/vmrestore/internal/tlstest"
)

// publicRoutes need no session.
var publicRoutes = map[string]bool{
	"GET /": true, "GET /healthz": true, "GET /readyz": true, "GET /metrics": true,
	"PUT /zstack/v1/accounts/login": true, "GET /api/v1/openapi.yaml": true,
	// As in ZStack, logout and the session check need none: the session uuid is the credential.
	"DELETE /zstack/v1/accounts/sessions/:uuid": true, "GET /zstack/v1/accounts/sessions/:uuid/valid": true,
}

// registeredRoutes reads every route from the router itself, so that a new route cannot
// escape the security suite.
func registeredRoutes(tb testing.TB) []*struct{ Method, Path string } {
	tb.Helper()
	srv := &httpapi.Server{Metrics: metrics.New(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var out []*struct{ Method, Path string }
	for _, r := range srv.Handler().Routes() {
		if r.Method == "echo_route_not_found" || strings.HasSuffix(r.Path, "/*") {
			continue
		}
		out = append(out, &struct{ Method, Path string }{r.Method, r.Path})
	}
	mustf(tb, len(out) > 30, "only %d routes found", len(out))
	return out
}

// fill replaces a route's parameters with values.
func fill(path string, values map[string]string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") {
			v, ok := values[p[1:]]
			if !ok {
				v = "0123456789abcdef0123456789abcdef"
			}
			parts[i] = v
		}
	}
	return strings.Join(parts, "/")
}

// tenant is a normal account with a session.
type tenant struct {
	name, password, uuid, session string
}

func (e *env) newTenant(name string) tenant {
	e.t.Helper()
	pw := "pw-" + name + "-0123456789"
	r := e.do("POST", "/api/v1/accounts", e.session, map[string]any{"name": name, "password": pw}, nil)
	mustf(e.t, r.status == 201, "create account %s: %d %s", name, r.status, r.body)
	return tenant{name: name, password: pw, uuid: str(r.json(), "uuid"), session: e.login(name, pw)}
}

// ownedGroup copies a demo group under a new uuid, owned by an account.
func ownedGroup(tb testing.TB, e *env, from, to, owner string) string {
	tb.Helper()
	return copyGroup(tb, e, from, to, func(dir string) {
		p := filepath.Join(dir, "group.json")
		b, _ := os.ReadFile(p)
		var g map[string]any
		json.Unmarshal(b, &g)
		g["accountUuid"] = owner
		b, _ = json.Marshal(g)
		os.WriteFile(p, b, 0o640)
	})
}

func TestEveryRouteRefusesMissingBadExpiredRevokedAndForeignSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.newTenant("alice"), e.newTenant("bob")
	ctx := context.Background()

	// Alice owns a group, restores it, and runs a plan of it: her job, VM and plan.
	group := ownedGroup(t, e, demosite.GroupWeb01UUID, "a11ce000a11ce000a11ce000a11ce000", a.uuid)
	waitGroupIndexed(t, e, group)
	r := e.do("POST", "/zstack/v1/vm-instances/from/vm-backups/"+group, a.session, map[string]any{"params": webParams("alice-vm")},
		map[string]string{"Prefer": "wait=120"})
	mustf(t, r.status == 200, "alice restores her group: %d %s", r.status, r.body)
	vm := str(r.json()["inventory"].(map[string]any), "uuid")
	jr := e.do("POST", "/zstack/v1/vm-instances/from/vm-backups/"+group, a.session, map[string]any{"params": webParams("alice-vm2")},
		map[string]string{"Prefer": "respond-async"})
	job := str(jr.json(), "location")
	job = job[len(job)-32:]
	pr := e.do("POST", "/api/v1/plans", a.session, map[string]any{"name": "alice-plan", "groups": []string{group},
		"defaults":       map[string]any{"keepSourceSize": true, "nameTemplate": "{{.SourceName}}-p"},
		"networkMapping": []map[string]any{{"sourceL3NetworkUuid": demosite.L3ProdUUID, "targetL3NetworkUuid": demosite.L3ProdUUID}}}, nil)
	mustf(t, pr.status == 201, "alice's plan: %d %s", pr.status, pr.body)
	planUUID := str(pr.json(), "uuid")

	// An expired session (its record still there) and a revoked one.
	expired := "e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0"
	old, _ := json.Marshal(store.Session{UUID: expired, AccountUUID: a.uuid, AccountName: "alice", AccountType: "Normal",
		CreatedAt: time.Now().Add(-3 * time.Hour), ExpiresAt: time.Now().Add(-time.Hour)})
	e.redis.Client().Set(ctx, "vmr:session:"+expired, old, time.Hour)
	revoked := e.login("alice", a.password)
	mustf(t, e.do("DELETE", "/zstack/v1/accounts/sessions/"+revoked, revoked, nil, nil).status == 200, "logout")

	values := map[string]string{"groupUuid": group, "name": "alice"}
	idOf := func(path string) map[string]string {
		v := map[string]string{"groupUuid": group, "name": "alice"}
		switch {
		case strings.Contains(path, "/api-jobs/") || strings.Contains(path, "/jobs/"):
			v["uuid"] = job
		case strings.Contains(path, "/vm-instances/"):
			v["uuid"] = vm
		case strings.Contains(path, "/plans/"):
			v["uuid"] = planUUID
		case strings.Contains(path, "/accounts/sessions/"):
			v["uuid"] = a.session
		}
		return v
	}
	_ = values
	routes := registeredRoutes(t)
	for _, rt := range routes {
		key := rt.Method + " " + rt.Path
		if publicRoutes[key] {
			continue
		}
		path := fill(rt.Path, idOf(rt.Path))
		native := strings.HasPrefix(path, "/api/")
		var body any
		if rt.Method == "POST" || rt.Method == "PUT" {
			body = "{}"
		}
		t.Run(key, func(t *testing.T) {
			r := e.do(rt.Method, path, "", body, nil)
			mustf(t, r.status == 400 && string(r.body) == "missing header 'Authorization'", "no session: %d %q", r.status, r.body)
			r = e.do(rt.Method, path, "", body, map[string]string{"Authorization": "Basic YWRtaW46YWRtaW4="})
			mustf(t, r.status == 400 && string(r.body) == "Authorization type must be 'OAuth'", "bad scheme: %d %q", r.status, r.body)
			for what, s := range map[string]string{"expired": expired, "revoked": revoked, "unknown": "ffffffffffffffffffffffffffffffff"} {
				r = e.do(rt.Method, path, s, body, nil)
				want := 503
				if native {
					want = 401
				}
				var m map[string]any
				json.Unmarshal(r.body, &m)
				ec, _ := m["error"].(map[string]any)
				mustf(t, r.status == want && ec != nil && str(ec, "code") == "ID.1001", "%s session: %d %s", what, r.status, r.body)
			}
			// Every route with a body caps it, in MiB (KiB for login), whoever calls.
			if body != nil {
				limit, says := 1<<20, "larger than 1 MiB (1048576 bytes)"
				if native {
					limit, says = 32<<20, "larger than 32 MiB (33554432 bytes)"
				}
				req, _ := http.NewRequest(rt.Method, e.base+path, io.LimitReader(spaces{}, int64(limit+1)))
				req.ContentLength = int64(limit + 1)
				req.Header.Set("Authorization", "OAuth "+b.session)
				resp, err := http.DefaultClient.Do(req)
				mustf(t, err == nil, "a body over the cap: %v", err)
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var m map[string]map[string]string
				json.Unmarshal(got, &m)
				mustf(t, (resp.StatusCode == 503 || native && resp.StatusCode == 413) && m["error"]["code"] == "SYS.1007" && strings.Contains(m["error"]["details"], says),
					"a body one byte over the cap: %d %.200s", resp.StatusCode, got)
			}
			// Bob must not learn anything of Alice's objects: they answer as not found.
			if strings.Contains(rt.Path, ":uuid") && rt.Method == "GET" && !strings.Contains(rt.Path, "/accounts/") {
				r = e.do(rt.Method, path, b.session, nil, nil)
				switch {
				case strings.HasPrefix(path, "/zstack/v1/api-jobs/"):
					mustf(t, r.status == 404 && string(r.body) == "the job has been expired", "bob polls alice's job: %d %s", r.status, r.body)
				case strings.HasPrefix(path, "/zstack/v1/vm-instances/"):
					mustf(t, r.status == 200 && len(r.json()["inventories"].([]any)) == 0, "bob gets alice's VM: %s", r.body)
				case native:
					mustf(t, r.status == 404, "bob reads alice's object: %d %s", r.status, r.body)
				}
			}
		})
	}

	// Bob's lists hold none of Alice's records; admin sees them all.
	mustf(t, len(e.do("GET", "/zstack/v1/vm-instances", b.session, nil, nil).json()["inventories"].([]any)) == 0, "bob lists alice's VMs")
	mustf(t, len(e.do("GET", "/api/v1/plans", b.session, nil, nil).json()["plans"].([]any)) == 0, "bob lists alice's plans")
	mustf(t, len(e.do("GET", "/zstack/v1/volume-backups?q=groupUuid="+group, b.session, nil, nil).json()["inventories"].([]any)) == 0, "bob lists alice's backups")
	// Alice's second restore ran in the background; under load it may still be going.
	done := e.poll(str(jr.json(), "location"), 2*time.Minute)
	mustf(t, done.status == 200, "alice's async restore: %d %s", done.status, done.body)
	mustf(t, len(e.do("GET", "/zstack/v1/vm-instances", e.session, nil, nil).json()["inventories"].([]any)) >= 2, "admin sees every VM")
	for _, op := range []string{"cancel", "pause", "resume", "retry"} {
		r := e.do("POST", "/api/v1/plans/"+planUUID+"/"+op, b.session, nil, nil)
		mustf(t, r.status == 404, "bob %ss alice's plan: %d", op, r.status)
	}
	mustf(t, e.do("POST", "/api/v1/jobs/"+job+"/cancel", b.session, nil, nil).status == 404, "bob cancels alice's job")
	mustf(t, e.do("GET", "/api/v1/accounts", b.session, nil, nil).status == 403, "a normal account cannot list accounts")

	// Bob may not restore Alice's group, nor admin's (groups without an owner): ID.1002.
	for _, g := range []string{group, demosite.GroupWeb01UUID} {
		r := e.do("POST", "/zstack/v1/vm-instances/from/vm-backups/"+g, b.session, map[string]any{"params": webParams("bob-steals")},
			map[string]string{"Prefer": "wait=120"})
		ec := r.errorCode()
		mustf(t, str(ec, "code") == "ID.1002", "bob restores group %s: %s", g, r.body)
	}
	e.checkInvariants()

	// A password change ends every session of the account.
	mustf(t, e.do("PUT", "/api/v1/accounts/alice/password", e.session, map[string]any{"password": "a-brand-new-password"}, nil).status == 200, "admin sets alice's password")
	r = e.do("GET", "/zstack/v1/vm-instances", a.session, nil, nil)
	mustf(t, str(r.errorCode(), "code") == "ID.1001", "alice's session after the change: %s", r.body)
	mustf(t, e.login("alice", "a-brand-new-password") != "", "the new password works")
}

// spaces reads as an endless run of blanks.
type spaces struct{}

func (spaces) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

func waitGroupIndexed(tb testing.TB, e *env, group string) {
	tb.Helper()
	testrig.Eventually(tb, 20*time.Second, func() bool {
		_, err := e.store.GetBackupGroup(context.Background(), group)
		return err == nil
	}, "group %s never indexed", group)
}

func TestLoginLimitsAndSessionCap(t *testing.T) {
	e := newEnv(t, envOptions{noWorker: true})
	bad := func(name string) response {
		return e.do("PUT", "/zstack/v1/accounts/login", "", map[string]any{"logInByAccount": map[string]string{
			"accountName": name, "password": auth.SHA512Hex("wrong")}}, nil)
	}
	var first response
	for i := 0; i < auth.PairFreeFailures; i++ {
		r := bad("admin")
		mustf(t, str(r.errorCode(), "code") == "ID.1000" && r.header.Get("Retry-After") == "", "failure %d: %s", i, r.body)
		if i == 0 {
			first = r
		}
	}
	// At once (the first wait is 1 s from the last failure): past the free tries this
	// address waits, even with the right password.
	r := e.do("PUT", "/zstack/v1/accounts/login", "", map[string]any{"logInByAccount": map[string]string{
		"accountName": "admin", "password": auth.SHA512Hex(adminPassword)}}, nil)
	ec := r.errorCode()
	mustf(t, str(ec, "code") == "ID.1000" && strings.Contains(str(ec, "details"), "too many failed logins") && r.header.Get("Retry-After") != "",
		"past the free tries this address waits, even with the right password: %s (Retry-After %q)", r.body, r.header.Get("Retry-After"))
	unknown := bad("nobody-here")
	mustf(t, string(unknown.body) == string(first.body), "an unknown account answers exactly like a wrong password")

	// The per-account session cap (ZStack's 500) answers ID.1006.
	ctx := context.Background()
	e.redis.Client().Del(ctx, "vmr:{login}:pair:127.0.0.1|admin")
	for i := 0; i < auth.DefaultMaxSessions-1; i++ { // one more is e.session
		now := time.Now()
		if err := e.store.CreateSession(ctx, &store.Session{UUID: strings.Repeat("0", 24) + fmt0x(i), AccountUUID: auth.AdminUUID,
			CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, auth.DefaultMaxSessions); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
	r = e.do("PUT", "/zstack/v1/accounts/login", "", map[string]any{"logInByAccount": map[string]string{
		"accountName": "admin", "password": auth.SHA512Hex(adminPassword)}}, nil)
	mustf(t, str(r.errorCode(), "code") == "ID.1006", "the 501st session: %s", r.body)
}

func fmt0x(i int) string {
	const hex = "0123456789abcdef"
	b := []byte("00000000")
	for k := 7; k >= 0; k-- {
		b[k] = hex[i&15]
		i >>= 4
	}
	return string(b)
}

func TestPathEscapesAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.raw")
	os.WriteFile(secret, bytes.Repeat([]byte("S"), 4096), 0o600)
	cases := map[string]func(dir string){
		"dotdot":   func(dir string) { rewriteFile(dir, "../../../"+filepath.Base(outside)+"/secret.raw") },
		"absolute": func(dir string) { rewriteFile(dir, secret) },
		"nul":      func(dir string) { rewriteFile(dir, "35cafdc7a0234be7c4eeaafbe07e3993.raw\x00.txt") },
		"symlink out": func(dir string) {
			os.Remove(filepath.Join(dir, "35cafdc7a0234be7c4eeaafbe07e3993.raw"))
			os.Symlink(secret, filepath.Join(dir, "35cafdc7a0234be7c4eeaafbe07e3993.raw"))
		},
	}
	i := 0
	for name, edit := range cases {
		i++
		g := ownedGroup(t, e, demosite.GroupWeb01UUID, "e5ca0e00e5ca0e00e5ca0e00e5ca0e0"+fmt0x(i)[7:], "")
		edit(filepath.Join(e.paths.NFS, "..", "extra-backups", "vm-backups", g))
		r := e.restore(g, webParams("escape-"+strings.ReplaceAll(name, " ", "-")), nil)
		mustf(t, r.status == 503, "%s: a group reaching outside its folder must fail: %d %s", name, r.status, r.body)
		t.Logf("%s: %s", name, r.body)
	}
	// A group folder that is itself a symlink out of vm-backups is not a group.
	link := filepath.Join(e.paths.NFS, "..", "extra-backups", "vm-backups", "11111111111111111111111111111111")
	os.MkdirAll(filepath.Join(outside, "g"), 0o750)
	os.Symlink(filepath.Join(outside, "g"), link)
	os.WriteFile(filepath.Join(outside, "g", "group.json"), []byte(`{}`), 0o600)
	r := e.restore("11111111111111111111111111111111", webParams("linked"), nil)
	cause, _ := r.errorCode()["cause"].(map[string]any)
	mustf(t, cause != nil && str(cause, "code") == "BS.1000" && strings.Contains(str(cause, "details"), "path escapes"), "a symlinked group folder: %s", r.body)
	// Nothing of the secret was copied anywhere.
	filepath.Walk(filepath.Dir(e.paths.NFS), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() == 4096 {
			b, _ := os.ReadFile(p)
			mustf(t, !bytes.Equal(b, bytes.Repeat([]byte("S"), 4096)) || p == secret, "the secret was copied to %s", p)
		}
		return nil
	})
	checkNothingAllocated(t, e)
}

// rewriteFile points web01's data volume at another file name in group.json.
func rewriteFile(dir, file string) {
	p := filepath.Join(dir, "group.json")
	b, _ := os.ReadFile(p)
	b = bytes.ReplaceAll(b, []byte(`"35cafdc7a0234be7c4eeaafbe07e3993.raw"`), mustJSON(file))
	os.WriteFile(p, b, 0o640)
}

func mustJSON(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

// lockedBuffer collects logs written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestTLSMetricsTokenAndNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := tlstest.SelfSigned(t, t.TempDir())
	e := newEnv(t, envOptions{noWorker: true})
	// The env's api is plain HTTP; start a TLS one beside it on the same Redis.
	var logs lockedBuffer
	cfg := e.cfg
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.MetricsToken = certFile, keyFile, "metrics-secret"
	api, err := app.StartAPI(context.Background(), cfg, io.Discard, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer api.Stop()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	body := `{"logInByAccount":{"accountName":"admin","password":"` + auth.SHA512Hex(adminPassword) + `"}}`
	req, _ := http.NewRequest("PUT", "https://"+api.Addr+"/zstack/v1/accounts/login", strings.NewReader(body))
	resp, err := client.Do(req)
	mustf(t, err == nil && resp.StatusCode == 200 && resp.TLS != nil && resp.TLS.Version >= tls.VersionTLS12, "login over TLS: %v %v", err, resp)
	resp.Body.Close()
	if plain, err := http.Get("http://" + api.Addr + "/healthz"); err == nil {
		b, _ := io.ReadAll(plain.Body)
		mustf(t, plain.StatusCode == 400 && !strings.Contains(string(b), "ok"), "plain HTTP to the TLS port must fail, got %d %s", plain.StatusCode, b)
	}
	old := &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}
	_, err = (&http.Client{Transport: &http.Transport{TLSClientConfig: old}}).Get("https://" + api.Addr + "/healthz")
	mustf(t, err != nil, "TLS 1.1 must be refused")

	m, _ := client.Get("https://" + api.Addr + "/metrics")
	mustf(t, m.StatusCode == 401, "metrics without the token: %d", m.StatusCode)
	req, _ = http.NewRequest("GET", "https://"+api.Addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer metrics-secret")
	m, _ = client.Do(req)
	mustf(t, m.StatusCode == 200, "metrics with the token: %d", m.StatusCode)

	// A failed login and a failed request leave no secret in the logs.
	req, _ = http.NewRequest("PUT", "https://"+api.Addr+"/zstack/v1/accounts/login", strings.NewReader(`{"logInByAccount":{"accountName":"admin","password":"`+auth.SHA512Hex("guess")+`"}}`))
	client.Do(req)
	for _, secret := range []string{adminPassword, auth.SHA512Hex(adminPassword), auth.SHA512Hex("guess"), "metrics-secret"} {
		mustf(t, !strings.Contains(logs.String(), secret), "a secret reached the logs")
	}
}
