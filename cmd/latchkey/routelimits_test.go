package main

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/geo/geotest"
)

// denied checks that r is the answer of a route that refused its key for a
// verify check: the status, the error code of the body, the verify code in
// X-Latchkey-Code, and, for a limit, Retry-After as verify counts it.
func denied(t *testing.T, what string, r resp, status int, verifyCode, retryAfter string) {
	t.Helper()
	if r.Status != status || r.errCode() != latchkey.CodeForStatus(status) || r.Header.Get("X-Latchkey-Code") != verifyCode {
		t.Fatalf("%s: %d %s %v, want %d with X-Latchkey-Code %s", what, r.Status, r.Raw, r.Header, status, verifyCode)
	}
	if got := r.Header.Get("Retry-After"); got != retryAfter {
		t.Fatalf("%s: Retry-After %q, want %q", what, got, retryAfter)
	}
}

// TestE2EKeyLimitsApplyOnEveryRoute: a key's rate windows, credits, time
// windows and concurrency bind on the broker routes and the admin routes
// as on verify, with verify's codes and headers.
func TestE2EKeyLimitsApplyOnEveryRoute(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	ts.putSecret(t, admin, "openai", map[string]any{"value": secretValue("sk-proj-")})
	get := func(path, key string) resp { t.Helper(); return ts.call(t, "GET", path, key, nil) }
	verify := func(key string) resp {
		t.Helper()
		return ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": key, "scopes": []string{"secrets:read"}})
	}
	reader := func(extra map[string]any) string {
		body := map[string]any{"scopes": []string{"secrets:read"}}
		for k, v := range extra {
			body[k] = v
		}
		_, key := ts.mustCreate(t, admin, body)
		return key
	}

	t.Run("RateOnSecretRead", func(t *testing.T) {
		key := reader(map[string]any{"ratelimits": []map[string]any{{"limit": 1, "window": "1h"}}})
		if r := get("/keys/openai", key); r.Status != http.StatusOK || r.Header.Get("RateLimit-Limit") != "1" {
			t.Fatalf("first read: %d %s %v", r.Status, r.Raw, r.Header)
		}
		r := get("/keys/openai", key)
		denied(t, "second read", r, http.StatusTooManyRequests, latchkey.CodeRateLimited, "3600")
		if r.Header.Get("RateLimit-Limit") != "1" || r.Header.Get("RateLimit-Remaining") != "0" || r.Header.Get("X-RateLimit-Limit") != "1" {
			t.Fatalf("second read: rate headers %v", r.Header)
		}
		denied(t, "list read", get("/llm-keys", key), http.StatusTooManyRequests, latchkey.CodeRateLimited, "3600")
		denied(t, "versioned read", get("/v1/secrets/openai", key), http.StatusTooManyRequests, latchkey.CodeRateLimited, "3600")
		// One budget: verify sees the same window spent.
		if c := codeOf(verify(key)); c != latchkey.CodeRateLimited {
			t.Fatalf("verify after the reads: %s", c)
		}
		ts.Clock.Advance(time.Hour)
		if r := get("/llm-keys", key); r.Status != http.StatusOK {
			t.Fatalf("list read an hour later: %d %s", r.Status, r.Raw)
		}
	})

	t.Run("CreditsOnSecretRead", func(t *testing.T) {
		key := reader(map[string]any{"quota": map[string]any{"remaining": 2}})
		for i := range 2 {
			if r := get("/keys/openai", key); r.Status != http.StatusOK {
				t.Fatalf("read %d: %d %s", i+1, r.Status, r.Raw)
			}
		}
		// A spent balance never refills: no Retry-After.
		denied(t, "third read", get("/keys/openai", key), http.StatusTooManyRequests, latchkey.CodeQuotaExceeded, "")
		denied(t, "list read", get("/llm-keys", key), http.StatusTooManyRequests, latchkey.CodeQuotaExceeded, "")
	})

	t.Run("TimeWindowOnSecretRead", func(t *testing.T) {
		// The fake clock stands on a Monday morning.
		key := reader(map[string]any{"time_windows": []map[string]any{{"days": []string{"sat", "sun"}, "start": "10:00", "end": "14:00"}}})
		denied(t, "read", get("/keys/openai", key), http.StatusForbidden, latchkey.CodeOutsideTimeWindow, "")
		denied(t, "list read", get("/llm-keys", key), http.StatusForbidden, latchkey.CodeOutsideTimeWindow, "")
	})

	t.Run("ConcurrencyOnSecretRead", func(t *testing.T) {
		key := reader(map[string]any{"max_concurrent": 1, "lease_ttl": "1h"})
		held := verify(key)
		lease := held.str("lease_id")
		if codeOf(held) != latchkey.CodeValid || lease == "" {
			t.Fatalf("verify: %s", held.Raw)
		}
		denied(t, "read while the slot is held", get("/keys/openai", key), http.StatusTooManyRequests, latchkey.CodeConcurrencyExceeded, "3600")
		denied(t, "list read while the slot is held", get("/llm-keys", key), http.StatusTooManyRequests, latchkey.CodeConcurrencyExceeded, "3600")
		// Releasing needs no slot of its own.
		if r := ts.call(t, "POST", "/v1/leases/"+lease+"/release", key, nil); r.Status != http.StatusNoContent {
			t.Fatalf("release: %d %s", r.Status, r.Raw)
		}
		// Each read holds the slot only while it is answered.
		for i := range 3 {
			if r := get("/keys/openai", key); r.Status != http.StatusOK {
				t.Fatalf("read %d after release: %d %s", i+1, r.Status, r.Raw)
			}
			if r := get("/llm-keys", key); r.Status != http.StatusOK {
				t.Fatalf("list read %d after release: %d %s", i+1, r.Status, r.Raw)
			}
		}
		if r := verify(key); codeOf(r) != latchkey.CodeValid {
			t.Fatalf("verify after the reads: %s", r.Raw)
		}
	})

	t.Run("RateOnAdminRoute", func(t *testing.T) {
		_, key := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"keys:read"},
			"ratelimits": []map[string]any{{"limit": 1, "window": "1h"}}})
		if r := get("/v1/keys", key); r.Status != http.StatusOK {
			t.Fatalf("first list: %d %s", r.Status, r.Raw)
		}
		denied(t, "second list", get("/v1/keys", key), http.StatusTooManyRequests, latchkey.CodeRateLimited, "3600")
	})

	t.Run("TimeWindowOnAdminRoute", func(t *testing.T) {
		_, key := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"keys:read"},
			"time_windows": []map[string]any{{"days": []string{"sat", "sun"}, "start": "10:00", "end": "14:00"}}})
		denied(t, "list", get("/v1/keys", key), http.StatusForbidden, latchkey.CodeOutsideTimeWindow, "")
	})
}

// TestE2ECountriesApplyOnEveryRoute: a key limited to countries reads a
// secret only from them (the test's requests come from 127.0.0.1, which the
// test's database places in DE).
func TestE2ECountriesApplyOnEveryRoute(t *testing.T) {
	mmdb := filepath.Join(t.TempDir(), "countries.mmdb")
	geotest.WriteCountryDB(t, mmdb, map[string]string{"127.0.0.0/8": "DE"})
	ts := startServer(t, withConfig(func(c *serverConfig) { c.GeoIPDB = mmdb }))
	admin := ts.mustTenant(t, "acme")
	ts.putSecret(t, admin, "openai", map[string]any{"value": secretValue("sk-proj-")})
	_, german := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"secrets:read", "keys:read"}, "countries": []string{"DE"}})
	_, french := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"secrets:read", "keys:read"}, "countries": []string{"FR"}})
	for _, path := range []string{"/keys/openai", "/llm-keys", "/v1/keys"} {
		if r := ts.call(t, "GET", path, german, nil); r.Status != http.StatusOK {
			t.Fatalf("GET %s from DE with a DE key: %d %s", path, r.Status, r.Raw)
		}
		denied(t, "GET "+path+" from DE with an FR key", ts.call(t, "GET", path, french, nil), http.StatusForbidden, latchkey.CodeIPNotAllowed, "")
	}
}
