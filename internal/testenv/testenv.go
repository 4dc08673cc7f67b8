// Package testenv decides what a test does when a tool it needs is missing: outside CI it
// skips, and says so on stderr even without -v (a silent skip hides untested code); under
// CI=true it fails, because CI installs every prerequisite and a skip there means a broken
// install step.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true, as .ci/run and most CI systems set).
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips the test, or fails it under CI, with why and how to install what is missing.
func Missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		tb.Fatalf("CI=true and a prerequisite is missing: %s", msg)
	}
	fmt.Fprintf(os.Stderr, "SKIP %s: %s\n", tb.Name(), msg)
	tb.Skip(msg)
}

// LookPath returns the path of a command, or calls Missing with the install hint.
func LookPath(tb testing.TB, name, installHint string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(tb, "%s is not on PATH; %s", name, installHint)
	}
	return p
}
