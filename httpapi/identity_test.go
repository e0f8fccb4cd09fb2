package httpapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/guard"
	"github.com/latchkeyhq/latchkey/identity"
	"github.com/latchkeyhq/latchkey/internal/testenv"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// testIssuer signs identity tokens with an EC key it publishes inline.
type testIssuer struct {
	t   testing.TB
	key *ecdsa.PrivateKey
	n   atomic.Int64
}

const testIssuerURL = "https://issuer.test"

func newTestIssuer(t testing.TB) *testIssuer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testIssuer{t: t, key: k}
}

// providerJSON is a POST /v1/identity-providers body trusting the issuer.
func (is *testIssuer) providerJSON(name string) string {
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &is.key.PublicKey, KeyID: "k1", Use: "sig"}}})
	if err != nil {
		is.t.Fatal(err)
	}
	return `{"name": "` + name + `", "issuer": "` + testIssuerURL + `", "jwks": ` + string(set) + `, "audience": "latchkey",
		"algorithms": ["ES256"], "claims": {"sub": "repo:acme/*"},
		"key_template": {"name": "ci", "scopes": ["data:read"], "ttl": "10m"}}`
}

// token is a fresh token of the issuer; edit changes its claims.
func (is *testIssuer) token(edit func(c map[string]any)) string {
	now := time.Now()
	c := map[string]any{
		"iss": testIssuerURL, "sub": "repo:acme/api:ref:refs/heads/main", "aud": "latchkey",
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "jti": "j" + time.Duration(is.n.Add(1)).String(),
	}
	if edit != nil {
		edit(c)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: is.key, KeyID: "k1"}}, nil)
	if err != nil {
		is.t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		is.t.Fatal(err)
	}
	return tok
}

func tokenBody(tenant, provider, token string) string {
	b, _ := json.Marshal(tokenRequest{Tenant: tenant, Provider: provider, Token: token})
	return string(b)
}

// identityTraffic drives the identity routes for the OpenAPI traffic
// check, as acme's admin.
func identityTraffic(tr *traffic, admin string) {
	is := newTestIssuer(tr.t)
	tr.do(exchange{method: "POST", path: "/v1/identity-providers", key: admin, body: is.providerJSON("ci"), want: 201})
	tr.do(exchange{method: "POST", path: "/v1/identity-providers", key: admin, body: is.providerJSON("ci"), want: 409})
	tr.do(exchange{method: "POST", path: "/v1/identity-providers", key: admin, body: `{"name": "x", "issuer": "i", "audience": "a",
		"jwks_url": "http://169.254.169.254/", "claims": {"sub": "x"}, "key_template": {"name": "k"}}`, want: 400})
	tr.do(exchange{method: "POST", path: "/v1/identity-providers", key: admin, body: `{"name": "x", "colour": "red"}`, want: 400, refused: true})
	tr.do(exchange{method: "GET", path: "/v1/identity-providers", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/identity-providers/ci", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/identity-providers/missing", key: admin, want: 404})
	tok := is.token(nil)
	tr.do(exchange{method: "POST", path: "/v1/token", body: tokenBody("acme", "ci", tok), want: 201})
	tr.do(exchange{method: "POST", path: "/v1/token", body: tokenBody("acme", "ci", tok), want: 401})
	tr.do(exchange{method: "POST", path: "/v1/token", body: `{"tenant": "acme", "provider": "ci"}`, want: 400, refused: true})
	tr.do(exchange{method: "DELETE", path: "/v1/identity-providers/ci", key: admin, want: 204})
	tr.do(exchange{method: "DELETE", path: "/v1/identity-providers/ci", key: admin, want: 404})
}

// identityServer is a server with an identity service and a guard that
// holds a network back at its third failure; it returns the server and
// acme's admin key.
func identityServer(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "i.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ks := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db)})
	root, _, _, err := ks.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	op, err := ks.Authenticate(ctx, root.Reveal(), netip.Addr{}, "tenants:admin")
	if err != nil {
		t.Fatal(err)
	}
	_, _, admin, err := ks.CreateTenant(ctx, op, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	g, err := guard.New(guard.Options{Threshold: 3})
	if err != nil {
		t.Fatal(err)
	}
	ids := identity.New(identity.Options{Store: latchkey.Narrow[identity.Tx](db), Keys: ks, Dial: testenv.LoopbackDialer(t)})
	ts := httptest.NewServer(New(Config{Keys: ks, Identity: ids, Guard: g}))
	t.Cleanup(ts.Close)
	return ts, admin.Reveal()
}

func post(t *testing.T, url, key, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp, v
}

// A token exchanged over HTTP buys a key that verifies; refusals are 401
// unauthenticated naming the check in X-Latchkey-Reason, and count in the
// brute-force guard like bad keys: the third holds the network back.
func TestTokenExchangeOverHTTP(t *testing.T) {
	ts, admin := identityServer(t)
	is := newTestIssuer(t)
	if resp, v := post(t, ts.URL+"/v1/identity-providers", admin, is.providerJSON("ci")); resp.StatusCode != 201 {
		t.Fatalf("create provider: %d %v", resp.StatusCode, v)
	}
	tok := is.token(nil)
	resp, v := post(t, ts.URL+"/v1/token", "", tokenBody("acme", "ci", tok))
	if resp.StatusCode != 201 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("exchange: %d %v (Cache-Control %q)", resp.StatusCode, v, resp.Header.Get("Cache-Control"))
	}
	key, _ := v["key"].(string)
	_, verdict := post(t, ts.URL+"/v1/keys/verify", "", `{"key": "`+key+`", "scopes": ["data:read"]}`)
	if verdict["code"] != latchkey.CodeValid || verdict["key_id"] != v["key_id"] && verdict["id"] != v["key_id"] {
		t.Errorf("the minted key verifies %v", verdict)
	}
	exp, err := time.Parse(time.RFC3339Nano, v["expires_at"].(string))
	if err != nil || exp.Before(time.Now().Add(9*time.Minute)) || exp.After(time.Now().Add(11*time.Minute)) {
		t.Errorf("expires_at %v, want in the template's 10m (%v)", v["expires_at"], err)
	}
	for i, tc := range []struct {
		token, reason string
	}{
		{tok, identity.ReasonReplayed},
		{is.token(func(c map[string]any) { c["aud"] = "other" }), identity.ReasonAudience},
	} {
		resp, v := post(t, ts.URL+"/v1/token", "", tokenBody("acme", "ci", tc.token))
		e, _ := v["error"].(map[string]any)
		if resp.StatusCode != 401 || e["code"] != latchkey.EUnauthenticated || resp.Header.Get("X-Latchkey-Reason") != tc.reason {
			t.Errorf("refusal %d: %d %v reason %q, want 401 unauthenticated %s", i, resp.StatusCode, v, resp.Header.Get("X-Latchkey-Reason"), tc.reason)
		}
	}
	// The third failure starts the hold; then even a good token waits.
	post(t, ts.URL+"/v1/token", "", tokenBody("acme", "nope", is.token(nil)))
	resp, v = post(t, ts.URL+"/v1/token", "", tokenBody("acme", "ci", is.token(nil)))
	if e, _ := v["error"].(map[string]any); resp.StatusCode != 429 || e["code"] != latchkey.ERateLimited || resp.Header.Get("Retry-After") == "" {
		t.Errorf("after three refused tokens: %d %v, want 429 rate_limited with Retry-After", resp.StatusCode, v)
	}
}

// A server without an identity service answers its routes not_found.
func TestIdentityRoutesWithoutTheService(t *testing.T) {
	srv := New(Config{Keys: keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](openTestDB(t))})})
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/token", strings.NewReader(`{"tenant": "a", "provider": "b", "token": "c"}`)))
	if rec.Code != http.StatusNotFound {
		t.Errorf("POST /v1/token: %d %s, want 404", rec.Code, rec.Body)
	}
}

func openTestDB(t *testing.T) *sqlite.DB {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "n.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func FuzzDecodeIdentityProvider(f *testing.F) {
	f.Add([]byte(`{"name": "ci", "issuer": "https://i", "jwks": {"keys": []}, "audience": "a", "claims": {"sub": "x*"}, "key_template": {"name": "k", "ttl": "1h"}}`))
	f.Add([]byte(`{"jwks": {"keys": [{"kty": "oct", "k": "AAAA"}]}}`))
	f.Add([]byte(`{"key_template": {"ttl": 5}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := decodeIdentityProvider(data)
		if err != nil && latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Fatalf("%q: %v, want invalid", data, err)
		}
	})
}

func FuzzDecodeTokenRequest(f *testing.F) {
	f.Add([]byte(`{"tenant": "acme", "provider": "ci", "token": "a.b.c"}`))
	f.Add([]byte(`{"tenant": "acme"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeTokenRequest(data)
		if err != nil && latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Fatalf("%q: %v, want invalid", data, err)
		}
		if err == nil && (r.Tenant == "" || r.Provider == "" || r.Token == "") {
			t.Fatalf("%q: accepted without a required field", data)
		}
	})
}
