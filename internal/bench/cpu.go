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
// worker and the benchmark's clients, and by the rig's redis-server. It says where a
// CPU-bound run's time goes; on a host that steals CPU it moves from run to run too.
type cpuUse struct{ self, redis time.Duration }

// cpu reads the CPU time used so far.
func (r *rig) cpu(ctx context.Context) (cpuUse, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuUse{}, err
	}
	u := cpuUse{self: time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime))}
	info, err := r.redisInfo(ctx, "cpu")
	if err != nil {
		return u, err
	}
	for _, k := range []string{"used_cpu_user", "used_cpu_sys"} {
		s, err := strconv.ParseFloat(info[k], 64)
		if err != nil {
			return u, fmt.Errorf("redis INFO cpu %s: %w", k, err)
		}
		u.redis += time.Duration(s * float64(time.Second))
	}
	return u, nil
}

// redisInfo reads one section of the rig's redis-server INFO as field → value.
func (r *rig) redisInfo(ctx context.Context, section string) (map[string]string, error) {
	rdb := r.redis.Client()
	defer rdb.Close()
	text, err := rdb.Info(ctx, section).Result()
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
	return cpuUse{self: (later.self - u.self) / n, redis: (later.redis - u.redis) / n}
}

func (u cpuUse) String() string {
	return fmt.Sprintf("%v (%v in api, worker and clients, %v in redis-server)",
		(u.self + u.redis).Round(time.Microsecond), u.self.Round(time.Microsecond), u.redis.Round(time.Microsecond))
}
