package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/geo"
	"github.com/latchkeyhq/latchkey/guard"
	"github.com/latchkeyhq/latchkey/guard/redisguard"
	"github.com/latchkeyhq/latchkey/httpapi"
	"github.com/latchkeyhq/latchkey/identity"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/leaks"
	"github.com/latchkeyhq/latchkey/limit"
	"github.com/latchkeyhq/latchkey/limit/redislimit"
	"github.com/latchkeyhq/latchkey/metrics"
	"github.com/latchkeyhq/latchkey/secrets"
	"github.com/latchkeyhq/latchkey/security"
	"github.com/latchkeyhq/latchkey/ui"
	keyusage "github.com/latchkeyhq/latchkey/usage"
	"github.com/latchkeyhq/latchkey/webhook"
)

// serverConfig is everything `latchkey server` reads from flags and the
// environment.
type serverConfig struct {
	Addr           string
	DB             string
	TrustedProxies string
	TLSCert        string
	TLSKey         string
	LogLevel       string
	MaxBody        int64
	RootKey        string // from LATCHKEY_ROOT_KEY only: a flag would show in ps
	// MasterKey is the keyring's master key in base64, from
	// LATCHKEY_MASTER_KEY only (a flag would show in ps); when empty the
	// key is read from MasterKeyFile, which is created on first start.
	MasterKey     string
	MasterKeyFile string // "": next to the database (defaultMasterKeyFile)
	GeoIPDB       string
	QuotaFlush    time.Duration
	RotationCheck time.Duration
	CacheTTL      time.Duration // the key cache's TTL (--cache-ttl)
	// Redis, when set (redis://…), keeps the limits in Redis so that every
	// node sharing it shares them; RedisFailure says what happens while it
	// cannot be reached (local or deny) and Nodes how many nodes share it
	// (a local fallback divides each limit by it).
	Redis          string
	RedisFailure   string
	Nodes          int
	UsageFlush     time.Duration
	GuardThreshold int
	GuardWindow    time.Duration
	GuardCooloff   time.Duration
	GuardExempt    string // comma-separated CIDRs the guard never blocks
	MetricsAddr    string // "": GET /metrics on the main listener
	PprofAddr      string // "": no profiler

	// EventRetention is how long dispatched events (webhook events and
	// security anomalies) are kept (0: the default; negative: forever).
	EventRetention time.Duration
	// Usage retention per grain (0: the default; negative: forever).
	UsageRetention, UsageHourRetention, UsageDayRetention time.Duration

	// Security checks (package security) and key.denied sampling.
	DeniedPerMinute int
	Dormancy        time.Duration
	SpikeFactor     float64
	SpikeMin        int64
	BurstThreshold  int
	BurstWindow     time.Duration

	// Webhook retries: the first wait, its cap, and the age at which a
	// delivery is given up; ExpiringDays ahead a key raises key.expiring
	// (0: never).
	WebhookBackoff    time.Duration
	WebhookBackoffMax time.Duration
	WebhookGiveUp     time.Duration
	WebhookTimeout    time.Duration
	ExpiringDays      int
	// WebhookAllowPrivate: comma-separated networks outside the public
	// internet that webhooks may reach (for receivers inside the network).
	WebhookAllowPrivate string
	// IDPAllowHTTP: comma-separated hosts whose identity providers' JWKS
	// may be fetched over plain http; every other JWKS URL must be https.
	IDPAllowHTTP string
	// SecretVersions is how many versions of a secret are kept,
	// SecretExpiresIn the default expires_in of a secret, in seconds.
	SecretVersions  int
	SecretExpiresIn time.Duration
	// SecretCacheTTL is how long an opened secret is served from memory
	// (a change made on another node shows within it); ReadAuditInterval
	// how often the audit events of secret reads are written. Zero takes
	// the key service's defaults.
	SecretCacheTTL    time.Duration
	ReadAuditInterval time.Duration
	// SecretSourceAllow is what secret sources may reach
	// (env:PREFIX_*,file:/dir/,exec:/program; "": none).
	SecretSourceAllow string
	// CacheSize bounds the keys the verify cache holds (0: the key
	// service's default, keys.DefaultCacheSize); the negative cache holds
	// keys.NegativeCacheSize of it.
	CacheSize int
	// SeedKeepAlive keeps the seed routes' connections open (default:
	// Connection: close).
	SeedKeepAlive bool
	// Init allows a new, empty database where the master key file exists
	// but the database does not (which otherwise means the database was
	// lost, and is refused).
	Init bool
	// AuditAnchorFile keeps each tenant's latest signed audit checkpoint
	// outside the database ("": beside the master key file, see
	// defaultAuditAnchorFile).
	AuditAnchorFile string
	// UI serves the dashboard at /ui/ (and redirects / to it); UIIdle and
	// UIMaxAge end its sessions (0: the ui package's defaults).
	UI               bool
	UIIdle, UIMaxAge time.Duration
	// LeakReportKeys is the file or URL of the public keys GitHub's
	// secret-scanning alerts are checked with ("": POST /v1/leaks/github
	// is off); LeakAction what a reported live key gets (revoke, suspend).
	LeakReportKeys, LeakAction string
}

// serverHooks let tests replace the clock and the limiter and learn the
// listening address.
type serverHooks struct {
	Now     func() time.Time
	Limiter latchkey.Limiter
	Ready   func(addr string)
	// MetricsReady learns the address of the --metrics-addr listener.
	MetricsReady func(addr string)
	// PprofReady learns the address of the --pprof listener.
	PprofReady func(addr string)
	// Service, when set, is handed the key service (tests read its
	// counters).
	Service func(*keys.Service)
	// Audit, when set, is handed the audit service (tests sync its anchor).
	Audit func(*audit.Service)
	// Usage, when set, is handed the usage recorder (tests flush it).
	Usage func(*keyusage.Recorder)
	// WebhookPoll replaces how often the webhook dispatcher looks at its
	// outbox (default 1s).
	WebhookPoll time.Duration
	// WebhookResolve and WebhookDialing replace the dispatcher's host
	// lookup and see each address it is about to connect to (see
	// webhook.Options).
	WebhookResolve func(ctx context.Context, host string) ([]netip.Addr, error)
	WebhookDialing func(addr netip.AddrPort, allowed bool) error
	// IdentityDial, when set, opens the connections identity providers'
	// JWKS are fetched over (tests: loopback only).
	IdentityDial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func runServer(ctx context.Context, e *env, args []string) error {
	cfg, fs := serverFlags(e)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsageShown
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "latchkey server: unexpected argument %q\n", fs.Arg(0))
		return errUsageShown
	}
	return serve(ctx, e, *cfg, serverHooks{})
}

// serverFlags defines the server's flags on a configuration that holds
// their defaults (and the environment's values), which parsing changes.
// Tests that run a server in process start from it, so that they run what
// ships.
func serverFlags(e *env) (*serverConfig, *flag.FlagSet) {
	fs := flag.NewFlagSet("latchkey server", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	cfg := &serverConfig{RootKey: e.getenv("LATCHKEY_ROOT_KEY"), MasterKey: e.getenv("LATCHKEY_MASTER_KEY")}
	fs.StringVar(&cfg.Addr, "addr", envOr(e, "LATCHKEY_ADDR", ":8080"), "listen address (env LATCHKEY_ADDR)")
	fs.StringVar(&cfg.DB, "db", envOr(e, "LATCHKEY_DB", "./latchkey.db"), "SQLite file, or a postgres:// URL of a database several nodes share (pool_max_conns and other pool_* settings in its query) (env LATCHKEY_DB)")
	fs.StringVar(&cfg.AuditAnchorFile, "audit-anchor-file", e.getenv("LATCHKEY_AUDIT_ANCHOR_FILE"), "file keeping each tenant's latest signed audit checkpoint outside the database, so a rewound database is noticed; default: beside the master key file (beside --db when LATCHKEY_MASTER_KEY gives the key), named after --db with .audit-anchor (env LATCHKEY_AUDIT_ANCHOR_FILE)")
	fs.StringVar(&cfg.MasterKeyFile, "master-key-file", e.getenv("LATCHKEY_MASTER_KEY_FILE"), "file holding the keyring's master key (base64, mode 0600), created on first start; default: beside --db, named after it with .master-key (env LATCHKEY_MASTER_KEY_FILE; LATCHKEY_MASTER_KEY gives the key itself)")
	fs.BoolVar(&cfg.Init, "init", false, "start with a new, empty database even though the master key file exists (without it, a missing database beside an existing master key file is refused as lost); has no effect on an existing database")
	fs.StringVar(&cfg.TrustedProxies, "trusted-proxies", e.getenv("LATCHKEY_TRUSTED_PROXIES"), "comma-separated addresses/CIDRs whose X-Forwarded-For, and verify body ip for the brute-force guard, are believed (env LATCHKEY_TRUSTED_PROXIES)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", e.getenv("LATCHKEY_TLS_CERT"), "TLS certificate file (env LATCHKEY_TLS_CERT)")
	fs.StringVar(&cfg.TLSKey, "tls-key", e.getenv("LATCHKEY_TLS_KEY"), "TLS private key file (env LATCHKEY_TLS_KEY)")
	fs.StringVar(&cfg.LogLevel, "log-level", envOr(e, "LATCHKEY_LOG_LEVEL", "info"), "debug, info, warn or error (env LATCHKEY_LOG_LEVEL)")
	fs.Int64Var(&cfg.MaxBody, "max-body", 1<<20, "largest request body in bytes")
	fs.StringVar(&cfg.GeoIPDB, "geoip-db", e.getenv("LATCHKEY_GEOIP_DB"), "MaxMind country database (.mmdb) for keys limited to countries (env LATCHKEY_GEOIP_DB)")
	fs.StringVar(&cfg.Redis, "redis", e.getenv("LATCHKEY_REDIS"), "Redis URL (redis://[user:password@]host:port/db) keeping the rate windows, quotas and concurrency leases, shared by every node using it (env LATCHKEY_REDIS); default: in this process")
	fs.StringVar(&cfg.RedisFailure, "redis-failure", envOr(e, "LATCHKEY_REDIS_FAILURE", redislimit.FailureLocal), "while Redis cannot be reached: local (limit in this process, each limit divided by --nodes) or deny (answer unavailable) (env LATCHKEY_REDIS_FAILURE)")
	fs.IntVar(&cfg.Nodes, "nodes", envCount(e, "LATCHKEY_NODES", 1), "how many nodes share the limits in Redis; a local fallback gives each node its share (env LATCHKEY_NODES)")
	fs.DurationVar(&cfg.RotationCheck, "rotation-check", defaultRotationCheck, "how often this node looks for keys due for their scheduled rotation (each rotates once across all nodes)")
	fs.DurationVar(&cfg.QuotaFlush, "quota-flush", time.Second, "how often periodic quota consumption is written to the database; a crash loses at most this much (credit balances are reserved before they are spent)")
	fs.DurationVar(&cfg.UsageFlush, "usage-flush", time.Second, "how often key usage is looked at: a key's minute (usage rows, last_used_at) is written once, when it closes or after the key was idle this long")
	fs.IntVar(&cfg.GuardThreshold, "guard-threshold", 20, "failed key checks from one network (IPv4 /24, IPv6 /64) within --guard-window that block it (0: no guard)")
	fs.DurationVar(&cfg.GuardWindow, "guard-window", time.Minute, "window in which failed key checks are counted")
	fs.DurationVar(&cfg.GuardCooloff, "guard-cooloff", 5*time.Minute, "how long a blocked network is answered 429")
	fs.StringVar(&cfg.GuardExempt, "guard-exempt", e.getenv("LATCHKEY_GUARD_EXEMPT"), "comma-separated CIDRs/addresses whose failed key checks are never counted and which are never blocked (env LATCHKEY_GUARD_EXEMPT)")
	fs.StringVar(&cfg.PprofAddr, "pprof", "", "serve the Go profiler (/debug/pprof/) on this separate address, e.g. 127.0.0.1:6060; off by default, never on --addr")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", e.getenv("LATCHKEY_METRICS_ADDR"), "serve GET /metrics only on this separate address, e.g. 127.0.0.1:9090, not on --addr (env LATCHKEY_METRICS_ADDR)")
	fs.IntVar(&cfg.DeniedPerMinute, "denied-per-minute", 10, "denied verifications of one key per minute written to the audit log as key.denied (the rest are counted; -1: none)")
	longDuration(fs, "dormant-after", &cfg.Dormancy, "a key unused this long raises a dormant_key_used anomaly when used again (default 30d; 0: off)")
	longDuration(fs, "event-retention", &cfg.EventRetention, "how long events (security anomalies, webhook events) are kept once dispatched (default 400d, beyond the reports' longest window; 0: forever)")
	longDuration(fs, "usage-retention", &cfg.UsageRetention, "how long per-minute usage rows are kept (default 30d; 0: forever)")
	longDuration(fs, "usage-hour-retention", &cfg.UsageHourRetention, "how long hourly usage roll-ups are kept (default 90d; 0: forever)")
	longDuration(fs, "usage-day-retention", &cfg.UsageDayRetention, "how long daily usage roll-ups are kept (default 3y; 0: forever)")
	fs.Float64Var(&cfg.SpikeFactor, "spike-factor", 10, "a key's verifications in a minute above this multiple of its average over the hour before are a usage_spike")
	fs.Int64Var(&cfg.SpikeMin, "spike-min", 100, "fewest verifications in a minute that can be a usage_spike (-1: off)")
	fs.IntVar(&cfg.BurstThreshold, "burst-threshold", 50, "keys of a tenant created (or revoked) within --burst-window that raise a mass_creation (mass_revocation) anomaly (-1: off)")
	fs.DurationVar(&cfg.BurstWindow, "burst-window", 5*time.Minute, "window of --burst-threshold")
	cfg.WebhookBackoff, cfg.WebhookBackoffMax, cfg.WebhookGiveUp, cfg.WebhookTimeout = 5*time.Second, time.Hour, 24*time.Hour, 10*time.Second
	fs.Var((*durationValue)(&cfg.WebhookBackoff), "webhook-backoff", "wait before a webhook delivery's first retry; it doubles with each failure (with jitter)")
	fs.Var((*durationValue)(&cfg.WebhookBackoffMax), "webhook-backoff-max", "longest wait between two attempts of a webhook delivery")
	fs.Var((*durationValue)(&cfg.WebhookGiveUp), "webhook-give-up", "age at which a webhook delivery that keeps failing is given up (status failed), e.g. 24h or 3d")
	fs.Var((*durationValue)(&cfg.WebhookTimeout), "webhook-timeout", "how long one webhook attempt may take")
	fs.StringVar(&cfg.WebhookAllowPrivate, "webhook-allow-private", e.getenv("LATCHKEY_WEBHOOK_ALLOW_PRIVATE"), "comma-separated CIDRs outside the public internet that webhooks may reach, e.g. 10.1.2.0/24 for an internal receiver; loopback, private, link-local and other non-public addresses are refused otherwise (env LATCHKEY_WEBHOOK_ALLOW_PRIVATE)")
	fs.StringVar(&cfg.IDPAllowHTTP, "idp-allow-http", e.getenv("LATCHKEY_IDP_ALLOW_HTTP"), "comma-separated hosts (names or addresses) whose identity providers' JWKS may be fetched over plain http, e.g. 127.0.0.1 for a local issuer; every other jwks_url must be https (env LATCHKEY_IDP_ALLOW_HTTP)")
	fs.IntVar(&cfg.ExpiringDays, "expiring-days", 7, "raise key.expiring for keys that expire within this many days (0: never)")
	fs.IntVar(&cfg.SecretVersions, "secret-versions", 10, "how many versions of each secret are kept; older ones are deleted when a new one is written")
	fs.DurationVar(&cfg.SecretExpiresIn, "secret-expires-in", time.Hour, "expires_in of a secret written without one: how long clients are told to cache it")
	fs.StringVar(&cfg.SecretSourceAllow, "secret-source-allow", "", "what secrets may be read from instead of a stored value: env:PREFIX_*,file:/run/secrets/,exec:/usr/local/bin/op (none by default; docs/secrets.md)")
	fs.DurationVar(&cfg.SecretCacheTTL, "secret-cache-ttl", 5*time.Second, "how long an opened secret is served from memory; a change made through another server shows within it")
	fs.DurationVar(&cfg.ReadAuditInterval, "read-audit-interval", time.Second, "how often the audit events of secret reads are written, in one transaction; a crash loses at most this interval's")
	fs.DurationVar(&cfg.CacheTTL, "cache-ttl", 30*time.Second, "how long a cached key is trusted without reading the database again; on a cluster, changes reach every node at once (PostgreSQL LISTEN/NOTIFY) and this only heals a lost notification")
	fs.Func("cache-size", fmt.Sprintf("keys the verify cache holds: a count (200000) or a size in bytes (64MiB, 1GB: %d bytes a key); default %d keys, 128MiB; unknown keys remembered: a tenth, at least 10000", keys.EntryBytes, keys.DefaultCacheSize), func(v string) error {
		n, err := keys.ParseCacheSize(v)
		if err != nil {
			return errors.New(latchkey.ErrorMessage(err))
		}
		cfg.CacheSize = n
		return nil
	})
	fs.BoolVar(&cfg.SeedKeepAlive, "seed-keep-alive", false, "keep connections of GET /keys/{provider} and GET /llm-keys open instead of answering Connection: close")
	fs.BoolVar(&cfg.UI, "ui", true, "serve the web dashboard and self-service portal at /ui/ (docs/ui.md)")
	fs.DurationVar(&cfg.UIIdle, "ui-session-idle", ui.DefaultIdle, "a dashboard session ends after this long unused")
	fs.DurationVar(&cfg.UIMaxAge, "ui-session-max-age", ui.DefaultMaxAge, "a dashboard session ends this long after sign-in, however much it is used")
	fs.StringVar(&cfg.LeakReportKeys, "leak-report-keys", e.getenv("LATCHKEY_LEAK_REPORT_KEYS"), "file, or URL ("+leaks.GitHubKeysURL+"), of the public keys GitHub's secret-scanning partner alerts are signed with; turns on POST /v1/leaks/github (docs/leaks.md) (env LATCHKEY_LEAK_REPORT_KEYS)")
	fs.StringVar(&cfg.LeakAction, "leak-action", envOr(e, "LATCHKEY_LEAK_ACTION", string(keys.LeakRevoke)), "what a key reported leaked gets: revoke, or suspend (until an admin resumes it) (env LATCHKEY_LEAK_ACTION)")
	return cfg, fs
}

// longDuration defines a flag that takes a duration in days or years too
// (30d, 1y; see latchkey.ParseDuration). 0 is stored as -1, "off" or
// "forever" to the option it feeds, since there 0 means the default.
func longDuration(fs *flag.FlagSet, name string, dst *time.Duration, usage string) {
	fs.Func(name, usage, func(v string) error {
		d, err := latchkey.ParseDuration(v)
		if err != nil {
			return err
		}
		if d == 0 {
			d = -1
		}
		*dst = d
		return nil
	})
}

func envOr(e *env, name, def string) string {
	if v := e.getenv(name); v != "" {
		return v
	}
	return def
}

// serve runs a node until ctx ends, then shuts down gracefully: it stops
// accepting, lets requests in flight finish (up to 10 s) and closes the
// store.
func serve(ctx context.Context, e *env, cfg serverConfig, hooks serverHooks) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return latchkey.Errorf(latchkey.EInvalid, "--log-level %q: use debug, info, warn or error", cfg.LogLevel)
	}
	dbLost := new(atomic.Bool)
	log := slog.New(lostDBHandler{slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level}), dbLost})
	trusted, err := httpapi.ParseTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		return err
	}
	exempt, err := guard.ParseNetworks(cfg.GuardExempt)
	if err != nil {
		return latchkey.Errorf(latchkey.EInvalid, "--guard-exempt: %s", latchkey.ErrorMessage(err))
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return latchkey.Errorf(latchkey.EInvalid, "--tls-cert and --tls-key go together")
	}
	now := hooks.Now
	if now == nil {
		now = time.Now
	}

	// A SQLite file deleted or replaced under the server fails writes and
	// /readyz from then on; this says so in the log, once.
	raw, err := openStore(ctx, cfg, log, dbLost)
	if err != nil {
		return err
	}
	defer raw.Close()
	// Every part reaches the database through this wrapper, which times
	// its transactions for /metrics.
	db := metrics.TimeStore(raw)

	sealer, err := openKeyring(ctx, cfg, db, now, log)
	if err != nil {
		return err
	}
	anchor, err := openAuditAnchor(cfg, sealer, log)
	if err != nil {
		return err
	}
	raw.SetAuditAnchor(anchor)
	sealer.OnRewrap(anchor.Rewrap)

	limiter := hooks.Limiter
	var shared *redislimit.Limiter
	var rdb *redis.Client
	switch {
	case limiter != nil:
	case cfg.Redis != "":
		rl, client, closeRedis, err := openRedisLimiter(cfg, latchkey.Narrow[latchkey.QuotaStore](db), log)
		if err != nil {
			return err
		}
		// Closed after the HTTP server has drained: the last flush then
		// holds every admitted request's consumption.
		defer closeRedis()
		limiter, shared, rdb = rl, rl, client
	default:
		if isPostgres(cfg.DB) {
			log.Warn("limits are counted in each node's memory: with several nodes every node admits a key's whole limit; set --redis to share them")
		}
		mem := limit.NewMemory(limit.Options{Store: latchkey.Narrow[latchkey.QuotaStore](db), FlushInterval: cfg.QuotaFlush, Logger: log})
		// Closed after the HTTP server has drained: the last flush then
		// holds every admitted request's consumption.
		defer func() {
			if err := mem.Close(context.Background()); err != nil {
				log.Error("flushing quota consumption at shutdown failed", "err", err)
			}
		}()
		limiter = mem
	}
	monitor := security.New(security.Options{
		Store: latchkey.Narrow[latchkey.FlushTx](db), Dormancy: cfg.Dormancy, SpikeFactor: cfg.SpikeFactor, SpikeMin: cfg.SpikeMin, Now: now, Logger: log,
	})
	defer monitor.Close()
	rec := keyusage.New(keyusage.Options{
		Store: latchkey.Narrow[keyusage.Tx](db), FlushInterval: cfg.UsageFlush, Now: now, Logger: log,
		DeniedPerMinute: cfg.DeniedPerMinute, Observer: monitor,
		Retention: cfg.UsageRetention, HourRetention: cfg.UsageHourRetention, DayRetention: cfg.UsageDayRetention,
	})
	// Closed after the HTTP server has drained (deferred after the
	// limiter, so it runs before it): the final flush then holds every
	// answered verification.
	defer func() {
		if err := rec.Close(context.Background()); err != nil {
			log.Error("flushing key usage at shutdown failed", "err", err)
		}
	}()
	if cfg.SecretExpiresIn != 0 && (cfg.SecretExpiresIn < time.Second || cfg.SecretExpiresIn > secrets.MaxSecretExpiresIn*time.Second) {
		return latchkey.Errorf(latchkey.EInvalid, "--secret-expires-in must be from 1s to 8760h")
	}
	if cfg.CacheTTL != 0 && (cfg.CacheTTL < time.Second || cfg.CacheTTL > time.Hour) { // 0: the default, 30s
		return latchkey.Errorf(latchkey.EInvalid, "--cache-ttl must be from 1s to 1h")
	}
	if cfg.SecretCacheTTL < 0 || cfg.SecretCacheTTL > time.Hour {
		return latchkey.Errorf(latchkey.EInvalid, "--secret-cache-ttl must be from 0s (the default, 5s) to 1h")
	}
	if cfg.ReadAuditInterval < 0 || cfg.ReadAuditInterval > time.Hour {
		return latchkey.Errorf(latchkey.EInvalid, "--read-audit-interval must be from 0s (the default, 1s) to 1h")
	}
	if cfg.SecretVersions < 0 {
		return latchkey.Errorf(latchkey.EInvalid, "--secret-versions must be at least 1")
	}
	if cfg.RotationCheck < 0 {
		return latchkey.Errorf(latchkey.EInvalid, "--rotation-check must be positive")
	}
	if cfg.ExpiringDays < 0 {
		return latchkey.Errorf(latchkey.EInvalid, "--expiring-days must not be negative")
	}
	// Zero takes the dispatcher's default (tests build serverConfig by
	// hand); the flags' defaults are the same values.
	for name, d := range map[string]time.Duration{"webhook-backoff": cfg.WebhookBackoff, "webhook-backoff-max": cfg.WebhookBackoffMax, "webhook-give-up": cfg.WebhookGiveUp, "webhook-timeout": cfg.WebhookTimeout} {
		if d < 0 {
			return latchkey.Errorf(latchkey.EInvalid, "--%s must be positive", name)
		}
	}
	if cfg.WebhookBackoff > 0 && cfg.WebhookBackoffMax > 0 && cfg.WebhookBackoffMax < cfg.WebhookBackoff {
		return latchkey.Errorf(latchkey.EInvalid, "--webhook-backoff-max must be at least --webhook-backoff")
	}
	var hookTargets latchkey.WebhookTargets
	if strings.TrimSpace(cfg.WebhookAllowPrivate) != "" {
		if hookTargets.AllowPrivate, err = latchkey.ParseIPAllow(strings.Split(cfg.WebhookAllowPrivate, ",")); err != nil {
			return latchkey.Errorf(latchkey.EInvalid, "--webhook-allow-private: %s", latchkey.ErrorMessage(err))
		}
		log.Info("webhooks may reach these networks besides the public internet", "webhook_allow_private", cfg.WebhookAllowPrivate)
	}
	expiring := cfg.ExpiringDays
	if expiring == 0 {
		expiring = -1 // the dispatcher's "never"
	}
	disp := webhook.New(webhook.Options{
		Store: latchkey.Narrow[webhook.Tx](db), Sealer: sealer, Now: now, Timeout: cfg.WebhookTimeout,
		Backoff: cfg.WebhookBackoff, BackoffMax: cfg.WebhookBackoffMax, GiveUp: cfg.WebhookGiveUp,
		Poll: hooks.WebhookPoll, ExpiringDays: expiring, EventRetention: cfg.EventRetention, Logger: log,
		Targets: hookTargets, Resolve: hooks.WebhookResolve, Dialing: hooks.WebhookDialing,
	})
	// Deferred after the database's Close, so it runs before it: attempts
	// in flight end first (an attempt cut short is sent again after a
	// restart, with the same webhook-id).
	defer disp.Close()

	// The key service's store wakes the dispatcher after each change, so
	// the events it raised go out at once.
	waking := wakeOnUpdate(db, disp.Wake)
	sourceAllow, err := secrets.ParseSourceAllow(cfg.SecretSourceAllow)
	if err != nil {
		return fmt.Errorf("--secret-source-allow: %w", err)
	}
	sec := secrets.New(secrets.Options{Store: latchkey.Narrow[secrets.Tx](waking), Sealer: sealer, Now: now, Logger: log,
		Versions: cfg.SecretVersions, ExpiresIn: int64(cfg.SecretExpiresIn / time.Second),
		CacheTTL: cfg.SecretCacheTTL, ReadAuditInterval: cfg.ReadAuditInterval, SourceAllow: sourceAllow})
	aud := audit.New(audit.Options{Store: latchkey.Narrow[audit.Tx](waking), Now: now, Logger: log, Anchor: anchor, BeforeRead: sec.FlushReadAudits})
	hookSvc := webhook.NewService(webhook.ServiceOptions{Store: latchkey.Narrow[webhook.Tx](waking), Sealer: sealer, Now: now, Targets: hookTargets})
	opts := keys.Options{Store: latchkey.Narrow[keys.Tx](waking), Now: now, Limiter: limiter, Usage: rec, Logger: log,
		Sealer: sealer, OnSecret: func(tenant, name string) {
			sec.Apply(latchkey.Change{Kind: latchkey.ChangeSecret, Tenant: tenant, Name: name})
		},
		CacheSize: cfg.CacheSize, CacheTTL: cfg.CacheTTL,
		Burst: keys.BurstRule{Threshold: cfg.BurstThreshold, Window: cfg.BurstWindow}}
	if cfg.GeoIPDB != "" {
		g, err := geo.Open(cfg.GeoIPDB)
		if err != nil {
			return fmt.Errorf("--geoip-db: %w", err)
		}
		defer g.Close()
		opts.Geo = g
	}
	// The brute-force guard: each node's own, its counts and blocks shared
	// through Redis when there is one (an attacker spreading guesses over
	// the nodes meets one threshold, not one per node).
	var (
		brute      httpapi.Guard
		guardStats metrics.GuardSource
		onBlock    func(netip.Prefix, time.Time)
	)
	if cfg.GuardThreshold > 0 {
		local, err := guard.New(guard.Options{Threshold: cfg.GuardThreshold, Window: cfg.GuardWindow, Cooloff: cfg.GuardCooloff, Exempt: exempt})
		if err != nil {
			return fmt.Errorf("--guard-*: %w", err)
		}
		threshold := cfg.GuardThreshold
		onBlock = func(network netip.Prefix, at time.Time) { monitor.GuardBlocked(network, threshold, at) }
		brute, guardStats = local, local
		if rdb != nil {
			sg := redisguard.New(local, rdb, redisguard.Options{OnBlock: onBlock, Logger: log})
			// Closed before the Redis client (deferred after it).
			defer sg.Close()
			brute, guardStats = sg, sg
		}
	}
	svc := keys.New(opts)
	// Stopped before the database closes (deferred after it).
	defer runRotations(svc, cfg.RotationCheck, log)()
	// On a shared database, what another node changes reaches this node's
	// caches at once. Stopped before the database closes (deferred after).
	defer followChanges(raw, log, svc.Apply, sec.Apply)()
	// Both are closed after the HTTP server has drained (deferred after the
	// database, the dispatcher and the recorders, so they run before
	// them), the secret service first: its final flush holds the audit
	// event of every answered secret read, and the audit service then
	// writes the anchor's file with them in it.
	defer func() {
		if err := aud.Close(context.Background()); err != nil {
			log.Error("writing the audit anchor at shutdown failed", "err", err)
		}
	}()
	defer func() {
		if err := sec.Close(context.Background()); err != nil {
			log.Error("writing secret read audit events at shutdown failed", "err", err)
		}
	}()
	tok, rootID, created, err := svc.Bootstrap(ctx, cfg.RootKey)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if err := aud.CheckAuditAnchor(ctx); err != nil {
		return fmt.Errorf("audit anchor: %w", err)
	}
	if created {
		log.Info("created the operator tenant", "root_key_id", rootID)
		if cfg.RootKey == "" {
			printBanner(e, tok)
		}
	}

	disp.Start()
	met := metrics.New(metrics.Options{Keys: svc, Guard: guardStats, Now: now, Webhooks: disp})
	met.Registry().MustRegister(db)
	if shared != nil {
		met.Registry().MustRegister(redisCollectors(shared)...)
	}
	if sg, ok := brute.(*redisguard.Guard); ok {
		met.Registry().MustRegister(sharedGuardCollectors(sg)...)
	}
	apiCfg := httpapi.Config{Keys: svc, Secrets: sec, Audit: aud, Webhooks: hookSvc, Logger: log, TrustedProxies: trusted, MaxBody: cfg.MaxBody, Now: now, Guard: brute, Observer: met,
		Keyring: sealer, SeedKeepAlive: cfg.SeedKeepAlive}
	apiCfg.OnBlock = onBlock
	apiCfg.Identity = identity.New(identity.Options{Store: latchkey.Narrow[identity.Tx](waking), Keys: svc, Now: now, Logger: log,
		AllowHTTP: strings.Split(cfg.IDPAllowHTTP, ","), Dial: hooks.IdentityDial})
	if apiCfg.Leaks, err = leakConfig(ctx, cfg, log); err != nil {
		return err
	}
	if cfg.MetricsAddr == "" {
		apiCfg.Metrics = met.Handler()
	}
	api := httpapi.New(apiCfg)
	var handler http.Handler = api
	if cfg.UI {
		dash, err := ui.New(ui.Config{Keys: svc, Audit: aud, Webhooks: hookSvc, Secrets: sec, Sessions: latchkey.Narrow[ui.SessionTx](db), Guard: brute, OnBlock: onBlock,
			TrustedProxies: trusted, Idle: cfg.UIIdle, MaxAge: cfg.UIMaxAge, Now: now, Logger: log})
		if err != nil {
			return fmt.Errorf("dashboard: %w", err)
		}
		handler = withDashboard(api, dash)
	}
	if hooks.Service != nil {
		hooks.Service(svc)
	}
	if hooks.Audit != nil {
		hooks.Audit(aud)
	}
	if hooks.Usage != nil {
		hooks.Usage(rec)
	}
	errc := make(chan error, 3)
	if cfg.PprofAddr != "" {
		paddr, stop, err := servePprof(cfg.PprofAddr, log, errc)
		if err != nil {
			return err
		}
		defer stop()
		if hooks.PprofReady != nil {
			hooks.PprofReady(paddr)
		}
	}
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr %s: %w", cfg.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", met.Handler())
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		go func() { errc <- msrv.Serve(mln) }()
		defer msrv.Close()
		log.Info("serving metrics", "addr", mln.Addr().String())
		if hooks.MetricsReady != nil {
			hooks.MetricsReady(mln.Addr().String())
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler: handler,
		// Whole-request read and write deadlines are set per request by
		// httpapi, not here: set here they would cost every forward-auth
		// request two more timer resets.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if cfg.TLSCert != "" {
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	go func() {
		if cfg.TLSCert != "" {
			errc <- srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	log.Info("listening", "addr", ln.Addr().String(), "db", shownDB(cfg.DB), "tls", cfg.TLSCert != "")
	if hooks.Ready != nil {
		hooks.Ready(ln.Addr().String())
	}

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("requests still running at shutdown were cut", "err", err)
	}
	return nil
}

// dbCheckInterval is how often the server checks that its database file is
// still the one it opened (writes and /readyz also check by themselves).
const dbCheckInterval = time.Second

// msgDatabaseLost is the log message of a database file found deleted or
// replaced under the running server.
const msgDatabaseLost = "the database file is gone or replaced; writes are refused and /readyz fails until it is restored and the server restarted"

// withDashboard serves /ui/… from the dashboard, redirects GET / to it,
// and hands everything else to the API, whose hot paths (verify,
// forward-auth) pay one prefix check for it.
func withDashboard(api, dash http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case strings.HasPrefix(p, "/ui/"):
			dash.ServeHTTP(w, r)
		case (p == "/" || p == "/ui") && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			http.Redirect(w, r, "/ui/", http.StatusFound)
		default:
			api.ServeHTTP(w, r)
		}
	})
}

// lostDBHandler demotes to debug every log record whose error is a lost
// database (latchkey.ErrStoreLost), but the one that reports the loss: the
// background writers (usage, quotas, webhooks, read audit) retry every
// second and would repeat it for as long as the server runs. Until the
// loss is known (lost), records pass untouched.
type lostDBHandler struct {
	slog.Handler
	lost *atomic.Bool
}

func (h lostDBHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.lost.Load() && r.Level > slog.LevelDebug && r.Message != msgDatabaseLost && carriesLostDB(r) {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

func (h lostDBHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return lostDBHandler{h.Handler.WithAttrs(as), h.lost}
}

func (h lostDBHandler) WithGroup(name string) slog.Handler {
	return lostDBHandler{h.Handler.WithGroup(name), h.lost}
}

func carriesLostDB(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Value.Kind() == slog.KindAny {
			if err, ok := a.Value.Any().(error); ok && errors.Is(err, latchkey.ErrStoreLost) {
				found = true
			}
		}
		return !found
	})
	return found
}

// checkDatabaseNotLost refuses to start on a missing database when the
// master key file is there: the file is created beside the database on its
// first start, so the database was deleted or moved, and starting would
// mint a new root key over an empty one and every key would be gone. --init
// says a new database is wanted. A master key given in LATCHKEY_MASTER_KEY
// leaves no file to go by.
func checkDatabaseNotLost(cfg serverConfig, log *slog.Logger) error {
	_, err := os.Stat(cfg.DB)
	if err == nil {
		if cfg.Init {
			log.Warn("--init has no effect: the database exists; remove --init from the command line", "db", cfg.DB)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil // opening it says what is wrong
	}
	if cfg.Init {
		return retireAuditAnchor(cfg, log)
	}
	keyFile := cfg.MasterKeyFile
	if keyFile == "" && cfg.MasterKey == "" {
		keyFile = defaultMasterKeyFile(cfg.DB)
	}
	if keyFile == "" {
		return nil
	}
	if _, err := os.Stat(keyFile); err != nil {
		return nil
	}
	return latchkey.Errorf(latchkey.EConflict, "the database %s does not exist, but the master key file %s does: the database was deleted or moved. "+
		"Restore it (with its -wal file) or point --db at it; to start afresh with a new, empty database and a new root key, pass --init", cfg.DB, keyFile)
}

// retireAuditAnchor moves aside the audit anchor of a database that --init
// replaces: its checkpoints belong to the lost log, and against a new, empty
// log they would read as a truncated one. The file is renamed, not deleted,
// so that whoever investigates the loss still has it.
func retireAuditAnchor(cfg serverConfig, log *slog.Logger) error {
	path := cfg.AuditAnchorFile
	if path == "" {
		path = defaultAuditAnchorFile(cfg)
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	old := path + ".before-init-" + time.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(path, old); err != nil {
		return fmt.Errorf("--init: move the old audit anchor aside: %w", err)
	}
	log.Warn("--init: the audit anchor of the previous database was moved aside", "path", old)
	return nil
}

// defaultMasterKeyFile is where the master key lives when no flag names a
// file: beside the database, named after it without its extension
// (./latchkey.db → ./latchkey.master-key), so that copying latchkey.db*
// for a backup does not copy the key that opens it.
func defaultMasterKeyFile(db string) string {
	dir, base := filepath.Split(db)
	if ext := filepath.Ext(base); ext != "" && ext != base {
		base = strings.TrimSuffix(base, ext)
	}
	return filepath.Join(dir, base+".master-key")
}

// defaultAuditAnchorFile is where the audit anchor lives when no flag
// names a file: beside the master key file, named after the database
// (./latchkey.db → ./latchkey.audit-anchor), so that it is kept, and
// backed up, apart from the database as the master key is.
func defaultAuditAnchorFile(cfg serverConfig) string {
	if isPostgres(cfg.DB) {
		// Each node keeps its own, beside its master key file (or in its
		// working directory when the key comes from the environment).
		dir := "."
		if cfg.MasterKey == "" {
			dir = filepath.Dir(cfg.MasterKeyFile)
		}
		return filepath.Join(dir, "latchkey.audit-anchor")
	}
	dir := filepath.Dir(cfg.DB)
	if cfg.MasterKey == "" {
		mk := cfg.MasterKeyFile
		if mk == "" {
			mk = defaultMasterKeyFile(cfg.DB)
		}
		dir = filepath.Dir(mk)
	}
	base := filepath.Base(defaultMasterKeyFile(cfg.DB))
	return filepath.Join(dir, strings.TrimSuffix(base, ".master-key")+".audit-anchor")
}

// openAuditAnchor opens the audit anchor with the keyring's audit key.
func openAuditAnchor(cfg serverConfig, kr *keyring.Keyring, log *slog.Logger) (*audit.Anchor, error) {
	path := cfg.AuditAnchorFile
	if path == "" {
		path = defaultAuditAnchorFile(cfg)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("--audit-anchor-file %s: %w", path, err)
	}
	key := kr.AuditKey()
	defer clear(key)
	a, err := audit.NewAnchor(key, abs, log)
	if err != nil {
		return nil, err
	}
	log.Info("audit anchor file", "path", abs)
	return a, nil
}

// openKeyring finds the master key (LATCHKEY_MASTER_KEY, else the master
// key file, created with a new random key on a database without a
// keyring) and opens the keyring with it. A wrong key fails here, before
// the server listens. The key's value is never logged; the file's path is.
func openKeyring(ctx context.Context, cfg serverConfig, db latchkey.Store[nodeTx], now func() time.Time, log *slog.Logger) (*keyring.Keyring, error) {
	var master []byte
	opts := keyring.Options{Now: now}
	if cfg.MasterKey != "" {
		if cfg.MasterKeyFile != "" {
			return nil, latchkey.Errorf(latchkey.EInvalid, "LATCHKEY_MASTER_KEY and --master-key-file both name a master key; give one")
		}
		k, err := keyring.ParseMasterKey(cfg.MasterKey)
		if err != nil {
			return nil, latchkey.Errorf(latchkey.EInvalid, "LATCHKEY_MASTER_KEY: %s", latchkey.ErrorMessage(err))
		}
		master = k
		log.Info("keyring master key from LATCHKEY_MASTER_KEY")
	} else {
		path := cfg.MasterKeyFile
		if path == "" {
			path = defaultMasterKeyFile(cfg.DB)
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("--master-key-file %s: %w", path, err)
		}
		k, err := keyring.ReadMasterKeyFile(abs)
		switch {
		case latchkey.ErrorCode(err) == latchkey.ENotFound:
			has, ierr := keyring.Initialized(ctx, latchkey.Narrow[keyring.Tx](db))
			if ierr != nil {
				return nil, fmt.Errorf("keyring: %w", ierr)
			}
			if has {
				return nil, latchkey.Errorf(latchkey.EInvalid, "the database's secrets are sealed under a master key, but the master key file %s does not exist: restore it, or set LATCHKEY_MASTER_KEY", abs)
			}
			if k, err = keyring.CreateMasterKeyFile(abs); err != nil {
				return nil, err
			}
			log.Info("created the keyring master key file; keep a copy apart from database backups", "path", abs)
		case err != nil:
			return nil, err
		default:
			log.Info("keyring master key from file", "path", abs)
		}
		master = k
		opts.MasterKeyFile = abs
	}
	defer clear(master)
	kr, err := keyring.Open(ctx, latchkey.Narrow[keyring.Tx](db), master, opts)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	st := kr.Status()
	log.Info("keyring open", "active_term", st.Active, "terms", len(st.Terms))
	return kr, nil
}

// durationValue is a flag that takes the API's durations ("90s", "6h",
// "3d").
type durationValue time.Duration

func (d *durationValue) String() string { return latchkey.FormatDuration(time.Duration(*d)) }

func (d *durationValue) Set(v string) error {
	p, err := latchkey.ParseDuration(v)
	if err != nil {
		return errors.New(latchkey.ErrorMessage(err))
	}
	*d = durationValue(p)
	return nil
}

// printBanner shows the root key once, on stderr, outside the JSON log so
// log shippers never collect it.
func printBanner(e *env, tok latchkey.Token) {
	fmt.Fprintf(e.stderr, `
  Latchkey created the operator tenant. Its root key is shown this once:

    root key: %s

  Keep it safe; only its hash is stored. To use the CLI:
    export LATCHKEY_KEY=<the key above>

`, tok.Reveal())
}
