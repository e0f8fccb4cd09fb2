package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/latchkeyhq/latchkey"
)

// localIssuer is an identity token issuer on 127.0.0.1: its own RSA and
// EC keys, a JWKS endpoint, and key rotation on demand.
type localIssuer struct {
	t       *testing.T
	url     string
	mu      sync.Mutex
	keys    map[string]crypto.Signer
	fetches atomic.Int64
	n       atomic.Int64
}

func newLocalIssuer(t *testing.T) *localIssuer {
	is := &localIssuer{t: t, keys: map[string]crypto.Signer{}}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is.keys["rsa-1"], is.keys["ec-1"] = rk, ek
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.fetches.Add(1)
		is.mu.Lock()
		var set jose.JSONWebKeySet
		for kid, k := range is.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: kid, Use: "sig"})
		}
		is.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(srv.Close)
	is.url = srv.URL
	return is
}

func (is *localIssuer) signer(kid string) crypto.Signer {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.keys[kid]
}

// rotate publishes a new RSA key and withdraws old.
func (is *localIssuer) rotate(old, kid string) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		is.t.Fatal(err)
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	delete(is.keys, old)
	is.keys[kid] = k
}

// claims are valid claims at now for audience "latchkey".
func (is *localIssuer) claims(now time.Time) map[string]any {
	return map[string]any{
		"iss": is.url, "sub": "system:serviceaccount:ci:deployer", "aud": []string{"latchkey"},
		"exp": now.Add(10 * time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(),
		"jti":              fmt.Sprintf("jti-%d", is.n.Add(1)),
		"repository_owner": "acme",
	}
}

func (is *localIssuer) sign(kid string, alg jose.SignatureAlgorithm, c map[string]any) string {
	is.t.Helper()
	k := is.signer(kid)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: k, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		is.t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		is.t.Fatal(err)
	}
	return tok
}

// forged is a token of header alg, "signed" with HMAC-SHA256 keyed by
// secret (nil: no signature at all).
func forged(alg, kid string, c map[string]any, secret []byte) string {
	h, _ := json.Marshal(map[string]string{"alg": alg, "kid": kid, "typ": "JWT"})
	b, _ := json.Marshal(c)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(b)
	if secret == nil {
		return in + "."
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func withIDPAllowHTTP(hosts string) serverOption {
	return func(c *serverConfig, _ *serverHooks) { c.IDPAllowHTTP = hosts }
}

// TestE2EIdentityTokenExchange runs a local issuer on 127.0.0.1 and
// exchanges its tokens over real HTTP: a matching token buys a key that
// verifies and expires on time; wrong audience, expired, not yet valid,
// unknown kid, replayed jti, alg none and an HMAC token signed with the
// public key are each refused with the failed check named; the issuer
// rotates its key mid-test and its new tokens are taken.
func TestE2EIdentityTokenExchange(t *testing.T) {
	ts := startServer(t, withIDPAllowHTTP("127.0.0.1"))
	admin := ts.mustTenant(t, "acme")
	is := newLocalIssuer(t)
	provider := map[string]any{
		"name": "k8s", "issuer": is.url, "jwks_url": is.url + "/jwks", "audience": "latchkey",
		"algorithms":   []string{"RS256", "ES256"},
		"claims":       map[string]string{"sub": "system:serviceaccount:ci:*", "repository_owner": "acme"},
		"key_template": map[string]any{"name": "deployer", "scopes": []string{"data:read"}, "resources": []string{"agent:*"}, "ttl": "15m"},
	}
	if r := ts.call(t, "POST", "/v1/identity-providers", admin, provider); r.Status != http.StatusCreated {
		t.Fatalf("create provider: %d %s", r.Status, r.Raw)
	}
	// A tenant admin cannot point the server at its own network.
	bad := map[string]any{"name": "meta", "issuer": "x", "jwks_url": "http://169.254.169.254/latest", "audience": "a",
		"claims": map[string]string{"sub": "x"}, "key_template": map[string]any{"name": "k"}}
	if r := ts.call(t, "POST", "/v1/identity-providers", admin, bad); r.Status != http.StatusBadRequest || r.errCode() != latchkey.EInvalid {
		t.Errorf("a plain-http JWKS URL outside --idp-allow-http: %d %s, want 400 invalid", r.Status, r.Raw)
	}
	if r := ts.call(t, "GET", "/v1/identity-providers/k8s", admin, nil); r.Status != http.StatusOK || r.str("issuer") != is.url {
		t.Errorf("get provider: %d %s", r.Status, r.Raw)
	}
	// Undecodable bodies are refused by both write routes, as everywhere.
	for _, body := range []string{"garbage", "null", `{"bogus": 1}`, `[]`, `{} {}`} {
		for _, p := range []string{"/v1/identity-providers", "/v1/token"} {
			if r := ts.call(t, "POST", p, admin, body); r.Status != http.StatusBadRequest || r.errCode() != latchkey.EInvalid {
				t.Errorf("POST %s with body %q: %d %s, want 400 invalid", p, body, r.Status, r.Raw)
			}
		}
	}

	exchange := func(tok string) resp {
		t.Helper()
		return ts.call(t, "POST", "/v1/token", "", map[string]string{"tenant": "acme", "provider": "k8s", "token": tok})
	}
	now := ts.Clock.Now()
	good := is.claims(now)
	r := exchange(is.sign("rsa-1", jose.RS256, good))
	if r.Status != http.StatusCreated {
		t.Fatalf("exchange: %d %s", r.Status, r.Raw)
	}
	key := r.str("key")
	if exp, err := time.Parse(time.RFC3339Nano, r.str("expires_at")); err != nil || !exp.Equal(now.Add(15*time.Minute)) {
		t.Errorf("expires_at %s, want the template's 15m from now (%v)", r.str("expires_at"), err)
	}
	if code := ts.verifyCode(t, map[string]any{"key": key, "scopes": []string{"data:read"}, "resource": "agent:x"}); code != latchkey.CodeValid {
		t.Fatalf("the bought key verifies %s", code)
	}
	if r := exchange(is.sign("ec-1", jose.ES256, is.claims(now))); r.Status != http.StatusCreated {
		t.Errorf("an ES256 token: %d %s", r.Status, r.Raw)
	}

	rsaPub := is.signer("rsa-1").Public().(*rsa.PublicKey)
	pubDER, _ := x509.MarshalPKIXPublicKey(rsaPub)
	edit := func(f func(c map[string]any)) map[string]any { c := is.claims(now); f(c); return c }
	for _, tc := range []struct {
		name, token, reason string
	}{
		{"WrongAudience", is.sign("rsa-1", jose.RS256, edit(func(c map[string]any) { c["aud"] = "someone-else" })), "audience"},
		{"Expired", is.sign("rsa-1", jose.RS256, edit(func(c map[string]any) {
			c["iat"], c["nbf"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
		})), "expired"},
		{"NotYetValid", is.sign("rsa-1", jose.RS256, edit(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() })), "not_yet_valid"},
		{"UnknownKid", forgedRS256(t, is.signer("rsa-1"), "kid-nobody-published", is.claims(now)), "unknown_kid"},
		{"ReplayedJTI", is.sign("rsa-1", jose.RS256, good), "replayed_jti"},
		{"AlgNone", forged("none", "rsa-1", is.claims(now), nil), "algorithm"},
		{"HMACSignedWithThePublicKey", forged("HS256", "rsa-1", is.claims(now), pubDER), "algorithm"},
		{"ClaimRuleNotMatched", is.sign("rsa-1", jose.RS256, edit(func(c map[string]any) { c["sub"] = "system:serviceaccount:prod:admin" })), "claims"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := exchange(tc.token)
			if r.Status != http.StatusUnauthorized || r.errCode() != latchkey.EUnauthenticated || r.Header.Get("X-Latchkey-Reason") != tc.reason {
				t.Errorf("%d %s reason %q, want 401 unauthenticated %s", r.Status, r.Raw, r.Header.Get("X-Latchkey-Reason"), tc.reason)
			}
		})
	}

	// The issuer rotates its key: the server refetches the JWKS for the
	// new kid (rate-limited: at most once per 30s of its clock).
	is.rotate("rsa-1", "rsa-2")
	ts.Clock.Advance(31 * time.Second)
	now = ts.Clock.Now()
	fetched := is.fetches.Load()
	if r := exchange(is.sign("rsa-2", jose.RS256, is.claims(now))); r.Status != http.StatusCreated {
		t.Fatalf("a token of the rotated-in key: %d %s", r.Status, r.Raw)
	}
	if is.fetches.Load() != fetched+1 {
		t.Errorf("the JWKS was fetched %d times for the new kid, want once", is.fetches.Load()-fetched)
	}

	// The first key expires on time.
	ts.Clock.Set(now.Add(-31 * time.Second).Add(15*time.Minute - time.Second))
	if code := ts.verifyCode(t, map[string]any{"key": key, "scopes": []string{"data:read"}, "resource": "agent:x"}); code != latchkey.CodeValid {
		t.Errorf("a second before its end the key verifies %s", code)
	}
	ts.Clock.Advance(time.Second)
	if code := ts.verifyCode(t, map[string]any{"key": key, "scopes": []string{"data:read"}, "resource": "agent:x"}); code != latchkey.CodeExpired {
		t.Errorf("at its end the key verifies %s, want EXPIRED", code)
	}

	// The exchange is in the audit log with the issuer, subject and jti.
	a := ts.call(t, "GET", "/v1/audit?action=identity.exchanged", admin, nil)
	evs, _ := a.Body["events"].([]any)
	if a.Status != http.StatusOK || len(evs) == 0 {
		t.Fatalf("audit: %d %s", a.Status, a.Raw)
	}
	first, _ := evs[0].(map[string]any)
	d, _ := first["details"].(map[string]any)
	if d["issuer"] != is.url || d["subject"] != good["sub"] || d["jti"] != good["jti"] {
		t.Errorf("identity.exchanged details %v, want the issuer, subject and jti", d)
	}
	if r := ts.call(t, "DELETE", "/v1/identity-providers/k8s", admin, nil); r.Status != http.StatusNoContent {
		t.Errorf("delete provider: %d %s", r.Status, r.Raw)
	}
	if r := exchange(is.sign("rsa-2", jose.RS256, is.claims(ts.Clock.Now()))); r.Header.Get("X-Latchkey-Reason") != "unknown_provider" {
		t.Errorf("after delete: %d %s", r.Status, r.Raw)
	}
}

// forgedRS256 signs with key under a kid the issuer never published.
func forgedRS256(t *testing.T, key crypto.Signer, kid string, c map[string]any) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestCLIIdentityProvidersAndExec: latchkey idp add|list|get|delete, and
// latchkey exec --identity-token running a command with the bought key.
func TestCLIIdentityProvidersAndExec(t *testing.T) {
	n := startCLINode(t, withIDPAllowHTTP("127.0.0.1"))
	ts := &testServer{URL: n.URL, Root: n.Root}
	admin := ts.mustTenant(t, "acme")
	is := newLocalIssuer(t)
	env := n.env("LATCHKEY_KEY", admin)
	r := n.runEnv(t, env, "idp", "add", "ci", "--issuer", is.url, "--jwks-url", is.url+"/jwks", "--audience", "latchkey",
		"--claim", "sub=system:serviceaccount:ci:*", "--scopes", "data:read", "--ttl", "10m")
	if r.err != nil || !strings.Contains(r.stdout, "Added identity provider ci") {
		t.Fatalf("idp add: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	if r := n.runEnv(t, env, "idp", "add", "ci", "--issuer", is.url, "--jwks-url", is.url+"/jwks", "--audience", "latchkey", "--claim", "sub=x"); cliErrCode(r.err) != latchkey.EConflict {
		t.Errorf("idp add of a taken name: %v", r.err)
	}
	if r := n.runEnv(t, env, "idp", "add", "x", "--issuer", is.url, "--audience", "latchkey", "--claim", "sub=x", "--jwks-url", "http://10.0.0.1/jwks"); cliErrCode(r.err) != latchkey.EInvalid {
		t.Errorf("idp add with a plain-http URL not allowed: %v", r.err)
	}
	if r := n.runEnv(t, env, "idp", "list"); r.err != nil || !strings.Contains(r.stdout, "ci") || !strings.Contains(r.stdout, is.url) {
		t.Errorf("idp list: %v\n%s", r.err, r.stdout)
	}
	if r := n.runEnv(t, env, "idp", "get", "ci", "--json"); r.err != nil || !strings.Contains(r.stdout, `"audience"`) {
		t.Errorf("idp get --json: %v\n%s", r.err, r.stdout)
	}

	dir := t.TempDir()
	tokFile, keyFile := filepath.Join(dir, "token"), filepath.Join(dir, "key")
	if err := os.WriteFile(tokFile, []byte(is.sign("ec-1", jose.ES256, is.claims(time.Now()))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noKey := map[string]string{"LATCHKEY_ADDR": n.URL}
	out, errOut, code := runExecCLI(t, noKey, "--identity-token", tokFile, "--tenant", "acme", "--provider", "ci", "--",
		"sh", "-c", `printf %s "$LATCHKEY_KEY" > "$1"`, "sh", keyFile)
	if code != 0 {
		t.Fatalf("exec --identity-token: exit %d\n%s%s", code, out, errOut)
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	key := string(b)
	registerKey(key)
	if code := ts.verifyCode(t, map[string]any{"key": key, "scopes": []string{"data:read"}}); code != latchkey.CodeValid {
		t.Errorf("the key exec's command got verifies %s", code)
	}
	// The same token again is a replay: the command does not run.
	marker := filepath.Join(dir, "ran")
	_, errOut, code = runExecCLI(t, noKey, "--identity-token", tokFile, "--tenant", "acme", "--provider", "ci", "--", "sh", "-c", "touch "+marker)
	if want := exitCode(latchkey.Errorf(latchkey.EUnauthenticated, "")); code != want {
		t.Errorf("exec with a replayed token: exit %d, want %d (unauthenticated); stderr %s", code, want, errOut)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran although its token was refused")
	}
	// With --secrets, the bought key fetches them and the command gets the
	// secrets, not the key.
	value := secretValue("sk-idp-")
	ts.putSecret(t, admin, "openai", map[string]any{"value": value})
	if r := n.runEnv(t, env, "idp", "add", "brokered", "--issuer", is.url, "--jwks-url", is.url+"/jwks", "--audience", "latchkey",
		"--claim", "sub=system:serviceaccount:ci:*", "--scopes", "secrets:read", "--resources", "secret:openai"); r.err != nil {
		t.Fatalf("idp add brokered: %v\n%s", r.err, r.stderr)
	}
	if err := os.WriteFile(tokFile, []byte(is.sign("rsa-1", jose.RS256, is.claims(time.Now()))), 0o600); err != nil {
		t.Fatal(err)
	}
	seen := filepath.Join(dir, "seen")
	_, errOut, code = runExecCLI(t, noKey, "--identity-token", tokFile, "--tenant", "acme", "--provider", "brokered", "--secrets", "openai", "--",
		"sh", "-c", `printf '%s|%s' "$OPENAI_API_KEY" "${LATCHKEY_KEY-unset}" > "$1"`, "sh", seen)
	if code != 0 {
		t.Fatalf("exec --identity-token --secrets: exit %d: %s", code, errOut)
	}
	if b, _ := os.ReadFile(seen); string(b) != value+"|unset" {
		t.Errorf("the command saw %d bytes, want the secret in OPENAI_API_KEY and no LATCHKEY_KEY", len(b))
	}
	if r := n.runEnv(t, env, "idp", "delete", "ci"); r.err != nil {
		t.Errorf("idp delete: %v", r.err)
	}
	if r := n.runEnv(t, env, "idp", "get", "ci"); cliErrCode(r.err) != latchkey.ENotFound {
		t.Errorf("idp get after delete: %v", r.err)
	}
}
