package testrig

import (
	"sync"
	"testing"
	"time"
)

// Eventually and Within check their condition at once, then after 10 ms, and back off by half
// again each time up to every 250 ms: a condition that holds soon is seen soon, and a long
// wait does not poll an api hundreds of times a second.
const (
	firstPoll = 10 * time.Millisecond
	maxPoll   = 250 * time.Millisecond
)

// Eventually waits until cond holds, checking it ever less often (10 ms to 250 ms apart),
// and fails the test with the message when it still does not after timeout. It returns as soon as cond holds,
// so a generous timeout costs nothing when things work.
func Eventually(tb testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	tb.Helper()
	if !Within(timeout, cond) {
		tb.Fatalf("after %v: "+format, append([]any{timeout}, args...)...)
	}
}

// Within reports whether cond held within timeout, checked as Eventually does; for waits
// whose failure is not fatal.
func Within(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for wait := firstPoll; ; wait = min(wait*3/2, maxPoll) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
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
