package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/latchkeyhq/latchkey/client"
)

// The Go client (package client) against a real server: the Verifier and
// its middleware here; the secret broker's routes in client_secrets_test.go.

// guarded starts a service behind v.Middleware(scopes…) whose handler
// reports the caller's key id and, if hold is not nil, waits on it before
// answering.
func guarded(t *testing.T, v *client.Verifier, hold chan struct{}, entered chan struct{}, scopes ...string) *httptest.Server {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := v.MiddlewareWith(client.MiddlewareOptions{Scopes: scopes, Logger: quiet})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := client.IdentityFrom(r.Context())
		if !ok {
			http.Error(w, "no identity", http.StatusInternalServerError)
			return
		}
		if entered != nil {
			entered <- struct{}{}
		}
		if hold != nil {
			<-hold
		}
		w.Write([]byte(id.KeyID))
	}))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestClientMiddlewareAgainstServer(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	readerID, reader := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	_, writer := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:write"}})
	v, err := client.NewVerifier(client.VerifierConfig{URL: ts.URL, CacheTTL: -1, Now: ts.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	svc := guarded(t, v, nil, nil, "data:read")

	r := do(t, "GET", svc.URL+"/x", map[string]string{"X-API-Key": reader}, nil)
	if r.Status != http.StatusOK || string(r.Raw) != readerID {
		t.Fatalf("reader: %d %s", r.Status, r.Raw)
	}
	r = do(t, "GET", svc.URL+"/x", map[string]string{"Authorization": bearer(writer)}, nil)
	if r.Status != http.StatusForbidden || r.errCode() != "forbidden" || r.Header.Get("X-Latchkey-Code") != "INSUFFICIENT_SCOPE" {
		t.Fatalf("writer: %d %s", r.Status, r.Raw)
	}
	if rv := ts.call(t, "POST", "/v1/keys/"+readerID+"/revoke", admin, map[string]any{}); rv.Status != http.StatusOK {
		t.Fatalf("revoke: %d %s", rv.Status, rv.Raw)
	}
	r = do(t, "GET", svc.URL+"/x", map[string]string{"Authorization": bearer(reader)}, nil)
	if r.Status != http.StatusUnauthorized || r.errCode() != "unauthenticated" || r.Header.Get("X-Latchkey-Code") != "REVOKED" {
		t.Fatalf("revoked: %d %s", r.Status, r.Raw)
	}
	r = do(t, "GET", svc.URL+"/x", nil, nil)
	if r.Status != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("no key: %d %s", r.Status, r.Raw)
	}
}

func TestClientMiddlewareReleasesLeases(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	_, key := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}, "max_concurrent": 1, "lease_ttl": "1h"})
	v, err := client.NewVerifier(client.VerifierConfig{URL: ts.URL, Now: ts.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	hold, entered := make(chan struct{}), make(chan struct{}, 1)
	svc := guarded(t, v, hold, entered, "data:read")
	hdr := map[string]string{"Authorization": bearer(key)}

	first := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", svc.URL+"/slow", nil)
		req.Header.Set("Authorization", bearer(key))
		res, err := httpClient.Do(req)
		if err != nil {
			first <- 0
			return
		}
		res.Body.Close()
		first <- res.StatusCode
	}()
	<-entered // the first request holds the key's only slot
	r := do(t, "GET", svc.URL+"/x", hdr, nil)
	if r.Status != http.StatusTooManyRequests || r.Header.Get("X-Latchkey-Code") != "CONCURRENCY_EXCEEDED" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("second request while the first runs: %d %v %s", r.Status, r.Header, r.Raw)
	}
	close(hold)
	if st := <-first; st != http.StatusOK {
		t.Fatalf("first request: %d", st)
	}
	// The lease was released when the handler returned, long before its
	// one-hour TTL: the slot is free again.
	if r := do(t, "GET", svc.URL+"/x", hdr, nil); r.Status != http.StatusOK {
		t.Fatalf("after the first request ended: %d %s", r.Status, r.Raw)
	}
}
