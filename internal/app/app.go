package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// NewLogger builds the process logger on stderr.
//
// go-redis's own messages (reconnects) are routed to it too, so that a JSON log stays JSON.
func NewLogger(c Config, w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	h := slog.Handler(slog.NewTextHandler(w, opts))
	if c.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	log := slog.New(deferAttrs(dedupe(h)))
	redis.SetLogger(redisLog{log})
	return log
}

// redisLog adapts slog to go-redis's logger.
type redisLog struct{ l *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	r.l.WarnContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// redisClient connects to the configured Redis. Timeouts are short so that a Redis outage
// turns into a quick error instead of hung requests.
//
// The same client serves vmrestore's keys and asynq, so Sentinel failover, Cluster routing,
// ACL users and TLS apply to both.
func redisClient(c Config) (redis.UniversalClient, error) {
	opt := &redis.UniversalOptions{
		Addrs:            strings.Split(c.RedisAddr, ","),
		Username:         c.RedisUsername,
		Password:         c.RedisPassword,
		DB:               c.RedisDB,
		MasterName:       c.RedisMasterName,
		SentinelPassword: c.RedisSentinelPass,
		IsClusterMode:    c.RedisCluster,
		DialTimeout:      time.Second,
		// One dial attempt per command try: go-redis's default of five, with back-off,
		// keeps a caller waiting almost two seconds for a Redis that refuses connections.
		DialerRetries: 1,
		ReadTimeout:   time.Second,
		WriteTimeout:  time.Second,
		PoolSize:      max(4*c.Concurrency, 40),
	}
	for i := range opt.Addrs {
		opt.Addrs[i] = strings.TrimSpace(opt.Addrs[i])
	}
	if c.RedisCluster && c.RedisMasterName != "" {
		return nil, errors.New("REDIS_CLUSTER and REDIS_MASTER_NAME exclude each other")
	}
	if c.RedisCluster && c.RedisDB != 0 {
		return nil, errors.New("REDIS_DB must be 0 with REDIS_CLUSTER (a Redis Cluster has only database 0): unset REDIS_DB")
	}
	if c.RedisTLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.RedisTLSServerName}
		if tc.ServerName == "" {
			tc.ServerName, _, _ = net.SplitHostPort(opt.Addrs[0])
		}
		if c.RedisTLSCAFile != "" {
			pem, err := os.ReadFile(c.RedisTLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("REDIS_TLS_CA_FILE: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("REDIS_TLS_CA_FILE %s holds no PEM certificate", c.RedisTLSCAFile)
			}
		}
		opt.TLSConfig = tc
	}
	if c.RedisCluster {
		return clusterClient(opt), nil
	}
	return redis.NewUniversalClient(opt), nil
}

// clusterStateEvery is how often a Redis Cluster client re-reads the slot map while it is used.
const clusterStateEvery = time.Second

// clusterClient is a Redis Cluster client that follows a failover within about a second of
// the promotion: go-redis re-reads the slot map on MOVED answers and only every minute
// otherwise, and a dead master gives no MOVED (its connections are refused), so the client
// re-reads the map every clusterStateEvery while it is used, and at once when it fails to
// reach a node.
func clusterClient(opt *redis.UniversalOptions) *redis.ClusterClient {
	co := opt.Cluster()
	co.ClusterStateReloadInterval = clusterStateEvery
	cc := redis.NewClusterClient(co)
	cc.OnNewNode(func(node *redis.Client) {
		node.AddHook(reloadOnDialFailure{cc})
	})
	return cc
}

// reloadOnDialFailure asks a cluster client to re-read the slot map when a node cannot be
// reached (the re-reads are coalesced by go-redis).
type reloadOnDialFailure struct{ cc *redis.ClusterClient }

func (h reloadOnDialFailure) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			h.cc.ReloadState(context.WithoutCancel(ctx))
		}
		return conn, err
	}
}

func (h reloadOnDialFailure) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h reloadOnDialFailure) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// waitForRedis pings until Redis answers or ctx ends, logging while it waits.
func waitForRedis(ctx context.Context, st *store.Store, log *slog.Logger, addr string) error {
	for i := 0; ; i++ {
		err := st.Ping(ctx)
		if err == nil {
			return nil
		}
		if i%10 == 0 {
			log.Warn("waiting for Redis", "addr", addr, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis at %s never answered: %w", addr, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// process is what both binaries' start steps share: the configuration, the log, the Redis
// client and store, and the metrics.
type process struct {
	c   Config
	log *slog.Logger
	rdb redis.UniversalClient
	st  *store.Store
	m   *metrics.Metrics
}

// connectRedis is the first part of both processes: the Redis client, once Redis answers.
// It closes last.
func (p *process) connectRedis(r *runGroup) error {
	rdb, err := redisClient(p.c)
	if err != nil {
		return err
	}
	r.onStop(func() { rdb.Close() })
	st := store.New(rdb)
	if err := waitForRedis(r.ctx, st, p.log, p.c.RedisAddr); err != nil {
		return err
	}
	p.rdb, p.st = rdb, st
	return nil
}

// startOpsMetrics adds the Redis-backed collectors to the process's metrics
// (vmrestore_redis_up, and the deployment-wide queue, capacity and worker metrics) and
// competes for the lease that lets one process of the deployment export the latter (see
// metrics.Deployment).
func (p *process) startOpsMetrics(r *runGroup, cache *store.CatalogCache) {
	d := p.m.RegisterDeployment(p.st, cache, queue.Inspector(p.rdb), p.log)
	host, _ := os.Hostname()
	holder := fmt.Sprintf("%s:%d:%s", host, os.Getpid(), zstack.NewUUID())
	r.run(func(ctx context.Context) { d.Run(ctx, holder) })
}

// serveHTTP serves hs on ln until the process stops; its stop (the first to run) stops
// taking requests and lets the running ones finish within wait.
func serveHTTP(r *runGroup, hs *http.Server, ln net.Listener, wait time.Duration) {
	r.serve(func() error {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	r.onStop(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = hs.Shutdown(ctx)
	})
}
