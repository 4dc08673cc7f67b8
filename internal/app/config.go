// Package app assembles vmrestore's processes from configuration and runs them under one
// supervisor each: the api (which, with no Redis configured, also runs an in-process Redis,
// workers and a demo site: the embedded mode) and the worker. Configuration is read from
// environment variables, overridden by flags; docs/configuration.md has the table.
package app

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vmrestore/vmrestore/internal/catalog"
)

// Config is the configuration of both binaries.
type Config struct {
	HTTPAddr           string
	RedisAddr          string
	RedisUsername      string
	RedisPassword      string
	RedisDB            int
	RedisMasterName    string
	RedisCluster       bool
	RedisSentinelPass  string
	RedisTLS           bool
	RedisTLSCAFile     string
	RedisTLSServerName string
	SiteFile           string
	DataDir            string
	AdminPassword      string
	WaitLimit          time.Duration
	Concurrency        int
	TaskCheckInterval  time.Duration
	ShutdownTimeout    time.Duration
	MaxRetry           int
	CloneParallelism   int
	CloneCheckpoint    int64
	SessionTTL         time.Duration
	BackupScanInterval time.Duration
	MetricsAddr        string
	MetricsToken       string
	TLSCertFile        string
	TLSKeyFile         string
	LogFormat          string
	LogLevel           string
}

// Embedded reports whether the api runs its own in-process Redis and workers.
func (c Config) Embedded() bool { return c.RedisAddr == "" }

type setting struct {
	env, flag, def, help string
	apply                func(c *Config, v string) error
}

// Env is the setting's environment variable.
func (s setting) Env() string { return s.env }

func str(dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *dst(c) = v; return nil }
}

func dur(dst func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("%q is not a duration like 30s or 5m", v)
		}
		*dst(c) = d
		return nil
	}
}

func boolean(dst func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*dst(c) = b
		return nil
	}
}

func byteSize(dst func(*Config) *int64) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v == "0" {
			*dst(c) = 0
			return nil
		}
		b, err := catalog.ParseBytes(v)
		if err != nil || b < 1<<20 {
			return fmt.Errorf("%q is not a size of at least 1MiB like 32MiB or 1GiB (or 0)", v)
		}
		*dst(c) = int64(b)
		return nil
	}
}

func num(dst func(*Config) *int, lo, hi int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("%q is not a whole number between %d and %d", v, lo, hi)
		}
		*dst(c) = n
		return nil
	}
}

// DefaultDataDir is where the embedded mode writes its demo site.
func DefaultDataDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "vmrestore")
	}
	return filepath.Join(os.TempDir(), "vmrestore")
}

// Settings lists every setting; docs/configuration.md lists them all (a test checks).
var Settings = []setting{
	{"VMRESTORE_HTTP_ADDR", "http-addr", ":8080", "address the api listens on (ZStack's port)", str(func(c *Config) *string { return &c.HTTPAddr })},
	{"REDIS_ADDR", "redis-addr", "", "Redis host:port; empty runs the embedded mode (in-process Redis, workers and demo site)", str(func(c *Config) *string { return &c.RedisAddr })},
	{"REDIS_USERNAME", "redis-username", "", "Redis ACL user", str(func(c *Config) *string { return &c.RedisUsername })},
	{"REDIS_PASSWORD", "redis-password", "", "Redis password (never logged)", str(func(c *Config) *string { return &c.RedisPassword })},
	{"REDIS_DB", "redis-db", "0", "Redis database number", num(func(c *Config) *int { return &c.RedisDB }, 0, 15)},
	{"REDIS_MASTER_NAME", "redis-master-name", "", "Sentinel: the master's name; REDIS_ADDR then lists the sentinels (host:port,host:port,...)", str(func(c *Config) *string { return &c.RedisMasterName })},
	{"REDIS_SENTINEL_PASSWORD", "redis-sentinel-password", "", "Sentinel: the sentinels' password (never logged)", str(func(c *Config) *string { return &c.RedisSentinelPass })},
	{"REDIS_CLUSTER", "redis-cluster", "false", "Redis Cluster: REDIS_ADDR lists seed nodes", boolean(func(c *Config) *bool { return &c.RedisCluster })},
	{"REDIS_TLS", "redis-tls", "false", "connect to Redis over TLS (asynq's connections too)", boolean(func(c *Config) *bool { return &c.RedisTLS })},
	{"REDIS_TLS_CA_FILE", "redis-tls-ca-file", "", "PEM file of the CA that signed Redis's certificate (default: the system's)", str(func(c *Config) *string { return &c.RedisTLSCAFile })},
	{"REDIS_TLS_SERVER_NAME", "redis-tls-server-name", "", "name to verify in Redis's certificate (default: the host of REDIS_ADDR)", str(func(c *Config) *string { return &c.RedisTLSServerName })},
	{"VMRESTORE_SITE", "site", "", "site catalog YAML loaded into Redis by the api (reloaded when the file changes); the embedded mode generates one", str(func(c *Config) *string { return &c.SiteFile })},
	{"VMRESTORE_DATA_DIR", "data-dir", DefaultDataDir(), "where the embedded mode writes its demo site, backups and primary storages", str(func(c *Config) *string { return &c.DataDir })},
	{"VMRESTORE_ADMIN_PASSWORD", "", "", "admin password; otherwise one is generated on first start and printed once", str(func(c *Config) *string { return &c.AdminPassword })},
	{"VMRESTORE_WAIT_LIMIT", "wait-limit", "60s", "how long CreateVmFromVmBackup waits for its job before answering 202", dur(func(c *Config) *time.Duration { return &c.WaitLimit })},
	{"VMRESTORE_CONCURRENCY", "concurrency", "20", "restore jobs one worker process runs at once", num(func(c *Config) *int { return &c.Concurrency }, 1, 10000)},
	{"VMRESTORE_TASK_CHECK_INTERVAL", "task-check-interval", "10ms", "how often an idle worker polls for new jobs (the floor on pick-up latency)", dur(func(c *Config) *time.Duration { return &c.TaskCheckInterval })},
	{"VMRESTORE_SHUTDOWN_TIMEOUT", "shutdown-timeout", "30s", "how long a stopping worker lets running stages finish before handing jobs back", dur(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
	{"VMRESTORE_MAX_RETRY", "max-retry", "10", "retries of a job's transient failures (worker crashes do not count)", num(func(c *Config) *int { return &c.MaxRetry }, 0, 1000)},
	{"VMRESTORE_CLONE_PARALLELISM", "clone-parallelism", "4", "volumes of one VM copied at once: the most clone slots of its backup storage one job holds", num(func(c *Config) *int { return &c.CloneParallelism }, 1, 64)},
	{"VMRESTORE_CLONE_CHECKPOINT", "clone-checkpoint", "32MiB", "bytes a volume copy moves between two checkpoints it can resume from after a crash (fsync of the partial file, digest state saved); 0 turns resuming off", byteSize(func(c *Config) *int64 { return &c.CloneCheckpoint })},
	{"VMRESTORE_SESSION_TTL", "session-ttl", "2h", "login session lifetime", dur(func(c *Config) *time.Duration { return &c.SessionTTL })},
	{"VMRESTORE_BACKUP_SCAN_INTERVAL", "backup-scan-interval", "30s", "how often workers re-index the backup storages", dur(func(c *Config) *time.Duration { return &c.BackupScanInterval })},
	{"VMRESTORE_METRICS_ADDR", "metrics-addr", ":9091", "worker: address of /metrics, /healthz and /readyz", str(func(c *Config) *string { return &c.MetricsAddr })},
	{"VMRESTORE_TLS_CERT_FILE", "tls-cert-file", "", "api: PEM certificate (chain) to serve HTTPS with; with VMRESTORE_TLS_KEY_FILE", str(func(c *Config) *string { return &c.TLSCertFile })},
	{"VMRESTORE_TLS_KEY_FILE", "tls-key-file", "", "api: PEM private key of VMRESTORE_TLS_CERT_FILE", str(func(c *Config) *string { return &c.TLSKeyFile })},
	{"VMRESTORE_METRICS_TOKEN", "metrics-token", "", "when set, /metrics needs 'Authorization: Bearer <token>'", str(func(c *Config) *string { return &c.MetricsToken })},
	{"VMRESTORE_LOG_FORMAT", "log-format", "text", "text or json", str(func(c *Config) *string { return &c.LogFormat })},
	{"VMRESTORE_LOG_LEVEL", "log-level", "info", "debug, info, warn or error", str(func(c *Config) *string { return &c.LogLevel })},
}

// LoadConfig reads the environment, then flags (which win). The FlagSet prints its usage to
// out on -h.
func LoadConfig(name string, args []string, getenv func(string) string, out io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	values := map[string]*string{}
	for _, s := range Settings {
		v := s.def
		if e := getenv(s.env); e != "" {
			v = e
		}
		if err := s.apply(&c, v); err != nil {
			return c, fmt.Errorf("%s: %w", s.env, err)
		}
		if s.flag != "" {
			values[s.flag] = fs.String(s.flag, v, s.help+" (env "+s.env+")")
		}
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	fs.Visit(func(f *flag.Flag) {
		for _, s := range Settings {
			if s.flag == f.Name && err == nil {
				if e := s.apply(&c, *values[f.Name]); e != nil {
					err = fmt.Errorf("-%s: %w", f.Name, e)
				}
			}
		}
	})
	if err != nil {
		return c, err
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return c, fmt.Errorf("log format %q must be text or json", c.LogFormat)
	}
	return c, nil
}
