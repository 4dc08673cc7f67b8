package store

import (
	"context"
	"fmt"
	"sync"
)

// Events fans the job completion, cancel and clone-slot channels out to in-process watchers over one
// subscription. Watch before reading a job record: an event published after the watch
// started cannot be missed while the subscription is up. Pub/sub is at-most-once (a
// reconnect can drop events), so a watcher must also re-read the record now and then.
type Events struct {
	mu      sync.Mutex
	watches map[string]map[chan struct{}]struct{}
	cancels map[string]map[chan struct{}]struct{}
	slots   map[string]map[chan struct{}]struct{} // backup storage → waiters for a slot
}

// SubscribeEvents subscribes to the job channels and dispatches until ctx ends. It returns
// once the subscription is confirmed.
func (s *Store) SubscribeEvents(ctx context.Context) (*Events, error) {
	channels := []string{ChannelJobDone, ChannelJobCancel, ChannelSlotFree}
	ps := s.rdb.Subscribe(ctx, channels...)
	for range channels {
		if _, err := ps.Receive(ctx); err != nil {
			ps.Close()
			return nil, fmt.Errorf("subscribe to job events: %w", err)
		}
	}
	e := &Events{watches: map[string]map[chan struct{}]struct{}{}, cancels: map[string]map[chan struct{}]struct{}{},
		slots: map[string]map[chan struct{}]struct{}{}}
	go func() {
		defer ps.Close()
		ch := ps.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-ch:
				if !ok {
					return
				}
				switch m.Channel {
				case ChannelJobDone:
					e.notify(e.watches, m.Payload)
				case ChannelJobCancel:
					e.notify(e.cancels, m.Payload)
				case ChannelSlotFree:
					e.notify(e.slots, m.Payload)
				}
			}
		}
	}()
	return e, nil
}

func (e *Events) notify(set map[string]map[chan struct{}]struct{}, uuid string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for ch := range set[uuid] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (e *Events) add(set map[string]map[chan struct{}]struct{}, uuid string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	e.mu.Lock()
	if set[uuid] == nil {
		set[uuid] = map[chan struct{}]struct{}{}
	}
	set[uuid][ch] = struct{}{}
	e.mu.Unlock()
	return ch, func() {
		e.mu.Lock()
		delete(set[uuid], ch)
		if len(set[uuid]) == 0 {
			delete(set, uuid)
		}
		e.mu.Unlock()
	}
}

// WatchJob returns a channel that receives when the job's completion is published, and a
// function to stop watching.
func (e *Events) WatchJob(uuid string) (<-chan struct{}, func()) { return e.add(e.watches, uuid) }

// WatchCancel returns a channel that receives when a cancel of the job is published.
func (e *Events) WatchCancel(uuid string) (<-chan struct{}, func()) { return e.add(e.cancels, uuid) }

// WatchSlots returns a channel that receives when a clone slot of a backup storage is
// released, and a function to stop watching.
func (e *Events) WatchSlots(backupStorage string) (<-chan struct{}, func()) {
	return e.add(e.slots, backupStorage)
}

// SubscribePlanEvents delivers, until ctx ends, the channel of every job that ends
// (ChannelJobDone) and every plan woken (ChannelPlanWake). Like all pub/sub it may drop
// events; it is a hint to act sooner, never the only trigger.
func (s *Store) SubscribePlanEvents(ctx context.Context) <-chan string {
	out := make(chan string, 256)
	ps := s.rdb.Subscribe(ctx, ChannelJobDone, ChannelPlanWake)
	go func() {
		defer close(out)
		defer ps.Close()
		ch := ps.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-ch:
				if !ok {
					return
				}
				select {
				case out <- m.Channel:
				default:
				}
			}
		}
	}()
	return out
}
