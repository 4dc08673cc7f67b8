package app

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestLoggerWritesEachKeyOnce(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(Config{LogFormat: "json", LogLevel: "info"}, &buf)
	job := log.With("job", "0123456789abcdef0123456789abcdef")
	job.Info("restore ended without a VM", "job", "0123456789abcdef0123456789abcdef", "code", "SYS.1003")
	job.Info("simulated hypervisor recorded the VM", "vm", "v1")
	job.WithGroup("g").Info("grouped", "job", "inner")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got %q", buf.String())
	}
	for i, l := range lines[:2] {
		if n := strings.Count(l, `"job":`); n != 1 {
			t.Errorf("line %d has %d job keys: %s", i, n, l)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["job"] != "0123456789abcdef0123456789abcdef" {
			t.Errorf("line %d: %v %s", i, err, l)
		}
	}
	if !strings.Contains(lines[0], `"code":"SYS.1003"`) || !strings.Contains(lines[1], `"vm":"v1"`) {
		t.Errorf("other attributes lost: %s", buf.String())
	}
	// In a group a key cannot clash with the top-level one: both stay.
	if !strings.Contains(lines[2], `"g":{"job":"inner"}`) || strings.Count(lines[2], `"job":`) != 2 {
		t.Errorf("grouped line: %s", lines[2])
	}
}

// A logger made With attributes builds nothing until it writes a line: the per-job logger of
// a job that logs nothing at the enabled level costs no handler of its own.
func TestLoggerWithBuildsOnFirstLine(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(Config{LogFormat: "json", LogLevel: "warn"}, &buf)
	job := log.With("job", "0123456789abcdef0123456789abcdef").With("stage", "clone")
	job.Info("below the level")
	if d := job.Handler().(*deferredAttrs); d.built != nil {
		t.Fatalf("a logger that wrote nothing built its handler")
	}
	job.Warn("written", "job", "0123456789abcdef0123456789abcdef")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["job"] != "0123456789abcdef0123456789abcdef" || m["stage"] != "clone" ||
		strings.Count(buf.String(), `"job":`) != 1 {
		t.Fatalf("line %s: %v", buf.String(), err)
	}
}
