package main

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/guard/redisguard"
	"github.com/latchkeyhq/latchkey/limit"
	"github.com/latchkeyhq/latchkey/limit/redislimit"
)

// Redis client bounds: a verification waits for Redis at most this long
// before the failure mode (--redis-failure) decides.
const (
	redisDialTimeout = 500 * time.Millisecond
	redisIOTimeout   = 250 * time.Millisecond
)

// envCount is the whole number in the environment variable name, def when
// it is unset, and -1 (which validation refuses) when it is not a number.
func envCount(e *env, name string, def int) int {
	v := e.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

// openRedisLimiter connects to --redis and returns the shared limiter
// over it, with an in-process limiter for --redis-failure=local, the
// client (the brute-force guard shares its counts over it too), and the
// function that closes all of it (the last flush first). Errors: EInvalid
// for a bad URL, mode or node count.
func openRedisLimiter(cfg serverConfig, db latchkey.Store[latchkey.QuotaStore], log *slog.Logger) (*redislimit.Limiter, *redis.Client, func(), error) {
	if !redislimit.ValidFailure(cfg.RedisFailure) {
		return nil, nil, nil, latchkey.Errorf(latchkey.EInvalid, "--redis-failure %q: use %s or %s", cfg.RedisFailure, redislimit.FailureLocal, redislimit.FailureDeny)
	}
	if cfg.Nodes < 1 || cfg.Nodes > 1000 {
		return nil, nil, nil, latchkey.Errorf(latchkey.EInvalid, "--nodes (LATCHKEY_NODES) must be a whole number from 1 to 1000")
	}
	opts, err := redis.ParseURL(cfg.Redis)
	if err != nil {
		// The URL may hold a password: say what is wrong, not the URL.
		return nil, nil, nil, latchkey.Errorf(latchkey.EInvalid, "--redis: not a redis:// or rediss:// URL")
	}
	// A script retried after a lost reply would count a request twice:
	// the client never retries; a failed call is the failure mode's.
	opts.MaxRetries = -1
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = redisDialTimeout, redisIOTimeout, redisIOTimeout
	opts.PoolTimeout = redisIOTimeout
	opts.ContextTimeoutEnabled = true
	client := redis.NewClient(opts)
	// The fallback keeps no store: the shared limiter's flushes are the
	// record, and a second writer would overwrite them.
	local := limit.NewMemory(limit.Options{Logger: log})
	rl := redislimit.New(client, db, redislimit.Options{
		FlushInterval: cfg.QuotaFlush, Failure: cfg.RedisFailure, Nodes: cfg.Nodes, Local: local, Logger: log,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		// Not fatal: the failure mode covers a Redis that is down now,
		// and the limiter tries it again by itself.
		log.Warn("Redis does not answer; limits follow --redis-failure until it does", "redis_failure", cfg.RedisFailure, "err", err)
	}
	log.Info("limits are kept in Redis, shared by every node using it", "redis_failure", cfg.RedisFailure, "nodes", cfg.Nodes)
	closeAll := func() {
		if err := rl.Close(context.Background()); err != nil {
			log.Error("flushing quota consumption at shutdown failed", "err", err)
		}
		if err := local.Close(context.Background()); err != nil {
			log.Error("closing the local fallback limiter failed", "err", err)
		}
		if err := client.Close(); err != nil {
			log.Warn("closing the Redis client failed", "err", err)
		}
	}
	return rl, client, closeAll, nil
}

// redisCollectors expose what the limiter did because Redis failed.
func redisCollectors(rl *redislimit.Limiter) []prometheus.Collector {
	counter := func(name, help string, v func(redislimit.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v(rl.Stats())) })
	}
	return []prometheus.Collector{
		counter("latchkey_redis_errors_total", "Redis calls of the limiter that failed.", func(s redislimit.Stats) uint64 { return s.RedisErrors }),
		counter("latchkey_limiter_fallbacks_total", "Requests whose limits were decided in this process because Redis could not be reached (--redis-failure=local).", func(s redislimit.Stats) uint64 { return s.Fallbacks }),
		counter("latchkey_limiter_remembered_denials_total", "Requests answered RATE_LIMITED by this node without asking Redis: an earlier answer said the key's windows admit nothing before then.", func(s redislimit.Stats) uint64 { return s.Remembered }),
		counter("latchkey_limiter_unavailable_total", "Requests answered unavailable because Redis could not be reached (--redis-failure=deny).", func(s redislimit.Stats) uint64 { return s.Unavailable }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "latchkey_redis_up", Help: "1 while the limiter reaches Redis, 0 while it uses the failure mode."}, func() float64 {
			if rl.Stats().Down {
				return 0
			}
			return 1
		}),
	}
}

// sharedGuardCollectors expose what sharing the brute-force guard's
// counts through Redis did.
func sharedGuardCollectors(g *redisguard.Guard) []prometheus.Collector {
	counter := func(name, help string, v func(redisguard.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v(g.SharedStats())) })
	}
	return []prometheus.Collector{
		counter("latchkey_guard_shared_blocks_total", "Networks this node blocked because the cluster's count of failures, kept in Redis, reached the threshold.", func(s redisguard.Stats) uint64 { return s.Shared }),
		counter("latchkey_guard_dropped_failures_total", "Failed verifications counted on this node only: Redis could not be reached or the queue to it was full.", func(s redisguard.Stats) uint64 { return s.Dropped }),
		counter("latchkey_guard_redis_errors_total", "Redis calls of the brute-force guard that failed.", func(s redisguard.Stats) uint64 { return s.RedisErrors }),
	}
}
