package testrig

import (
	"testing"
	"time"
)

func TestWithinReturnsAsSoonAsTheConditionHolds(t *testing.T) {
	start, calls := time.Now(), 0
	if !Within(time.Minute, func() bool { calls++; return calls == 3 }) {
		t.Fatal("Within gave up on a condition that held")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a condition true at the third check took %v", took)
	}
	start = time.Now()
	if Within(300*time.Millisecond, func() bool { return false }) {
		t.Fatal("Within reported a condition that never held")
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("Within gave up after %v, before its timeout", took)
	}
}

func TestClockAdvances(t *testing.T) {
	var c Clock
	if d := time.Until(c.Now()); d > time.Second || d < -time.Second {
		t.Fatalf("a new clock is %v off the real time", d)
	}
	c.Advance(time.Hour)
	if d := time.Until(c.Now()); d < 59*time.Minute {
		t.Fatalf("after Advance(1h) the clock is %v ahead", d)
	}
}
