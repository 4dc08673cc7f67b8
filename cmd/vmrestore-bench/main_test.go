package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnknownStepIsRefusedWithTheList(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-only", "orchestration,speed"}, func(string) string { return "" }, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), `no step "speed"`) || !strings.Contains(stderr.String(), "synchronous overhead") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Fatalf("a refused run printed figures: %s", stdout.String())
	}
}

// One quick step end to end: the table on stdout, the JSON where BENCH_OUT says.
func TestBenchOutReceivesTheFigures(t *testing.T) {
	out := filepath.Join(t.TempDir(), "figures.json")
	env := map[string]string{"BENCH_OUT": out}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-quick", "-only", "plans", "-dir", t.TempDir()}, func(k string) string { return env[k] }, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "plan accepted, 2000 groups") || !strings.Contains(stderr.String(), "figures written to "+out) {
		t.Fatalf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var figs []struct {
		Name  string   `json:"name"`
		Value *float64 `json:"value"`
		Met   *bool    `json:"met"`
	}
	if err := json.Unmarshal(b, &figs); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if len(figs) != 2 || figs[0].Value == nil || figs[0].Met == nil {
		t.Fatalf("figures: %s", b)
	}
}
