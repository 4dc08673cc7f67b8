package placement_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/placement"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
)

// bigSite is the scale the placement target is stated for: 10,000 hosts in 100 clusters,
// 200 L3 networks, 50,000 addresses in use.
type bigSite struct {
	st   *store.Store
	ix   *catalog.Index
	l3s  []string
	seq  int
	lock sync.Mutex
}

var (
	bigOnce  sync.Once
	big      *bigSite
	bigRedis *redistest.Server
)

func TestMain(m *testing.M) {
	code := m.Run()
	if bigRedis != nil {
		bigRedis.Kill()
	}
	os.Exit(code)
}

func loadBigSite(b *testing.B) *bigSite {
	b.Helper()
	bigOnce.Do(func() {
		r, err := redistest.StartShared()
		if err != nil {
			b.Fatal(err)
		}
		bigRedis = r
		st := store.New(r.Client())
		site := demosite.Synthetic(demosite.Scale{Clusters: 100, HostsPerCluster: 100, L2s: 200, L2sPerCluster: 6, StorageDir: "/srv/bench"})
		ctx := context.Background()
		if _, err := st.SaveCatalog(ctx, site); err != nil {
			b.Fatal(err)
		}
		ix, err := st.LoadCatalog(ctx)
		if err != nil {
			b.Fatal(err)
		}
		big = &bigSite{st: st, ix: ix}
		for _, l3 := range site.L3Networks {
			big.l3s = append(big.l3s, l3.UUID)
		}
		// 50,000 addresses in use: 250 on each L3.
		var wg sync.WaitGroup
		errs := make(chan error, len(big.l3s))
		sem := make(chan struct{}, 32)
		for _, l3 := range big.l3s {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				for i := 0; i < 250; i++ {
					if _, err := st.AllocateIP(ctx, l3, ix.Ranges[l3], fmt.Sprintf("preload/%s-%d", l3, i), store.IPFirstAvailable, 0); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	})
	if big == nil {
		b.Fatal("big site setup failed")
	}
	return big
}

// placeOne places, reserves and addresses one VM, as the place and network stages do.
func (s *bigSite) placeOne(ctx context.Context, strategy string) error {
	s.lock.Lock()
	s.seq++
	seq := s.seq
	s.lock.Unlock()
	job := fmt.Sprintf("%032x", seq)
	l3 := s.l3s[rand.IntN(len(s.l3s))]
	req := placement.Request{CPU: 2, Memory: 4 << 30, L3NetworkUUIDs: []string{l3}, HostStrategy: strategy,
		Volumes: []placement.Volume{{UUID: job, Size: 20 << 30, Root: true}}}
	if _, err := placement.Place(ctx, s.ix, s.st, job, req); err != nil {
		return err
	}
	if r, err := s.st.AllocateIP(ctx, l3, s.ix.Ranges[l3], job+"/nic0", store.IPRandom, 0); err != nil || r.Outcome != store.IPAllocated {
		return fmt.Errorf("allocate ip: %v %v", r, err)
	}
	_, err := s.st.ClaimMac(ctx, job+"/nic0", fmt.Sprintf("fa:%02x:%02x:%02x:%02x:00", seq>>24&0xff, seq>>16&0xff, seq>>8&0xff, seq&0xff))
	return err
}

func reportLatencies(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

// BenchmarkPlaceAndReserve10kHosts: placement, capacity reservation, IP and MAC allocation for
// one VM on the 10,000-host site, one at a time. Target: p99 ≤ 5 ms.
func BenchmarkPlaceAndReserve10kHosts(b *testing.B) {
	for _, strategy := range []string{catalog.HostDefault, catalog.HostLeastVmPreferred} {
		b.Run(strategy, func(b *testing.B) {
			s := loadBigSite(b)
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if err := s.placeOne(ctx, strategy); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			reportLatencies(b, lat)
		})
	}
}

// BenchmarkPlaceAndReserve10kHostsConcurrent runs the same with placements racing for the
// same hosts and ranges, at 1 and 4 goroutines per CPU. Latency here includes waiting for the
// two cores and for Redis; ns/op is the cost per placement at that load.
func BenchmarkPlaceAndReserve10kHostsConcurrent(b *testing.B) {
	for _, par := range []int{1, 4} {
		b.Run(fmt.Sprintf("goroutines-per-cpu-%d", par), func(b *testing.B) {
			s := loadBigSite(b)
			ctx := context.Background()
			var mu sync.Mutex
			lat := make([]time.Duration, 0, b.N)
			b.SetParallelism(par)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					t0 := time.Now()
					if err := s.placeOne(ctx, catalog.HostDefault); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			reportLatencies(b, lat)
		})
	}
}

// BenchmarkCatalogIndexMemory reports the heap an index of the 10,000-host site holds; it is
// proportional to the site and independent of how many restores run.
func BenchmarkCatalogIndexMemory(b *testing.B) {
	site := demosite.Synthetic(demosite.Scale{Clusters: 100, HostsPerCluster: 100, L2s: 200, L2sPerCluster: 6, StorageDir: "/srv"})
	var keep []*catalog.Index
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < b.N; i++ {
		keep = append(keep[:0], catalog.NewIndex(site, int64(i)))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "index-MiB")
	runtime.KeepAlive(keep)
}
