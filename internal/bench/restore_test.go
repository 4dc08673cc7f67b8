package bench

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkRestore runs one synchronous restore of the bench group at a time through the
// api and the worker of a rig (private redis-server, tiny raw volume, simulator hypervisor):
// ns/op is a restore's latency on an idle system, allocs/op what the api and the worker
// allocate for it, redis-reads/op the requests Redis read for it, that is its round trips
// (a pipeline counts once; idle polls included, about one per op), and cpu-ns/op the CPU
// time it cost this process and redis-server together (user and system; a loaded machine
// inflates it). Compare runs with benchstat:
//
//	go test ./internal/bench -run '^$' -bench Restore -benchmem -count 6 > new.txt
func BenchmarkRestore(b *testing.B) {
	ctx := context.Background()
	r, err := newRig(ctx, Config{Dir: b.TempDir()}, 4, true)
	if err != nil {
		b.Fatal(err)
	}
	defer r.close()
	// One restore first: the worker's first job loads the catalog and warms its pools.
	if status, body, err := r.restore("warm-up", false); err != nil || status != 200 {
		b.Fatalf("warm-up restore: %d %s %v", status, body, err)
	}
	before, err := r.cpu(ctx)
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		if status, body, err := r.restore(fmt.Sprintf("bench-%d", i), false); err != nil || status != 200 {
			b.Fatalf("restore %d: %d %s %v", i, status, body, err)
		}
	}
	after, err := r.cpu(ctx)
	if err != nil {
		b.Fatal(err)
	}
	per := before.per(after, b.N)
	b.ReportMetric(per.roundTrips, "redis-reads/op")
	b.ReportMetric(float64(per.total()), "cpu-ns/op")
}
