package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/testrig"
)

// A worker whose site names a backup storage folder it does not have answers /readyz 503
// naming that storage and its path (and its metrics say it is unreadable); once the folder
// exists, the worker is ready again.
func TestWorkerReadyzNamesUnreadableBackupStorages(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "not-mounted", "bs-dr")
	e := newEnv(t, envOptions{site: func(s *catalog.Site) {
		s.BackupStorages = append(s.BackupStorages, catalog.BackupStorage{UUID: "0b0000000000000000000000000000d1", Name: "bs-dr", URL: missing})
	}})
	readyz := "http://" + e.worker.MetricsAddr + "/readyz"
	get := func() (int, string) {
		resp, err := http.Get(readyz)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var body struct{ Reason string }
		json.Unmarshal(b, &body)
		return resp.StatusCode, body.Reason
	}
	wait := func(what string, ok func(code int, reason string) bool) (int, string) {
		var code int
		var reason string
		done := testrig.Within(15*time.Second, func() bool {
			code, reason = get()
			return ok(code, reason)
		})
		mustf(t, done, "%s: /readyz still answers %d %q", what, code, reason)
		return code, reason
	}
	_, reason := wait("not ready", func(code int, reason string) bool { return code == 503 && strings.Contains(reason, "bs-dr") })
	for _, want := range []string{"cannot read 1 backup storage(s)", "bs-dr[uuid:0b0000000000000000000000000000d1]", missing, "does not exist"} {
		if !strings.Contains(reason, want) {
			t.Fatalf("the reason %q lacks %q", reason, want)
		}
	}
	if strings.Contains(reason, demosite.BackupUUID) {
		t.Fatalf("a readable storage is named: %q", reason)
	}
	m := scrape(t, "http://"+e.worker.MetricsAddr+"/metrics")
	for _, want := range []string{`vmrestore_backup_storage_readable{backup_storage="0b0000000000000000000000000000d1",name="bs-dr"} 0`,
		`vmrestore_backup_storage_readable{backup_storage="` + demosite.BackupUUID + `",name="bs-main"} 1`} {
		mustf(t, strings.Contains(m, want), "worker metrics lack %q", want)
	}
	if err := os.MkdirAll(missing, 0o750); err != nil {
		t.Fatal(err)
	}
	wait("ready once mounted", func(code int, _ string) bool { return code == 200 })
}
