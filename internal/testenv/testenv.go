// Package testenv decides what a test does when a tool it needs is missing: outside CI it
// skips, and says so on stderr even without -v (a silent skip hides untested code); under
// CI=true it fails, because CI installs every prerequisite and a skip there means a broken
// install step. It also sets how many tests of a package that mostly waits run at once
// (WaitingTests).
package testenv

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
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

// WaitingTests raises go test's -parallel to n for a package whose parallel tests mostly
// wait (on worker processes, the queue's timers, emulated guests, Redis restarts) rather
// than compute: the default, GOMAXPROCS, runs two at a time on a 2-core machine, which
// leaves the machine idle while both wait. A -parallel given on the command line is kept.
// Call it from TestMain before m.Run.
func WaitingTests(n int) {
	if !flag.Parsed() {
		flag.Parse()
	}
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given && n > runtime.GOMAXPROCS(0) {
		_ = flag.Set("test.parallel", strconv.Itoa(n))
	}
}
