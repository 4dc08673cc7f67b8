package plan_test

import (
	"context"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/plan"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
)

func newRunnerFixture(t *testing.T, n int, actual int64) (*scaleFixture, *plan.Runner) {
	t.Helper()
	c := redistest.Start(t).Client()
	f := fillFixture(t, store.New(c), n, actual)
	r := &plan.Runner{Store: f.st, Queue: queue.NewClient(c, 3), Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Interval: time.Hour}
	return f, r
}

// A plan accepted while the runners wait starts its first items at once: the acceptance
// wakes them (they do not wait for their next round, an hour here).
func TestAcceptedPlanWakesTheRunner(t *testing.T) {
	f, r := newRunnerFixture(t, 4, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	time.Sleep(300 * time.Millisecond) // the runner's first round, over no plan, and its subscription
	res, err := f.svc.Submit(ctx, f.spec("wake"), "admin", true, false)
	if err != nil {
		t.Fatal(err)
	}
	accepted := time.Now()
	for {
		running, err := f.st.PlanRunningItems(ctx, res.UUID)
		if err != nil {
			t.Fatal(err)
		}
		if len(running) > 0 {
			t.Logf("first items started %v after the plan was accepted", time.Since(accepted).Round(time.Millisecond))
			return
		}
		if time.Since(accepted) > 5*time.Second {
			t.Fatal("no item started 5 s after the plan was accepted: the runner was not woken")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A plan's bytes, throughput and ETA count backup data, not virtual size: groups of 40 GiB
// volumes holding 1 GiB each report 1 GiB per item, and the ETA follows the data rate; the
// virtual sizes are reported beside them.
func TestPlanProgressCountsData(t *testing.T) {
	const n = 4
	f, r := newRunnerFixture(t, n, 1<<30)
	ctx := context.Background()
	res, err := f.svc.Submit(ctx, f.spec("data"), "admin", true, false)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := plan.Progress(ctx, f.st, res.UUID, true, "")
	if err != nil {
		t.Fatal(err)
	}
	if rep.BytesTotal != n<<30 || rep.VirtualBytesTotal != n*40<<30 {
		t.Fatalf("totals: data %d, virtual %d; want %d and %d", rep.BytesTotal, rep.VirtualBytesTotal, n<<30, n*40<<30)
	}
	// The throughput is measured from a sample of 10 s ago, when nothing was done.
	if err := f.st.AddPlanSample(ctx, res.UUID, time.Now().Add(-10*time.Second), 0); err != nil {
		t.Fatal(err)
	}
	// The runner starts the items; their jobs copy: half the data and most of the virtual
	// size of item 0 (its holes pass at once).
	if err := r.Tick(ctx, res.UUID); err != nil {
		t.Fatal(err)
	}
	job0 := plan.JobUUID(res.UUID, 0, 1)
	if err := f.st.SetProgress(ctx, job0, job.Progress{BytesDone: 30 << 30, BytesTotal: 40 << 30, DataBytes: 512 << 20, DataBytesTotal: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if err := r.Tick(ctx, res.UUID); err != nil {
		t.Fatal(err)
	}
	rep, err = plan.Progress(ctx, f.st, res.UUID, true, "")
	if err != nil {
		t.Fatal(err)
	}
	if rep.BytesDone != 512<<20 || rep.VirtualBytesDone != 30<<30 {
		t.Fatalf("done: data %d, virtual %d; want %d and %d", rep.BytesDone, rep.VirtualBytesDone, 512<<20, 30<<30)
	}
	it := rep.Items[0]
	if it.BytesDone != 512<<20 || it.BytesTotal != 1<<30 || it.VirtualBytesDone != 30<<30 || it.VirtualBytesTotal != 40<<30 {
		t.Fatalf("item 0: %+v", it)
	}
	if tr := rep.Tiers[0]; tr.BytesTotal+rep.Tiers[len(rep.Tiers)-1].BytesTotal < 1<<30 {
		t.Fatalf("tiers count data: %+v", rep.Tiers)
	}
	rate := float64(512<<20) / 10
	if math.Abs(rep.ThroughputBytesPerSecond-rate) > rate/10 {
		t.Fatalf("throughput %.0f B/s, the data moved at %.0f", rep.ThroughputBytesPerSecond, rate)
	}
	want := float64(n<<30-512<<20) / rate
	if rep.EtaSeconds == nil || math.Abs(*rep.EtaSeconds-want) > want/10 {
		t.Fatalf("ETA %v s, want about %.0f s (the data left at the data rate)", rep.EtaSeconds, want)
	}
}

// A cancel in the round that also reads a running item's progress keeps both: the item's
// bytes and the plan's total stay equal (the cancel once wrote the item back as it was
// before the round, while the total kept the round's bytes).
func TestCancelKeepsTheRoundsProgress(t *testing.T) {
	f, r := newRunnerFixture(t, 2, 1<<30)
	ctx := context.Background()
	res, err := f.svc.Submit(ctx, f.spec("cancel"), "admin", true, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Tick(ctx, res.UUID); err != nil {
		t.Fatal(err)
	}
	if err := f.st.SetProgress(ctx, plan.JobUUID(res.UUID, 0, 1), job.Progress{BytesDone: 8 << 30, BytesTotal: 40 << 30, DataBytes: 256 << 20, DataBytesTotal: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Cancel(ctx, res.UUID); err != nil {
		t.Fatal(err)
	}
	if err := r.Tick(ctx, res.UUID); err != nil {
		t.Fatal(err)
	}
	rep, err := plan.Progress(ctx, f.st, res.UUID, true, "")
	if err != nil {
		t.Fatal(err)
	}
	var data, virtual int64
	for _, it := range rep.Items {
		data += it.BytesDone
		virtual += it.VirtualBytesDone
	}
	if data != rep.BytesDone || virtual != rep.VirtualBytesDone || data != 256<<20 {
		t.Fatalf("items add up to %d data and %d virtual bytes, the plan says %d and %d; want %d data", data, virtual, rep.BytesDone, rep.VirtualBytesDone, 256<<20)
	}
}

// An instant item lets the next tier start once its VM runs (nextTierAfter: running, the
// default), or only once it has ended (hydrated); the report counts the VMs running from
// their backups.
func TestNextTierAfterInstantRunning(t *testing.T) {
	for _, after := range []string{"", apiv1.NextTierAfterHydrated} {
		t.Run("nextTierAfter="+after, func(t *testing.T) {
			f, r := newRunnerFixture(t, 2, 1<<30)
			ctx := context.Background()
			spec := f.spec("instant")
			spec.Tiers = []apiv1.TierRule{{Tier: 1, SourceVMName: "vm-00000"}}
			spec.Defaults.Instant, spec.NextTierAfter = true, after
			res, err := f.svc.Submit(ctx, spec, "admin", true, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Tick(ctx, res.UUID); err != nil {
				t.Fatal(err)
			}
			running, _ := f.st.PlanRunningItems(ctx, res.UUID)
			if len(running) != 1 {
				t.Fatalf("tier 1 alone should run first: %v", running)
			}
			// The tier-1 item's VM runs from its backup; its job hydrates.
			job0 := plan.JobUUID(res.UUID, 0, 1)
			if err := f.st.SaveCheckpoint(ctx, job0, job.StageInstantiate, "", nil); err != nil {
				t.Fatal(err)
			}
			if err := f.st.SetInstant(ctx, job0, job.Instant{State: job.InstantRunning, RunningAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
			if err := r.Tick(ctx, res.UUID); err != nil {
				t.Fatal(err)
			}
			if err := r.Tick(ctx, res.UUID); err != nil {
				t.Fatal(err)
			}
			running, _ = f.st.PlanRunningItems(ctx, res.UUID)
			want := 2
			if after == apiv1.NextTierAfterHydrated {
				want = 1
			}
			if len(running) != want {
				t.Fatalf("%d items running, want %d", len(running), want)
			}
			rep, err := plan.Progress(ctx, f.st, res.UUID, false, "")
			if err != nil {
				t.Fatal(err)
			}
			if rep.RunningFromBackups != 1 {
				t.Fatalf("runningFromBackups %d, want 1", rep.RunningFromBackups)
			}
		})
	}
}
