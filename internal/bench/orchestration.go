package bench

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/clone"
)

// concurrency is the worker concurrency of the orchestration figures, for restores and for
// asynq's no-op reference alike.
const concurrency = 50

// orchestration: restores per second end to end (tiny volumes, simulator hypervisor) versus
// asynq's own ceiling, no-op tasks through the same Redis at the same concurrency. Each round
// measures the two side by side; the figure is the round of median ratio, as a single round
// on a shared machine can be thrown off by its neighbours.
func orchestration(ctx context.Context, c Config) ([]Figure, error) {
	n, rounds := c.pick(2000, 300), c.pick(3, 1)
	r, err := newRig(ctx, c, concurrency, true)
	if err != nil {
		return nil, err
	}
	defer r.close()

	type sideBySide struct {
		rate, noop          float64
		perRestore, perNoop cpuUse
	}
	var done []sideBySide
	for i := 0; i < rounds; i++ {
		// Reference: asynq alone, no-op handler, same Redis, same concurrency and poll interval.
		cpu0, err := r.cpu(ctx)
		if err != nil {
			return nil, err
		}
		noop, err := asynqCeiling(ctx, r, n)
		if err != nil {
			return nil, err
		}
		cpu1, err := r.cpu(ctx)
		if err != nil {
			return nil, err
		}
		rate, cpu2, err := restoreRound(ctx, c, r, n, fmt.Sprintf("orch-%d", i))
		if err != nil {
			return nil, err
		}
		rd := sideBySide{rate: rate, noop: noop, perRestore: cpu1.per(cpu2, n), perNoop: cpu0.per(cpu1, n)}
		c.logf("round %d: %.0f restores/s, asynq no-op %.0f/s, ratio %.3f; CPU per restore %v, per no-op task %v",
			i+1, rate, noop, rate/noop, rd.perRestore, rd.perNoop)
		done = append(done, rd)
	}
	slices.SortFunc(done, func(a, b sideBySide) int { return cmp.Compare(a.rate/a.noop, b.rate/b.noop) })
	med := done[len(done)/2]

	// Context, after the figure so as not to disturb it: the restores' file work alone.
	cpu0, err := r.cpu(ctx)
	if err != nil {
		return nil, err
	}
	copies, err := copyCeiling(ctx, r, n)
	if err != nil {
		return nil, err
	}
	cpu1, err := r.cpu(ctx)
	if err != nil {
		return nil, err
	}
	perCopy := cpu0.per(cpu1, n)
	c.logf("the volume copies alone (no Redis, HTTP or asynq): %.0f/s, CPU per copy %v", copies, perCopy)
	ms := func(u cpuUse) float64 { return float64(u.self+u.redis) / float64(time.Millisecond) }
	return []Figure{figure("orchestration throughput", med.rate, "restores/s", num(round(med.noop)), "ratio ≥ 0.20",
		func(_, ratio float64) bool { return ratio >= 0.20 },
		fmt.Sprintf("%d restores, concurrency %d, one worker, median ratio of %d rounds; reference: asynq no-op tasks, same Redis and concurrency; CPU per restore %.2f ms, per no-op task %.2f ms, per volume copy alone %.2f ms",
			n, concurrency, rounds, ms(med.perRestore), ms(med.perNoop), ms(perCopy)))}, nil
}

// restoreRound submits n restores through the api (16 clients, Prefer: respond-async), waits
// for all of them, and returns restores per second from the first submission to the last
// end, and the CPU used by then.
func restoreRound(ctx context.Context, c Config, r *rig, n int, prefix string) (float64, cpuUse, error) {
	start := time.Now()
	jobs := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				status, body, err := r.restore(fmt.Sprintf("%s-%d", prefix, i), true)
				if err != nil || status != 202 {
					failed.Store(fmt.Sprintf("submit %d: %d %s %v", i, status, body, err))
					return
				}
				jobs[i] = jobOf(body)
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		return 0, cpuUse{}, fmt.Errorf("%v", f)
	}
	submitted := time.Since(start)
	end, used, times, err := r.waitJobs(ctx, jobs, 10*time.Minute)
	if err != nil {
		return 0, used, err
	}
	rate := float64(n) / end.Sub(start).Seconds()
	c.logf("%d restores in %v (%.0f/s; all submitted after %v; per job, mean: %v)",
		n, end.Sub(start).Round(time.Millisecond), rate, submitted.Round(time.Millisecond), times)
	return rate, used, nil
}

// asynqCeiling runs n no-op tasks through an asynq server of the same concurrency and poll
// interval as vmrestore's workers and returns tasks per second.
func asynqCeiling(ctx context.Context, r *rig, n int) (float64, error) {
	rdb := r.redis.Client()
	defer rdb.Close()
	var done atomic.Int64
	finished := make(chan struct{})
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: concurrency, Queues: map[string]int{"bench-noop": 1},
		TaskCheckInterval: r.cfg.TaskCheckInterval, LogLevel: asynq.ErrorLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc("noop", func(context.Context, *asynq.Task) error {
		if done.Add(1) == int64(n) {
			close(finished)
		}
		return nil
	})
	if err := srv.Start(mux); err != nil {
		return 0, err
	}
	defer srv.Shutdown()
	client := asynq.NewClientFromRedisClient(rdb)
	start := time.Now()
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := client.EnqueueContext(ctx, asynq.NewTask("noop", nil), asynq.Queue("bench-noop")); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	select {
	case <-finished:
	case <-time.After(5 * time.Minute):
		return 0, fmt.Errorf("asynq processed %d of %d no-op tasks", done.Load(), n)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// copyCeiling copies the bench group's volume n times, concurrency at a time, the way a
// restore's clone stage does (fresh volume directory, verified copy, fsyncs), without
// Redis, HTTP or asynq: the file-system work of n restores alone, in copies per second.
func copyCeiling(ctx context.Context, r *rig, n int) (float64, error) {
	src := filepath.Join(backup.GroupDir(filepath.Join(r.dir, "backup"), benchGroup), benchVolumeFile)
	sum, err := clone.SumFile(src, clone.XXH3Chunked)
	if err != nil {
		return 0, err
	}
	dst := filepath.Join(r.dir, "primary", "rootVolumes", "acct-copy-ceiling")
	defer os.RemoveAll(dst)
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	for w := 0; w < concurrency; w++ {
		g.Go(func() error {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return nil
				}
				f, err := os.Open(src)
				if err != nil {
					return err
				}
				_, err = clone.Copy(gctx, f, filepath.Join(dst, fmt.Sprintf("vol-%d", i), "volume."+benchVolumeFormat),
					clone.Options{Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: sum}, Format: benchVolumeFormat, VirtualSize: benchVolumeSize})
				f.Close()
				if err != nil {
					return err
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
