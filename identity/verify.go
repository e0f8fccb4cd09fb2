package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// maxTokenLen bounds an identity token (GitHub's are about 1.5 KiB).
const maxTokenLen = 16 << 10

// Claims are what an exchange takes from a verified token.
type Claims struct {
	Issuer    string
	Subject   string
	JTI       string
	ExpiresAt time.Time
	// All are the token's claims as JSON values, for the claim rules.
	All map[string]any
}

// verify checks token against p at now: algorithm, key, signature, iss,
// aud, exp, nbf, iat, jti, sub and p's claim rules, in that order. Every
// refusal is a *Refused naming the check.
func (s *Service) verify(ctx context.Context, p *Provider, token string) (*Claims, error) {
	token = strings.TrimSpace(token)
	if token == "" || len(token) > maxTokenLen {
		return nil, refuse(ReasonMalformed, "the token is empty or longer than %d bytes", maxTokenLen)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, refuse(ReasonMalformed, "the token is not a signed JWT (three dot-separated parts)")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, refuse(ReasonMalformed, "the token's header is not base64url")
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, refuse(ReasonMalformed, "the token's header is not a JSON object")
	}
	if !asymmetric(hdr.Alg) {
		// "none" and HMAC above all: an HMAC token "signed" with the
		// issuer's public key as its secret is a forgery anyone can make.
		return nil, refuse(ReasonAlgorithm, "algorithm %.20q is never accepted; only asymmetric signatures are", hdr.Alg)
	}
	allowed := false
	for _, a := range p.Algorithms {
		allowed = allowed || a == hdr.Alg
	}
	if !allowed {
		return nil, refuse(ReasonAlgorithm, "algorithm %s is not among the provider's (%s)", hdr.Alg, strings.Join(p.Algorithms, ", "))
	}
	key, err := s.key(ctx, p, hdr.Kid)
	if err != nil {
		return nil, err
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(hdr.Alg)})
	if err != nil {
		return nil, refuse(ReasonMalformed, "the token cannot be parsed as a signed JWT")
	}
	var std jwt.Claims
	all := map[string]any{}
	if err := tok.Claims(key, &std, &all); err != nil {
		return nil, refuse(ReasonSignature, "the signature does not verify with the issuer's key %.64q", hdr.Kid)
	}
	if std.Issuer != p.Issuer {
		return nil, refuse(ReasonIssuer, "iss %.100q is not the provider's issuer", std.Issuer)
	}
	if !std.Audience.Contains(p.Audience) {
		return nil, refuse(ReasonAudience, "aud does not hold the provider's audience %q", p.Audience)
	}
	now := s.now()
	if std.Expiry == nil {
		return nil, refuse(ReasonMissingClaim, "the token has no exp")
	}
	exp := std.Expiry.Time()
	if now.After(exp.Add(s.leeway)) {
		return nil, refuse(ReasonExpired, "the token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if std.NotBefore != nil && now.Add(s.leeway).Before(std.NotBefore.Time()) {
		return nil, refuse(ReasonNotYetValid, "the token is not valid before %s (nbf)", std.NotBefore.Time().UTC().Format(time.RFC3339))
	}
	if std.IssuedAt != nil && now.Add(s.leeway).Before(std.IssuedAt.Time()) {
		return nil, refuse(ReasonIssuedInFuture, "the token was issued in the future (iat %s)", std.IssuedAt.Time().UTC().Format(time.RFC3339))
	}
	if std.ID == "" {
		return nil, refuse(ReasonMissingClaim, "the token has no jti, so it could be replayed")
	}
	if len(std.ID) > 256 {
		return nil, refuse(ReasonMalformed, "the token's jti is longer than 256 bytes")
	}
	if std.Subject == "" {
		return nil, refuse(ReasonMissingClaim, "the token has no sub")
	}
	for name, pat := range p.Claims {
		v, ok := claimString(all[name])
		if !ok {
			return nil, refuse(ReasonClaims, "claim %s is absent or not a string, number or boolean", name)
		}
		if !match(pat, v) {
			return nil, refuse(ReasonClaims, "claim %s does not match the provider's rule %q", name, pat)
		}
	}
	return &Claims{Issuer: std.Issuer, Subject: std.Subject, JTI: std.ID, ExpiresAt: exp, All: all}, nil
}

// key is the public key of p that kid names: from the inline set, or the
// fetched one (fetched again, rate-limited, when it lacks kid). A token
// without a kid is taken only when the set has exactly one key.
func (s *Service) key(ctx context.Context, p *Provider, kid string) (any, error) {
	set := p.JWKS
	if set == nil {
		var err error
		if set, err = s.jwks.keys(ctx, p.JWKSURL, kid); err != nil {
			return nil, err
		}
	}
	var k *jose.JSONWebKey
	switch found := set.Key(kid); {
	case kid == "" && len(set.Keys) == 1:
		k = &set.Keys[0]
	case kid == "":
		return nil, refuse(ReasonUnknownKid, "the token names no kid and the issuer has %d keys", len(set.Keys))
	case len(found) == 0:
		return nil, refuse(ReasonUnknownKid, "the issuer has no key %.64q", kid)
	default:
		k = &found[0]
	}
	switch k.Key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return k.Key, nil
	}
	return nil, refuse(ReasonUnknownKid, "the issuer's key %.64q is not an RSA, EC or Ed25519 public key", kid)
}

// claimString is a claim's value as a rule matches it.
func claimString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case json.Number:
		return x.String(), true
	}
	return "", false
}
