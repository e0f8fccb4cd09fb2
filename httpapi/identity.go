package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/identity"
)

// The routes of workload identity (docs/identity.md): a tenant's trusted
// token issuers, and POST /v1/token, which exchanges one of their tokens
// for a short-lived key.

// identityProviderBody is the body of POST /v1/identity-providers.
type identityProviderBody struct {
	Name        string            `json:"name"`
	Issuer      string            `json:"issuer"`
	JWKSURL     string            `json:"jwks_url"`
	JWKS        json.RawMessage   `json:"jwks"`
	Audience    string            `json:"audience"`
	Algorithms  []string          `json:"algorithms"`
	Claims      map[string]string `json:"claims"`
	KeyTemplate struct {
		Name      string            `json:"name"`
		Scopes    []string          `json:"scopes"`
		Resources []string          `json:"resources"`
		TTL       latchkey.Duration `json:"ttl"`
	} `json:"key_template"`
}

// decodeIdentityProvider reads POST /v1/identity-providers; the service
// checks the provider's rules.
func decodeIdentityProvider(data []byte) (identity.Provider, error) {
	var b identityProviderBody
	if err := decodeJSON(data, &b); err != nil {
		return identity.Provider{}, err
	}
	p := identity.Provider{
		Name: b.Name, Issuer: b.Issuer, JWKSURL: b.JWKSURL, Audience: b.Audience, Algorithms: b.Algorithms, Claims: b.Claims,
		KeyTemplate: identity.KeyTemplate{Name: b.KeyTemplate.Name, Scopes: b.KeyTemplate.Scopes, Resources: b.KeyTemplate.Resources, TTL: b.KeyTemplate.TTL},
	}
	if len(b.JWKS) > 0 && string(b.JWKS) != "null" {
		set, err := identity.ParseJWKS(b.JWKS)
		if err != nil {
			return identity.Provider{}, err
		}
		p.JWKS = set
	}
	return p, nil
}

// tokenRequest is the body of POST /v1/token.
type tokenRequest struct {
	Tenant   string `json:"tenant"`
	Provider string `json:"provider"`
	Token    string `json:"token"`
}

// decodeTokenRequest reads POST /v1/token: all three fields are required.
func decodeTokenRequest(data []byte) (tokenRequest, error) {
	var b tokenRequest
	if err := decodeJSON(data, &b); err != nil {
		return b, err
	}
	switch {
	case b.Tenant == "":
		return b, latchkey.Errorf(latchkey.EInvalid, "tenant is required")
	case b.Provider == "":
		return b, latchkey.Errorf(latchkey.EInvalid, "provider is required")
	case b.Token == "":
		return b, latchkey.Errorf(latchkey.EInvalid, "token is required: the workload's identity token (a JWT)")
	}
	return b, nil
}

// identified is h on a server with an identity service (Config.Identity).
func (s *Server) identified(h adminHandler) adminHandler {
	return served(s.identity != nil, "this server has no workload identity", h)
}

func (s *Server) createIdentityProvider(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	p, err := decodeIdentityProvider(body)
	if err != nil {
		return err
	}
	got, err := s.identity.CreateProvider(r.Context(), a, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, got)
	return nil
}

func (s *Server) listIdentityProviders(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	ps, err := s.identity.ListProviders(r.Context(), a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Providers []*identity.Provider `json:"identity_providers"`
	}{ps})
	return nil
}

func (s *Server) getIdentityProvider(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	p, err := s.identity.GetProvider(r.Context(), a, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (s *Server) deleteIdentityProvider(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	if err := s.identity.DeleteProvider(r.Context(), a, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// tokenAnswer is POST /v1/token's answer: the minted key's plaintext,
// shown this once, its id and its expiry.
type tokenAnswer struct {
	Key       string    `json:"key"`
	KeyID     string    `json:"key_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// exchangeToken is POST /v1/token. It takes no key: the identity token is
// the credential, so a refused token counts against the client's network
// in the brute-force guard as a bad key does, and a held-back network is
// answered 429 before the token is looked at. A refusal is 401 with the
// failed check in the message and in X-Latchkey-Reason.
func (s *Server) exchangeToken(w http.ResponseWriter, r *http.Request) {
	err := s.exchange(w, r)
	if err == nil {
		return
	}
	var ref *identity.Refused
	if errors.As(err, &ref) {
		w.Header().Set("X-Latchkey-Reason", ref.Reason)
	}
	s.writeError(w, r, err)
}

func (s *Server) exchange(w http.ResponseWriter, r *http.Request) error {
	ip := s.clientIP(r)
	if retry, blocked := s.blocked(ip); blocked {
		return errGuarded(w, retry)
	}
	if s.identity == nil {
		return latchkey.Errorf(latchkey.ENotFound, "this server has no workload identity")
	}
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	req, err := decodeTokenRequest(body)
	if err != nil {
		return err
	}
	ex, err := s.identity.Exchange(r.Context(), req.Tenant, req.Provider, req.Token, ip)
	if latchkey.ErrorCode(err) == latchkey.EUnauthenticated {
		s.failed(ip)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, tokenAnswer{Key: ex.Token.Reveal(), KeyID: ex.Key.ID, ExpiresAt: ex.Key.ExpiresAt.UTC()})
	return nil
}

// identityReasons are the values of X-Latchkey-Reason.
var identityReasons = []string{
	identity.ReasonUnknownProvider, identity.ReasonMalformed, identity.ReasonAlgorithm, identity.ReasonUnknownKid,
	identity.ReasonSignature, identity.ReasonIssuer, identity.ReasonAudience, identity.ReasonExpired, identity.ReasonNotYetValid,
	identity.ReasonIssuedInFuture, identity.ReasonMissingClaim, identity.ReasonClaims, identity.ReasonReplayed,
}

// The OpenAPI schemas of an identity provider (openapi.go's operations
// use them).
var (
	keyTemplateProps = map[string]schema{
		"name":      str("the minted key's name (default the provider's)"),
		"scopes":    stringList(),
		"resources": stringList(),
		"ttl":       str("the minted key's life, 1m to 24h (default 1h)"),
	}
	identityProviderProps = map[string]schema{
		"name":       str("1–63 of a-z, 0-9, _ and -"),
		"issuer":     str("the tokens' iss, exactly"),
		"jwks_url":   str("where the issuer's public keys are fetched: https, or http to a host of --idp-allow-http"),
		"jwks":       schema{"type": "object", "description": "the issuer's public keys inline, a JSON Web Key Set ({\"keys\": […]})"},
		"audience":   str("must be among the token's aud"),
		"algorithms": array(enum("", identity.AsymmetricAlgorithms...)),
		"claims":     stringMap("claim name → pattern its value must match ('*' any run of characters); at least one rule more than '*'"),
	}
	identityProviderSchema = func() schema {
		props := map[string]schema{"tenant": str(""), "created_at": timestamp(""), "key_template": object(keyTemplateProps, "name", "scopes", "resources", "ttl")}
		for k, v := range identityProviderProps {
			props[k] = v
		}
		return object(props, "tenant", "name", "issuer", "audience", "algorithms", "claims", "key_template", "created_at")
	}()
	identityProviderInput = func() schema {
		props := map[string]schema{"key_template": input(keyTemplateProps)}
		for k, v := range identityProviderProps {
			props[k] = v
		}
		return input(props, "name", "issuer", "audience", "claims", "key_template")
	}()
)
