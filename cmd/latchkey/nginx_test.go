package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/testenv"
)

// metaLimiter stands in for the limits issue's limiter: it denies a key
// whose meta names a limit code under "test_deny", so the nginx mode's
// mapping of limits can be tested end to end today.
type metaLimiter struct{}

func (metaLimiter) Admit(_ context.Context, k *latchkey.Key, _ int64, _ []latchkey.NamedCost, now time.Time) (latchkey.Admission, error) {
	code, _ := k.Meta["test_deny"].(string)
	if code == "" {
		return latchkey.Admission{RateLimit: latchkey.LimitState{Limit: 100, Remaining: 99, ResetAt: now.Add(time.Minute)}}, nil
	}
	return latchkey.Admission{Code: code, RetryAfter: 7 * time.Second, RateLimit: latchkey.LimitState{Limit: 100, Remaining: 0, ResetAt: now.Add(7 * time.Second)}}, nil
}

func (metaLimiter) LeaseKey(string, time.Time) (string, bool) { return "", false }
func (metaLimiter) Release(string, time.Time) bool            { return false }
func (metaLimiter) Forget(string)                             {}
func (metaLimiter) Flush(context.Context) error               { return nil }

// TestE2ENginxForwardAuth puts a real nginx, configured with the snippet
// the docs ship, in front of an app, with the real server as its
// auth_request endpoint.
func TestE2ENginxForwardAuth(t *testing.T) {
	ts := startServer(t, withLimiter(metaLimiter{}), withTrustedProxies("127.0.0.1/32"))
	admin := ts.mustTenant(t, "acme")
	_, reader := ts.mustCreate(t, admin, map[string]any{"owner": "acme_corp", "scopes": []string{"data:read"}})
	_, writer := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:write"}})
	revokedID, revoked := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	ts.call(t, "POST", "/v1/keys/"+revokedID+"/revoke", admin, nil)
	limited := map[string]string{}
	for _, code := range []string{latchkey.CodeRateLimited, latchkey.CodeQuotaExceeded, latchkey.CodeConcurrencyExceeded} {
		_, limited[code] = ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}, "meta": map[string]any{"test_deny": code}})
	}

	type seen struct{ keyID, tenant, owner, scopes string }
	got := make(chan seen, 16)
	app := loopbackApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Header.Get("X-Latchkey-Key-Id"), r.Header.Get("X-Latchkey-Tenant"), r.Header.Get("X-Latchkey-Owner"), r.Header.Get("X-Latchkey-Scopes")}
		w.Write([]byte("report"))
	}))
	defer app.Close()

	ngx := testenv.StartNginx(t, testenv.NginxConfig{
		AuthURL:     ts.URL + "/v1/auth?scope=data:read&proxy=nginx",
		UpstreamURL: app.URL,
	})
	get := func(key string) resp {
		return do(t, "GET", ngx.URL+"/reports/today", map[string]string{"Authorization": bearer(key)}, nil)
	}

	t.Run("AllowedReachesUpstreamWithIdentity", func(t *testing.T) {
		r := get(reader)
		if r.Status != 200 || string(r.Raw) != "report" {
			t.Fatalf("status %d body %q", r.Status, r.Raw)
		}
		s := <-got
		if s.tenant != "acme" || s.owner != "acme_corp" || s.scopes != "data:read" || !strings.HasPrefix(s.keyID, "key_") {
			t.Fatalf("upstream saw %+v", s)
		}
	})
	tests := []struct {
		name   string
		key    string
		status int
		code   string
	}{
		{"NoKeyIs401", "", 401, latchkey.CodeMalformed},
		{"RevokedKeyIs401", revoked, 401, latchkey.CodeRevoked},
		{"MissingScopeIs403", writer, 403, latchkey.CodeInsufficientScope},
		{"RateLimitIs429", limited[latchkey.CodeRateLimited], 429, latchkey.CodeRateLimited},
		{"QuotaIs429", limited[latchkey.CodeQuotaExceeded], 429, latchkey.CodeQuotaExceeded},
		{"ConcurrencyIs429", limited[latchkey.CodeConcurrencyExceeded], 429, latchkey.CodeConcurrencyExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := get(tt.key)
			if r.Status != tt.status || r.Header.Get("X-Latchkey-Code") != tt.code {
				t.Fatalf("through nginx: %d %q, want %d %s", r.Status, r.Header.Get("X-Latchkey-Code"), tt.status, tt.code)
			}
			if tt.status == 429 && r.Header.Get("Retry-After") != "7" {
				t.Fatalf("Retry-After = %q", r.Header.Get("Retry-After"))
			}
			select {
			case s := <-got:
				t.Fatalf("a denied request reached the app: %+v", s)
			default:
			}
		})
	}
	// What nginx itself sees from the nginx mode: limits as 403 with the
	// code, so nginx does not turn them into a 500.
	r := do(t, "GET", ts.URL+"/v1/auth?scope=data:read&proxy=nginx", map[string]string{"X-API-Key": limited[latchkey.CodeRateLimited]}, nil)
	if r.Status != 403 || r.Header.Get("X-Latchkey-Code") != latchkey.CodeRateLimited || r.Header.Get("Retry-After") != "7" {
		t.Fatalf("nginx mode: %d %q %q", r.Status, r.Header.Get("X-Latchkey-Code"), r.Header.Get("Retry-After"))
	}
	r = do(t, "GET", ts.URL+"/v1/auth?scope=data:read", map[string]string{"X-API-Key": limited[latchkey.CodeRateLimited]}, nil)
	if r.Status != 429 || r.Header.Get("RateLimit-Remaining") != "0" || r.Header.Get("X-RateLimit-Limit") != "100" {
		t.Fatalf("plain mode: %d %v", r.Status, r.Header)
	}
}

// loopbackApp starts h as the application behind nginx, on 127.0.0.1
// explicitly (httptest would fall back to [::1], which the nginx
// configuration does not proxy to).
func loopbackApp(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	app := httptest.NewUnstartedServer(h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app.Listener = ln
	app.Start()
	return app
}
