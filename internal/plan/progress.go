package plan

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/store"
)

// listingCache keeps the item listings of the plans read most recently: a listing never
// changes once a plan is accepted, and parsing 10,000 items is a third of a progress read.
// It holds at most a few plans, so the api's memory stays bounded.
type listingCache struct {
	mu    sync.Mutex
	order []string
	items map[string][]store.PlanItem
}

const listingsKept = 8

var listings = &listingCache{items: map[string][]store.PlanItem{}}

func (c *listingCache) get(ctx context.Context, st *store.Store, uuid string) ([]store.PlanItem, error) {
	c.mu.Lock()
	if it, ok := c.items[uuid]; ok {
		c.mu.Unlock()
		return it, nil
	}
	c.mu.Unlock()
	it, err := st.PlanIndex(ctx, uuid)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[uuid]; !ok {
		c.items[uuid] = it
		c.order = append(c.order, uuid)
		if len(c.order) > listingsKept {
			delete(c.items, c.order[0])
			c.order = c.order[1:]
		}
	}
	return it, nil
}

// throughputWindow is how far back throughput looks.
const throughputWindow = 60 * time.Second

// Progress builds a plan's report. With items false only the totals are read (no per-item
// work); filter keeps only items in one state ("" keeps all).
func Progress(ctx context.Context, st *store.Store, uuid string, items bool, filter string) (*apiv1.PlanReport, error) {
	meta, ps, err := st.GetPlan(ctx, uuid)
	if err != nil {
		return nil, err
	}
	r := &apiv1.PlanReport{UUID: meta.UUID, Name: meta.Name, State: ps.State, Reason: ps.Reason, CreatedAt: meta.CreatedAt,
		Concurrency: meta.Concurrency, ItemCount: meta.ItemCount, Counts: ps.Counts, BytesDone: ps.DataDone,
		BytesTotal: meta.DataTotal, VirtualBytesDone: ps.BytesDone, VirtualBytesTotal: meta.BytesTotal}
	// A plan accepted before data was counted has only virtual bytes: they stand in.
	legacy := meta.DataTotal == 0 && meta.BytesTotal > 0
	if legacy {
		r.BytesDone, r.BytesTotal = ps.BytesDone, meta.BytesTotal
	}
	if !ps.FinishedAt.IsZero() {
		f := ps.FinishedAt
		r.FinishedAt = &f
	}
	samples, err := st.PlanSamples(ctx, uuid)
	if err != nil {
		return nil, err
	}
	r.ThroughputBytesPerSecond = throughput(samples, ps.DataDone, time.Now())

	listing, err := listings.get(ctx, st, uuid)
	if err != nil {
		return nil, err
	}
	statuses, err := st.PlanStatuses(ctx, uuid)
	if err != nil {
		return nil, err
	}
	tiers := map[int]*apiv1.TierReport{}
	var remaining int64
	if items {
		r.Items = make([]apiv1.ItemReport, 0, len(listing))
	}
	for _, it := range listing {
		s, started := statuses[it.Index]
		if !started {
			s = store.ItemStatus{State: store.ItemPending}
		}
		t := tiers[it.Tier]
		if t == nil {
			t = &apiv1.TierReport{Tier: it.Tier, Counts: map[string]int{}}
			tiers[it.Tier] = t
		}
		dataDone, dataTotal := s.DataDone, it.DataTotal
		if legacy {
			dataDone, dataTotal = s.BytesDone, it.BytesTotal
		}
		t.Counts[s.State]++
		if s.State == store.ItemRunning && s.Stage == job.StageHydrate {
			r.RunningFromBackups++
		}
		t.BytesDone += dataDone
		t.BytesTotal += dataTotal
		t.VirtualBytesDone += s.BytesDone
		t.VirtualBytesTotal += it.BytesTotal
		if s.State == store.ItemPending || s.State == store.ItemRunning {
			remaining += dataTotal - dataDone
		}
		if items && (filter == "" || filter == s.State) {
			r.Items = append(r.Items, apiv1.ItemReport{Index: it.Index, Tier: it.Tier, GroupUUID: it.GroupUUID, Name: it.Name,
				State: s.State, Stage: s.Stage, JobUUID: s.Job, VMUUID: s.VM, Attempt: s.Attempt, BytesDone: dataDone,
				BytesTotal: dataTotal, VirtualBytesDone: s.BytesDone, VirtualBytesTotal: it.BytesTotal, ErrorCode: s.Code, Error: s.Details})
		}
	}
	for _, t := range tiers {
		r.Tiers = append(r.Tiers, *t)
	}
	sort.Slice(r.Tiers, func(a, b int) bool { return r.Tiers[a].Tier < r.Tiers[b].Tier })
	if r.ThroughputBytesPerSecond > 0 && !store.PlanEnded(r.State) {
		eta := float64(remaining) / r.ThroughputBytesPerSecond
		r.EtaSeconds = &eta
	}
	return r, nil
}

// throughput is the rate of data done over the last minute of samples (newest first).
func throughput(samples []store.PlanSample, done int64, now time.Time) float64 {
	if len(samples) == 0 {
		return 0
	}
	oldest := samples[0]
	for _, s := range samples {
		if now.Sub(s.At) > throughputWindow {
			break
		}
		oldest = s
	}
	dt := now.Sub(oldest.At).Seconds()
	if dt < 1 || done <= oldest.DataDone {
		return 0
	}
	return float64(done-oldest.DataDone) / dt
}
