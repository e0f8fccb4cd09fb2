package metrics_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/guard"
	"github.com/latchkeyhq/latchkey/httpapi"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/metrics"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

var _ httpapi.Observer = (*metrics.Metrics)(nil)

// node is an API server with metrics, driven in process.
type node struct {
	srv   *httpapi.Server
	svc   *keys.Service
	db    *sqlite.DB
	met   *metrics.Metrics
	clock *fakeclock.Clock
	admin string // the root key
}

func newNode(tb testing.TB, g *guard.Guard) *node {
	tb.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "m.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	clock := fakeclock.New(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC))
	svc := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db), Now: clock.Now})
	root, _, _, err := svc.Bootstrap(ctx, "")
	if err != nil {
		tb.Fatal(err)
	}
	met := metrics.New(metrics.Options{Keys: svc, Guard: g, Now: clock.Now})
	srv := httpapi.New(httpapi.Config{Keys: svc, Now: clock.Now, Guard: g, Observer: met, Metrics: met.Handler()})
	return &node{srv: srv, svc: svc, db: db, met: met, clock: clock, admin: root.Reveal()}
}

// create issues a key with scope data:read and returns its id and plaintext.
func (n *node) create(tb testing.TB) (id, key string) {
	tb.Helper()
	ctx := context.Background()
	actor, err := n.svc.Authenticate(ctx, n.admin, netip.Addr{}, "")
	if err != nil {
		tb.Fatal(err)
	}
	name := "m"
	k, tok, err := n.svc.CreateKey(ctx, actor, keys.CreateParams{Settings: keys.Settings{Name: &name, Scopes: &[]string{"data:read"}}})
	if err != nil {
		tb.Fatal(err)
	}
	return k.ID, tok.Reveal()
}

func (n *node) do(method, target, key, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.RemoteAddr = "192.0.2.10:4000"
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	w := httptest.NewRecorder()
	n.srv.ServeHTTP(w, req)
	return w
}

func (n *node) auth(key string) int { return n.do("GET", "/v1/auth?scope=data:read", key, "").Code }

func (n *node) verify(t *testing.T, key string) string {
	t.Helper()
	w := n.do("POST", "/v1/keys/verify", "", `{"key":"`+key+`"}`)
	if w.Code != http.StatusOK && w.Code != http.StatusTooManyRequests {
		t.Fatalf("verify: %d %s", w.Code, w.Body)
	}
	return w.Body.String()
}

// scrape reads GET /metrics through the API server.
func (n *node) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	w := n.do("GET", "/metrics", "", "")
	if w.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", w.Code, w.Body)
	}
	return parse(t, w.Body.String())
}

func parse(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse scrape: %v\n%s", err, text)
	}
	return fams
}

// value returns the value of the series of name whose labels include
// labels (name=value pairs); for a histogram, its sample count.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
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
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func TestEveryCodeIsThereFromTheStart(t *testing.T) {
	n := newNode(t, nil)
	fams := n.scrape(t)
	for _, c := range metrics.Codes() {
		if v := value(t, fams, "latchkey_verifications_total", "code", c); v != 0 {
			t.Errorf("%s = %v before any verification", c, v)
		}
	}
	if got := len(fams["latchkey_verifications_total"].GetMetric()); got != len(metrics.Codes()) {
		t.Errorf("%d series of latchkey_verifications_total, want %d", got, len(metrics.Codes()))
	}
	for _, r := range []string{"verify", "auth"} {
		if v := value(t, fams, "latchkey_verify_duration_seconds", "route", r); v != 0 {
			t.Errorf("histogram %s has %v samples", r, v)
		}
	}
	// The codes httpapi reports besides verify codes are known here.
	for _, c := range []string{httpapi.CodeGuarded, httpapi.CodeError} {
		if !slices.Contains(metrics.Codes(), c) {
			t.Errorf("httpapi reports %s, metrics does not know it", c)
		}
	}
	// Our own figures are named latchkey_; the rest are the standard Go
	// and process collectors.
	for name := range fams {
		if !strings.HasPrefix(name, "latchkey_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("metric %s", name)
		}
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "latchkey_key_cache_entries", "latchkey_store_reads_total"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	// Without a guard, no guard figures.
	if _, ok := fams["latchkey_guard_blocks_total"]; ok {
		t.Error("guard metrics without a guard")
	}
}

func TestVerificationsAreCountedByCode(t *testing.T) {
	g, err := guard.New(guard.Options{Threshold: 3})
	if err != nil {
		t.Fatal(err)
	}
	n := newNode(t, g)
	revokedID, revoked := n.create(t)
	_, good := n.create(t)
	ctx := context.Background()
	actor, _ := n.svc.Authenticate(ctx, n.admin, netip.Addr{}, "")
	if _, err := n.svc.RevokeKey(ctx, actor, revokedID, "test"); err != nil {
		t.Fatal(err)
	}
	before := n.scrape(t)

	// Two routes, three codes; 401s count towards the guard (threshold 3).
	if c := n.auth(good); c != 200 {
		t.Fatalf("auth: %d", c)
	}
	if c := n.auth(good); c != 200 {
		t.Fatalf("auth: %d", c)
	}
	if !strings.Contains(n.verify(t, good), `"VALID"`) {
		t.Fatal("verify good")
	}
	if c := n.auth(revoked); c != 401 {
		t.Fatalf("auth revoked: %d", c)
	}
	if !strings.Contains(n.verify(t, "lk_nonsense"), `"MALFORMED"`) {
		t.Fatal("verify malformed")
	}
	// Third failure: the network is now blocked.
	if c := n.auth("lk_nonsense"); c != 401 {
		t.Fatalf("auth malformed: %d", c)
	}
	if c := n.auth(good); c != 429 {
		t.Fatalf("auth from a blocked network: %d", c)
	}
	n.verify(t, good) // 429 too
	// Not verifications: a request refused before any key is looked at.
	if c := n.do("GET", "/v1/auth?cost=x", good, "").Code; c != 400 {
		t.Fatalf("bad cost: %d", c)
	}
	if c := n.do("POST", "/v1/keys/verify", "", `{"key": 5}`).Code; c != 400 {
		t.Fatalf("bad body: %d", c)
	}

	fams := n.scrape(t)
	want := map[string]float64{
		latchkey.CodeValid:     3,
		latchkey.CodeRevoked:   1,
		latchkey.CodeMalformed: 2,
		httpapi.CodeGuarded:    2,
	}
	total := 0.0
	for _, c := range metrics.Codes() {
		got := value(t, fams, "latchkey_verifications_total", "code", c)
		if got != want[c] {
			t.Errorf("verifications{code=%s} = %v, want %v", c, got, want[c])
		}
		total += got
	}
	auth := value(t, fams, "latchkey_verify_duration_seconds", "route", "auth")
	verify := value(t, fams, "latchkey_verify_duration_seconds", "route", "verify")
	if auth != 5 || verify != 3 || auth+verify != total {
		t.Errorf("histogram counts auth %v verify %v, want 5 and 3 (= %v verifications)", auth, verify, total)
	}
	if v := value(t, fams, "latchkey_guard_blocked_networks"); v != 1 {
		t.Errorf("blocked networks = %v", v)
	}
	if v := value(t, fams, "latchkey_guard_blocks_total"); v != 1 {
		t.Errorf("blocks = %v", v)
	}
	// The first use of the good key and of the revoked one (revoking
	// dropped it from the cache) read the store; the good key's next two
	// uses hit the cache. Malformed keys and blocked requests never reach
	// it.
	hits := value(t, fams, "latchkey_key_cache_hits_total") - value(t, before, "latchkey_key_cache_hits_total")
	misses := value(t, fams, "latchkey_key_cache_misses_total") - value(t, before, "latchkey_key_cache_misses_total")
	reads := value(t, fams, "latchkey_store_reads_total") - value(t, before, "latchkey_store_reads_total")
	if hits != 2 || misses != 2 || reads != 2 {
		t.Errorf("cache hits %v, misses %v, store reads %v; want 2, 2, 2", hits, misses, reads)
	}
	if v := value(t, fams, "latchkey_key_cache_entries", "kind", "positive"); v < 2 {
		t.Errorf("cached keys = %v", v)
	}
	// Admin routes by pattern, not by path.
	if v := value(t, fams, "latchkey_http_requests_total", "method", "POST", "route", "/v1/keys/verify", "status", "200"); v != 2 {
		t.Errorf("POST /v1/keys/verify 200 = %v", v)
	}
	if v := value(t, fams, "latchkey_http_requests_total", "method", "POST", "route", "/v1/keys/verify", "status", "429"); v != 1 {
		t.Errorf("POST /v1/keys/verify 429 = %v", v)
	}
	for _, m := range fams["latchkey_http_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "route" && l.GetValue() == "/v1/auth" {
				t.Error("forward-auth counted as an admin request")
			}
		}
	}
}

// A key that cannot be checked because the store fails is ERROR.
func TestStoreFailureIsError(t *testing.T) {
	n := newNode(t, nil)
	n.db.Close()
	unknown, _ := latchkey.GenerateToken("", nil) // not cached: needs the store
	if c := n.auth(unknown.Reveal()); c != http.StatusServiceUnavailable && c != http.StatusInternalServerError {
		t.Fatalf("auth with the store closed: %d", c)
	}
	w := n.do("POST", "/v1/keys/verify", "", `{"key":"`+unknown.Reveal()+`"}`)
	if w.Code < 500 {
		t.Fatalf("verify with the store closed: %d %s", w.Code, w.Body)
	}
	fams := n.scrape(t)
	if v := value(t, fams, "latchkey_verifications_total", "code", httpapi.CodeError); v != 2 {
		t.Errorf("ERROR = %v", v)
	}
	if v := value(t, fams, "latchkey_verify_duration_seconds", "route", "verify"); v != 1 {
		t.Errorf("verify histogram count = %v", v)
	}
}

func TestAdminRoutesByPattern(t *testing.T) {
	n := newNode(t, nil)
	id, _ := n.create(t)
	for range 3 {
		if c := n.do("GET", "/v1/keys/"+id, n.admin, "").Code; c != 200 {
			t.Fatalf("get key: %d", c)
		}
	}
	n.do("GET", "/v1/keys/key_doesnotexist", n.admin, "")
	n.do("BREW", "/v1/keys/"+id, n.admin, "")
	n.do("GET", "/no/such/route/"+id, "", "")
	fams := n.scrape(t)
	if v := value(t, fams, "latchkey_http_requests_total", "method", "GET", "route", "/v1/keys/{id}", "status", "200"); v != 3 {
		t.Errorf("GET /v1/keys/{id} 200 = %v", v)
	}
	if v := value(t, fams, "latchkey_http_requests_total", "method", "GET", "route", "/v1/keys/{id}", "status", "404"); v != 1 {
		t.Errorf("GET /v1/keys/{id} 404 = %v", v)
	}
	if v := value(t, fams, "latchkey_http_requests_total", "method", "OTHER"); v != 1 {
		t.Errorf("method OTHER = %v", v)
	}
	text := n.do("GET", "/metrics", "", "").Body.String()
	if strings.Contains(text, id) || strings.Contains(text, "key_doesnotexist") || strings.Contains(text, "BREW") {
		t.Errorf("a path or method from a request reached a label:\n%s", grep(text, "latchkey_http"))
	}
}

func TestMetricsRouteOnlyWhenConfigured(t *testing.T) {
	n := newNode(t, nil)
	srv := httpapi.New(httpapi.Config{Keys: n.svc, Observer: n.met}) // metrics served elsewhere
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != http.StatusNotFound {
		t.Fatalf("GET /metrics without a handler: %d", w.Code)
	}
}

// An unknown code or route is still counted.
func TestUnknownCodeStillCounted(t *testing.T) {
	n := newNode(t, nil)
	n.met.Verified("auth", "SOMETHING_NEW", time.Millisecond)
	n.met.Verified("other", latchkey.CodeValid, time.Millisecond)
	fams := n.scrape(t)
	if v := value(t, fams, "latchkey_verifications_total", "code", "SOMETHING_NEW"); v != 1 {
		t.Errorf("unknown code = %v", v)
	}
	if v := value(t, fams, "latchkey_verify_duration_seconds", "route", "other"); v != 1 {
		t.Errorf("unknown route = %v", v)
	}
}

func grep(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
