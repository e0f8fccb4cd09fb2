package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/latchkeyhq/latchkey/client"
)

// A fake POST /v1/token: "good" buys a key, "replayed" is refused as the
// server refuses a replay, anything else is rate limited.
func tokenServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b map[string]string
		if r.URL.Path != "/v1/token" || json.NewDecoder(r.Body).Decode(&b) != nil || b["tenant"] != "acme" || b["provider"] != "ci" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch b["token"] {
		case "good":
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"key": "lk_minted", "key_id": "key_1", "expires_at": "2030-01-02T03:04:05Z"}`))
		case "replayed":
			w.Header().Set("X-Latchkey-Reason", "replayed_jti")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error": {"code": "unauthenticated", "message": "identity token refused (replayed_jti): …", "request_id": "r1"}}`))
		default:
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"error": {"code": "rate_limited", "message": "too many", "request_id": "r2"}}`))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestExchangeToken(t *testing.T) {
	srv := tokenServer(t)
	ctx := context.Background()
	k, err := client.ExchangeToken(ctx, srv.URL+"/", "acme", "ci", " good\n")
	if err != nil || k.Key != "lk_minted" || k.KeyID != "key_1" || k.ExpiresAt.Year() != 2030 {
		t.Fatalf("ExchangeToken = %+v, %v", k, err)
	}
	if s := k.String(); s != "exchanged key key_1" {
		t.Errorf("String() = %q shows more than the id", s)
	}
	_, err = client.ExchangeToken(ctx, srv.URL, "acme", "ci", "replayed")
	var tr *client.TokenRefused
	if client.ErrorCode(err) != client.CodeUnauthenticated || !errors.As(err, &tr) || tr.Reason != "replayed_jti" {
		t.Errorf("a replayed token: %v (code %s), want unauthenticated with reason replayed_jti", err, client.ErrorCode(err))
	}
	_, err = client.ExchangeToken(ctx, srv.URL, "acme", "ci", "other")
	var ce *client.Error
	if client.ErrorCode(err) != client.CodeRateLimited || errors.As(err, &tr) && tr.Reason != "" || !errors.As(err, &ce) || ce.RetryAfter.Seconds() != 7 {
		t.Errorf("a held-back network: %v, want rate_limited with Retry-After 7s and no refusal reason", err)
	}
	if _, err := client.ExchangeToken(ctx, "http://127.0.0.1:1", "acme", "ci", "good"); client.ErrorCode(err) != client.CodeUnavailable {
		t.Errorf("no server: %v, want unavailable", err)
	}
}
