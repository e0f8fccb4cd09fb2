package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

func withReadAuditInterval(d time.Duration) serverOption {
	return func(c *serverConfig, _ *serverHooks) { c.ReadAuditInterval = d }
}

// Seed reads are audited through the read-audit queue: a graceful
// shutdown writes what is queued, so a server started on the same
// database shows every answered read, and the chain verifies.
func TestE2ESecretReadAuditsSurviveGracefulShutdown(t *testing.T) {
	// An hour between flushes: only the shutdown can write the reads.
	ts := startServer(t, withReadAuditInterval(time.Hour))
	admin := ts.mustTenant(t, "acme")
	value := secretValue("sk-proj-")
	ts.putSecret(t, admin, "openai", map[string]any{"value": value})
	_, reader := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"secrets:read"}, "resources": []string{"secret:openai"}})
	for range 3 {
		r := do(t, "GET", ts.URL+"/keys/openai", map[string]string{"Authorization": bearer(reader), "User-Agent": "seed-test/1"}, nil)
		if r.Status != http.StatusOK || r.str("api_key") != value {
			t.Fatalf("GET /keys/openai: %d %s", r.Status, r.Raw)
		}
	}
	if r := ts.call(t, "GET", "/keys/anthropic", reader, nil); r.errCode() != latchkey.EForbidden {
		t.Fatalf("GET /keys/anthropic with a key for openai only: %d %s", r.Status, r.Raw)
	}
	ts.Stop()

	ts2 := startServer(t, withDB(ts.DB))
	a := ts2.call(t, "GET", "/v1/audit", admin, nil)
	if a.Status != http.StatusOK || strings.Contains(string(a.Raw), value) {
		t.Fatalf("audit: %d (or it holds the value)", a.Status)
	}
	var reads, denied int
	evs, _ := a.Body["events"].([]any)
	for _, e := range evs {
		ev := e.(map[string]any)
		if ev["action"] != "secret.read" {
			continue
		}
		d, _ := ev["details"].(map[string]any)
		switch {
		case ev["result"] == "denied" && d["secret"] == "anthropic":
			denied++
		case ev["result"] == "success" && d["secret"] == "openai" && d["version"] == "1" && ev["user_agent"] == "seed-test/1" && ev["ip"] == "127.0.0.1":
			// The three alike reads within one flush are one event that
			// counts them.
			n, _ := strconv.Atoi(fmt.Sprint(d["count"]))
			reads += n
		default:
			t.Fatalf("unexpected read event: %v", ev)
		}
	}
	if reads != 3 || denied != 1 {
		t.Fatalf("after a graceful shutdown: %d reads and %d refused reads audited, want 3 and 1\n%s", reads, denied, a.Raw)
	}
	if v := ts2.call(t, "GET", "/v1/audit/verify", admin, nil); v.Body["ok"] != true {
		t.Fatalf("verify: %s", v.Raw)
	}
}

// A read is answered from the node's cache, yet a change made through the
// same node is served at once.
func TestE2ESeedKeySeesAPutAtOnce(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	v1, v2 := secretValue("sk-proj-"), secretValue("sk-proj-")
	ts.putSecret(t, admin, "openai", map[string]any{"value": v1})
	for range 2 {
		if r := ts.call(t, "GET", "/keys/openai", admin, nil); r.str("api_key") != v1 {
			t.Fatalf("GET /keys/openai: %d %s", r.Status, r.Raw)
		}
	}
	ts.putSecret(t, admin, "openai", map[string]any{"value": v2, "expires_in": 60})
	if r := ts.call(t, "GET", "/keys/openai", admin, nil); r.str("api_key") != v2 || r.Body["expires_in"] != 60.0 {
		t.Fatalf("after a put: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "DELETE", "/v1/secrets/openai", admin, nil); r.Status != http.StatusNoContent {
		t.Fatal(r.Status)
	}
	if r := ts.call(t, "GET", "/keys/openai", admin, nil); r.errCode() != latchkey.ENotFound {
		t.Fatalf("after a delete: %d %s", r.Status, r.Raw)
	}
	// The fast path is counted under the route's pattern, answers and
	// errors alike.
	fams, _ := scrapeMetrics(t, ts.URL)
	byStatus := map[string]float64{}
	for _, m := range fams["latchkey_http_requests_total"].GetMetric() {
		if hasLabel(m, "route", "/keys/{provider}") {
			for _, l := range m.GetLabel() {
				if l.GetName() == "status" {
					byStatus[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	if byStatus["200"] != 3 || byStatus["404"] != 1 || len(byStatus) != 2 {
		t.Errorf("GET /keys/{provider} requests counted by status: %v, want 3 × 200 and 1 × 404", byStatus)
	}
}

// Out-of-range cache and audit intervals are refused before the server
// listens.
func TestServeRejectsBadReadSettings(t *testing.T) {
	for name, set := range map[string]func(*serverConfig){
		"CacheTTLNegative": func(c *serverConfig) { c.SecretCacheTTL = -time.Second },
		"CacheTTLTooLong":  func(c *serverConfig) { c.SecretCacheTTL = 2 * time.Hour },
		"IntervalNegative": func(c *serverConfig) { c.ReadAuditInterval = -time.Second },
		"IntervalTooLong":  func(c *serverConfig) { c.ReadAuditInterval = 2 * time.Hour },
		"KeyCacheTTLShort": func(c *serverConfig) { c.CacheTTL = time.Millisecond },
		"KeyCacheTTLLong":  func(c *serverConfig) { c.CacheTTL = 2 * time.Hour },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := shippedConfig(t)
			cfg.Addr, cfg.DB, cfg.LogLevel = "127.0.0.1:0", filepath.Join(t.TempDir(), "l.db"), "info"
			set(&cfg)
			e := &env{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}
			if err := serve(context.Background(), e, cfg, serverHooks{}); latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("serve: %v, want invalid", err)
			}
		})
	}
}
