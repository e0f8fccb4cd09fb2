package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/testenv"
	"github.com/latchkeyhq/latchkey/limit/redislimit"
)

func withRedis(url, failure string, nodes int) serverOption {
	return func(c *serverConfig, _ *serverHooks) { c.Redis, c.RedisFailure, c.Nodes = url, failure, nodes }
}

// verifyOn asks one node to verify key, and returns the verify code, or
// the error code when the node could not decide.
func verifyOn(t *testing.T, ts *testServer, key string) string {
	t.Helper()
	r := ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": key, "scopes": []string{"data:read"}})
	if r.Status == http.StatusServiceUnavailable {
		return latchkey.EUnavailable
	}
	return codeOf(r)
}

// Two nodes on one database and one Redis enforce a key's rate window
// together: 30 requests spread over both against 10 a minute admit
// exactly 10, where per-node limits would have admitted 20.
func TestE2ERedisSharesLimitsAcrossNodes(t *testing.T) {
	rdb := testenv.StartRedis(t)
	a := startServer(t, withRedis(rdb.URL(), redislimit.FailureLocal, 2))
	b := startServer(t, withDB(a.DB), withRedis(rdb.URL(), redislimit.FailureLocal, 2))
	admin := a.mustTenant(t, "acme")
	_, key := a.mustCreate(t, admin, map[string]any{
		"scopes":     []string{"data:read"},
		"ratelimits": []map[string]any{{"name": "minute", "limit": 10, "window": "1m"}},
	})
	valid := 0
	for i := range 30 {
		node := a
		if i%2 == 1 {
			node = b
		}
		switch c := verifyOn(t, node, key); c {
		case latchkey.CodeValid:
			valid++
		case latchkey.CodeRateLimited:
		default:
			t.Fatalf("request %d: %s", i, c)
		}
	}
	if valid != 10 {
		t.Fatalf("two nodes admitted %d of 30 against 10/min, want exactly 10", valid)
	}
	if m := do(t, "GET", a.URL+"/metrics", nil, nil); m.Status != 200 || !containsLine(string(m.Raw), "latchkey_redis_up 1") {
		t.Fatalf("metrics while Redis answers: %d\n%s", m.Status, m.Raw)
	}
}

// Redis stopped: deny answers unavailable; local limits each node to its
// share of the key's limit; both recover by themselves once Redis is back.
func TestE2ERedisDownFollowsTheFailureMode(t *testing.T) {
	for _, mode := range []string{redislimit.FailureDeny, redislimit.FailureLocal} {
		t.Run(mode, func(t *testing.T) {
			rdb := testenv.StartRedis(t)
			ts := startServer(t, withRedis(rdb.URL(), mode, 2))
			admin := ts.mustTenant(t, "acme")
			_, key := ts.mustCreate(t, admin, map[string]any{
				"scopes":     []string{"data:read"},
				"ratelimits": []map[string]any{{"name": "minute", "limit": 10, "window": "1m"}},
			})
			if c := verifyOn(t, ts, key); c != latchkey.CodeValid {
				t.Fatalf("with Redis up: %s", c)
			}
			rdb.Stop()
			counts := map[string]int{}
			for range 12 {
				counts[verifyOn(t, ts, key)]++
			}
			switch mode {
			case redislimit.FailureDeny:
				if counts[latchkey.EUnavailable] != 12 {
					t.Fatalf("deny with Redis down: %v, want every request unavailable", counts)
				}
			case redislimit.FailureLocal:
				// Each of the 2 nodes gets 10/2 = 5 a minute of its own.
				if counts[latchkey.CodeValid] != 5 || counts[latchkey.CodeRateLimited] != 7 {
					t.Fatalf("local with Redis down: %v, want 5 valid and 7 rate limited", counts)
				}
			}
			if m := do(t, "GET", ts.URL+"/metrics", nil, nil); !containsLine(string(m.Raw), "latchkey_redis_up 0") {
				t.Fatalf("metrics while Redis is down:\n%s", m.Raw)
			}
			rdb.Restart()
			// The limiter tries Redis again after its backoff (1s); an
			// empty Redis starts the window full.
			deadline := 100
			for c := verifyOn(t, ts, key); c != latchkey.CodeValid; c = verifyOn(t, ts, key) {
				if deadline--; deadline == 0 {
					t.Fatalf("after Redis came back: %s", c)
				}
				sleepBriefly()
			}
		})
	}
}

// containsLine reports whether text has line as one of its lines.
func containsLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// sleepBriefly paces a bounded retry loop.
func sleepBriefly() { time.Sleep(50 * time.Millisecond) }

// Bad Redis settings are refused before the server listens, and a URL's
// password never appears in the error or the log.
func TestServeRejectsBadRedisSettings(t *testing.T) {
	const password = "s3cret-redis-password"
	for name, set := range map[string]func(*serverConfig){
		"URL":         func(c *serverConfig) { c.Redis = "http://:" + password + "@127.0.0.1:6379/0" },
		"FailureMode": func(c *serverConfig) { c.Redis, c.RedisFailure = "redis://127.0.0.1:1/0", "ignore" },
		"NoNodes":     func(c *serverConfig) { c.Redis, c.Nodes = "redis://127.0.0.1:1/0", 0 },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := shippedConfig(t)
			cfg.Addr, cfg.DB, cfg.LogLevel = "127.0.0.1:0", filepath.Join(t.TempDir(), "l.db"), "debug"
			set(&cfg)
			var log syncBuffer
			e := &env{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: io.Discard, stderr: &log}
			err := serve(context.Background(), e, cfg, serverHooks{})
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("serve: %v, want invalid", err)
			}
			if strings.Contains(err.Error(), password) || strings.Contains(string(log.Bytes()), password) {
				t.Fatal("the Redis password was shown")
			}
		})
	}
	// LATCHKEY_NODES that is not a number is refused, not taken as 1.
	cfg, fs := serverFlags(&env{getenv: func(k string) string { return map[string]string{"LATCHKEY_NODES": "three"}[k] }, stderr: io.Discard})
	if err := fs.Parse(nil); err != nil || cfg.Nodes >= 1 {
		t.Fatalf("LATCHKEY_NODES=three gave --nodes %d (%v); want a value validation refuses", cfg.Nodes, err)
	}
}
