package client

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
)

// ExchangedKey is a short-lived key a workload identity token bought
// (ExchangeToken). Key is its plaintext: keep it out of logs.
type ExchangedKey struct {
	Key       string
	KeyID     string
	ExpiresAt time.Time
}

// String never shows the key.
func (k ExchangedKey) String() string { return "exchanged key " + k.KeyID }

// ExchangeToken trades a workload's identity token (a CI job's OIDC ID
// token, a Kubernetes service-account token) for a short-lived Latchkey
// key, at the server at baseURL (POST /v1/token; docs/identity.md). No
// key is needed: the token is the credential, and it is accepted once.
// Errors are *Error (ErrorCode reads them): unauthenticated when the token
// is refused, wrapped in a *TokenRefused naming the failed check;
// rate_limited when the server holds this network back after failures.
func ExchangeToken(ctx context.Context, baseURL, tenant, provider, token string) (ExchangedKey, error) {
	return ExchangeTokenWith(ctx, exchangeClient, baseURL, tenant, provider, token)
}

// ExchangeTokenWith is ExchangeToken over hc (its transport, its CAs, its
// timeout).
func ExchangeTokenWith(ctx context.Context, hc *http.Client, baseURL, tenant, provider, token string) (ExchangedKey, error) {
	body, err := json.Marshal(map[string]string{"tenant": tenant, "provider": provider, "token": strings.TrimSpace(token)})
	if err != nil {
		return ExchangedKey{}, errorf(CodeInvalid, err.Error())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(baseURL, "/")+"/v1/token", bytes.NewReader(body))
	if err != nil {
		return ExchangedKey{}, errorf(CodeInvalid, "bad server URL: "+clip(err.Error(), 200))
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := hc.Do(req)
	if err != nil {
		return ExchangedKey{}, errorf(CodeUnavailable, "the server cannot be reached: "+transportProblem(err, hc.Timeout))
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return ExchangedKey{}, errorf(CodeUnavailable, "the answer could not be read")
	}
	if res.StatusCode != http.StatusCreated {
		e := responseError(res, raw)
		if r := res.Header.Get("X-Latchkey-Reason"); r != "" && e.Code == CodeUnauthenticated {
			return ExchangedKey{}, &TokenRefused{Err: e, Reason: r}
		}
		return ExchangedKey{}, e
	}
	var a struct {
		Key       string    `json:"key"`
		KeyID     string    `json:"key_id"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(raw, &a); err != nil || a.Key == "" {
		return ExchangedKey{}, errorf(CodeInternal, "the server's answer to POST /v1/token has no key")
	}
	return ExchangedKey{Key: a.Key, KeyID: a.KeyID, ExpiresAt: a.ExpiresAt}, nil
}

// exchangeClient bounds an exchange; the caller's context may end it
// sooner.
var exchangeClient = &http.Client{Timeout: 30 * time.Second}

// TokenRefused is ExchangeToken's error when the server refused the
// identity token: Err says unauthenticated with the server's message, and
// Reason names the failed check (unknown_provider, malformed, algorithm,
// unknown_kid, signature, issuer, audience, expired, not_yet_valid,
// issued_in_future, missing_claim, claims, replayed_jti).
type TokenRefused struct {
	Err    *Error
	Reason string
}

func (r *TokenRefused) Error() string { return r.Err.Error() }

// Unwrap is the *Error, so ErrorCode and errors.As see it.
func (r *TokenRefused) Unwrap() error { return r.Err }
