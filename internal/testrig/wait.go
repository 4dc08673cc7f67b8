package testrig

import (
	"sync"
	"testing"
	"time"
)

// pollEvery is how often Eventually checks its condition.
const pollEvery = 25 * time.Millisecond

// Eventually waits until cond holds, checking it every few milliseconds, and fails the test
// with the message when it still does not after timeout. It returns as soon as cond holds,
// so a generous timeout costs nothing when things work.
func Eventually(tb testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	tb.Helper()
	if !Within(timeout, cond) {
		tb.Fatalf("after %v: "+format, append([]any{timeout}, args...)...)
	}
}

// Within reports whether cond held within timeout, checking it every few milliseconds; for
// waits whose failure is not fatal.
func Within(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
}

// Clock is a settable time source: the real time plus an offset that Advance moves forward.
// Give its Now to what a test wants to age without waiting (Options.Clock: the sessions).
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}
