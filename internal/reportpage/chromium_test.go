package reportpage

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/testenv"
)

// screenshotFile is the documentation's picture of a report: the report of a real drill on
// the demo site (screenshotReport, which the app's TestDrillReport writes), as this test's
// Chromium renders it. VMRESTORE_UPDATE_SCREENSHOT=1 rewrites it.
const (
	screenshotFile   = "../../docs/img/drill-report.png"
	screenshotReport = "../../docs/img/drill-report.json"
)

// The page, opened by a real headless Chromium: it renders (the DOM Chromium built holds the
// report and the timeline's bars), and it makes no network request: every request Chromium
// makes goes to a proxy that records it (loopback included), and there must be none. A
// screenshot is taken, and must be a PNG.
func TestPageInHeadlessChromium(t *testing.T) {
	chromium := testenv.LookPath(t, "chromium", "install Debian's chromium (apt-get install chromium)")
	dir := t.TempDir()
	var page bytes.Buffer
	if err := HTML(&page, exampleReport()); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "report.html")
	if err := os.WriteFile(file, page.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var requests []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, ok := strings.Cut(host, ":"); ok {
			host = h
		}
		// Chromium's own background services (component updates, its clock, sign-in), which
		// it calls whatever the page; the page names no URL (the app tests check its text).
		if strings.HasSuffix(host, ".googleapis.com") || strings.HasSuffix(host, ".google.com") {
			http.Error(w, "no network in tests", http.StatusForbidden)
			return
		}
		mu.Lock()
		requests = append(requests, r.Method+" "+r.URL.String())
		mu.Unlock()
		http.Error(w, "no network for the report", http.StatusForbidden)
	}))
	defer proxy.Close()

	// The proxy sees what a page fetches: a page with an image from elsewhere is caught.
	canary := filepath.Join(dir, "canary.html")
	if err := os.WriteFile(canary, []byte(`<!DOCTYPE html><img src="http://report-canary.test/pixel.png">`), 0o644); err != nil {
		t.Fatal(err)
	}
	runChromium(t, chromium, dir, proxy.URL, "--dump-dom", "file://"+canary)
	mu.Lock()
	seen := strings.Join(requests, " ")
	requests = nil
	mu.Unlock()
	if !strings.Contains(seen, "report-canary.test") {
		t.Fatalf("the recording proxy did not see the canary page's image (saw %q): it would not see the report's requests either", seen)
	}

	dom := runChromium(t, chromium, dir, proxy.URL, "--dump-dom", "file://"+file)
	real := filepath.Join(dir, "drill.html")
	if err := os.WriteFile(real, realDrillPage(t), 0o644); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "shot.png")
	runChromium(t, chromium, dir, proxy.URL, "--screenshot="+shot, "--window-size=1040,1180", "--hide-scrollbars", "file://"+real)

	for _, want := range []string{`<svg id="timeline"`, "dc-east quarterly drill", "Tier 3", "web-03-drill", "l3-drill-mgmt", "VMs destroyed and expunged", "<rect"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the DOM Chromium built lacks %q", want)
		}
	}
	if n := strings.Count(dom, "<rect"); n < 8*6 {
		t.Errorf("the timeline has %d bars; want at least a stage bar per stage of 8 VMs", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(requests) > 0 {
		t.Errorf("the page made network requests: %v", requests)
	}
	png, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10000 {
		t.Fatalf("screenshot: %v, %d bytes", err, len(png))
	}
	if os.Getenv("VMRESTORE_UPDATE_SCREENSHOT") == "1" {
		if err := os.WriteFile(screenshotFile, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// realDrillPage is the page of the stored report of a real drill (screenshotReport).
func realDrillPage(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(screenshotReport)
	if err != nil {
		t.Fatalf("the real drill's report: %v (VMRESTORE_UPDATE_SCREENSHOT=1 go test -run TestDrillReport ./internal/app writes it)", err)
	}
	var rep apiv1.RunReport
	if err := json.Unmarshal(b, &rep); err != nil || rep.Mode != apiv1.ModeDrill || rep.Cleanup == nil || len(rep.VMs) == 0 {
		t.Fatalf("%s is no cleaned-up drill's report: %v", screenshotReport, err)
	}
	var page bytes.Buffer
	if err := HTML(&page, &rep); err != nil {
		t.Fatal(err)
	}
	return page.Bytes()
}

// runChromium runs headless Chromium with every request sent to proxy, and returns stdout.
func runChromium(t *testing.T, chromium, dir, proxy string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
		"--user-data-dir=" + filepath.Join(dir, "profile"), "--proxy-server=" + proxy, "--proxy-bypass-list=<-loopback>",
		"--virtual-time-budget=2000"}
	cmd := exec.CommandContext(ctx, chromium, append(base, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errOut.String())
	}
	return out.String()
}
