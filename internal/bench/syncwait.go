package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// syncOverhead: the time from POST to 200 minus the time the job spent in its stages (from
// the worker taking it to its end), at idle and under load; and what an idle worker costs
// Redis for the short poll interval that keeps the overhead low.
func syncOverhead(ctx context.Context, c Config) ([]Figure, error) {
	n := c.pick(200, 40)
	r, err := newRig(ctx, c, concurrency, true)
	if err != nil {
		return nil, err
	}
	defer r.close()
	time.Sleep(time.Second) // let the worker settle (index scan, probe)

	idle, err := measureSync(ctx, r, n, "idle")
	if err != nil {
		return nil, err
	}
	// Under load: eight background clients each keep one restore running (closed loop), so
	// the queue stays short and the measured requests compete for the worker, not wait in line.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bg atomic.Int64
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r.restore(fmt.Sprintf("bg-%d", bg.Add(1)), false)
			}
		}()
	}
	loaded, err := measureSync(ctx, r, n, "loaded")
	close(stop)
	wg.Wait()
	if err != nil {
		return nil, err
	}

	cmds, dequeues, err := idleCost(ctx, r, time.Duration(c.pick(10, 4))*time.Second)
	if err != nil {
		return nil, err
	}
	note := fmt.Sprintf("%d sequential synchronous restores, TaskCheckInterval %v", n, r.cfg.TaskCheckInterval)
	lnote := fmt.Sprintf("%d synchronous restores while 8 other clients each keep a restore running (%d restores)", n, bg.Load())
	return []Figure{
		figure("sync overhead p50, idle", idle.p50, "ms", nil, "≤ 10", func(v, _ float64) bool { return v <= 10 }, note),
		figure("sync overhead p99, idle", idle.p99, "ms", nil, "≤ 50", func(v, _ float64) bool { return v <= 50 }, note),
		figure("sync overhead p50, under load", loaded.p50, "ms", nil, "", nil, lnote),
		figure("sync overhead p99, under load", loaded.p99, "ms", nil, "", nil, lnote),
		figure("idle worker Redis commands", cmds, "commands/s", nil, "", nil,
			fmt.Sprintf("one idle worker process with its plan runner, index scan and probe; %.0f/s of them are asynq dequeue scripts", dequeues)),
	}, nil
}

type overhead struct{ p50, p99 float64 }

func measureSync(ctx context.Context, r *rig, n int, label string) (overhead, error) {
	var over []time.Duration
	for i := 0; i < n; i++ {
		job := zstack.NewUUID()
		body := fmt.Sprintf(`{"params":{"name":"sync-%s-%d","cpuNum":1,"memorySize":1073741824,"l3NetworkUuids":[%q]}}`, label, i, benchL3)
		req, _ := http.NewRequest("POST", r.base+"/zstack/v1/vm-instances/from/vm-backups/"+benchGroup, bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", "OAuth "+r.session)
		req.Header.Set("X-Job-UUID", job)
		req.Header.Set("Prefer", "wait=600")
		t0 := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return overhead{}, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		total := time.Since(t0)
		if resp.StatusCode != 200 {
			return overhead{}, fmt.Errorf("synchronous restore answered %d", resp.StatusCode)
		}
		rec, err := r.store().GetJob(ctx, job)
		if err != nil {
			return overhead{}, err
		}
		inside := rec.FinishedAt.Sub(rec.StartedAt)
		over = append(over, max(total-inside, 0))
	}
	sortDurations(over)
	return overhead{p50: percentile(over, 0.5), p99: percentile(over, 0.99)}, nil
}

// idleCost returns the Redis commands per second while nothing happens, and how many of them
// are asynq's dequeue scripts.
func idleCost(ctx context.Context, r *rig, over time.Duration) (float64, float64, error) {
	rdb := r.redis.Client()
	defer rdb.Close()
	read := func() (total, evalsha float64, err error) {
		info, err := rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			return 0, 0, err
		}
		for _, line := range strings.Split(info, "\n") {
			if !strings.HasPrefix(line, "cmdstat_") {
				continue
			}
			name, rest, _ := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
			calls := 0.0
			for _, kv := range strings.Split(rest, ",") {
				if v, ok := strings.CutPrefix(kv, "calls="); ok {
					calls, _ = strconv.ParseFloat(v, 64)
				}
			}
			if name == "info" {
				continue
			}
			total += calls
			if name == "evalsha" {
				evalsha += calls
			}
		}
		return total, evalsha, nil
	}
	t0, e0, err := read()
	if err != nil {
		return 0, 0, err
	}
	time.Sleep(over)
	t1, e1, err := read()
	if err != nil {
		return 0, 0, err
	}
	s := over.Seconds()
	return (t1 - t0) / s, (e1 - e0) / s, nil
}
