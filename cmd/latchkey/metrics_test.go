package main

import (
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/latchkeyhq/latchkey"
)

// scrapeMetrics reads GET url/metrics and parses it; it returns the text
// too, for the leak check.
func scrapeMetrics(t *testing.T, base string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	r := do(t, "GET", base+"/metrics", nil, nil)
	if r.Status != 200 {
		t.Fatalf("GET /metrics: %d %s", r.Status, r.Raw)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(r.Raw)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams, string(r.Raw)
}

// sample is the value of the one series of name with label=value (or the
// only series, with no label given); a histogram's sample count.
func sample(t *testing.T, fams map[string]*dto.MetricFamily, name string, label ...string) float64 {
	t.Helper()
	for _, m := range fams[name].GetMetric() {
		if len(label) == 2 && !hasLabel(m, label[0], label[1]) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no series %s%v in /metrics", name, label)
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func TestE2EMetrics(t *testing.T) {
	ts := startServer(t) // with the guard as it ships: 20 failures a minute
	admin := ts.mustTenant(t, "acme-metrics")
	goodID, good := ts.mustCreate(t, admin, map[string]any{"owner": "owner-metrics", "scopes": []string{"data:read"}})
	revokedID, revoked := ts.mustCreate(t, admin, map[string]any{})
	if r := ts.call(t, "POST", "/v1/keys/"+revokedID+"/revoke", admin, map[string]any{"reason": "leaked"}); r.Status != 200 {
		t.Fatalf("revoke: %d %s", r.Status, r.Raw)
	}
	before, _ := scrapeMetrics(t, ts.URL)

	verify := func(key, want string) {
		t.Helper()
		if r := ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": key}); codeOf(r) != want {
			t.Fatalf("verify = %s, want %s", r.Raw, want)
		}
	}
	auth := func(key string, want int) {
		t.Helper()
		if r := do(t, "GET", ts.URL+"/v1/auth?scope=data:read", map[string]string{"X-API-Key": key}, nil); r.Status != want {
			t.Fatalf("forward-auth = %d, want %d", r.Status, want)
		}
	}
	verify(good, latchkey.CodeValid)
	verify(revoked, latchkey.CodeRevoked)
	verify("lk_not-a-key", latchkey.CodeMalformed)
	auth(good, 200)
	auth(good, 200)
	auth(revoked, 401)
	auth("lk_not-a-key", 401)

	fams, text := scrapeMetrics(t, ts.URL)
	want := map[string]float64{latchkey.CodeValid: 3, latchkey.CodeRevoked: 2, latchkey.CodeMalformed: 2}
	series := fams["latchkey_verifications_total"].GetMetric()
	if len(series) < 15 {
		t.Errorf("%d codes in latchkey_verifications_total; every code should be there from the start", len(series))
	}
	total := 0.0
	for _, m := range series {
		code := m.GetLabel()[0].GetValue()
		if got := m.GetCounter().GetValue(); got != want[code] {
			t.Errorf("latchkey_verifications_total{code=%q} = %v, want %v", code, got, want[code])
		}
		total += m.GetCounter().GetValue()
	}
	nv := sample(t, fams, "latchkey_verify_duration_seconds", "route", "verify")
	na := sample(t, fams, "latchkey_verify_duration_seconds", "route", "auth")
	if nv != 3 || na != 4 || nv+na != total {
		t.Errorf("duration histogram counts verify %v + auth %v, want 3 + 4 = %v verifications", nv, na, total)
	}
	for _, name := range []string{"latchkey_key_cache_hits_total", "latchkey_key_cache_misses_total", "latchkey_store_reads_total"} {
		if d := sample(t, fams, name) - sample(t, before, name); d <= 0 {
			t.Errorf("%s did not move (%+v)", name, d)
		}
	}
	if v := sample(t, fams, "latchkey_key_cache_entries", "kind", "positive"); v < 2 {
		t.Errorf("cached keys: %v", v)
	}
	if _, ok := fams["latchkey_guard_blocks_total"]; !ok {
		t.Error("no guard metrics")
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	// Store latency: the key creations and the revocation were update
	// transactions that ended well.
	if v := sample(t, fams, "latchkey_store_transaction_duration_seconds", "op", "update"); v < 3 {
		t.Errorf("timed update transactions: %v, want at least 3", v)
	}
	// Admin routes are counted by pattern.
	if v := sample(t, fams, "latchkey_http_requests_total", "route", "/v1/keys/{id}/revoke"); v != 1 {
		t.Errorf("revoke requests: %v", v)
	}

	// Nothing secret or identifying reaches the scrape.
	issuedMu.Lock()
	secrets := append([]string{goodID, revokedID, "acme-metrics", "owner-metrics"}, issued...)
	issuedMu.Unlock()
	for _, s := range append(secrets, good, revoked, admin) {
		if strings.Contains(text, s) {
			t.Errorf("/metrics holds %.12s…", s)
		}
	}
}

func TestE2EMetricsOnTheirOwnListener(t *testing.T) {
	maddr := make(chan string, 1)
	ts := startServer(t,
		withConfig(func(c *serverConfig) { c.MetricsAddr = "127.0.0.1:0" }),
		func(_ *serverConfig, h *serverHooks) { h.MetricsReady = func(a string) { maddr <- a } })
	murl := "http://" + <-maddr
	if r := do(t, "GET", ts.URL+"/metrics", nil, nil); r.Status != 404 {
		t.Fatalf("GET /metrics on the main listener: %d", r.Status)
	}
	if r := do(t, "GET", ts.URL+"/v1/auth", map[string]string{"X-API-Key": ts.Root}, nil); r.Status != 200 {
		t.Fatalf("forward-auth: %d", r.Status)
	}
	fams, _ := scrapeMetrics(t, murl)
	if v := sample(t, fams, "latchkey_verifications_total", "code", latchkey.CodeValid); v != 1 {
		t.Errorf("VALID = %v", v)
	}
	// The metrics listener serves nothing else.
	if r := do(t, "GET", murl+"/v1/keys", map[string]string{"Authorization": bearer(ts.Root)}, nil); r.Status != 404 {
		t.Errorf("GET /v1/keys on the metrics listener: %d", r.Status)
	}
}

// TestE2EPprofOnItsOwnListener: --pprof serves the Go profiler on its own
// address, and the API listener does not.
func TestE2EPprofOnItsOwnListener(t *testing.T) {
	paddr := make(chan string, 1)
	ts := startServer(t,
		withConfig(func(c *serverConfig) { c.PprofAddr = "127.0.0.1:0" }),
		func(_ *serverConfig, h *serverHooks) { h.PprofReady = func(a string) { paddr <- a } })
	purl := "http://" + <-paddr
	if r := do(t, "GET", purl+"/debug/pprof/heap?debug=1", nil, nil); r.Status != 200 {
		t.Fatalf("GET /debug/pprof/heap on the pprof listener: %d", r.Status)
	}
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap"} {
		if r := do(t, "GET", ts.URL+p, nil, nil); r.Status != 404 {
			t.Errorf("GET %s on the API listener: %d, want 404", p, r.Status)
		}
	}
	if r := do(t, "GET", purl+"/v1/keys", map[string]string{"Authorization": bearer(ts.Root)}, nil); r.Status != 404 {
		t.Errorf("the pprof listener serves the API: %d", r.Status)
	}
}
