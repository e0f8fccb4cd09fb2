package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/testenv"
)

// TestE2ECaddyForwardAuth puts a real Caddy, configured with the site
// block docs/forward-auth.md ships, in front of an app, with the real
// server as its forward_auth endpoint. Caddy passes any answer but a 2xx
// to the client as it is, so limits reach it as 429 without the nginx
// mode, and the identity Latchkey answers replaces what the client sent.
func TestE2ECaddyForwardAuth(t *testing.T) {
	ts := startServer(t, withLimiter(metaLimiter{}), withTrustedProxies("127.0.0.1/32"))
	admin := ts.mustTenant(t, "acme")
	_, reader := ts.mustCreate(t, admin, map[string]any{"owner": "acme_corp", "scopes": []string{"data:read"}})
	_, ownerless := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	_, writer := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:write"}})
	_, elsewhere := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}, "ip_allow": []string{"10.9.0.0/16"}})
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
	auth, err := url.Parse(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	up, err := url.Parse(app.URL)
	if err != nil {
		t.Fatal(err)
	}
	caddy := testenv.StartCaddy(t, testenv.CaddyConfig{Auth: auth.Host, AuthURI: "/v1/auth?scope=data:read", Upstream: up.Host})
	get := func(key string, extra map[string]string) resp {
		h := map[string]string{"Authorization": bearer(key)}
		for k, v := range extra {
			h[k] = v
		}
		return do(t, "GET", caddy.URL+"/reports/today", h, nil)
	}
	// What a client might send to pass as someone else.
	forged := map[string]string{"X-Latchkey-Key-Id": "key_forged", "X-Latchkey-Tenant": "globex", "X-Latchkey-Owner": "mallory", "X-Latchkey-Scopes": "admin:*"}

	t.Run("AllowedReachesUpstreamWithIdentity", func(t *testing.T) {
		r := get(reader, forged)
		if r.Status != 200 || string(r.Raw) != "report" {
			t.Fatalf("status %d body %q", r.Status, r.Raw)
		}
		s := <-got
		if s.tenant != "acme" || s.owner != "acme_corp" || s.scopes != "data:read" || !strings.HasPrefix(s.keyID, "key_") {
			t.Fatalf("upstream saw %+v", s)
		}
	})
	t.Run("AnOwnerlessKeyCannotBorrowAnOwner", func(t *testing.T) {
		r := get(ownerless, forged)
		if r.Status != 200 {
			t.Fatalf("status %d body %q", r.Status, r.Raw)
		}
		if s := <-got; s.owner != "" || s.tenant != "acme" {
			t.Fatalf("upstream saw %+v; want the key's empty owner, not the client's", s)
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
		// The client's address, as Caddy forwards it, is checked against
		// the key's allowlist: Caddy itself is on 127.0.0.1 too, but the
		// key is limited to 10.9.0.0/16.
		{"AddressOutsideTheAllowlistIs403", elsewhere, 403, latchkey.CodeIPNotAllowed},
		{"RateLimitIs429", limited[latchkey.CodeRateLimited], 429, latchkey.CodeRateLimited},
		{"QuotaIs429", limited[latchkey.CodeQuotaExceeded], 429, latchkey.CodeQuotaExceeded},
		{"ConcurrencyIs429", limited[latchkey.CodeConcurrencyExceeded], 429, latchkey.CodeConcurrencyExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := get(tt.key, nil)
			if r.Status != tt.status || r.Header.Get("X-Latchkey-Code") != tt.code {
				t.Fatalf("through caddy: %d %q, want %d %s", r.Status, r.Header.Get("X-Latchkey-Code"), tt.status, tt.code)
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
}
