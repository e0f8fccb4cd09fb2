package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client"
)

// The Go client (package client) against a real server: Secrets on the
// broker's seed routes, exec, and the Verifier's middleware.

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

// countingProxy forwards to the server and counts the seed-route requests
// that reach it.
type countingProxy struct {
	*httptest.Server
	seed atomic.Int64
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/keys/") || r.URL.Path == "/llm-keys" {
			p.seed.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

// storeSecret stores a secret with admin and registers its value for the
// leak check.
func (ts *testServer) storeSecret(t *testing.T, admin, name, value string, expiresIn int) {
	t.Helper()
	registerSecret(value)
	body := map[string]any{"value": value}
	if expiresIn > 0 {
		body["expires_in"] = expiresIn
	}
	ts.putSecret(t, admin, name, body)
}

// fakeEnv is an environment a test changes while a client reads it.
type fakeEnv struct {
	mu sync.Mutex
	m  map[string]string
}

func (e *fakeEnv) get(k string) string { e.mu.Lock(); defer e.mu.Unlock(); return e.m[k] }

func (e *fakeEnv) unset(k string) { e.mu.Lock(); delete(e.m, k); e.mu.Unlock() }

func lookup(t *testing.T, s *client.Secrets, provider string) client.Secret {
	t.Helper()
	sec, err := s.Lookup(context.Background(), provider)
	if err != nil {
		t.Fatalf("Lookup(%s): %v", provider, err)
	}
	return sec
}

func TestClientSecretsAgainstServer(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	ts.storeSecret(t, admin, "openai", "sk-broker-openai-1", 60)
	ts.storeSecret(t, admin, "anthropic", "sk-broker-anthropic-1", 0)
	_, reader := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"secrets:read"}})
	proxy := newCountingProxy(t, ts.URL)
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(keysFile, []byte(`{"openai": "sk-file-openai"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := &fakeEnv{m: map[string]string{"OPENAI_API_KEY": "sk-env-openai"}}
	s, err := client.NewSecrets(client.SecretsConfig{
		EndpointURL: proxy.URL + "/keys", AuthToken: reader,
		CacheDuration: 10 * time.Minute, MaxStale: 5 * time.Minute,
		KeysFile: keysFile, Getenv: env.get, Now: ts.Clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}

	// expires_in: the server's 60 s, not the 10 min cache duration.
	start := ts.Clock.Now()
	if sec := lookup(t, s, "openai"); sec.Value != "sk-broker-openai-1" || sec.Source != client.SourceBroker || !sec.FreshUntil.Equal(start.Add(time.Minute)) {
		t.Fatalf("first lookup: %v fresh until %v, want the broker's key until +60s", sec, sec.FreshUntil)
	}
	ts.Clock.Advance(59 * time.Second)
	ts.storeSecret(t, admin, "openai", "sk-broker-openai-2", 600)
	if v := lookup(t, s, "openai").Value; v != "sk-broker-openai-1" || proxy.seed.Load() != 1 {
		t.Fatalf("within expires_in: %d requests", proxy.seed.Load())
	}
	ts.Clock.Advance(time.Second)
	if v := lookup(t, s, "openai").Value; v != "sk-broker-openai-2" || proxy.seed.Load() != 2 {
		t.Fatalf("at expires_in: got the %s key after %d requests, want the new one after 2", map[bool]string{true: "old", false: "other"}[v == "sk-broker-openai-1"], proxy.seed.Load())
	}

	// 100 concurrent Gets of a provider not cached yet: one request.
	before := proxy.seed.Load()
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for range 100 {
		wg.Go(func() {
			if v, err := s.Get(context.Background(), "anthropic"); err != nil || v != "sk-broker-anthropic-1" {
				wrong.Add(1)
			}
		})
	}
	wg.Wait()
	if n := proxy.seed.Load() - before; n != 1 || wrong.Load() != 0 {
		t.Fatalf("100 concurrent Gets made %d requests (%d wrong answers), want 1", n, wrong.Load())
	}

	// The server stops: the stale key within max_stale, then the keys
	// file, then the environment, then an error naming each source.
	ts.Stop()
	ts.Clock.Advance(600 * time.Second) // openai-2's expires_in
	if sec := lookup(t, s, "openai"); sec.Value != "sk-broker-openai-2" || sec.Source != client.SourceStale {
		t.Fatalf("server stopped, within max_stale: %v", sec)
	}
	ts.Clock.Advance(5 * time.Minute)
	if sec := lookup(t, s, "openai"); sec.Value != "sk-file-openai" || sec.Source != client.SourceConfig {
		t.Fatalf("past max_stale: %v, want the keys file", sec)
	}
	os.Remove(keysFile)
	if sec := lookup(t, s, "openai"); sec.Value != "sk-env-openai" || sec.Source != client.SourceEnv {
		t.Fatalf("no keys file: %v, want the environment", sec)
	}
	env.unset("OPENAI_API_KEY")
	_, err = s.Lookup(context.Background(), "openai")
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != client.CodeUnavailable || len(ce.Attempts) != 4 {
		t.Fatalf("every source failed: %v", err)
	}
	for _, v := range []string{"sk-", reader} {
		if strings.Contains(err.Error(), v) {
			t.Fatalf("the error holds a key: %v", err)
		}
	}
}

func TestClientSecretsRevokedKeyGetsNoStaleValue(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	ts.storeSecret(t, admin, "openai", "sk-broker-openai-r", 60)
	readerID, reader := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"secrets:read"}})
	s, err := client.NewSecrets(client.SecretsConfig{
		EndpointURL: ts.URL + "/keys", AuthToken: reader, CacheDuration: time.Minute,
		Getenv: func(string) string { return "sk-env-openai" }, Now: ts.Clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	if sec := lookup(t, s, "openai"); sec.Source != client.SourceBroker {
		t.Fatalf("%v", sec)
	}
	if r := ts.call(t, "POST", "/v1/keys/"+readerID+"/revoke", admin, map[string]any{"reason": "leaked"}); r.Status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.Status, r.Raw)
	}
	ts.Clock.Advance(time.Minute)
	sec, err := s.Lookup(context.Background(), "openai")
	if client.ErrorCode(err) != client.CodeUnauthenticated || sec.Value != "" {
		t.Fatalf("revoked key: %v, %v; want unauthenticated and no key at all", sec, err)
	}
}

func TestClientSecretsLLMKeysAgainstServer(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	ts.storeSecret(t, admin, "openai", "sk-broker-openai-m", 0)
	ts.storeSecret(t, admin, "anthropic", "sk-broker-anthropic-m", 0)
	_, reader := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"secrets:read"}})
	proxy := newCountingProxy(t, ts.URL)
	s, err := client.NewSecrets(client.SecretsConfig{
		EndpointURL: proxy.URL + "/", Route: client.LLMKeys, Headers: map[string]string{"X-API-Key": reader},
		NoEnv: true, Now: ts.Clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	if lookup(t, s, "openai").Value != "sk-broker-openai-m" || lookup(t, s, "anthropic").Value != "sk-broker-anthropic-m" {
		t.Fatal("wrong keys from /llm-keys")
	}
	if n := proxy.seed.Load(); n != 1 {
		t.Fatalf("%d requests for two providers, want 1", n)
	}
	if _, err := s.Lookup(context.Background(), "gemini"); client.ErrorCode(err) != client.CodeNotFound {
		t.Fatalf("a provider the broker has no secret for: %v", err)
	}
}

func TestExecAgainstServer(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	ts.storeSecret(t, admin, "openai", "sk-broker-openai-x", 0)
	ts.storeSecret(t, admin, "anthropic", "sk-broker-anthropic-x", 0)
	_, reader := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"secrets:read"}})
	vars := map[string]string{"LATCHKEY_ADDR": ts.URL, "LATCHKEY_KEY": reader}
	out, errOut, code := runExecCLI(t, vars, "--secrets", "openai,anthropic", "--env", "openai=MY_OPENAI", "--",
		"sh", "-c", hashScript, "sh", "MY_OPENAI", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "LATCHKEY_KEY")
	if code != 3 {
		t.Fatalf("exit code %d, want the command's 3; stderr: %s", code, errOut)
	}
	want := strings.Join([]string{sha("sk-broker-openai-x"), sha("sk-broker-anthropic-x"), sha("unset"), sha("unset")}, "\n") + "\n"
	if out != want {
		t.Fatalf("the command saw hashes\n%s\nwant\n%s", out, want)
	}
	var stdout, stderr strings.Builder
	e := &env{getenv: func(k string) string { return vars[k] }, stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}
	err := runExec(context.Background(), e, []string{"--secrets", "openai,mistral", "--", "sh", "-c", "echo ran"})
	if latchkey.ErrorCode(err) != latchkey.ENotFound || stdout.Len() != 0 || exitCode(err) != 1 {
		t.Fatalf("a secret the server does not have: %v (exit %d), output %q", err, exitCode(err), stdout.String())
	}
}
