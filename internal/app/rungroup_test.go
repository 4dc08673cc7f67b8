package app

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// TestRunGroupStopsInReverseStartOrder: at shutdown the last part started (the listener)
// stops first and the first (Redis) last; a failing start step stops only what started
// before it, in the same order, and its error is returned.
func TestRunGroupStopsInReverseStartOrder(t *testing.T) {
	var stopped []string
	part := func(name string) startStep {
		return func(r *runGroup) error {
			r.onStop(func() { stopped = append(stopped, name) })
			return nil
		}
	}
	r := newRunGroup(context.Background())
	loopEnded := make(chan struct{})
	loop := func(r *runGroup) error {
		r.run(func(ctx context.Context) { <-ctx.Done(); close(loopEnded) })
		return nil
	}
	if err := r.start(part("redis"), part("workers"), loop, part("listener")); err != nil {
		t.Fatal(err)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("a stop asked for returned %v", err)
	}
	<-loopEnded
	if want := []string{"listener", "workers", "redis"}; !slices.Equal(stopped, want) {
		t.Fatalf("stopped %v, want %v", stopped, want)
	}

	stopped = nil
	boom := errors.New("listen: address in use")
	r = newRunGroup(context.Background())
	err := r.start(part("redis"), part("workers"), func(*runGroup) error { return boom }, part("never"))
	if !errors.Is(err, boom) {
		t.Fatalf("start returned %v, want %v", err, boom)
	}
	if want := []string{"workers", "redis"}; !slices.Equal(stopped, want) {
		t.Fatalf("after a failed start stopped %v, want %v", stopped, want)
	}
}

// TestRunGroupPartFailureStopsAll: a part that fails while running stops the others, and
// Wait returns its error.
func TestRunGroupPartFailureStopsAll(t *testing.T) {
	var stopped []string
	boom := errors.New("serve: listener closed")
	fail := make(chan struct{})
	r := newRunGroup(context.Background())
	err := r.start(func(r *runGroup) error {
		r.onStop(func() { stopped = append(stopped, "redis") })
		r.serve(func() error { <-fail; return boom })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	close(fail)
	if err := r.wait(); !errors.Is(err, boom) {
		t.Fatalf("wait returned %v, want %v", err, boom)
	}
	if !slices.Equal(stopped, []string{"redis"}) {
		t.Fatalf("stopped %v", stopped)
	}
}
