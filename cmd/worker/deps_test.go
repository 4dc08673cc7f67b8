package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoEmbeddedMode keeps the worker binary free of what only the api's embedded mode
// needs: the in-process Redis and the generated demo site (go list -deps ./cmd/worker).
func TestLinksNoEmbeddedMode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed %d packages; expected the worker's whole import graph:\n%s", len(deps), out)
	}
	var sawApp bool
	for _, d := range deps {
		sawApp = sawApp || strings.HasSuffix(d, "/internal/app")
		for _, f := range []string{"github.com/alicebob/miniredis", "/internal/demosite", "/internal/embedded"} {
			if strings.Contains(d, f) {
				t.Errorf("the worker links %s (matches %q): only the api's embedded mode may (internal/embedded)", d, f)
			}
		}
	}
	if !sawApp {
		t.Errorf("go list -deps does not list internal/app; the test no longer looks at the worker's graph:\n%s", out)
	}
}
