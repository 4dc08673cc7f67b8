package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/clone"
)

// concurrency is the worker concurrency of the orchestration figures, for restores and for
// asynq's no-op reference alike.
const concurrency = 50

// orchestration: restores per second end to end (tiny volumes, simulator hypervisor) beside
// asynq's own ceiling, no-op tasks through the same Redis at the same concurrency, and the CPU
// a restore costs (api, worker, clients and redis-server), where its target lies: what a
// recovery waits for is the data path (see rto.go), orchestration only has to stay cheap.
// Each round measures the two side by side; the figures are the round of median ratio, as a
// single round on a shared machine can be thrown off by its neighbours.
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
	parts, err := restoreParts(ctx, c, r, n, med.perRestore, med.perNoop)
	if err != nil {
		return nil, err
	}
	perRestore := float64(med.perRestore.total()) / float64(time.Millisecond)
	return []Figure{
		figure("orchestration throughput", med.rate, "restores/s", num(round(med.noop)), "", nil,
			fmt.Sprintf("%d tiny restores, concurrency %d, one worker, median ratio of %d rounds; reference: asynq no-op tasks, same Redis and concurrency",
				n, concurrency, rounds)),
		figure("CPU per restore", perRestore, "ms", nil, "≤ 2", func(v, _ float64) bool { return v <= 2 },
			"api, worker, clients and redis-server, in the orchestration round of median ratio: "+parts),
	}, nil
}

// restoreParts measures, after the figure so as not to disturb it, what the parts that
// every restore needs cost alone at the same concurrency: the volume copy (no Redis, HTTP
// or asynq), an HTTP request and answer through the api (GET /healthz) and a Redis round
// trip (PING). It logs where a restore's CPU goes and returns the gist for the figure's note.
func restoreParts(ctx context.Context, c Config, r *rig, n int, perRestore, perNoop cpuUse) (string, error) {
	perCopy, copies, err := r.alone(ctx, n, func(ctx context.Context) error { return copyVolumes(ctx, r, n) })
	if err != nil {
		return "", err
	}
	c.logf("the volume copies alone: %.0f/s, CPU per copy %v", copies, perCopy)
	perRequest, requests, err := r.alone(ctx, 4*n, func(ctx context.Context) error { return healthRequests(ctx, r, 4*n) })
	if err != nil {
		return "", err
	}
	c.logf("HTTP requests alone (GET /healthz, 16 clients): %.0f/s, CPU per request %v", requests, perRequest)
	perPing, pings, err := r.alone(ctx, 20*n, func(ctx context.Context) error { return redisPings(ctx, r, 20*n) })
	if err != nil {
		return "", err
	}
	c.logf("Redis round trips alone (PING, concurrency %d): %.0f/s, CPU per round trip %v", concurrency, pings, perPing)

	us := func(d time.Duration) time.Duration { return d.Round(time.Microsecond) }
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	trips := perRestore.roundTrips - perNoop.roundTrips
	parts := perNoop.total() + perCopy.total() + perRequest.total()
	own := perRestore.total() - parts
	c.logf("a restore's %v of CPU: its asynq task %v, volume copy %v and HTTP request %v (each as measured alone), and vmrestore's own work %v: %.1f Redis round trips besides asynq's (%v at PING cost), Lua scripts in Redis, JSON, placement, the file system under contention, logs, metrics, Go scheduling",
		us(perRestore.total()), us(perNoop.total()), us(perCopy.total()), us(perRequest.total()), us(own),
		trips, us(time.Duration(trips*float64(perPing.total()))))
	return fmt.Sprintf("asynq task %.2f ms, volume copy %.2f, HTTP request %.2f (each measured alone), vmrestore's own work %.2f (%.1f Redis round trips besides asynq's)",
		ms(perNoop.total()), ms(perCopy.total()), ms(perRequest.total()), ms(own), trips), nil
}

// alone runs ops operations of one kind by themselves and returns the CPU each used and
// how many ran per second.
func (r *rig) alone(ctx context.Context, ops int, run func(context.Context) error) (cpuUse, float64, error) {
	before, err := r.cpu(ctx)
	if err != nil {
		return cpuUse{}, 0, err
	}
	start := time.Now()
	if err := run(ctx); err != nil {
		return cpuUse{}, 0, err
	}
	rate := float64(ops) / time.Since(start).Seconds()
	after, err := r.cpu(ctx)
	if err != nil {
		return cpuUse{}, 0, err
	}
	return before.per(after, ops), rate, nil
}

// restoreRound submits n restores through the api (16 clients, Prefer: respond-async), waits
// for all of them, and returns restores per second from the first submission to the last
// end, and the CPU used by then.
func restoreRound(ctx context.Context, c Config, r *rig, n int, prefix string) (float64, cpuUse, error) {
	start := time.Now()
	jobs := make([]string, n)
	err := fanOut(ctx, 16, n, func(_ context.Context, i int) error {
		status, body, err := r.restore(fmt.Sprintf("%s-%d", prefix, i), true)
		if err != nil || status != 202 {
			return fmt.Errorf("submit %d: %d %s %v", i, status, body, err)
		}
		jobs[i] = jobOf(body)
		return nil
	})
	if err != nil {
		return 0, cpuUse{}, err
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
	err := fanOut(ctx, 16, n, func(ctx context.Context, _ int) error {
		_, err := client.EnqueueContext(ctx, asynq.NewTask("noop", nil), asynq.Queue("bench-noop"))
		return err
	})
	if err != nil {
		return 0, err
	}
	select {
	case <-finished:
	case <-time.After(5 * time.Minute):
		return 0, fmt.Errorf("asynq processed %d of %d no-op tasks", done.Load(), n)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// copyVolumes copies the bench group's volume n times, concurrency at a time, the way a
// restore's clone stage does (fresh volume directory, verified copy, fsyncs), without
// Redis, HTTP or asynq: the file-system work of n restores alone.
func copyVolumes(ctx context.Context, r *rig, n int) error {
	src := filepath.Join(backup.GroupDir(filepath.Join(r.dir, "backup"), benchGroup), benchVolumeFile)
	sum, err := clone.SumFile(src, clone.XXH3Chunked)
	if err != nil {
		return err
	}
	dst := filepath.Join(r.dir, "primary", "rootVolumes", "acct-copy-alone")
	defer os.RemoveAll(dst)
	return fanOut(ctx, concurrency, n, func(ctx context.Context, i int) error {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = clone.Copy(ctx, f, filepath.Join(dst, fmt.Sprintf("vol-%d", i), "volume."+benchVolumeFormat),
			clone.Options{Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: sum}, Format: benchVolumeFormat, VirtualSize: benchVolumeSize})
		return err
	})
}

// healthRequests sends n GET /healthz to the api from 16 clients, as restoreRound's clients
// send restores: an HTTP request and its answer with no work behind them.
func healthRequests(ctx context.Context, r *rig, n int) error {
	return fanOut(ctx, 16, n, func(ctx context.Context, _ int) error {
		req, _ := http.NewRequestWithContext(ctx, "GET", r.base+"/healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /healthz: %s", resp.Status)
		}
		return nil
	})
}

// redisPings makes n Redis round trips (PING), concurrency at a time, through one client
// of the rig's redis-server.
func redisPings(ctx context.Context, r *rig, n int) error {
	rdb := r.redis.Client()
	defer rdb.Close()
	return fanOut(ctx, concurrency, n, func(ctx context.Context, _ int) error { return rdb.Ping(ctx).Err() })
}
