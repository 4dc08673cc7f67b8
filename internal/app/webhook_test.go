package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/demosite"
)

type hookCall struct {
	jobUUID, success string
	body             map[string]any
}

// TestWebHookDeliversThePollAnswer posts with X-Web-Hook: the call answers 202 at once and,
// when the job ends, the hook receives the poll's body with X-Job-UUID and X-Job-Success,
// retried every 2 s until it answers 2xx.
func TestWebHookDeliversThePollAnswer(t *testing.T) {
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

	e := newEnv(t)
	ok := e.restore(demosite.GroupWeb01UUID, webParams("hooked"), map[string]string{"X-Web-Hook": hook.URL})
	mustf(t, ok.status == 202, "a web hook call answers 202 at once, got %d %s", ok.status, ok.body)
	bad := e.restore("0123456789abcdef0123456789abcdef", webParams("ghost"), map[string]string{"X-Web-Hook": hook.URL})
	mustf(t, bad.status == 202, "got %d", bad.status)
	// A call that breaks the API's rules is a job that failed at once: its hook is called too.
	invalid := e.restore(demosite.GroupWeb01UUID, map[string]any{"name": "no-offering", "l3NetworkUuids": []string{demosite.L3ProdUUID}},
		map[string]string{"X-Web-Hook": hook.URL})
	mustf(t, invalid.status == 202, "got %d", invalid.status)

	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(calls)
		mu.Unlock()
		if n == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
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
