package store

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Jobs handed over to a host's own queue are listed until a worker of the host takes them
// up, so that a host without a worker is noticed and its jobs fail after a bounded wait.
func keyHostWait() string { return prefix + "hostwait" }

// HostWait is a job waiting for a worker of its host.
type HostWait struct {
	Job   string
	Host  string
	Since time.Time
}

// AddHostWait lists a job as waiting for a worker of host (the first hand-over's time
// stays).
func (s *Store) AddHostWait(ctx context.Context, job, host string, at time.Time) error {
	return s.rdb.ZAddNX(ctx, keyHostWait(), redis.Z{Score: float64(at.UnixMilli()), Member: job + "@" + host}).Err()
}

// ClearHostWait removes a job from the waiting list: a worker of its host took it up, or it
// ended.
func (s *Store) ClearHostWait(ctx context.Context, job, host string) error {
	return s.rdb.ZRem(ctx, keyHostWait(), job+"@"+host).Err()
}

// HostWaits lists the waiting jobs, oldest first.
func (s *Store) HostWaits(ctx context.Context) ([]HostWait, error) {
	zs, err := s.rdb.ZRangeWithScores(ctx, keyHostWait(), 0, -1).Result()
	if err != nil {
		return nil, err
	}
	out := make([]HostWait, 0, len(zs))
	for _, z := range zs {
		m, _ := z.Member.(string)
		job, host, ok := strings.Cut(m, "@")
		if !ok {
			continue
		}
		out = append(out, HostWait{Job: job, Host: host, Since: time.UnixMilli(int64(z.Score))})
	}
	return out, nil
}
