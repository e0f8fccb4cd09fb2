package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/geo"
	"github.com/latchkeyhq/latchkey/guard"
	"github.com/latchkeyhq/latchkey/httpapi"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/limit"
	"github.com/latchkeyhq/latchkey/metrics"
	"github.com/latchkeyhq/latchkey/security"
	"github.com/latchkeyhq/latchkey/store/sqlite"
	keyusage "github.com/latchkeyhq/latchkey/usage"
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
	GeoIPDB        string
	QuotaFlush     time.Duration
	UsageFlush     time.Duration
	GuardThreshold int
	GuardWindow    time.Duration
	GuardCooloff   time.Duration
	MetricsAddr    string // "": GET /metrics on the main listener

	// Usage retention per grain (0: the default; negative: forever).
	UsageRetention, UsageHourRetention, UsageDayRetention time.Duration

	// Security checks (package security) and key.denied sampling.
	DeniedPerMinute int
	Dormancy        time.Duration
	SpikeFactor     float64
	SpikeMin        int64
	BurstThreshold  int
	BurstWindow     time.Duration
}

// serverHooks let tests replace the clock and the limiter and learn the
// listening address.
type serverHooks struct {
	Now     func() time.Time
	Limiter keys.Limiter
	Ready   func(addr string)
	// MetricsReady learns the address of the --metrics-addr listener.
	MetricsReady func(addr string)
	// Service, when set, is handed the key service (tests read its
	// counters).
	Service func(*keys.Service)
	// Usage, when set, is handed the usage recorder (tests flush it).
	Usage func(*keyusage.Recorder)
}

func runServer(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("latchkey server", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	cfg := serverConfig{RootKey: e.getenv("LATCHKEY_ROOT_KEY")}
	fs.StringVar(&cfg.Addr, "addr", envOr(e, "LATCHKEY_ADDR", ":8080"), "listen address (env LATCHKEY_ADDR)")
	fs.StringVar(&cfg.DB, "db", envOr(e, "LATCHKEY_DB", "./latchkey.db"), "SQLite file (env LATCHKEY_DB)")
	fs.StringVar(&cfg.TrustedProxies, "trusted-proxies", e.getenv("LATCHKEY_TRUSTED_PROXIES"), "comma-separated addresses/CIDRs whose X-Forwarded-For is believed (env LATCHKEY_TRUSTED_PROXIES)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", e.getenv("LATCHKEY_TLS_CERT"), "TLS certificate file (env LATCHKEY_TLS_CERT)")
	fs.StringVar(&cfg.TLSKey, "tls-key", e.getenv("LATCHKEY_TLS_KEY"), "TLS private key file (env LATCHKEY_TLS_KEY)")
	fs.StringVar(&cfg.LogLevel, "log-level", envOr(e, "LATCHKEY_LOG_LEVEL", "info"), "debug, info, warn or error (env LATCHKEY_LOG_LEVEL)")
	fs.Int64Var(&cfg.MaxBody, "max-body", 1<<20, "largest request body in bytes")
	fs.StringVar(&cfg.GeoIPDB, "geoip-db", e.getenv("LATCHKEY_GEOIP_DB"), "MaxMind country database (.mmdb) for keys limited to countries (env LATCHKEY_GEOIP_DB)")
	fs.DurationVar(&cfg.QuotaFlush, "quota-flush", time.Second, "how often quota consumption is written to the database; a crash loses at most this much")
	fs.DurationVar(&cfg.UsageFlush, "usage-flush", time.Second, "how often key usage and last_used_at are written to the database; usage reads are at most this much behind")
	fs.IntVar(&cfg.GuardThreshold, "guard-threshold", 20, "failed key checks from one network (IPv4 /24, IPv6 /64) within --guard-window that block it (0: no guard)")
	fs.DurationVar(&cfg.GuardWindow, "guard-window", time.Minute, "window in which failed key checks are counted")
	fs.DurationVar(&cfg.GuardCooloff, "guard-cooloff", 5*time.Minute, "how long a blocked network is answered 429")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", e.getenv("LATCHKEY_METRICS_ADDR"), "serve GET /metrics only on this separate address, e.g. 127.0.0.1:9090, not on --addr (env LATCHKEY_METRICS_ADDR)")
	fs.IntVar(&cfg.DeniedPerMinute, "denied-per-minute", 10, "denied verifications of one key per minute written to the audit log as key.denied (the rest are counted; -1: none)")
	longDuration(fs, "dormant-after", &cfg.Dormancy, "a key unused this long raises a dormant_key_used anomaly when used again (default 30d; 0: off)")
	longDuration(fs, "usage-retention", &cfg.UsageRetention, "how long per-minute usage rows are kept (default 30d; 0: forever)")
	longDuration(fs, "usage-hour-retention", &cfg.UsageHourRetention, "how long hourly usage roll-ups are kept (default 90d; 0: forever)")
	longDuration(fs, "usage-day-retention", &cfg.UsageDayRetention, "how long daily usage roll-ups are kept (default 3y; 0: forever)")
	fs.Float64Var(&cfg.SpikeFactor, "spike-factor", 10, "a key's verifications in a minute above this multiple of its average over the hour before are a usage_spike")
	fs.Int64Var(&cfg.SpikeMin, "spike-min", 100, "fewest verifications in a minute that can be a usage_spike (-1: off)")
	fs.IntVar(&cfg.BurstThreshold, "burst-threshold", 50, "keys of a tenant created (or revoked) within --burst-window that raise a mass_creation (mass_revocation) anomaly (-1: off)")
	fs.DurationVar(&cfg.BurstWindow, "burst-window", 5*time.Minute, "window of --burst-threshold")
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
	return serve(ctx, e, cfg, serverHooks{})
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
	log := slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	trusted, err := httpapi.ParseTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		return err
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return latchkey.Errorf(latchkey.EInvalid, "--tls-cert and --tls-key go together")
	}
	if strings.HasPrefix(cfg.DB, "postgres://") || strings.HasPrefix(cfg.DB, "postgresql://") {
		return latchkey.Errorf(latchkey.EInvalid, "--db %s: this build stores keys in SQLite only; give a file path", strings.SplitN(cfg.DB, "@", 2)[0]+"…")
	}
	now := hooks.Now
	if now == nil {
		now = time.Now
	}

	db, err := sqlite.Open(ctx, cfg.DB)
	if err != nil {
		return fmt.Errorf("open database %s: %w", cfg.DB, err)
	}
	defer db.Close()

	limiter := hooks.Limiter
	if limiter == nil {
		mem := limit.NewMemory(limit.Options{Store: db, FlushInterval: cfg.QuotaFlush, Logger: log})
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
		Store: db, Dormancy: cfg.Dormancy, SpikeFactor: cfg.SpikeFactor, SpikeMin: cfg.SpikeMin, Now: now, Logger: log,
	})
	defer monitor.Close()
	rec := keyusage.New(keyusage.Options{
		Store: db, FlushInterval: cfg.UsageFlush, Now: now, Logger: log,
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
	opts := keys.Options{
		Store: db, Now: now, Limiter: limiter, Usage: rec, Logger: log,
		Burst: keys.BurstRule{Threshold: cfg.BurstThreshold, Window: cfg.BurstWindow},
	}
	if cfg.GeoIPDB != "" {
		g, err := geo.Open(cfg.GeoIPDB)
		if err != nil {
			return fmt.Errorf("--geoip-db: %w", err)
		}
		defer g.Close()
		opts.Geo = g
	}
	var brute *guard.Guard
	if cfg.GuardThreshold > 0 {
		if brute, err = guard.New(guard.Options{Threshold: cfg.GuardThreshold, Window: cfg.GuardWindow, Cooloff: cfg.GuardCooloff}); err != nil {
			return fmt.Errorf("--guard-*: %w", err)
		}
	}
	svc := keys.New(opts)
	tok, rootID, created, err := svc.Bootstrap(ctx, cfg.RootKey)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if created {
		log.Info("created the operator tenant", "root_key_id", rootID)
		if cfg.RootKey == "" {
			printBanner(e, tok)
		}
	}

	met := metrics.New(metrics.Options{Keys: svc, Guard: brute, Now: now})
	apiCfg := httpapi.Config{Keys: svc, Logger: log, TrustedProxies: trusted, MaxBody: cfg.MaxBody, Now: now, Guard: brute, Observer: met}
	if brute != nil {
		threshold := cfg.GuardThreshold
		apiCfg.OnBlock = func(network netip.Prefix, at time.Time) { monitor.GuardBlocked(network, threshold, at) }
	}
	if cfg.MetricsAddr == "" {
		apiCfg.Metrics = met.Handler()
	}
	api := httpapi.New(apiCfg)
	if hooks.Service != nil {
		hooks.Service(svc)
	}
	if hooks.Usage != nil {
		hooks.Usage(rec)
	}
	errc := make(chan error, 2)
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
		Handler: api,
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
	log.Info("listening", "addr", ln.Addr().String(), "db", cfg.DB, "tls", cfg.TLSCert != "")
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
