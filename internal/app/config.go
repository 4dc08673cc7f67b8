// Package app assembles vmrestore's processes from configuration and runs them under one
// supervisor each: the api (which, with no Redis configured, also runs an in-process Redis,
// workers and a demo site: the embedded mode) and the worker. Configuration is read from
// environment variables, overridden by flags; docs/configuration.md has the table.
package app

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/webhook"
	"github.com/vmrestore/vmrestore/internal/zstack"
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
	// HTTPWriteTimeout bounds how long an api answer may take to write; zero: WaitLimit + 1m.
	HTTPWriteTimeout   time.Duration
	Concurrency        int
	TaskCheckInterval  time.Duration
	ShutdownTimeout    time.Duration
	MaxRetry           int
	CloneParallelism   int
	CloneCheckpoint    int64
	SessionTTL         time.Duration
	ReportRetention    time.Duration
	BackupScanInterval time.Duration
	BackupVerifyEvery  time.Duration
	MetricsAddr        string
	MetricsToken       string
	TLSCertFile        string
	TLSKeyFile         string
	LogFormat          string
	LogLevel           string
	PublicURL          string
	WebHookAllow       []netip.Prefix
	LoginConcurrency   int
	// Hypervisor is simulator or libvirt; empty picks the simulator for the embedded mode
	// and libvirt for a worker (see HypervisorName).
	Hypervisor        string
	LibvirtURI        string
	LibvirtDomainType string
	LibvirtTimeout    time.Duration
	// GraceStop bounds how long a graceful stop waits for the guest before forcing it off.
	GraceStop time.Duration
	// HostUUIDs binds a worker to hosts: a comma-separated list of host uuids, or "auto" for
	// the hosts whose managementIp is an address of this machine.
	HostUUIDs string
	// HostLocal is which jobs continue on their host's own queue: localstorage, all or off;
	// empty: see HostLocalMode.
	HostLocal string
	// HostWait bounds how long a host-local job waits for a worker of its host.
	HostWait time.Duration
	// Now, when set, is the time sessions are timed by (tests move it instead of sleeping);
	// no setting sets it.
	Now func() time.Time
}

// Hypervisor drivers.
const (
	HypervisorSimulator = "simulator"
	HypervisorLibvirt   = "libvirt"
)

// Which jobs run their clone and instantiate stages on their host's own queue.
const (
	HostLocalStorage = "localstorage"
	HostLocalAll     = "all"
	HostLocalOff     = "off"
)

// HostLocalMode is which jobs are host-local: the one configured, else localstorage with
// libvirt and off with the simulator (which runs nothing on a host; its storages are all
// directories of the one machine).
func (c Config) HostLocalMode() string {
	switch {
	case c.HostLocal != "":
		return c.HostLocal
	case c.HypervisorName() == HypervisorSimulator:
		return HostLocalOff
	}
	return HostLocalStorage
}

// HypervisorName is the driver in use: the one configured, else the simulator in the
// embedded mode (the demo) and libvirt in a worker process.
func (c Config) HypervisorName() string {
	switch {
	case c.Hypervisor != "":
		return c.Hypervisor
	case c.Embedded():
		return HypervisorSimulator
	}
	return HypervisorLibvirt
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

func cidrs(dst func(*Config) *[]netip.Prefix) func(*Config, string) error {
	return func(c *Config, v string) error {
		p, err := webhook.ParseAllowList(v)
		if err != nil {
			return err
		}
		*dst(c) = p
		return nil
	}
}

// publicURL accepts an absolute http(s) URL with no query or fragment; its path, if any,
// prefixes the API's (a reverse proxy serving it under /vmrestore).
func publicURL(dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v == "" {
			*dst(c) = ""
			return nil
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("%q is not an absolute http or https URL like https://vmrestore.example.com", v)
		}
		*dst(c) = strings.TrimSuffix(v, "/")
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
	{"VMRESTORE_WAIT_LIMIT", "wait-limit", "60s", "longest synchronous wait for a restore (POST /api/v1/restores, or a ZStack call with Prefer: wait=N) before it answers 202 with the poll location; 0 never waits", dur(func(c *Config) *time.Duration { return &c.WaitLimit })},
	{"VMRESTORE_HTTP_WRITE_TIMEOUT", "http-write-timeout", "0", "api: how long an answer may take to be written, from the start of its request (a client that stops reading is cut off); 0: the wait limit plus a minute; plan event streams are not bound by it", dur(func(c *Config) *time.Duration { return &c.HTTPWriteTimeout })},
	{"VMRESTORE_CONCURRENCY", "concurrency", "20", "restore jobs one worker process runs at once", num(func(c *Config) *int { return &c.Concurrency }, 1, 10000)},
	{"VMRESTORE_TASK_CHECK_INTERVAL", "task-check-interval", "10ms", "how often an idle worker polls for new jobs (the floor on pick-up latency)", dur(func(c *Config) *time.Duration { return &c.TaskCheckInterval })},
	{"VMRESTORE_SHUTDOWN_TIMEOUT", "shutdown-timeout", "30s", "how long a stopping worker lets running stages finish before handing jobs back", dur(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
	{"VMRESTORE_MAX_RETRY", "max-retry", "10", "retries of a job's transient failures (worker crashes do not count)", num(func(c *Config) *int { return &c.MaxRetry }, 0, 1000)},
	{"VMRESTORE_CLONE_PARALLELISM", "clone-parallelism", "4", "volumes of one VM copied at once: the most clone slots of its backup storage one job holds", num(func(c *Config) *int { return &c.CloneParallelism }, 1, 64)},
	{"VMRESTORE_CLONE_CHECKPOINT", "clone-checkpoint", "32MiB", "bytes a volume copy moves between two checkpoints it can resume from after a crash (fsync of the partial file, digest state saved); 0 turns resuming off", byteSize(func(c *Config) *int64 { return &c.CloneCheckpoint })},
	{"VMRESTORE_REPORT_RETENTION", "report-retention", "9600h", "how long the run report of an ended plan is kept (GET /api/v1/plans/{uuid}/report, GET /api/v1/reports), after its VMs are cleaned up too; 9600h is 400 days", dur(func(c *Config) *time.Duration { return &c.ReportRetention })},
	{"VMRESTORE_SESSION_TTL", "session-ttl", "2h", "login session lifetime", dur(func(c *Config) *time.Duration { return &c.SessionTTL })},
	{"VMRESTORE_BACKUP_SCAN_INTERVAL", "backup-scan-interval", "30s", "how often workers re-index the backup storages", dur(func(c *Config) *time.Duration { return &c.BackupScanInterval })},
	{"VMRESTORE_BACKUP_VERIFY_INTERVAL", "backup-verify-interval", "0s", "worker: re-read every indexed backup group and check its checksums once per this interval (like 168h); 0 turns it off", dur(func(c *Config) *time.Duration { return &c.BackupVerifyEvery })},
	{"VMRESTORE_METRICS_ADDR", "metrics-addr", ":9091", "worker: address of /metrics, /healthz and /readyz", str(func(c *Config) *string { return &c.MetricsAddr })},
	{"VMRESTORE_TLS_CERT_FILE", "tls-cert-file", "", "api: PEM certificate (chain) to serve HTTPS with; with VMRESTORE_TLS_KEY_FILE", str(func(c *Config) *string { return &c.TLSCertFile })},
	{"VMRESTORE_TLS_KEY_FILE", "tls-key-file", "", "api: PEM private key of VMRESTORE_TLS_CERT_FILE", str(func(c *Config) *string { return &c.TLSKeyFile })},
	{"VMRESTORE_METRICS_TOKEN", "metrics-token", "", "when set, /metrics needs 'Authorization: Bearer <token>'", str(func(c *Config) *string { return &c.MetricsToken })},
	{"VMRESTORE_LOG_FORMAT", "log-format", "text", "text or json", str(func(c *Config) *string { return &c.LogFormat })},
	{"VMRESTORE_LOG_LEVEL", "log-level", "info", "debug, info, warn or error", str(func(c *Config) *string { return &c.LogLevel })},
	{"VMRESTORE_PUBLIC_URL", "public-url", "", "api: the URL clients reach the api at (https://host[:port][/prefix]); builds the poll location of 202 answers instead of the request's Host header", publicURL(func(c *Config) *string { return &c.PublicURL })},
	{"VMRESTORE_WEBHOOK_ALLOW_CIDRS", "webhook-allow-cidrs", "", "internal addresses web hooks may reach (comma-separated CIDRs or addresses); by default hooks reach only public addresses", cidrs(func(c *Config) *[]netip.Prefix { return &c.WebHookAllow })},
	{"VMRESTORE_LOGIN_CONCURRENCY", "login-concurrency", "4", "api: password checks (argon2id, 19 MiB each) run at once; more wait up to 1 s, then answer ID.1000 with Retry-After", num(func(c *Config) *int { return &c.LoginConcurrency }, 1, 256)},
	{"VMRESTORE_HYPERVISOR", "hypervisor", "", "simulator or libvirt; empty: the simulator in the embedded mode, libvirt in a worker", str(func(c *Config) *string { return &c.Hypervisor })},
	{"VMRESTORE_LIBVIRT_URI", "libvirt-uri", "qemu+tls://{managementIp}/system", "libvirt URI template of each host ({managementIp}, {hostUuid}); workers bound to a host use qemu:///system for it", str(func(c *Config) *string { return &c.LibvirtURI })},
	{"VMRESTORE_LIBVIRT_DOMAIN_TYPE", "libvirt-domain-type", "kvm", "kvm, or qemu (emulation) where hosts have no /dev/kvm", str(func(c *Config) *string { return &c.LibvirtDomainType })},
	{"VMRESTORE_LIBVIRT_TIMEOUT", "libvirt-timeout", "2m", "deadline of each libvirt call (connect, define, start...); a call past it drops the connection", dur(func(c *Config) *time.Duration { return &c.LibvirtTimeout })},
	{"VMRESTORE_HOST_UUIDS", "host-uuids", "", "bind this worker to hosts: comma-separated host uuids, or auto (hosts whose managementIp is an address of this machine)", str(func(c *Config) *string { return &c.HostUUIDs })},
	{"VMRESTORE_HOST_LOCAL", "host-local", "", "jobs whose clone and instantiate run on their host's worker: localstorage (volumes on LocalStorage), all or off; empty: localstorage with libvirt, off with the simulator", str(func(c *Config) *string { return &c.HostLocal })},
	{"VMRESTORE_GRACE_STOP", "grace-stop", "60s", "how long a graceful stop (stopVmInstance type grace, reboot) waits for the guest to power off before forcing it", dur(func(c *Config) *time.Duration { return &c.GraceStop })},
	{"VMRESTORE_HOST_WAIT", "host-wait", "10m", "how long a host-local job waits for a worker of its host before failing", dur(func(c *Config) *time.Duration { return &c.HostWait })},
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
	if err := c.checkHypervisor(); err != nil {
		return c, err
	}
	return c, nil
}

// checkHypervisor validates the hypervisor and host-local settings.
func (c Config) checkHypervisor() error {
	switch c.Hypervisor {
	case "", HypervisorSimulator, HypervisorLibvirt:
	default:
		return fmt.Errorf("VMRESTORE_HYPERVISOR %q must be simulator or libvirt", c.Hypervisor)
	}
	if err := hypervisor.CheckURITemplate(c.LibvirtURI); err != nil {
		return fmt.Errorf("VMRESTORE_LIBVIRT_URI: %w", err)
	}
	switch c.LibvirtDomainType {
	case hypervisor.DomainKVM, hypervisor.DomainQEMU:
	default:
		return fmt.Errorf("VMRESTORE_LIBVIRT_DOMAIN_TYPE %q must be kvm or qemu", c.LibvirtDomainType)
	}
	if c.LibvirtTimeout < time.Second {
		return fmt.Errorf("VMRESTORE_LIBVIRT_TIMEOUT %s is shorter than a second", c.LibvirtTimeout)
	}
	switch c.HostLocal {
	case "", HostLocalStorage, HostLocalAll, HostLocalOff:
	default:
		return fmt.Errorf("VMRESTORE_HOST_LOCAL %q must be localstorage, all or off", c.HostLocal)
	}
	if _, _, err := parseHostBinding(c.HostUUIDs); err != nil {
		return fmt.Errorf("VMRESTORE_HOST_UUIDS: %w", err)
	}
	return nil
}

// parseHostBinding reads VMRESTORE_HOST_UUIDS: "auto", or host uuids separated by commas.
func parseHostBinding(v string) (auto bool, uuids []string, err error) {
	v = strings.TrimSpace(v)
	if v == "auto" {
		return true, nil, nil
	}
	for _, u := range strings.Split(v, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		if !zstack.IsUUID(u) {
			return false, nil, fmt.Errorf("%q is not a host uuid (32 lowercase hex characters) nor auto", u)
		}
		uuids = append(uuids, u)
	}
	return false, uuids, nil
}
