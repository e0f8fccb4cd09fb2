package client

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey/internal/fakeclock"
)

// fakeLatchkey answers verify and lease release like the server, from a
// table of keys.
type fakeLatchkey struct {
	*httptest.Server
	verifies atomic.Int64
	mu       sync.Mutex
	answers  map[string]map[string]any // key → verify answer
	status   int                       // if set, verify answers this error status
	retry    string                    // Retry-After with status
	released []string                  // "key lease" pairs
	lastBody verifyBody
}

func newFakeLatchkey(t *testing.T) *fakeLatchkey {
	f := &fakeLatchkey{answers: map[string]map[string]any{}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeLatchkey) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("X-Request-Id", "srv-req")
	if lease, ok := strings.CutPrefix(r.URL.Path, "/v1/leases/"); ok && r.Method == http.MethodPost {
		f.released = append(f.released, credential(r)+" "+strings.TrimSuffix(lease, "/release"))
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.URL.Path != "/v1/keys/verify" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	f.verifies.Add(1)
	body, _ := io.ReadAll(r.Body)
	f.lastBody = verifyBody{}
	json.Unmarshal(body, &f.lastBody)
	if f.status != 0 {
		if f.retry != "" {
			w.Header().Set("Retry-After", f.retry)
		}
		w.WriteHeader(f.status)
		json.NewEncoder(w).Encode(errorBody{Error: errorDetail{Code: statusCode(f.status), Message: "from the fake", RequestID: "srv-req"}})
		return
	}
	ans, ok := f.answers[f.lastBody.Key]
	if !ok {
		ans = map[string]any{"valid": false, "code": CodeKeyNotFound}
	}
	json.NewEncoder(w).Encode(ans)
}

func (f *fakeLatchkey) setAnswer(key string, ans map[string]any) {
	f.mu.Lock()
	f.answers[key] = ans
	f.mu.Unlock()
}

func validAnswer(extra map[string]any) map[string]any {
	a := map[string]any{"valid": true, "code": "VALID", "key_id": "key_1", "tenant": "acme", "owner": "ops", "scopes": []string{"data:read"}}
	for k, v := range extra {
		a[k] = v
	}
	return a
}

func newVerifier(t *testing.T, f *fakeLatchkey, ttl time.Duration) (*Verifier, *fakeclock.Clock) {
	t.Helper()
	clk := fakeclock.New(t0)
	v, err := NewVerifier(VerifierConfig{URL: f.URL + "/", CacheTTL: ttl, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return v, clk
}

// served runs one request through a middleware and returns the recorder and
// the identity the handler saw.
func served(t *testing.T, mw func(http.Handler) http.Handler, header map[string]string) (*httptest.ResponseRecorder, *Identity) {
	t.Helper()
	var seen *Identity
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = IdentityFrom(r.Context())
		w.WriteHeader(http.StatusTeapot)
	}))
	req := httptest.NewRequest(http.MethodGet, "/reports/7", nil)
	req.RemoteAddr = "203.0.113.9:5555"
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec, seen
}

func errCodeOf(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var b errorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("body %q is not the API's error shape", rec.Body.String())
	}
	return b.Error.Code
}

func TestMiddlewareLetsValidKeyThroughWithIdentity(t *testing.T) {
	f := newFakeLatchkey(t)
	f.setAnswer("good", validAnswer(nil))
	v, _ := newVerifier(t, f, -1)
	mw := v.MiddlewareWith(MiddlewareOptions{Scopes: []string{"data:read"}, Resource: func(r *http.Request) string { return "report:" + strings.TrimPrefix(r.URL.Path, "/reports/") }})
	rec, id := served(t, mw, map[string]string{"X-API-Key": "good"})
	if rec.Code != http.StatusTeapot || id == nil || id.KeyID != "key_1" || id.Tenant != "acme" {
		t.Fatalf("status %d, identity %+v", rec.Code, id)
	}
	if b := f.lastBody; b.Key != "good" || len(b.Scopes) != 1 || b.Scopes[0] != "data:read" || b.Resource != "report:7" || b.IP != "203.0.113.9" {
		t.Fatalf("verify request %+v", b)
	}
	if _, ok := IdentityFrom(context.Background()); ok {
		t.Fatal("identity outside a middleware")
	}
}

func TestMiddlewareRefusals(t *testing.T) {
	f := newFakeLatchkey(t)
	f.setAnswer("revoked", map[string]any{"valid": false, "code": CodeRevoked, "key_id": "key_2"})
	f.setAnswer("narrow", map[string]any{"valid": false, "code": CodeInsufficientScope, "missing": "data:write"})
	f.setAnswer("busy", map[string]any{"valid": false, "code": CodeKeyRateLimited, "retry_after": 7,
		"ratelimit": map[string]any{"limit": 10, "remaining": 0, "reset_at": t0.Add(7 * time.Second)}})
	v, _ := newVerifier(t, f, 0)
	mw := v.Middleware("data:write")
	for _, tc := range []struct {
		name, key      string
		status         int
		code, verdict  string
		header, hvalue string
	}{
		{"no key", "", 401, CodeUnauthenticated, CodeMalformed, "WWW-Authenticate", `Bearer realm="latchkey"`},
		{"unknown", "nope", 401, CodeUnauthenticated, CodeKeyNotFound, "WWW-Authenticate", `Bearer realm="latchkey"`},
		{"revoked", "revoked", 401, CodeUnauthenticated, CodeRevoked, "X-Request-Id", "srv-req"},
		{"scope", "narrow", 403, CodeForbidden, CodeInsufficientScope, "", ""},
		{"rate", "busy", 429, CodeRateLimited, CodeKeyRateLimited, "Retry-After", "7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.key != "" {
				hdr["Authorization"] = "Bearer " + tc.key
			}
			rec, id := served(t, mw, hdr)
			if rec.Code != tc.status || id != nil || errCodeOf(t, rec) != tc.code || rec.Header().Get("X-Latchkey-Code") != tc.verdict {
				t.Fatalf("status %d code %s verdict %s, want %d %s %s", rec.Code, errCodeOf(t, rec), rec.Header().Get("X-Latchkey-Code"), tc.status, tc.code, tc.verdict)
			}
			if tc.header != "" && rec.Header().Get(tc.header) != tc.hvalue {
				t.Fatalf("%s: %q, want %q", tc.header, rec.Header().Get(tc.header), tc.hvalue)
			}
		})
	}
	rec, _ := served(t, mw, map[string]string{"Authorization": "Bearer busy"})
	if rec.Header().Get("RateLimit-Remaining") != "0" || rec.Header().Get("RateLimit-Reset") != "7" {
		t.Fatalf("limit headers %v", rec.Header())
	}
	// A credit balance never refills: no reset to announce.
	f.setAnswer("spent", map[string]any{"valid": false, "code": CodeQuotaExceeded, "key_id": "key_3",
		"quota": map[string]any{"limit": 5, "remaining": 0}})
	rec, _ = served(t, mw, map[string]string{"Authorization": "Bearer spent"})
	if rec.Code != 429 || rec.Header().Get("RateLimit-Limit") != "5" || rec.Header().Values("RateLimit-Reset") != nil {
		t.Fatalf("an empty credit balance: %d %v", rec.Code, rec.Header())
	}
}

func TestMiddlewareServerTrouble(t *testing.T) {
	f := newFakeLatchkey(t)
	v, _ := newVerifier(t, f, 0)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	mw := v.MiddlewareWith(MiddlewareOptions{Scopes: []string{"data:read"}, Logger: quiet})
	hdr := map[string]string{"Authorization": "Bearer any"}

	f.mu.Lock()
	f.status, f.retry = http.StatusTooManyRequests, "30"
	f.mu.Unlock()
	if rec, _ := served(t, mw, hdr); rec.Code != 429 || rec.Header().Get("Retry-After") != "30" || errCodeOf(t, rec) != CodeRateLimited {
		t.Fatalf("guard: %d %v", rec.Code, rec.Header())
	}
	f.mu.Lock()
	f.status, f.retry = http.StatusBadRequest, ""
	f.mu.Unlock()
	if rec, _ := served(t, mw, hdr); rec.Code != 500 || errCodeOf(t, rec) != CodeInternal {
		t.Fatalf("misconfigured: %d", rec.Code)
	}
	f.mu.Lock()
	f.status = http.StatusServiceUnavailable
	f.mu.Unlock()
	if rec, _ := served(t, mw, hdr); rec.Code != 503 || errCodeOf(t, rec) != CodeUnavailable {
		t.Fatalf("store down: %d", rec.Code)
	}
	f.Close()
	if rec, id := served(t, mw, hdr); rec.Code != 503 || id != nil {
		t.Fatalf("server gone: %d; the request must be refused, not let through", rec.Code)
	}
}

func TestMiddlewareReleasesLeaseAfterHandler(t *testing.T) {
	f := newFakeLatchkey(t)
	f.setAnswer("k", validAnswer(map[string]any{"lease_id": "lease_9"}))
	v, _ := newVerifier(t, f, 0)
	var releasedDuring int
	h := v.Middleware("data:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		releasedDuring = len(f.released)
		f.mu.Unlock()
		if r.Header.Get("X-Panic") != "" {
			panic(http.ErrAbortHandler)
		}
	}))
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Authorization", "Bearer k")
	h.ServeHTTP(httptest.NewRecorder(), req)
	f.mu.Lock()
	got := append([]string(nil), f.released...)
	f.mu.Unlock()
	if releasedDuring != 0 || len(got) != 1 || got[0] != "k lease_9" {
		t.Fatalf("released during the handler: %d; after: %v", releasedDuring, got)
	}
	req.Header.Set("X-Panic", "1")
	func() {
		defer func() { recover() }()
		h.ServeHTTP(httptest.NewRecorder(), req)
	}()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.released) != 2 {
		t.Fatalf("a panicking handler kept its lease: %v", f.released)
	}
}

func TestVerifierCachesOnlyPlainValidAnswers(t *testing.T) {
	f := newFakeLatchkey(t)
	f.setAnswer("plain", validAnswer(map[string]any{"expires_at": t0.Add(3 * time.Second)}))
	f.setAnswer("limited", validAnswer(map[string]any{"ratelimit": map[string]any{"limit": 5, "remaining": 4, "reset_at": t0}}))
	f.setAnswer("leased", validAnswer(map[string]any{"lease_id": "l1"}))
	f.setAnswer("denied", map[string]any{"valid": false, "code": CodeRevoked})
	v, clk := newVerifier(t, f, 5*time.Second)
	ctx := context.Background()
	ask := func(key string, scopes ...string) *Verification {
		t.Helper()
		ans, err := v.Verify(ctx, VerifyRequest{Key: key, Scopes: scopes, IP: "203.0.113.9"})
		if err != nil {
			t.Fatal(err)
		}
		return ans
	}
	count := func() int64 { return f.verifies.Load() }

	ask("plain", "data:read")
	if a := ask("plain", "data:read"); !a.Cached || count() != 1 {
		t.Fatalf("second ask: cached %v after %d verifies", a.Cached, count())
	}
	ask("plain", "data:write") // another question
	if count() != 2 {
		t.Fatalf("other scopes used the cached answer")
	}
	clk.Advance(3 * time.Second) // the key's expires_at, before the TTL
	ask("plain", "data:read")
	if count() != 3 {
		t.Fatalf("a cached answer outlived the key's expires_at")
	}
	for _, k := range []string{"limited", "leased", "denied"} {
		before := count()
		ask(k)
		ask(k)
		if count()-before != 2 {
			t.Errorf("%s: an answer with limits, a lease or a denial was cached", k)
		}
	}
}

func TestVerifierCacheHoldsNoPlaintextKey(t *testing.T) {
	f := newFakeLatchkey(t)
	f.setAnswer("lk_plaintext_secret", validAnswer(nil))
	v, _ := newVerifier(t, f, time.Minute)
	if _, err := v.Verify(context.Background(), VerifyRequest{Key: "lk_plaintext_secret"}); err != nil {
		t.Fatal(err)
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	for k := range v.cache {
		if bytes.Contains(k[:], []byte("lk_plaintext")) {
			t.Fatal("cache key holds the key")
		}
	}
	if len(v.cache) != 1 {
		t.Fatalf("%d cached", len(v.cache))
	}
}

func TestVerifierCacheIsBounded(t *testing.T) {
	f := newFakeLatchkey(t)
	for i := range 20 {
		f.setAnswer("k"+string(rune('a'+i)), validAnswer(nil))
	}
	clk := fakeclock.New(t0)
	v, err := NewVerifier(VerifierConfig{URL: f.URL, CacheEntries: 8, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		key := "k" + string(rune('a'+i))
		if ans, err := v.Verify(context.Background(), VerifyRequest{Key: key}); err != nil || !ans.Valid || ans.Cached {
			t.Fatalf("Verify(%s): %+v, %v; want a fresh valid answer", key, ans, err)
		}
	}
	if got := f.verifies.Load(); got != 20 {
		t.Fatalf("%d verify requests for 20 distinct keys", got)
	}
	if n := len(v.cache); n == 0 || n > 8 {
		t.Fatalf("%d entries in a cache of 8 after 20 valid answers", n)
	}
	// The cache still works at its bound: the last answer is served from it.
	if ans, err := v.Verify(context.Background(), VerifyRequest{Key: "kt"}); err != nil || !ans.Cached || f.verifies.Load() != 20 {
		t.Fatalf("the last key again: %+v, %v (%d requests); want a cached answer", ans, err, f.verifies.Load())
	}
}

func TestNewVerifierRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8080", "http://", "http://u:p@h", "http://h/?x=1"} {
		if _, err := NewVerifier(VerifierConfig{URL: u}); ErrorCode(err) != CodeInvalid {
			t.Errorf("%q: %v", u, err)
		}
	}
}
