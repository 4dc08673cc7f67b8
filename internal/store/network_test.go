package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
)

const (
	zoneU = "01000000000000000000000000000000"
	l2U   = "02000000000000000000000000000000"
	l3U   = "03000000000000000000000000000000"
	rngA  = "04000000000000000000000000000001"
	rngB  = "04000000000000000000000000000002"
)

// netSite has one L3 with two ranges: .10-.12 (gateway .1 outside) and 10.0.1.0-.3 (gateway
// .1 inside, so three usable addresses).
func netSite(extra ...catalog.IPRange) *catalog.Site {
	s := &catalog.Site{
		Zones:      []catalog.Zone{{UUID: zoneU, Name: "z"}},
		L2Networks: []catalog.L2Network{{UUID: l2U, Name: "l2", ZoneUUID: zoneU}},
		L3Networks: []catalog.L3Network{{UUID: l3U, Name: "l3", L2NetworkUUID: l2U, IPAllocatorStrategy: catalog.IPFirstAvailable,
			IPRanges: append([]catalog.IPRange{
				{UUID: rngA, StartIP: "10.0.0.10", EndIP: "10.0.0.12", Netmask: "255.255.255.0", Gateway: "10.0.0.1"},
				{UUID: rngB, StartIP: "10.0.1.0", EndIP: "10.0.1.3", Netmask: "255.255.255.0", Gateway: "10.0.1.1"},
			}, extra...)}},
	}
	if err := s.Normalize(); err != nil {
		panic(err)
	}
	return s
}

func newNetStore(tb testing.TB, site *catalog.Site) (*store.Store, *catalog.Index) {
	tb.Helper()
	st := store.New(redistest.Start(tb).Client())
	return st, load(tb, st, site)
}

func load(tb testing.TB, st *store.Store, site *catalog.Site) *catalog.Index {
	tb.Helper()
	ctx := context.Background()
	if _, err := st.SaveCatalog(ctx, site); err != nil {
		tb.Fatal(err)
	}
	ix, err := st.LoadCatalog(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return ix
}

func ip(s string) int64 {
	v, _ := catalog.IPToLong(s)
	return v
}

func TestFirstAvailableWalksRangesAndSkipsTheGateway(t *testing.T) {
	st, ix := newNetStore(t, netSite())
	ctx := context.Background()
	var got []string
	for i := 0; i < 6; i++ {
		r, err := st.AllocateIP(ctx, l3U, ix.Ranges[l3U], fmt.Sprintf("job/%d", i), store.IPFirstAvailable, 0)
		if err != nil || r.Outcome != store.IPAllocated {
			t.Fatalf("allocation %d: %+v %v", i, r, err)
		}
		got = append(got, catalog.LongToIP(r.IP))
	}
	want := []string{"10.0.0.10", "10.0.0.11", "10.0.0.12", "10.0.1.0", "10.0.1.2", "10.0.1.3"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("FirstAvailable gave %v, want %v", got, want)
	}
	r, _ := st.AllocateIP(ctx, l3U, ix.Ranges[l3U], "job/x", store.IPFirstAvailable, 0)
	if r.Outcome != store.IPExhausted {
		t.Fatalf("a full L3 must answer exhausted, got %+v", r)
	}
	// Releasing frees exactly that address; FirstAvailable takes it again.
	if err := st.ReleaseIP(ctx, l3U, ix.Ranges[l3U], "job/1"); err != nil {
		t.Fatal(err)
	}
	r, _ = st.AllocateIP(ctx, l3U, ix.Ranges[l3U], "job/y", store.IPFirstAvailable, 0)
	if catalog.LongToIP(r.IP) != "10.0.0.11" {
		t.Fatalf("after a release FirstAvailable gave %s", catalog.LongToIP(r.IP))
	}
	checkInvariants(t, st, ix)
}

func TestStaticAddresses(t *testing.T) {
	st, ix := newNetStore(t, netSite())
	ctx := context.Background()
	alloc := func(owner, addr string) store.IPResult {
		t.Helper()
		r, err := st.AllocateIP(ctx, l3U, ix.Ranges[l3U], owner, store.IPStatic, ip(addr))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := alloc("a/0", "10.0.0.11"); r.Outcome != store.IPAllocated || catalog.LongToIP(r.IP) != "10.0.0.11" {
		t.Fatalf("static in range: %+v", r)
	}
	if r := alloc("b/0", "10.0.0.11"); r.Outcome != store.IPOccupied || r.HeldBy != "a/0" {
		t.Fatalf("taken address: %+v", r)
	}
	if r := alloc("b/0", "10.0.1.1"); r.Outcome != store.IPOccupied || r.HeldBy != "gateway" {
		t.Fatalf("the gateway inside a range: %+v", r)
	}
	if r := alloc("b/0", "10.0.9.9"); r.Outcome != store.IPNotInRange {
		t.Fatalf("outside every range: %+v", r)
	}
	if r := alloc("a/0", "10.0.0.12"); r.Outcome != store.IPExisting || catalog.LongToIP(r.IP) != "10.0.0.11" {
		t.Fatalf("an owner that holds an address gets it back: %+v", r)
	}
	checkInvariants(t, st, ix)
}

func TestRandomAllocationsAreUniqueUnderContention(t *testing.T) {
	st, ix := newNetStore(t, netSite(catalog.IPRange{UUID: "04000000000000000000000000000003", StartIP: "10.0.2.0", EndIP: "10.0.3.255",
		Netmask: "255.255.252.0", Gateway: "10.0.0.1"}))
	ctx := context.Background()
	total := 3 + 3 + 512
	var mu sync.Mutex
	seen := map[int64]string{}
	var wg sync.WaitGroup
	var exhausted int
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				owner := fmt.Sprintf("w%d/%d", w, i)
				r, err := st.AllocateIP(ctx, l3U, ix.Ranges[l3U], owner, store.IPRandom, 0)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if r.Outcome == store.IPExhausted {
					exhausted++
				} else if prev, dup := seen[r.IP]; dup {
					t.Errorf("address %s given to %s and %s", catalog.LongToIP(r.IP), prev, owner)
				} else {
					seen[r.IP] = owner
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != total || exhausted != 640-total {
		t.Fatalf("%d addresses given, %d refusals; want every one of %d given once", len(seen), exhausted, total)
	}
	checkInvariants(t, st, ix)
}

func TestRangeChangesRebuildTheBitmapAndKeepAllocations(t *testing.T) {
	site := netSite()
	st, ix := newNetStore(t, site)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		st.AllocateIP(ctx, l3U, ix.Ranges[l3U], fmt.Sprintf("j/%d", i), store.IPFirstAvailable, 0)
	}
	// Widen range A; a client with the old ranges is told to reload.
	old := ix.Ranges[l3U]
	site.L3Networks[0].IPRanges[0].EndIP = "10.0.0.14"
	ix = load(t, st, site)
	if r, _ := st.AllocateIP(ctx, l3U, old, "j/stale", store.IPFirstAvailable, 0); r.Outcome != store.IPStale {
		t.Fatalf("allocating with the old ranges must answer stale, got %+v", r)
	}
	r, _ := st.AllocateIP(ctx, l3U, ix.Ranges[l3U], "j/3", store.IPFirstAvailable, 0)
	if catalog.LongToIP(r.IP) != "10.0.0.13" {
		t.Fatalf("the widened range gives .13 next, got %s", catalog.LongToIP(r.IP))
	}
	checkInvariants(t, st, ix)
}

func TestMacsAreUniqueAndIdempotent(t *testing.T) {
	st, ix := newNetStore(t, netSite())
	ctx := context.Background()
	if m, err := st.ClaimMac(ctx, "a/0", "fa:00:00:00:00:01"); err != nil || m != "fa:00:00:00:00:01" {
		t.Fatalf("claim: %s %v", m, err)
	}
	if _, err := st.ClaimMac(ctx, "b/0", "fa:00:00:00:00:01"); !errors.Is(err, store.ErrMacTaken) {
		t.Fatalf("a taken MAC: %v", err)
	}
	if m, _ := st.ClaimMac(ctx, "a/0", "fa:00:00:00:00:02"); m != "fa:00:00:00:00:01" {
		t.Fatalf("a re-run gets its MAC back, got %s", m)
	}
	st.ReleaseMac(ctx, "a/0")
	st.ReleaseMac(ctx, "a/0")
	if m, err := st.ClaimMac(ctx, "b/0", "fa:00:00:00:00:01"); err != nil || m != "fa:00:00:00:00:01" {
		t.Fatalf("a released MAC is free again: %s %v", m, err)
	}
	checkInvariants(t, st, ix)
}

// AllocateNIC takes the address and the MAC in one round trip: a re-run gets both back, a
// MAC held by another owner comes back empty (the address is still taken), the MAC is taken
// even when the address is refused, and releasing the owner gives back both; on a server
// that does not know the scripts yet (NOSCRIPT in the pipeline), it loads them and goes on.
func TestAllocateNICTakesAddressAndMacTogether(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	st := store.New(srv.Client())
	ix := load(t, st, netSite())
	srv.Client().ScriptFlush(ctx)
	r, err := st.AllocateNIC(ctx, l3U, ix.Ranges[l3U], "a/0", store.IPFirstAvailable, 0, "fa:00:00:00:00:01")
	if err != nil || r.IP.Outcome != store.IPAllocated || r.IP.IP != ip("10.0.0.10") || r.Mac != "fa:00:00:00:00:01" {
		t.Fatalf("first NIC: %+v %v", r, err)
	}
	r, err = st.AllocateNIC(ctx, l3U, ix.Ranges[l3U], "a/0", store.IPFirstAvailable, 0, "fa:00:00:00:00:09")
	if err != nil || r.IP.Outcome != store.IPExisting || r.IP.IP != ip("10.0.0.10") || r.Mac != "fa:00:00:00:00:01" {
		t.Fatalf("a re-run gets its address and MAC back: %+v %v", r, err)
	}
	r, err = st.AllocateNIC(ctx, l3U, ix.Ranges[l3U], "b/0", store.IPFirstAvailable, 0, "fa:00:00:00:00:01")
	if err != nil || r.IP.Outcome != store.IPAllocated || r.IP.IP != ip("10.0.0.11") || r.Mac != "" {
		t.Fatalf("a MAC held by another owner: %+v %v", r, err)
	}
	if m, err := st.ClaimMac(ctx, "b/0", "fa:00:00:00:00:02"); err != nil || m != "fa:00:00:00:00:02" {
		t.Fatalf("drawing again: %s %v", m, err)
	}
	r, err = st.AllocateNIC(ctx, l3U, ix.Ranges[l3U], "c/0", store.IPStatic, ip("10.0.0.10"), "fa:00:00:00:00:03")
	if err != nil || r.IP.Outcome != store.IPOccupied || r.Mac != "fa:00:00:00:00:03" {
		t.Fatalf("an occupied static address: %+v %v", r, err)
	}
	for _, owner := range []string{"a/0", "b/0", "c/0"} {
		if err := st.ReleaseIP(ctx, l3U, ix.Ranges[l3U], owner); err != nil {
			t.Fatal(err)
		}
		if err := st.ReleaseMac(ctx, owner); err != nil {
			t.Fatal(err)
		}
	}
	if macs, err := st.UsedMacs(ctx); err != nil || len(macs) != 0 {
		t.Fatalf("MACs left after the release: %v %v", macs, err)
	}
	if n, err := st.CountUsedIPs(ctx, l3U); err != nil || n != 0 {
		t.Fatalf("addresses left after the release: %d %v", n, err)
	}
	checkInvariants(t, st, ix)
}

func checkInvariants(tb testing.TB, st *store.Store, ix *catalog.Index) {
	tb.Helper()
	p, err := st.CheckInvariants(context.Background(), ix)
	if err != nil || len(p) > 0 {
		tb.Fatalf("invariants: %v %v", p, err)
	}
}
