package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/testrig"
)

type hookCall struct {
	jobUUID, success string
	body             map[string]any
}

// TestWebHookDeliversThePollAnswer posts with X-Web-Hook: the call answers 202 at once and,
// when the job ends, the hook receives the poll's body with X-Job-UUID and X-Job-Success,
// retried every 2 s until it answers 2xx.
func TestWebHookDeliversThePollAnswer(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var calls []hookCall
	tries := 0
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		tries++
		if tries == 1 { // the first try fails: ZStack's client would retry
			w.WriteHeader(500)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		json.Unmarshal(b, &m)
		calls = append(calls, hookCall{r.Header.Get("X-Job-UUID"), r.Header.Get("X-Job-Success"), m})
	}))
	defer hook.Close()

	// The receiver is on loopback, which hooks reach only when allowed.
	e := newEnv(t, envOptions{config: func(c *app.Config) { c.WebHookAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} }})
	ok := e.restore(demosite.GroupWeb01UUID, webParams("hooked"), map[string]string{"X-Web-Hook": hook.URL})
	mustf(t, ok.status == 202, "a web hook call answers 202 at once, got %d %s", ok.status, ok.body)
	bad := e.restore("0123456789abcdef0123456789abcdef", webParams("ghost"), map[string]string{"X-Web-Hook": hook.URL})
	mustf(t, bad.status == 202, "got %d", bad.status)
	// A call that breaks the API's rules is a job that failed at once: its hook is called too.
	invalid := e.restore(demosite.GroupWeb01UUID, map[string]any{"name": "no-offering", "l3NetworkUuids": []string{demosite.L3ProdUUID}},
		map[string]string{"X-Web-Hook": hook.URL})
	mustf(t, invalid.status == 202, "got %d", invalid.status)

	testrig.Within(30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(calls) == 3
	})
	mu.Lock()
	defer mu.Unlock()
	mustf(t, len(calls) == 3, "want 3 deliveries, got %d after %d tries", len(calls), tries)
	byJob := map[string]hookCall{}
	for _, c := range calls {
		byJob[c.jobUUID] = c
	}
	okJob := str(ok.json(), "location")
	okJob = okJob[len(okJob)-32:]
	badJob := str(bad.json(), "location")
	badJob = badJob[len(badJob)-32:]
	mustf(t, byJob[okJob].success == "true" && byJob[okJob].body["inventory"] != nil, "success hook: %+v", byJob[okJob])
	ec, _ := byJob[badJob].body["error"].(map[string]any)
	mustf(t, byJob[badJob].success == "false" && ec != nil && str(ec, "code") == "SYS.1003", "failure hook: %+v", byJob[badJob])
	invalidJob := str(invalid.json(), "location")
	invalidJob = invalidJob[len(invalidJob)-32:]
	ec, _ = byJob[invalidJob].body["error"].(map[string]any)
	mustf(t, byJob[invalidJob].success == "false" && ec != nil && str(ec, "code") == "SYS.1007", "invalid call hook: %+v", byJob[invalidJob])

	r := e.restore(demosite.GroupWeb01UUID, webParams("x"), map[string]string{"X-Web-Hook": "ftp://example/hook"})
	mustf(t, r.status == 400, "a non-http hook is refused: %d %s", r.status, r.body)
}

// Finding: web hooks reached loopback, the embedded Redis, and followed redirects anywhere;
// a URL's password was logged. By default hooks now reach only public addresses, checked on
// the address connected to; VMRESTORE_WEBHOOK_ALLOW_CIDRS opens more; credentials never
// reach the logs.
func TestWebHooksReachOnlyAllowedAddresses(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	var auth atomic.Value
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		u, p, _ := r.BasicAuth()
		auth.Store(u + ":" + p)
	}))
	defer hook.Close()
	secretURL := strings.Replace(hook.URL, "http://", "http://hookuser:s3cret@", 1) + "/h?token=t0ken"

	for _, allow := range []bool{false, true} {
		e := newEnv(t, envOptions{noWorker: true, config: func(c *app.Config) {
			if allow {
				c.WebHookAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
			}
		}})
		var logs lockedBuffer
		w, err := app.StartWorker(context.Background(), e.cfg, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
		mustf(t, err == nil, "start worker: %v", err)
		r := e.restore(demosite.GroupWeb01UUID, webParams(fmt.Sprint("hooked-", allow)), map[string]string{"X-Web-Hook": secretURL})
		if !allow {
			// An address the policy refuses is refused with the call (a name is checked on
			// its address at delivery: internal/webhook's TestDialTimeCheck).
			mustf(t, r.status == 400 && strings.Contains(string(r.body), "loopback") && !strings.Contains(string(r.body), "s3cret"),
				"restore with a loopback hook: %d %s", r.status, r.body)
			w.Stop()
			continue
		}
		mustf(t, r.status == 202, "restore with a hook: %d %s", r.status, r.body)
		const want = "web hook delivered"
		testrig.Within(time.Minute, func() bool { return strings.Contains(logs.String(), want) })
		w.Stop()
		mustf(t, strings.Contains(logs.String(), want), "the log never said %q", want)
		mustf(t, hits.Load() == 1 && auth.Load() == "hookuser:s3cret", "allowed: %d deliveries, auth %v", hits.Load(), auth.Load())
		for _, secret := range []string{"s3cret", "t0ken", "hookuser"} {
			mustf(t, !strings.Contains(logs.String(), secret), "allow %v: the log shows %q", allow, secret)
		}
	}

	// A plan's web hook is checked when the plan is submitted.
	e := newEnv(t, envOptions{noWorker: true})
	for _, u := range []string{"http://127.0.0.1:6379/", "http://localhost:8080/x", "http://[::1]/", "http://0.0.0.0/", "http://169.254.169.254/latest", "http://10.0.0.1/"} {
		r := e.do("POST", "/api/v1/plans?dryRun=true", e.session, map[string]any{"name": "p", "groups": []string{demosite.GroupWeb01UUID},
			"defaults": map[string]any{"keepSourceSize": true}, "webHook": u}, nil)
		var m map[string]map[string]string
		json.Unmarshal(r.body, &m)
		mustf(t, r.status == 400 && m["error"]["code"] == "SYS.1007" && strings.Contains(m["error"]["details"], "VMRESTORE_WEBHOOK_ALLOW_CIDRS"),
			"plan web hook %s: %d %s", u, r.status, r.body)
	}
}
