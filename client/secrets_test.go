package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey/internal/fakeclock"
)

// broker is a fake secret broker speaking both seed route styles.
type broker struct {
	*httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	status   int               // 0: 200
	keys     map[string]string // provider → key
	expires  int               // expires_in; 0: left out
	gate     chan struct{}     // if set, each request waits for it
	arrived  chan struct{}     // gets a value as each request arrives
	lastReq  *http.Request
}

func newBroker(t *testing.T) *broker {
	b := &broker{keys: map[string]string{"openai": "sk-openai-1", "anthropic": "sk-ant-1"}, arrived: make(chan struct{}, 1000)}
	b.Server = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.Close)
	return b
}

func (b *broker) set(f func(b *broker)) {
	b.mu.Lock()
	f(b)
	b.mu.Unlock()
}

func (b *broker) serve(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	select {
	case b.arrived <- struct{}{}:
	default:
	}
	b.mu.Lock()
	gate := b.gate
	b.lastReq = r.Clone(context.Background())
	b.mu.Unlock()
	if gate != nil {
		<-gate
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	w.Header().Set("Connection", "close")
	w.Header().Set("X-Request-Id", "req-1")
	if b.status != 0 && b.status != 200 {
		w.WriteHeader(b.status)
		code := statusCode(b.status)
		json.NewEncoder(w).Encode(errorBody{Error: errorDetail{Code: code, Message: "refused by the fake", RequestID: "req-1"}})
		return
	}
	if r.URL.Path == "/llm-keys" {
		json.NewEncoder(w).Encode(b.keys)
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/keys/")
	v, ok := b.keys[p]
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(errorBody{Error: errorDetail{Code: CodeNotFound, Message: "no such secret"}})
		return
	}
	ans := map[string]any{"api_key": v}
	if b.expires != 0 {
		ans["expires_in"] = b.expires
	}
	json.NewEncoder(w).Encode(ans)
}

var t0 = time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)

func newSecrets(t *testing.T, cfg SecretsConfig) (*Secrets, *fakeclock.Clock) {
	t.Helper()
	clk := fakeclock.New(t0)
	cfg.Now = clk.Now
	if cfg.Getenv == nil {
		cfg.Getenv = func(string) string { return "" }
	}
	s, err := NewSecrets(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, clk
}

func mustLookup(t *testing.T, s *Secrets, provider string) Secret {
	t.Helper()
	sec, err := s.Lookup(context.Background(), provider)
	if err != nil {
		t.Fatalf("Lookup(%s): %v", provider, err)
	}
	return sec
}

func TestSecretsCacheHonoursExpiresIn(t *testing.T) {
	b := newBroker(t)
	b.expires = 60
	s, clk := newSecrets(t, SecretsConfig{EndpointURL: b.URL + "/keys", CacheDuration: time.Hour})
	if sec := mustLookup(t, s, "openai"); sec.Value != "sk-openai-1" || sec.Source != SourceBroker || !sec.FreshUntil.Equal(t0.Add(time.Minute)) {
		t.Fatalf("first lookup = %+v", sec)
	}
	b.set(func(b *broker) { b.keys["openai"] = "sk-openai-2" })
	clk.Advance(59 * time.Second)
	if v := mustLookup(t, s, "openai").Value; v != "sk-openai-1" || b.requests.Load() != 1 {
		t.Fatalf("within expires_in: %q after %d requests, want the cached key after 1", v, b.requests.Load())
	}
	clk.Advance(time.Second)
	if v := mustLookup(t, s, "openai").Value; v != "sk-openai-2" || b.requests.Load() != 2 {
		t.Fatalf("at expires_in: %q after %d requests, want the new key after 2", v, b.requests.Load())
	}
}

func TestSecretsCacheDurationWithoutExpiresIn(t *testing.T) {
	b := newBroker(t)
	s, clk := newSecrets(t, SecretsConfig{EndpointURL: b.URL + "/keys/", CacheDuration: 10 * time.Minute})
	mustLookup(t, s, "openai")
	clk.Advance(10*time.Minute - time.Nanosecond)
	mustLookup(t, s, "openai")
	if n := b.requests.Load(); n != 1 {
		t.Fatalf("%d requests within cache_duration, want 1", n)
	}
	clk.Advance(time.Nanosecond)
	mustLookup(t, s, "openai")
	if n := b.requests.Load(); n != 2 {
		t.Fatalf("%d requests after cache_duration, want 2", n)
	}
	if p := b.lastReq.URL.Path; p != "/keys/openai" {
		t.Fatalf("asked %s; a trailing slash on endpoint_url must not double", p)
	}
}

func TestSecretsConcurrentGetsShareOneRequest(t *testing.T) {
	b := newBroker(t)
	gate := make(chan struct{})
	b.gate = gate
	s, _ := newSecrets(t, SecretsConfig{EndpointURL: b.URL + "/keys"})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Go(func() {
			v, err := s.Get(context.Background(), "openai")
			if err == nil && v != "sk-openai-1" {
				err = errors.New("wrong key")
			}
			errs <- err
		})
	}
	// Callers that arrive after the answer find it cached: either way, one
	// request.
	<-b.arrived
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := b.requests.Load(); n != 1 {
		t.Fatalf("100 concurrent Gets made %d requests, want 1", n)
	}
}

func TestSecretsCallerGivingUpDoesNotCancelOthers(t *testing.T) {
	b := newBroker(t)
	gate := make(chan struct{})
	b.gate = gate
	s, _ := newSecrets(t, SecretsConfig{EndpointURL: b.URL + "/keys"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := s.Get(ctx, "openai"); done <- err }()
	<-b.arrived
	other := make(chan string, 1)
	go func() { v, _ := s.Get(context.Background(), "openai"); other <- v }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v", err)
	}
	close(gate)
	if v := <-other; v != "sk-openai-1" {
		t.Fatalf("the other caller got %q", v)
	}
	if n := b.requests.Load(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}

// writeKeys writes a keys file and returns its path.
func writeKeys(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSecretsBrokerDownStaleThenConfigThenEnv(t *testing.T) {
	b := newBroker(t)
	env := map[string]string{"OPENAI_API_KEY": "sk-from-env"}
	var envMu sync.Mutex
	keysFile := writeKeys(t, `{"openai": {"api_key": "sk-from-file"}}`)
	s, clk := newSecrets(t, SecretsConfig{
		EndpointURL: b.URL + "/keys", CacheDuration: time.Minute, MaxStale: 10 * time.Minute,
		KeysFile: keysFile,
		Getenv:   func(k string) string { envMu.Lock(); defer envMu.Unlock(); return env[k] },
	})
	mustLookup(t, s, "openai")
	b.Close() // the broker stops: connection refused from now on

	clk.Advance(time.Minute)
	if sec := mustLookup(t, s, "openai"); sec.Value != "sk-openai-1" || sec.Source != SourceStale {
		t.Fatalf("broker down, within max_stale: %v %q", sec, sec.Value)
	}
	clk.Advance(10*time.Minute - time.Nanosecond)
	if sec := mustLookup(t, s, "openai"); sec.Source != SourceStale {
		t.Fatalf("at the edge of max_stale: %v", sec)
	}
	clk.Advance(time.Nanosecond)
	if sec := mustLookup(t, s, "openai"); sec.Value != "sk-from-file" || sec.Source != SourceConfig {
		t.Fatalf("past max_stale: %v, want the keys file", sec)
	}
	os.Remove(keysFile)
	if sec := mustLookup(t, s, "openai"); sec.Value != "sk-from-env" || sec.Source != SourceEnv {
		t.Fatalf("no keys file: %v, want the environment", sec)
	}
	envMu.Lock()
	delete(env, "OPENAI_API_KEY")
	envMu.Unlock()
	_, err := s.Lookup(context.Background(), "openai")
	if ErrorCode(err) != CodeUnavailable {
		t.Fatalf("every source failed: %v, want %s", err, CodeUnavailable)
	}
	var e *Error
	errors.As(err, &e)
	var srcs []string
	for _, a := range e.Attempts {
		srcs = append(srcs, a.Source)
		if a.Fix == "" {
			t.Errorf("attempt %s says no fix", a)
		}
	}
	if strings.Join(srcs, ",") != "broker,cache,config,env" {
		t.Fatalf("attempts %v, want broker,cache,config,env", srcs)
	}
	for _, want := range []string{"OPENAI_API_KEY", keysFile, b.URL} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
	assertNoSecret(t, err)
}

// assertNoSecret fails if err's text holds any key the tests use.
func assertNoSecret(t *testing.T, err error) {
	t.Helper()
	for _, k := range []string{"sk-openai", "sk-ant", "sk-from"} {
		if strings.Contains(err.Error(), k) {
			t.Fatalf("error holds a key value: %v", err)
		}
	}
}

func TestSecretsServerErrorServesStale(t *testing.T) {
	b := newBroker(t)
	s, clk := newSecrets(t, SecretsConfig{EndpointURL: b.URL + "/keys", CacheDuration: time.Minute})
	mustLookup(t, s, "openai")
	b.set(func(b *broker) { b.status = http.StatusServiceUnavailable })
	clk.Advance(time.Minute)
	if sec := mustLookup(t, s, "openai"); sec.Source != SourceStale || sec.Value != "sk-openai-1" {
		t.Fatalf("503: %v, want the stale key", sec)
	}
}

func TestSecretsDeniedNeverServesStaleOrFallback(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
	}{{http.StatusUnauthorized, CodeUnauthenticated}, {http.StatusForbidden, CodeForbidden}} {
		t.Run(tc.code, func(t *testing.T) {
			b := newBroker(t)
			s, clk := newSecrets(t, SecretsConfig{
				EndpointURL: b.URL + "/keys", CacheDuration: time.Minute,
				KeysFile: writeKeys(t, `{"openai": "sk-from-file"}`),
				Getenv:   func(string) string { return "sk-from-env" },
			})
			mustLookup(t, s, "openai")
			b.set(func(b *broker) { b.status = tc.status })
			clk.Advance(time.Minute)
			_, err := s.Lookup(context.Background(), "openai")
			if ErrorCode(err) != tc.code {
				t.Fatalf("after %d: %v, want %s", tc.status, err, tc.code)
			}
			assertNoSecret(t, err)
			// The broker comes back: the stale key is gone for good.
			b.set(func(b *broker) { b.status = http.StatusServiceUnavailable })
			clk.Advance(DefaultRetryInterval)
			sec, err := s.Lookup(context.Background(), "openai")
			if err != nil || sec.Source == SourceStale {
				t.Fatalf("after the denial, a 503 served %v, %v; want a fallback, never the stale key", sec, err)
			}
		})
	}
}

func TestSecretsNotFoundDropsCacheAndFallsBack(t *testing.T) {
	b := newBroker(t)
	s, clk := newSecrets(t, SecretsConfig{EndpointURL: b.URL + "/keys", CacheDuration: time.Minute,
		Getenv: func(k string) string {
			if k == "OPENAI_API_KEY" {
				return "sk-from-env"
			}
			return ""
		}})
	mustLookup(t, s, "openai")
	b.set(func(b *broker) { delete(b.keys, "openai") })
	clk.Advance(time.Minute)
	if sec := mustLookup(t, s, "openai"); sec.Source != SourceEnv {
		t.Fatalf("404: %v, want the environment", sec)
	}
	_, err := s.Lookup(context.Background(), "mistral")
	if ErrorCode(err) != CodeNotFound {
		t.Fatalf("unknown everywhere: %v", err)
	}
	if !strings.Contains(err.Error(), "MISTRAL_API_KEY") || !strings.Contains(err.Error(), "latchkey secrets put mistral") {
		t.Fatalf("error does not say how to fix it: %v", err)
	}
}

func TestSecretsFailureIsRememberedForRetryInterval(t *testing.T) {
	b := newBroker(t)
	s, clk := newSecrets(t, SecretsConfig{EndpointURL: b.URL + "/keys", CacheDuration: time.Minute, RetryInterval: 5 * time.Second})
	mustLookup(t, s, "openai")
	b.set(func(b *broker) { b.status = http.StatusBadGateway })
	clk.Advance(time.Minute)
	for range 10 {
		if sec := mustLookup(t, s, "openai"); sec.Source != SourceStale {
			t.Fatalf("%v", sec)
		}
	}
	if n := b.requests.Load(); n != 2 {
		t.Fatalf("%d requests; while the broker failed a moment ago it must be left alone", n)
	}
	b.set(func(b *broker) { b.status = 0; b.keys["openai"] = "sk-openai-2" })
	clk.Advance(5 * time.Second)
	if sec := mustLookup(t, s, "openai"); sec.Value != "sk-openai-2" || sec.Source != SourceBroker {
		t.Fatalf("after the retry interval: %v", sec)
	}
}

func TestSecretsLLMKeysRoute(t *testing.T) {
	b := newBroker(t)
	s, clk := newSecrets(t, SecretsConfig{EndpointURL: b.URL + "/", Route: LLMKeys, CacheDuration: time.Minute,
		AuthToken: "lk_token", Headers: map[string]string{"X-Custom-Header": "value"}})
	for _, p := range []string{"openai", "anthropic", "openai"} {
		mustLookup(t, s, p)
	}
	if n := b.requests.Load(); n != 1 {
		t.Fatalf("%d requests for the map, want 1", n)
	}
	if r := b.lastReq; r.URL.Path != "/llm-keys" || r.Header.Get("Authorization") != "Bearer lk_token" || r.Header.Get("X-Custom-Header") != "value" {
		t.Fatalf("request %s %v", r.URL.Path, r.Header)
	}
	if _, err := s.Lookup(context.Background(), "gemini"); ErrorCode(err) != CodeNotFound {
		t.Fatalf("provider not in the map: %v", err)
	}
	if n := b.requests.Load(); n != 1 {
		t.Fatalf("a provider missing from a fresh map asked again (%d requests)", n)
	}
	b.Close()
	clk.Advance(time.Minute)
	if sec := mustLookup(t, s, "anthropic"); sec.Source != SourceStale {
		t.Fatalf("%v", sec)
	}
}

func TestSecretsHeadersOnPerProviderRoute(t *testing.T) {
	b := newBroker(t)
	s, _ := newSecrets(t, SecretsConfig{EndpointURL: b.URL + "/keys", AuthToken: " lk_token\n", Headers: map[string]string{"X-Tenant": "acme"}})
	mustLookup(t, s, "anthropic")
	if r := b.lastReq; r.Header.Get("Authorization") != "Bearer lk_token" || r.Header.Get("X-Tenant") != "acme" {
		t.Fatalf("headers %v", r.Header)
	}
}

func TestSecretsWithoutBroker(t *testing.T) {
	s, _ := newSecrets(t, SecretsConfig{KeysFile: writeKeys(t, `{"openai": "sk-from-file"}`),
		Getenv: func(k string) string {
			if k == "AZURE_OPENAI_API_KEY" {
				return "sk-from-env"
			}
			return ""
		}})
	if sec := mustLookup(t, s, "openai"); sec.Source != SourceConfig {
		t.Fatalf("%v", sec)
	}
	if sec := mustLookup(t, s, "azure-openai"); sec.Source != SourceEnv {
		t.Fatalf("%v", sec)
	}
	s2, _ := newSecrets(t, SecretsConfig{NoEnv: true, Getenv: func(string) string { return "sk-from-env" }})
	if _, err := s2.Lookup(context.Background(), "openai"); ErrorCode(err) != CodeNotFound {
		t.Fatalf("NoEnv: %v", err)
	}
}

func TestSecretsRejectsBadInput(t *testing.T) {
	s, _ := newSecrets(t, SecretsConfig{})
	for _, p := range []string{"", "../admin", "a/b", ".hidden", strings.Repeat("a", 129), "ä"} {
		if _, err := s.Lookup(context.Background(), p); ErrorCode(err) != CodeInvalid {
			t.Errorf("provider %q: %v", p, err)
		}
	}
	for _, cfg := range []SecretsConfig{
		{EndpointURL: "localhost:8000"},
		{EndpointURL: "ftp://x/keys"},
		{EndpointURL: "http://user:pw@x/keys"},
		{EndpointURL: "http://x/keys?a=b"},
		{CacheDuration: -time.Second},
		{Timeout: -time.Second},
		{Route: RouteStyle(7)},
		{Headers: map[string]string{"Bad Header": "x"}},
	} {
		if _, err := NewSecrets(cfg); ErrorCode(err) != CodeInvalid {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}

func TestSecretsBadKeysFileNamesTheProblemNotTheContent(t *testing.T) {
	p := writeKeys(t, `{"openai": 42, "sk-secret-value": "x"}`)
	s, _ := newSecrets(t, SecretsConfig{KeysFile: p})
	_, err := s.Lookup(context.Background(), "openai")
	if ErrorCode(err) != CodeNotFound || !strings.Contains(err.Error(), "not valid") {
		t.Fatalf("%v", err)
	}
	p = writeKeys(t, `{"openai": "sk-from-file"`)
	s, _ = newSecrets(t, SecretsConfig{KeysFile: p})
	_, err = s.Lookup(context.Background(), "openai")
	assertNoSecret(t, err)
}

func TestSecretsMalformedAnswerIsNotCached(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`<html>sk-openai-leak</html>`))
	}))
	defer srv.Close()
	s, _ := newSecrets(t, SecretsConfig{EndpointURL: srv.URL + "/keys"})
	_, err := s.Lookup(context.Background(), "openai")
	if ErrorCode(err) != CodeUnavailable || !strings.Contains(err.Error(), "api_key") {
		t.Fatalf("%v", err)
	}
	assertNoSecret(t, err)
}

// BenchmarkSecretsCacheHit is the cost of Get for a cached key; the goal
// is at most 1 µs.
func BenchmarkSecretsCacheHit(b *testing.B) {
	s, stop := benchSecrets(b)
	defer stop()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get(ctx, "openai"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSecretsCacheHitParallel is the same from every core at once.
func BenchmarkSecretsCacheHitParallel(b *testing.B) {
	s, stop := benchSecrets(b)
	defer stop()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Get(ctx, "openai"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func benchSecrets(b *testing.B) (*Secrets, func()) {
	br := &broker{keys: map[string]string{"openai": "sk-openai-1"}}
	br.Server = httptest.NewServer(http.HandlerFunc(br.serve))
	s, err := NewSecrets(SecretsConfig{EndpointURL: br.URL + "/keys"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Get(context.Background(), "openai"); err != nil {
		b.Fatal(err)
	}
	return s, br.Close
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{"openai": "OPENAI_API_KEY", "azure-openai": "AZURE_OPENAI_API_KEY", "x.ai": "X_AI_API_KEY", "01ai": "_01AI_API_KEY"} {
		if got := EnvName(in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSecretsForget(t *testing.T) {
	b := newBroker(t)
	s, _ := newSecrets(t, SecretsConfig{EndpointURL: b.URL + "/keys"})
	mustLookup(t, s, "openai")
	b.set(func(b *broker) { b.keys["openai"] = "sk-openai-2" })
	s.Forget("openai")
	if v := mustLookup(t, s, "openai").Value; v != "sk-openai-2" || b.requests.Load() != 2 {
		t.Fatalf("after Forget: %q after %d requests", v, b.requests.Load())
	}
}
