package identity_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/identity"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
	"github.com/latchkeyhq/latchkey/internal/servicetest"
	"github.com/latchkeyhq/latchkey/internal/testenv"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// fixture is an identity service on a SQLite store with a key service,
// both on a fake clock that follows real time until a test moves it, and
// a local issuer registered for acme as provider "ci".
type fixture struct {
	svc   *identity.Service
	keys  *keys.Service
	clock *fakeclock.Clock
	db    *sqlite.DB
	is    *issuer
	admin *latchkey.Actor
}

const aud = "https://latchkey.example.com"

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "i.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := fakeclock.New(time.Now().UTC().Truncate(time.Second))
	ks := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db), Now: clock.Now})
	_, acme, _ := servicetest.Admins(t, ks)
	is := newIssuer(t)
	svc := identity.New(identity.Options{
		Store: latchkey.Narrow[identity.Tx](db), Keys: ks, Now: clock.Now,
		AllowHTTP: []string{"127.0.0.1"}, JWKSMinRefresh: time.Second, Dial: testenv.LoopbackDialer(t),
	})
	f := &fixture{svc: svc, keys: ks, clock: clock, db: db, is: is, admin: acme}
	if _, err := svc.CreateProvider(ctx, acme, f.provider("ci")); err != nil {
		t.Fatalf("CreateProvider: %v", err)
	}
	return f
}

func (f *fixture) provider(name string) identity.Provider {
	return identity.Provider{
		Name: name, Issuer: f.is.url, JWKSURL: f.is.jwksURL(), Audience: aud,
		Algorithms: []string{"RS256", "ES256"},
		Claims:     map[string]string{"sub": "repo:acme/*", "ref": "refs/heads/main"},
		KeyTemplate: identity.KeyTemplate{
			Name: "ci", Scopes: []string{"data:read"}, Resources: []string{"agent:*"}, TTL: latchkey.Duration(15 * time.Minute),
		},
	}
}

func (f *fixture) exchange(t *testing.T, token string) (*identity.Exchanged, error) {
	t.Helper()
	return f.svc.Exchange(context.Background(), "acme", "ci", token, netip.MustParseAddr("192.0.2.7"))
}

// reason is the check a refusal names, "" if err is not a refusal.
func reason(err error) string {
	var r *identity.Refused
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

func (f *fixture) verify(t *testing.T, key string) string {
	t.Helper()
	v, err := f.keys.Verify(context.Background(), keys.VerifyRequest{Key: key, Scopes: []string{"data:read"}, Resource: "agent:x"})
	if err != nil {
		t.Fatal(err)
	}
	return v.Code
}

func TestMatchingTokenBuysAKeyThatVerifiesAndExpiresOnTime(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	c := f.is.claimsAt(now, aud)
	for _, kid := range []string{"rsa-1", "ec-1"} {
		alg := jose.RS256
		if strings.HasPrefix(kid, "ec") {
			alg = jose.ES256
		}
		c.Jti = "jti-" + kid
		ex, err := f.exchange(t, f.is.sign(kid, alg, c))
		if err != nil {
			t.Fatalf("%s: Exchange: %v", kid, err)
		}
		k := ex.Key
		if k.Owner != c.Sub || k.Name != "ci" || k.Tenant != "acme" {
			t.Errorf("%s: key owner %q name %q tenant %q", kid, k.Owner, k.Name, k.Tenant)
		}
		if want := now.Add(15 * time.Minute); !k.ExpiresAt.Equal(want) {
			t.Errorf("%s: expires %v, want %v (the template's ttl)", kid, k.ExpiresAt, want)
		}
		if k.Meta["identity_issuer"] != f.is.url || k.Meta["identity_subject"] != c.Sub || k.Meta["identity_jti"] != c.Jti {
			t.Errorf("%s: meta %v does not name the issuer, subject and jti", kid, k.Meta)
		}
		if code := f.verify(t, ex.Token.Reveal()); code != latchkey.CodeValid {
			t.Errorf("%s: the minted key verifies %s, want VALID", kid, code)
		}
	}
	// Scopes and resources are the template's, no more.
	ex, err := f.exchange(t, f.is.sign("rsa-1", jose.RS256, f.is.claimsAt(now, aud)))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := f.keys.Verify(context.Background(), keys.VerifyRequest{Key: ex.Token.Reveal(), Scopes: []string{"data:write"}})
	if v.Code != latchkey.CodeInsufficientScope {
		t.Errorf("a scope outside the template: %s, want INSUFFICIENT_SCOPE", v.Code)
	}
	f.clock.Advance(15*time.Minute - time.Second)
	if code := f.verify(t, ex.Token.Reveal()); code != latchkey.CodeValid {
		t.Errorf("a second before its end the key verifies %s", code)
	}
	f.clock.Advance(time.Second)
	if code := f.verify(t, ex.Token.Reveal()); code != latchkey.CodeExpired {
		t.Errorf("at its end the key verifies %s, want EXPIRED", code)
	}
}

func TestExchangeIsAudited(t *testing.T) {
	f := newFixture(t)
	c := f.is.claimsAt(f.clock.Now(), aud)
	ex, err := f.exchange(t, f.is.sign("rsa-1", jose.RS256, c))
	if err != nil {
		t.Fatal(err)
	}
	var found *latchkey.AuditEvent
	err = latchkey.Narrow[audit.Tx](f.db).View(context.Background(), func(tx audit.Tx) error {
		evs, err := tx.AuditEvents("acme", latchkey.AuditFilter{Action: "identity.exchanged"})
		if len(evs) > 0 {
			found = evs[0]
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == nil {
		t.Fatal("no identity.exchanged event")
	}
	if found.TargetKeyID != ex.Key.ID || found.Details["issuer"] != f.is.url || found.Details["subject"] != c.Sub || found.Details["jti"] != c.Jti {
		t.Errorf("identity.exchanged = %+v, want the key, issuer, subject and jti", found)
	}
}

func TestRefusedTokensNameTheFailedCheck(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	good := func() claims { return f.is.claimsAt(now, aud) }
	rsaKey := f.is.signer("rsa-1").(*rsa.PrivateKey)
	stranger := newIssuer(t) // same kids, other keys

	cases := []struct {
		name  string
		token func() string
		want  string
	}{
		{"WrongAudience", func() string { c := good(); c.Aud = []string{"someone-else"}; return f.is.sign("rsa-1", jose.RS256, c) }, identity.ReasonAudience},
		{"Expired", func() string {
			c := good()
			c.Iat, c.Nbf, c.Exp = now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
			return f.is.sign("rsa-1", jose.RS256, c)
		}, identity.ReasonExpired},
		{"NotYetValid", func() string {
			c := good()
			c.Nbf = now.Add(10 * time.Minute).Unix()
			return f.is.sign("rsa-1", jose.RS256, c)
		}, identity.ReasonNotYetValid},
		{"IssuedInTheFuture", func() string {
			c := good()
			c.Iat = now.Add(10 * time.Minute).Unix()
			return f.is.sign("rsa-1", jose.RS256, c)
		}, identity.ReasonIssuedInFuture},
		{"UnknownKid", func() string {
			return signWith(t, jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: rsaKey, KeyID: "nope"}}, good())
		}, identity.ReasonUnknownKid},
		{"SignedByAnotherKey", func() string { return stranger.sign("rsa-1", jose.RS256, good()) }, identity.ReasonSignature},
		{"WrongIssuer", func() string { c := good(); c.Iss = "https://evil.example"; return f.is.sign("rsa-1", jose.RS256, c) }, identity.ReasonIssuer},
		{"NoJTI", func() string { c := good(); c.Jti = ""; return f.is.sign("rsa-1", jose.RS256, c) }, identity.ReasonMissingClaim},
		{"NoExp", func() string { c := good(); c.Exp = 0; return f.is.sign("rsa-1", jose.RS256, c) }, identity.ReasonMissingClaim},
		{"ClaimRuleNotMatched", func() string {
			c := good()
			c.Sub = "repo:evil/api:ref:refs/heads/main"
			return f.is.sign("rsa-1", jose.RS256, c)
		}, identity.ReasonClaims},
		{"ClaimAbsent", func() string { c := good(); c.Ref = ""; return f.is.sign("rsa-1", jose.RS256, c) }, identity.ReasonClaims},
		{"AlgNone", func() string { return unsigned(t, "none", "rsa-1", good()) }, identity.ReasonAlgorithm},
		{"HMACWithThePublicKeyAsSecret", func() string { return hmacWithPublicKey(t, &rsaKey.PublicKey, "rsa-1", good()) }, identity.ReasonAlgorithm},
		{"AlgorithmNotTheProvidersOwn", func() string { return f.is.sign("rsa-1", jose.PS256, good()) }, identity.ReasonAlgorithm},
		{"NotAJWT", func() string { return "not-a-token" }, identity.ReasonMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.exchange(t, tc.token())
			if latchkey.ErrorCode(err) != latchkey.EUnauthenticated || reason(err) != tc.want {
				t.Errorf("Exchange: code %s reason %q (%v), want unauthenticated %q", latchkey.ErrorCode(err), reason(err), err, tc.want)
			}
		})
	}
	t.Run("UnknownProvider", func(t *testing.T) {
		_, err := f.svc.Exchange(context.Background(), "acme", "nope", f.is.sign("rsa-1", jose.RS256, good()), netip.Addr{})
		if reason(err) != identity.ReasonUnknownProvider {
			t.Errorf("reason %q (%v), want %s", reason(err), err, identity.ReasonUnknownProvider)
		}
		_, err = f.svc.Exchange(context.Background(), "globex", "ci", f.is.sign("rsa-1", jose.RS256, good()), netip.Addr{})
		if reason(err) != identity.ReasonUnknownProvider {
			t.Errorf("another tenant's provider: reason %q (%v)", reason(err), err)
		}
	})
}

func TestJTIIsAcceptedOnce(t *testing.T) {
	f := newFixture(t)
	tok := f.is.sign("ec-1", jose.ES256, f.is.claimsAt(f.clock.Now(), aud))
	if _, err := f.exchange(t, tok); err != nil {
		t.Fatal(err)
	}
	_, err := f.exchange(t, tok)
	if latchkey.ErrorCode(err) != latchkey.EUnauthenticated || reason(err) != identity.ReasonReplayed {
		t.Fatalf("the same token again: %v (reason %q), want %s", err, reason(err), identity.ReasonReplayed)
	}
	// Pruned only once the token has expired, when exp refuses it anyway.
	n, err := f.svc.PruneJTIs(context.Background())
	if err != nil || n != 0 {
		t.Errorf("PruneJTIs before expiry = %d, %v; want 0", n, err)
	}
	f.clock.Advance(10 * time.Minute)
	if n, err := f.svc.PruneJTIs(context.Background()); err != nil || n != 1 {
		t.Errorf("PruneJTIs after expiry = %d, %v; want 1", n, err)
	}
	if _, err := f.exchange(t, tok); reason(err) != identity.ReasonExpired {
		t.Errorf("the pruned token: %v, want expired", err)
	}
}

func TestIssuerKeyRotation(t *testing.T) {
	f := newFixture(t)
	if _, err := f.exchange(t, f.is.sign("rsa-1", jose.RS256, f.is.claimsAt(f.clock.Now(), aud))); err != nil {
		t.Fatal(err)
	}
	fetched := f.is.fetches.Load()
	// The issuer rotates: a new key signs, the old one is withdrawn.
	old := f.is.signer("rsa-1")
	f.is.addRSA("rsa-2")
	f.is.retire("rsa-1")
	f.clock.Advance(2 * time.Second)
	if _, err := f.exchange(t, f.is.sign("rsa-2", jose.RS256, f.is.claimsAt(f.clock.Now(), aud))); err != nil {
		t.Fatalf("a token of the new key: %v", err)
	}
	if f.is.fetches.Load() != fetched+1 {
		t.Errorf("JWKS fetched %d times for the new kid, want once", f.is.fetches.Load()-fetched)
	}
	// Unknown kids do not make the server hammer the issuer: within the
	// refresh interval, no fetch.
	fetched = f.is.fetches.Load()
	for i := range 5 {
		c := f.is.claimsAt(f.clock.Now(), aud)
		tok := signWith(t, jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: f.is.signer("rsa-2"), KeyID: "made-up-" + string(rune('a'+i))}}, c)
		if _, err := f.exchange(t, tok); reason(err) != identity.ReasonUnknownKid {
			t.Fatalf("made-up kid: %v", err)
		}
	}
	if got := f.is.fetches.Load() - fetched; got > 1 {
		t.Errorf("5 made-up kids within the refresh interval fetched the JWKS %d times, want at most 1", got)
	}
	// After the set's TTL the withdrawn key is gone.
	f.clock.Advance(2 * time.Hour)
	oldTok := signWith(t, jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: old, KeyID: "rsa-1"}}, f.is.claimsAt(f.clock.Now(), aud))
	if _, err := f.exchange(t, oldTok); reason(err) != identity.ReasonUnknownKid {
		t.Errorf("a token of the withdrawn key after the TTL: %v, want unknown_kid", err)
	}
}

func TestInlineJWKS(t *testing.T) {
	f := newFixture(t)
	p := f.provider("inline")
	set := f.is.jwks()
	// Private keys given inline are kept as their public halves.
	priv := jose.JSONWebKey{Key: f.is.signer("ec-1").(*ecdsa.PrivateKey), KeyID: "ec-1"}
	set.Keys = []jose.JSONWebKey{priv}
	p.JWKSURL, p.JWKS = "", &set
	got, err := f.svc.CreateProvider(context.Background(), f.admin, p)
	if err != nil {
		t.Fatal(err)
	}
	if !got.JWKS.Keys[0].IsPublic() {
		t.Error("a private key given inline was stored")
	}
	ex, err := f.svc.Exchange(context.Background(), "acme", "inline", f.is.sign("ec-1", jose.ES256, f.is.claimsAt(f.clock.Now(), aud)), netip.Addr{})
	if err != nil || f.verify(t, ex.Token.Reveal()) != latchkey.CodeValid {
		t.Fatalf("inline JWKS exchange: %v", err)
	}
}

func TestProviderRules(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cases := []struct {
		name string
		edit func(p *identity.Provider)
		want string
	}{
		{"PlainHTTPToAHostNotAllowed", func(p *identity.Provider) { p.JWKSURL = "http://169.254.169.254/latest/meta-data" }, latchkey.EInvalid},
		{"NotHTTP", func(p *identity.Provider) { p.JWKSURL = "file:///etc/passwd" }, latchkey.EInvalid},
		{"CredentialsInURL", func(p *identity.Provider) { p.JWKSURL = "https://u:p@example.com/jwks" }, latchkey.EInvalid},
		{"HMACAlgorithm", func(p *identity.Provider) { p.Algorithms = []string{"HS256"} }, latchkey.EInvalid},
		{"NoneAlgorithm", func(p *identity.Provider) { p.Algorithms = []string{"none"} }, latchkey.EInvalid},
		{"NoClaimRule", func(p *identity.Provider) { p.Claims = nil }, latchkey.EInvalid},
		{"OnlyStarRules", func(p *identity.Provider) { p.Claims = map[string]string{"sub": "*"} }, latchkey.EInvalid},
		{"TTLOverADay", func(p *identity.Provider) { p.KeyTemplate.TTL = latchkey.Duration(25 * time.Hour) }, latchkey.EInvalid},
		{"NoAudience", func(p *identity.Provider) { p.Audience = "" }, latchkey.EInvalid},
		{"BothJWKSAndURL", func(p *identity.Provider) { p.JWKS = &jose.JSONWebKeySet{} }, latchkey.EInvalid},
		{"SymmetricInlineKey", func(p *identity.Provider) {
			p.JWKSURL, p.JWKS = "", &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "h"}}}
		}, latchkey.EInvalid},
		{"AdminScopeInTemplate", func(p *identity.Provider) { p.KeyTemplate.Scopes = []string{"tenants:admin"} }, latchkey.EForbidden},
		{"NameTaken", func(p *identity.Provider) { p.Name = "ci" }, latchkey.EConflict},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := f.provider("other")
			tc.edit(&p)
			if _, err := f.svc.CreateProvider(ctx, f.admin, p); latchkey.ErrorCode(err) != tc.want {
				t.Errorf("CreateProvider: %v, want %s", err, tc.want)
			}
		})
	}
	ps, err := f.svc.ListProviders(ctx, f.admin)
	if err != nil || len(ps) != 1 || ps[0].Name != "ci" {
		t.Fatalf("ListProviders = %v, %v; want only ci", ps, err)
	}
	if err := f.svc.DeleteProvider(ctx, f.admin, "ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.GetProvider(ctx, f.admin, "ci"); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("GetProvider after delete: %v", err)
	}
	if err := f.svc.DeleteProvider(ctx, f.admin, "ci"); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("DeleteProvider twice: %v", err)
	}
}

// unsigned is a token with header alg and an empty signature.
func unsigned(t *testing.T, alg, kid string, c claims) string {
	h, _ := json.Marshal(map[string]string{"alg": alg, "kid": kid, "typ": "JWT"})
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(b) + "."
}

// hmacWithPublicKey forges the classic algorithm-confusion token: HS256
// keyed with the issuer's public key, which anyone can read.
func hmacWithPublicKey(t *testing.T, pub *rsa.PublicKey, kid string, c claims) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := json.Marshal(map[string]string{"alg": "HS256", "kid": kid, "typ": "JWT"})
	b, _ := json.Marshal(c)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(b)
	mac := hmac.New(sha256.New, der)
	mac.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// The JWKS fetch stays inside the URL rule: a redirect to a plain-http
// host the operator did not allow is not followed (the dial hook sees no
// connection to it), and the exchange is unavailable, not accepted.
func TestJWKSRedirectOutsideTheRuleIsNotFollowed(t *testing.T) {
	f := newFixture(t)
	redirector := httptest.NewServer(http.RedirectHandler("http://192.0.2.1/jwks", http.StatusFound))
	t.Cleanup(redirector.Close)
	var mu sync.Mutex
	var dialed []string
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		if !strings.HasPrefix(addr, "127.0.0.1:") {
			return nil, errors.New("the test dials loopback only")
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	svc := identity.New(identity.Options{Store: latchkey.Narrow[identity.Tx](f.db), Keys: f.keys, Now: f.clock.Now,
		AllowHTTP: []string{"127.0.0.1"}, Dial: dial})
	p := f.provider("redirected")
	p.JWKSURL = redirector.URL + "/jwks"
	if _, err := svc.CreateProvider(context.Background(), f.admin, p); err != nil {
		t.Fatal(err)
	}
	_, err := svc.Exchange(context.Background(), "acme", "redirected", f.is.sign("rsa-1", jose.RS256, f.is.claimsAt(f.clock.Now(), aud)), netip.Addr{})
	if latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Fatalf("Exchange through a redirect out of the rule: %v, want unavailable", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range dialed {
		if !strings.HasPrefix(a, "127.0.0.1:") {
			t.Errorf("the fetch dialed %s", a)
		}
	}
	if len(dialed) == 0 {
		t.Error("the dial hook was not used")
	}
}

// An issuer whose JWKS cannot be fetched makes exchanges unavailable, and
// is not asked again before the refresh interval, however many tokens
// come.
func TestFailingJWKSIsUnavailableAndNotHammered(t *testing.T) {
	f := newFixture(t)
	var hits atomic.Int64
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(down.Close)
	p := f.provider("down")
	p.JWKSURL = down.URL + "/jwks"
	if _, err := f.svc.CreateProvider(context.Background(), f.admin, p); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		_, err := f.svc.Exchange(context.Background(), "acme", "down", f.is.sign("rsa-1", jose.RS256, f.is.claimsAt(f.clock.Now(), aud)), netip.Addr{})
		if latchkey.ErrorCode(err) != latchkey.EUnavailable {
			t.Fatalf("Exchange with the issuer's JWKS down: %v, want unavailable", err)
		}
	}
	if hits.Load() != 1 {
		t.Errorf("the failing JWKS was fetched %d times within the refresh interval, want once", hits.Load())
	}
	f.clock.Advance(2 * time.Second)
	f.svc.Exchange(context.Background(), "acme", "down", f.is.sign("rsa-1", jose.RS256, f.is.claimsAt(f.clock.Now(), aud)), netip.Addr{})
	if hits.Load() != 2 {
		t.Errorf("after the refresh interval the JWKS was fetched %d times in all, want 2", hits.Load())
	}
}
