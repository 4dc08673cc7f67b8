package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWritesUpdatesAndRemovesStale(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "vmrestore-renamed.json")
	other := filepath.Join(dir, "someone-elses.json")
	for _, p := range []string{stale, other} {
		if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out, errs bytes.Buffer
	if code := run([]string{"-dir", dir}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	if n := strings.Count(out.String(), ": written"); n != 4 {
		t.Errorf("want 4 dashboards written, got %d:\n%s", n, out.String())
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) || !strings.Contains(out.String(), "vmrestore-renamed.json: removed") {
		t.Errorf("a vmrestore-*.json the code does not build must be removed and said so:\n%s", out.String())
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file not named vmrestore-*.json must be left alone: %v", err)
	}

	out.Reset()
	if code := run([]string{"-dir", dir}, &out, &errs); code != 0 || strings.Count(out.String(), ": unchanged") != 4 {
		t.Errorf("second run: exit %d, want every dashboard unchanged:\n%s", code, out.String())
	}

	out.Reset()
	errs.Reset()
	if code := run([]string{"-dir", filepath.Join(dir, "missing")}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "repository root") {
		t.Errorf("a missing directory: exit %d, %q", code, errs.String())
	}
}
