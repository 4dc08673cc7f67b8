package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuUse is the CPU time (user and system) spent by this process, which runs the api, the
// worker and the benchmark's clients, and by the rig's redis-server, and the requests that
// redis-server read (its round trips: a pipeline counts once). It says where a CPU-bound
// run's time goes; on a host that steals CPU it moves from run to run too.
type cpuUse struct {
	self, redis time.Duration
	roundTrips  float64
}

// cpu reads the CPU time used and the Redis round trips made so far.
func (r *rig) cpu(ctx context.Context) (cpuUse, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuUse{}, err
	}
	u := cpuUse{self: time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime))}
	info, err := r.redisInfo(ctx, "cpu", "stats")
	if err != nil {
		return u, err
	}
	for _, k := range []string{"used_cpu_user", "used_cpu_sys", "total_reads_processed"} {
		v, err := strconv.ParseFloat(info[k], 64)
		if err != nil {
			return u, fmt.Errorf("redis INFO %s: %w", k, err)
		}
		if k == "total_reads_processed" {
			u.roundTrips = v
		} else {
			u.redis += time.Duration(v * float64(time.Second))
		}
	}
	return u, nil
}

// redisInfo reads sections of the rig's redis-server INFO as field → value.
func (r *rig) redisInfo(ctx context.Context, sections ...string) (map[string]string, error) {
	rdb := r.redis.Client()
	defer rdb.Close()
	text, err := rdb.Info(ctx, sections...).Result()
	if err != nil {
		return nil, err
	}
	info := map[string]string{}
	for line := range strings.Lines(text) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			info[k] = v
		}
	}
	return info, nil
}

// per is the CPU time spent between u and a later reading, per operation.
func (u cpuUse) per(later cpuUse, ops int) cpuUse {
	n := time.Duration(max(ops, 1))
	return cpuUse{self: (later.self - u.self) / n, redis: (later.redis - u.redis) / n,
		roundTrips: (later.roundTrips - u.roundTrips) / float64(n)}
}

// total is the CPU time of both processes.
func (u cpuUse) total() time.Duration { return u.self + u.redis }

func (u cpuUse) String() string {
	return fmt.Sprintf("%v (%v in api, worker and clients, %v in redis-server)",
		u.total().Round(time.Microsecond), u.self.Round(time.Microsecond), u.redis.Round(time.Microsecond))
}
