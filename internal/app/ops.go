package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// startOpsMetrics adds the Redis-backed collectors to a process's metrics (vmrestore_redis_up,
// and the deployment-wide queue, capacity and worker metrics) and, in g, competes for the
// lease that lets one process of the deployment export the latter (see metrics.Deployment).
func startOpsMetrics(ctx context.Context, g *errgroup.Group, m *metrics.Metrics, st *store.Store,
	rdb redis.UniversalClient, cache *store.CatalogCache, log *slog.Logger) {
	d := m.RegisterDeployment(st, cache, queue.Inspector(rdb), log)
	host, _ := os.Hostname()
	holder := fmt.Sprintf("%s:%d:%s", host, os.Getpid(), zstack.NewUUID())
	g.Go(func() error {
		d.Run(ctx, holder)
		return nil
	})
}
