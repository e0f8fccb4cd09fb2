package identity_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// issuer is a local OIDC-style token issuer: its own RSA and EC keys, a
// JWKS endpoint on 127.0.0.1, and key rotation on demand.
type issuer struct {
	t       testing.TB
	srv     *httptest.Server
	url     string // the issuer (iss)
	mu      sync.Mutex
	signers map[string]crypto.Signer // by kid, published
	fetches atomic.Int64
	jtis    atomic.Int64
}

func newIssuer(t testing.TB) *issuer {
	is := &issuer{t: t, signers: map[string]crypto.Signer{}}
	is.addRSA("rsa-1")
	is.addEC("ec-1")
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/jwks" {
			http.NotFound(w, r)
			return
		}
		is.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(is.jwks())
	}))
	t.Cleanup(is.srv.Close)
	is.url = is.srv.URL
	return is
}

func (is *issuer) jwksURL() string { return is.srv.URL + "/jwks" }

func (is *issuer) addRSA(kid string) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		is.t.Fatal(err)
	}
	is.mu.Lock()
	is.signers[kid] = k
	is.mu.Unlock()
	return k
}

func (is *issuer) addEC(kid string) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		is.t.Fatal(err)
	}
	is.mu.Lock()
	is.signers[kid] = k
	is.mu.Unlock()
	return k
}

// retire stops publishing kid (the issuer rotated it out).
func (is *issuer) retire(kid string) {
	is.mu.Lock()
	delete(is.signers, kid)
	is.mu.Unlock()
}

func (is *issuer) jwks() jose.JSONWebKeySet {
	is.mu.Lock()
	defer is.mu.Unlock()
	var set jose.JSONWebKeySet
	for kid, s := range is.signers {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: s.Public(), KeyID: kid, Use: "sig"})
	}
	return set
}

func (is *issuer) signer(kid string) crypto.Signer {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.signers[kid]
}

// claims are a token's claims; the zero fields are left out.
type claims struct {
	Iss string   `json:"iss,omitempty"`
	Sub string   `json:"sub,omitempty"`
	Aud []string `json:"aud,omitempty"`
	Exp int64    `json:"exp,omitempty"`
	Nbf int64    `json:"nbf,omitempty"`
	Iat int64    `json:"iat,omitempty"`
	Jti string   `json:"jti,omitempty"`
	// GitHub's and Kubernetes' extra claims.
	Repository string `json:"repository,omitempty"`
	Ref        string `json:"ref,omitempty"`
}

// claimsAt are valid claims for aud at now, with a fresh jti.
func (is *issuer) claimsAt(now time.Time, aud string) claims {
	return claims{
		Iss: is.url, Sub: "repo:acme/api:ref:refs/heads/main", Aud: []string{aud},
		Exp: now.Add(5 * time.Minute).Unix(), Nbf: now.Add(-time.Minute).Unix(), Iat: now.Unix(),
		Jti:        "jti-" + time.Duration(is.jtis.Add(1)).String(),
		Repository: "acme/api", Ref: "refs/heads/main",
	}
}

// sign signs c with the key kid, under the algorithm alg.
func (is *issuer) sign(kid string, alg jose.SignatureAlgorithm, c claims) string {
	is.t.Helper()
	key := is.signer(kid)
	if key == nil {
		is.t.Fatalf("no key %s", kid)
	}
	return signWith(is.t, jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, c)
}

func signWith(t testing.TB, sk jose.SigningKey, c claims) string {
	t.Helper()
	s, err := jose.NewSigner(sk, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
