// Package identity exchanges a workload's signed identity token (a CI
// job's OIDC ID token, a Kubernetes service-account token) for a
// short-lived Latchkey key, so the workload needs no bootstrap secret.
// A tenant registers the issuers it trusts (Provider): the issuer, its
// signing keys (a JWKS URL or an inline JWKS), the audience, the
// algorithms, the claims a token must match and the template of the key it
// may mint. Exchange checks the token's signature and claims with go-jose,
// accepts each jti once, and mints the key through the key service
// (docs/identity.md).
package identity

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/latchkeyhq/latchkey"
)

// MaxTTL bounds the life of a key an exchange mints, whatever the
// template says: a stolen minted key then dies within a day.
const MaxTTL = 24 * time.Hour

// DefaultTTL is the life of a minted key whose template names none.
const DefaultTTL = time.Hour

// Limits of a provider's fields.
const (
	maxIssuerLen   = 500
	maxURLLen      = 2000
	maxClaimRules  = 16
	maxPatternLen  = 500
	maxAlgorithms  = 12
	maxInlineKeys  = 32
	maxAudienceLen = 500
)

// Provider is an identity token issuer a tenant trusts, and what a token
// of it may buy.
type Provider struct {
	Tenant string `json:"tenant"`
	Name   string `json:"name"`
	// Issuer is the token's iss, exactly.
	Issuer string `json:"issuer"`
	// JWKSURL is where the issuer's public keys are fetched (https, or
	// http to a host the operator allows); JWKS holds them inline instead.
	// Exactly one is set.
	JWKSURL string              `json:"jwks_url,omitempty"`
	JWKS    *jose.JSONWebKeySet `json:"jwks,omitempty"`
	// Audience must be among the token's aud.
	Audience string `json:"audience"`
	// Algorithms are the signature algorithms accepted, all asymmetric
	// (AsymmetricAlgorithms); default RS256 and ES256.
	Algorithms []string `json:"algorithms"`
	// Claims maps a claim name to a pattern its value must match, '*'
	// standing for any run of characters ("repo:acme/*"). At least one
	// rule is required, and one that is not only '*': an issuer such as
	// GitHub signs tokens for everyone's workloads.
	Claims map[string]string `json:"claims"`
	// KeyTemplate is the key an exchange mints.
	KeyTemplate KeyTemplate `json:"key_template"`
	CreatedAt   time.Time   `json:"created_at"`
}

// KeyTemplate is the key an exchange mints: its name (default the
// provider's), scopes and resources, and how long it lives (at most
// MaxTTL).
type KeyTemplate struct {
	Name      string            `json:"name"`
	Scopes    []string          `json:"scopes"`
	Resources []string          `json:"resources"`
	TTL       latchkey.Duration `json:"ttl"`
}

// AsymmetricAlgorithms are the only signature algorithms a provider may
// allow. HMAC algorithms are left out on purpose: with a public key as
// the "secret", anyone could sign a token (the classic algorithm
// confusion); "none" is no signature at all.
var AsymmetricAlgorithms = []string{
	string(jose.RS256), string(jose.RS384), string(jose.RS512),
	string(jose.PS256), string(jose.PS384), string(jose.PS512),
	string(jose.ES256), string(jose.ES384), string(jose.ES512),
	string(jose.EdDSA),
}

func asymmetric(alg string) bool {
	for _, a := range AsymmetricAlgorithms {
		if a == alg {
			return true
		}
	}
	return false
}

// normalize checks p and fills its defaults: the rules a provider must
// keep whoever registers it. Errors are EInvalid.
func (p *Provider) normalize(v *urlPolicy) error {
	if !latchkey.ValidPolicyName(p.Name) {
		return latchkey.Errorf(latchkey.EInvalid, "name %.70q: use 1-63 of a-z, 0-9, '_' and '-'", p.Name)
	}
	if err := latchkey.ValidateText("issuer", p.Issuer, maxIssuerLen, true); err != nil {
		return err
	}
	if err := latchkey.ValidateText("audience", p.Audience, maxAudienceLen, true); err != nil {
		return err
	}
	switch {
	case p.JWKSURL != "" && p.JWKS != nil:
		return latchkey.Errorf(latchkey.EInvalid, "give jwks_url or jwks, not both")
	case p.JWKSURL != "":
		if len(p.JWKSURL) > maxURLLen {
			return latchkey.Errorf(latchkey.EInvalid, "jwks_url is longer than %d bytes", maxURLLen)
		}
		if err := v.check(p.JWKSURL); err != nil {
			return err
		}
	case p.JWKS != nil:
		set, err := publicSet(p.JWKS)
		if err != nil {
			return err
		}
		p.JWKS = set
	default:
		return latchkey.Errorf(latchkey.EInvalid, "jwks_url or jwks is required")
	}
	if len(p.Algorithms) == 0 {
		p.Algorithms = []string{string(jose.RS256), string(jose.ES256)}
	}
	if len(p.Algorithms) > maxAlgorithms {
		return latchkey.Errorf(latchkey.EInvalid, "algorithms: at most %d", maxAlgorithms)
	}
	for _, a := range p.Algorithms {
		if !asymmetric(a) {
			return latchkey.Errorf(latchkey.EInvalid, "algorithm %.20q is not allowed: use %s", a, strings.Join(AsymmetricAlgorithms, ", "))
		}
	}
	if len(p.Claims) == 0 {
		return latchkey.Errorf(latchkey.EInvalid, "claims: at least one rule is required (such as \"sub\": \"repo:acme/api:*\"); the issuer signs tokens for others too")
	}
	if len(p.Claims) > maxClaimRules {
		return latchkey.Errorf(latchkey.EInvalid, "claims: at most %d rules", maxClaimRules)
	}
	narrow := false
	for name, pat := range p.Claims {
		if err := latchkey.ValidateText("claim name", name, 100, true); err != nil {
			return err
		}
		switch name {
		case "iss", "aud", "exp", "nbf", "iat", "jti":
			return latchkey.Errorf(latchkey.EInvalid, "claims: %s is checked by the exchange itself; match other claims", name)
		}
		if err := latchkey.ValidateText("claims."+name, pat, maxPatternLen, true); err != nil {
			return err
		}
		if strings.Trim(pat, "*") != "" {
			narrow = true
		}
	}
	if !narrow {
		return latchkey.Errorf(latchkey.EInvalid, "claims: at least one rule must be more than '*'")
	}
	if p.KeyTemplate.Name == "" {
		p.KeyTemplate.Name = p.Name
	}
	return p.KeyTemplate.normalize()
}

func (t *KeyTemplate) normalize() error {
	if err := latchkey.ValidateText("key_template.name", t.Name, latchkey.MaxNameLen, true); err != nil {
		return err
	}
	sc, err := latchkey.ExpandScopes(t.Scopes)
	if err != nil {
		return err
	}
	t.Scopes = sc
	rs, err := latchkey.NormalizeResources(t.Resources)
	if err != nil {
		return err
	}
	t.Resources = rs
	// Lists are never null in the API's answers.
	if t.Scopes == nil {
		t.Scopes = []string{}
	}
	if t.Resources == nil {
		t.Resources = []string{}
	}
	switch d := time.Duration(t.TTL); {
	case d == 0:
		t.TTL = latchkey.Duration(DefaultTTL)
	case d < time.Minute || d > MaxTTL:
		return latchkey.Errorf(latchkey.EInvalid, "key_template.ttl must be from 1m to %s", "24h")
	}
	return nil
}

// publicSet is the public half of each key of an inline JWKS; a
// symmetric key is refused (it would make HMAC tokens possible).
func publicSet(in *jose.JSONWebKeySet) (*jose.JSONWebKeySet, error) {
	if len(in.Keys) == 0 {
		return nil, latchkey.Errorf(latchkey.EInvalid, "jwks: no keys")
	}
	if len(in.Keys) > maxInlineKeys {
		return nil, latchkey.Errorf(latchkey.EInvalid, "jwks: at most %d keys", maxInlineKeys)
	}
	out := &jose.JSONWebKeySet{}
	for i, k := range in.Keys {
		if k.IsPublic() {
			out.Keys = append(out.Keys, k)
			continue
		}
		pub := k.Public()
		if !pub.Valid() {
			return nil, latchkey.Errorf(latchkey.EInvalid, "jwks: key %d is not an RSA, EC or Ed25519 public key", i)
		}
		out.Keys = append(out.Keys, pub)
	}
	return out, nil
}

// parseJWKS reads a JWKS document and keeps its usable public keys.
func parseJWKS(b []byte) (*jose.JSONWebKeySet, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, latchkey.Errorf(latchkey.EUnavailable, "the issuer's JWKS is not a JSON key set")
	}
	set := &jose.JSONWebKeySet{}
	for _, r := range raw.Keys {
		// A key this library cannot read (an unknown kty) is skipped,
		// not fatal: issuers publish keys of several kinds.
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil {
			continue
		}
		if !k.IsPublic() {
			k = k.Public()
		}
		if k.Valid() {
			set.Keys = append(set.Keys, k)
		}
	}
	return set, nil
}

// match reports whether s matches pattern, where '*' stands for any run
// of characters, '/' and ':' included, and everything else for itself.
// It runs in O(len(pattern)·len(s)) at worst.
func match(pattern, s string) bool {
	px, sx := 0, 0
	nextPx, nextSx := -1, -1
	for px < len(pattern) || sx < len(s) {
		if px < len(pattern) {
			if c := pattern[px]; c == '*' {
				nextPx, nextSx = px, sx+1
				px++
				continue
			} else if sx < len(s) && s[sx] == c {
				px++
				sx++
				continue
			}
		}
		if nextPx >= 0 && nextSx <= len(s) {
			px, sx = nextPx, nextSx
			continue
		}
		return false
	}
	return true
}

// ParseJWKS reads an inline JWKS as a provider takes it ({"keys": […]});
// EInvalid if it is not one. Provider registration then keeps only public
// keys and refuses symmetric ones.
func ParseJWKS(b []byte) (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, latchkey.Errorf(latchkey.EInvalid, "jwks is not a JSON Web Key Set: %.120s", err.Error())
	}
	return &set, nil
}
