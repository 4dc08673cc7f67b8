package app

import (
	"context"
	"errors"
	"slices"

	"golang.org/x/sync/errgroup"
)

// runGroup is a process's parts, started in order by small named start functions and
// stopped in reverse start order: what was started last (the listener, which takes requests)
// stops first, what was started first (the Redis connection) closes last.
//
// Long-running parts run in an errgroup: when one fails, or the parent context ends, the
// group's context ends and the stops run. A start function that fails stops the parts
// started before it, in the same reverse order.
type runGroup struct {
	ctx    context.Context // ends when the process stops or one of its parts fails
	cancel context.CancelFunc
	g      *errgroup.Group
	stops  []func()
}

// startStep starts one part of a process; it registers its stop with onStop and its
// long-running loops with run.
type startStep func(r *runGroup) error

func newRunGroup(parent context.Context) *runGroup {
	ctx, cancel := context.WithCancel(parent)
	g, gctx := errgroup.WithContext(ctx)
	return &runGroup{ctx: gctx, cancel: cancel, g: g}
}

// start runs steps in order. When one fails, the parts already started are stopped and its
// error is returned; otherwise the group's stops run when its context ends.
func (r *runGroup) start(steps ...startStep) error {
	for _, step := range steps {
		if err := step(r); err != nil {
			r.cancel()
			r.stopAll()
			_ = r.g.Wait()
			return err
		}
	}
	r.g.Go(func() error {
		<-r.ctx.Done()
		r.stopAll()
		return r.ctx.Err()
	})
	return nil
}

// onStop registers what stops the part just started.
func (r *runGroup) onStop(stop func()) { r.stops = append(r.stops, stop) }

// run runs a part's loop until the group's context ends.
func (r *runGroup) run(loop func(ctx context.Context)) {
	r.g.Go(func() error {
		loop(r.ctx)
		return nil
	})
}

// serve runs a part that returns an error when it fails (a listener); its failure stops the
// whole process.
func (r *runGroup) serve(fn func() error) { r.g.Go(fn) }

func (r *runGroup) stopAll() {
	for _, stop := range slices.Backward(r.stops) {
		stop()
	}
	r.stops = nil
}

// wait blocks until every part has stopped and returns why the process stopped.
func (r *runGroup) wait() error { return r.g.Wait() }

// stop ends the process and waits for it; a stop asked for is not an error.
func (r *runGroup) stop() error {
	r.cancel()
	err := r.wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
