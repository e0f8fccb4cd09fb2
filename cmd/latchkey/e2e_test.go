package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
	"github.com/latchkeyhq/latchkey/internal/testenv"
)

// The end-to-end tests start real servers (in this process, or as child
// processes of this test binary) on 127.0.0.1:0 and drive them over HTTP.
// Every plaintext key a server hands out is registered; when all tests have
// run, TestMain checks that none of them appears in any database file or
// log line.

var (
	e2eRoot string // holds every server's database and logs

	issuedMu sync.Mutex
	issued   []string
	stored   []string // secret values given to a server

	logsMu sync.Mutex
	logs   []*syncBuffer

	outputsMu sync.Mutex
	outputs   []namedOutput // answers a test asked to be scanned too
)

type namedOutput struct {
	name string
	data []byte
}

// registerOutput adds an answer a test received — /metrics, an export, a
// listing, a page — to the leak check: no issued key or stored secret
// may appear in it.
func registerOutput(name string, b []byte) {
	outputsMu.Lock()
	outputs = append(outputs, namedOutput{name, bytes.Clone(b)})
	outputsMu.Unlock()
}

func registerKey(k string) {
	if k == "" {
		return
	}
	issuedMu.Lock()
	issued = append(issued, k)
	issuedMu.Unlock()
}

// registerSecret adds a secret value a test stores to the leak check: it
// must appear in no database file and no log.
func registerSecret(v string) {
	issuedMu.Lock()
	stored = append(stored, v)
	issuedMu.Unlock()
}

func TestMain(m *testing.M) {
	if os.Getenv("LATCHKEY_E2E_CHILD") == "1" {
		// Re-executed as a server process by a test that needs to signal
		// or kill it: the same entry point as the real binary.
		os.Exit(realMain(strings.Fields(os.Getenv("LATCHKEY_E2E_ARGS"))))
	}
	dir, err := os.MkdirTemp("", "latchkey-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	e2eRoot = dir
	// The PostgreSQL server the cluster tests share is stopped when they
	// end, after the leak check has read its files too.
	code := testenv.PostgresMain(m, func(code int, pgDir string) int {
		if code != 0 {
			return code
		}
		if err := checkNoLeaks(pgDir); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: secret leak check:", err)
			return 1
		}
		checked, problems, err := checkOpenAPITraffic()
		if err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: OpenAPI traffic check:", err)
			return 1
		}
		if len(problems) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: %d of the end-to-end tests' exchanges (of %d checked) differ from GET /openapi.json:\n", len(problems), checked)
			for _, p := range problems {
				fmt.Fprintln(os.Stderr, "   ", p)
			}
			return 1
		}
		fmt.Fprintf(os.Stderr, "e2e: %d exchanges checked against the OpenAPI document\n", checked)
		return 0
	})
	os.RemoveAll(dir)
	os.Exit(code)
}

// checkNoLeaks looks for every issued plaintext key in every file under
// e2eRoot and the more directories (the shared PostgreSQL server's data
// and WAL files) (SQLite databases with their -wal and -shm files, child process
// logs), in every captured log, except the bootstrap banner's own line,
// and in every answer registered with registerOutput.
func checkNoLeaks(more ...string) error {
	issuedMu.Lock()
	defer issuedMu.Unlock()
	if len(issued) == 0 {
		// No end-to-end test ran (a -run filter left them out); every
		// test that starts a server registers at least its root key.
		return nil
	}
	var blobs []struct {
		name string
		data []byte
	}
	files := 0
	walk := func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err // directories, and PostgreSQL's socket
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.HasSuffix(path, ".log") {
			b = dropBannerLines(b)
		}
		if strings.Contains(path, ".db") {
			files++
		}
		blobs = append(blobs, struct {
			name string
			data []byte
		}{path, b})
		return nil
	}
	for _, dir := range append([]string{e2eRoot}, more...) {
		if dir == "" {
			continue
		}
		if err := filepath.WalkDir(dir, walk); err != nil {
			return err
		}
	}
	if files == 0 {
		return fmt.Errorf("no database files found under %s", e2eRoot)
	}
	logsMu.Lock()
	for i, l := range logs {
		blobs = append(blobs, struct {
			name string
			data []byte
		}{fmt.Sprintf("server log %d", i), dropBannerLines(l.Bytes())})
	}
	logsMu.Unlock()
	outputsMu.Lock()
	for _, o := range outputs {
		blobs = append(blobs, struct {
			name string
			data []byte
		}{o.name, o.data})
	}
	outputsMu.Unlock()
	keys, secrets := newNeedles(issued), newNeedles(stored)
	for _, b := range blobs {
		if k := keys.find(b.data); k != "" {
			return fmt.Errorf("plaintext key %s… found in %s", k[:8], b.name)
		}
		if v := secrets.find(b.data); v != "" {
			return fmt.Errorf("secret value %s… found in %s", v[:min(6, len(v))], b.name)
		}
	}
	fmt.Fprintf(os.Stderr, "leak check: %d keys and %d secret values absent from %d files and logs\n", len(issued), len(stored), len(blobs))
	return nil
}

// needles finds any of many strings in a blob in one pass, so the leak
// check stays linear in the bytes scanned when a campaign has issued
// thousands of keys: strings of 8 bytes or more are indexed by their first
// 8 bytes, shorter ones searched for one by one.
type needles struct {
	long  map[uint64][]string
	short []string
}

func newNeedles(ss []string) needles {
	n := needles{long: map[uint64][]string{}}
	for _, s := range ss {
		if len(s) < 8 {
			n.short = append(n.short, s)
			continue
		}
		w := binary.LittleEndian.Uint64([]byte(s[:8]))
		n.long[w] = append(n.long[w], s)
	}
	return n
}

// find returns a needle b contains, or "".
func (n needles) find(b []byte) string {
	for _, s := range n.short {
		if s != "" && bytes.Contains(b, []byte(s)) {
			return s
		}
	}
	for i := 0; i+8 <= len(b); i++ {
		for _, s := range n.long[binary.LittleEndian.Uint64(b[i:])] {
			if bytes.HasPrefix(b[i:], []byte(s)) {
				return s
			}
		}
	}
	return ""
}

var bannerLine = regexp.MustCompile(`(?m)^\s*root key: \S+\s*$`)

func dropBannerLines(b []byte) []byte { return bannerLine.ReplaceAll(b, nil) }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string { return string(b.Bytes()) }

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// testServer is a running node and an HTTP client for it.
type testServer struct {
	URL   string
	Root  string // the operator's root key
	Clock *fakeclock.Clock
	DB    string
	Log   *syncBuffer
	// Stop stops the server before the test ends (for tests of what
	// clients do without it); the cleanup stops it otherwise.
	Stop func()
}

type serverOption func(*serverConfig, *serverHooks)

func withLimiter(l latchkey.Limiter) serverOption {
	return func(_ *serverConfig, h *serverHooks) { h.Limiter = l }
}

// withRealClock runs the server on the wall clock, for tests (the CLI's)
// that compute times from it themselves.
func withRealClock() serverOption {
	return func(_ *serverConfig, h *serverHooks) { h.Now = time.Now }
}

func withTrustedProxies(s string) serverOption {
	return func(c *serverConfig, _ *serverHooks) { c.TrustedProxies = s }
}

// shippedConfig is the configuration `latchkey server` runs with when given
// no flags and no environment: the brute-force guard, the expiring-key scan,
// the security checks and every other default on, as they ship.
func shippedConfig(t *testing.T) serverConfig {
	t.Helper()
	cfg, fs := serverFlags(&env{getenv: func(string) string { return "" }, stderr: io.Discard})
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	return *cfg
}

// startServer runs serve() in this process with a fake clock and the
// shipped defaults (options change them, each for a reason it states).
func startServer(t *testing.T, opts ...serverOption) *testServer {
	t.Helper()
	dir, err := os.MkdirTemp(e2eRoot, "node-")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := latchkey.GenerateToken("", nil)
	registerKey(root.Reveal())
	ts := &testServer{
		Root:  root.Reveal(),
		Clock: fakeclock.New(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)),
		DB:    filepath.Join(dir, "latchkey.db"),
		Log:   &syncBuffer{},
	}
	logsMu.Lock()
	logs = append(logs, ts.Log)
	logsMu.Unlock()
	cfg := shippedConfig(t)
	cfg.Addr, cfg.DB, cfg.LogLevel, cfg.RootKey = "127.0.0.1:0", ts.DB, "debug", ts.Root
	ready := make(chan string, 1)
	// Identity providers' JWKS are fetched from loopback only: a URL rule
	// that broke would be refused and reported, not followed off the machine.
	hooks := serverHooks{Now: ts.Clock.Now, Ready: func(a string) { ready <- a }, IdentityDial: testenv.LoopbackDialer(t)}
	for _, o := range opts {
		o(&cfg, &hooks)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, &env{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: io.Discard, stderr: ts.Log}, cfg, hooks)
	}()
	select {
	case addr := <-ready:
		ts.URL = "http://" + addr
		registerServer(ts.URL)
	case err := <-done:
		cancel()
		t.Fatalf("server stopped: %v\n%s", err, ts.Log.Bytes())
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("server did not start within 30s")
	}
	var stopOnce sync.Once
	ts.Stop = func() {
		stopOnce.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		ts.Stop()
		if t.Failed() {
			t.Logf("server log:\n%s", ts.Log.Bytes())
		}
	})
	return ts
}

// resp is an HTTP answer with its JSON body decoded into a generic map.
type resp struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

func (r resp) str(field string) string { s, _ := r.Body[field].(string); return s }

// errCode is the code of an error body.
func (r resp) errCode() string {
	e, _ := r.Body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// call sends a request with key in Authorization: Bearer (if given) and
// registers any plaintext key in the answer.
func (ts *testServer) call(t *testing.T, method, path, key string, body any) resp {
	t.Helper()
	return do(t, method, ts.URL+path, map[string]string{"Authorization": bearer(key)}, body)
}

func bearer(key string) string {
	if key == "" {
		return ""
	}
	return "Bearer " + key
}

func do(t *testing.T, method, url string, headers map[string]string, body any) resp {
	t.Helper()
	var sent []byte
	switch b := body.(type) {
	case nil:
	case string:
		sent = []byte(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		sent = js
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(sent)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	recordExchange(exchangeOf(req, sent, res, raw))
	r := resp{Status: res.StatusCode, Header: res.Header, Raw: raw}
	if len(raw) > 0 && strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.Body); err != nil {
			t.Fatalf("%s %s: body is not a JSON object: %v\n%s", method, url, err, raw)
		}
	}
	registerKey(r.str("key"))
	if s := r.str("secret"); s != "" {
		registerSecret(s) // a webhook's signing secret
	}
	return r
}

// mustCreate creates a key with admin and returns its id and plaintext.
func (ts *testServer) mustCreate(t *testing.T, admin string, body map[string]any) (id, key string) {
	t.Helper()
	if _, ok := body["name"]; !ok {
		body["name"] = "e2e"
	}
	r := ts.call(t, "POST", "/v1/keys", admin, body)
	if r.Status != http.StatusCreated {
		t.Fatalf("create key: %d %s", r.Status, r.Raw)
	}
	return r.str("id"), r.str("key")
}

// mustTenant creates a tenant and returns its first admin key.
func (ts *testServer) mustTenant(t *testing.T, id string) string {
	t.Helper()
	r := ts.call(t, "POST", "/v1/tenants", ts.Root, map[string]any{"id": id, "name": id + " Inc."})
	if r.Status != http.StatusCreated {
		t.Fatalf("create tenant: %d %s", r.Status, r.Raw)
	}
	return r.str("key")
}

func (ts *testServer) verifyCode(t *testing.T, body map[string]any) string {
	t.Helper()
	r := ts.call(t, "POST", "/v1/keys/verify", "", body)
	if r.Status != http.StatusOK {
		t.Fatalf("verify: %d %s", r.Status, r.Raw)
	}
	return r.str("code")
}

func TestE2EEveryVerifyCode(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	_, good := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}, "resources": []string{"agent:report-generator"}})
	_, expiring := ts.mustCreate(t, admin, map[string]any{"expires_in": "1h"})
	revokedID, revoked := ts.mustCreate(t, admin, map[string]any{})
	suspendedID, suspended := ts.mustCreate(t, admin, map[string]any{})
	_, fenced := ts.mustCreate(t, admin, map[string]any{"ip_allow": []string{"192.0.2.0/24"}})
	if r := ts.call(t, "POST", "/v1/keys/"+revokedID+"/revoke", admin, map[string]any{"reason": "leaked"}); r.Status != 200 {
		t.Fatalf("revoke: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "POST", "/v1/keys/"+suspendedID+"/suspend", admin, map[string]any{"reason": "audit"}); r.Status != 200 {
		t.Fatalf("suspend: %d %s", r.Status, r.Raw)
	}
	ts.Clock.Advance(time.Hour)
	unknown, _ := latchkey.GenerateToken("", nil)

	tests := []struct {
		name      string
		body      map[string]any
		code      string
		authState int // what GET /v1/auth answers for the same key and scope
	}{
		{"Valid", map[string]any{"key": good, "scopes": []string{"data:read"}, "resource": "agent:report-generator"}, latchkey.CodeValid, 200},
		{"Malformed", map[string]any{"key": "lk_not-a-key"}, latchkey.CodeMalformed, 401},
		{"NotFound", map[string]any{"key": unknown.Reveal()}, latchkey.CodeNotFound, 401},
		{"Expired", map[string]any{"key": expiring}, latchkey.CodeExpired, 401},
		{"Revoked", map[string]any{"key": revoked}, latchkey.CodeRevoked, 401},
		{"Suspended", map[string]any{"key": suspended}, latchkey.CodeSuspended, 401},
		{"IPNotAllowed", map[string]any{"key": fenced, "ip": "198.51.100.4"}, latchkey.CodeIPNotAllowed, 403},
		{"InsufficientScope", map[string]any{"key": good, "scopes": []string{"data:write"}}, latchkey.CodeInsufficientScope, 403},
		{"ResourceNotAllowed", map[string]any{"key": good, "resource": "agent:other"}, latchkey.CodeResourceNotAllowed, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ts.call(t, "POST", "/v1/keys/verify", "", tt.body)
			if r.Status != 200 || r.str("code") != tt.code {
				t.Fatalf("verify = %d %s, want 200 %s", r.Status, r.Raw, tt.code)
			}
			if valid, _ := r.Body["valid"].(bool); valid != (tt.code == latchkey.CodeValid) {
				t.Fatalf("valid = %v for %s", valid, tt.code)
			}
			// The same question through forward-auth.
			q := "/v1/auth"
			if sc, ok := tt.body["scopes"].([]string); ok {
				q += "?scope=" + strings.Join(sc, ",")
			} else if res, ok := tt.body["resource"].(string); ok {
				q += "?resource=" + res
			}
			key, _ := tt.body["key"].(string)
			a := do(t, "GET", ts.URL+q, map[string]string{"X-API-Key": key}, nil)
			if a.Status != tt.authState {
				t.Fatalf("forward-auth = %d, want %d", a.Status, tt.authState)
			}
			if tt.code != latchkey.CodeValid && a.Header.Get("X-Latchkey-Code") != tt.code {
				t.Fatalf("X-Latchkey-Code = %q, want %s", a.Header.Get("X-Latchkey-Code"), tt.code)
			}
			if a.Status == 401 && a.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			if a.Header.Get("X-Request-Id") == "" {
				t.Fatal("response without X-Request-Id")
			}
		})
	}
	// The verify response names the key for the protected service.
	r := ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": good})
	if r.str("tenant") != "acme" || r.str("key_id") == "" {
		t.Fatalf("verify identity: %s", r.Raw)
	}
	// A body that is not a verification request is an error, not a code.
	if r := ts.call(t, "POST", "/v1/keys/verify", "", `{"key": 5}`); r.Status != 400 || r.errCode() != latchkey.EInvalid {
		t.Fatalf("bad verify body: %d %s", r.Status, r.Raw)
	}
}

func TestE2EForwardAuthIdentityAndTrustedProxies(t *testing.T) {
	ts := startServer(t, withTrustedProxies("127.0.0.1/32"))
	admin := ts.mustTenant(t, "acme")
	_, key := ts.mustCreate(t, admin, map[string]any{"owner": "acme_corp", "scopes": []string{"data:read", "agent:activate"}, "ip_allow": []string{"203.0.113.0/24"}})
	// Behind a trusted proxy the client address comes from X-Forwarded-For,
	// read from the right.
	r := do(t, "POST", ts.URL+"/v1/auth?scope=data:read", map[string]string{
		"Authorization": "Bearer " + key, "X-Forwarded-For": "198.51.100.1, 203.0.113.9", "X-Original-URI": "/reports",
	}, nil)
	if r.Status != 200 {
		t.Fatalf("forward-auth = %d %s", r.Status, r.Raw)
	}
	for h, want := range map[string]string{"X-Latchkey-Tenant": "acme", "X-Latchkey-Owner": "acme_corp", "X-Latchkey-Scopes": "data:read,agent:activate"} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if r.Header.Get("X-Latchkey-Key-Id") == "" {
		t.Error("no X-Latchkey-Key-Id")
	}
	if r := do(t, "GET", ts.URL+"/v1/auth", map[string]string{"X-API-Key": key, "X-Forwarded-For": "198.51.100.1"}, nil); r.Status != 403 {
		t.Fatalf("from an address outside the allowlist: %d", r.Status)
	}
	if r := do(t, "GET", ts.URL+"/v1/auth/envoy/path/prefix", map[string]string{"X-API-Key": key, "X-Real-IP": "203.0.113.7", "X-Latchkey-Scope": "agent:activate"}, nil); r.Status != 200 {
		t.Fatalf("Envoy-style path with header scope: %d %s", r.Status, r.Raw)
	}
	if r := do(t, "GET", ts.URL+"/v1/auth", nil, nil); r.Status != 401 || r.Header.Get("X-Latchkey-Code") != latchkey.CodeMalformed {
		t.Fatalf("no key: %d %q", r.Status, r.Header.Get("X-Latchkey-Code"))
	}
	if r := do(t, "GET", ts.URL+"/v1/auth?scope=Bad::Scope", map[string]string{"X-API-Key": key}, nil); r.Status != 400 {
		t.Fatalf("misconfigured scope: %d", r.Status)
	}

	// Without trust, forwarding headers are ignored: the peer is 127.0.0.1.
	plain := startServer(t)
	padmin := plain.mustTenant(t, "acme")
	_, fenced := plain.mustCreate(t, padmin, map[string]any{"ip_allow": []string{"203.0.113.0/24"}})
	if r := do(t, "GET", plain.URL+"/v1/auth", map[string]string{"X-API-Key": fenced, "X-Forwarded-For": "203.0.113.9"}, nil); r.Status != 403 {
		t.Fatalf("untrusted X-Forwarded-For was believed: %d", r.Status)
	}
}

func TestE2ERotationSuspensionAndConflicts(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	id, oldKey := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})

	r := ts.call(t, "POST", "/v1/keys/"+id+"/rotate", admin, map[string]any{"grace_period": "1h"})
	if r.Status != 201 || r.str("key") == "" || r.str("rotated_from") != id {
		t.Fatalf("rotate: %d %s", r.Status, r.Raw)
	}
	newKey := r.str("key")
	old := ts.call(t, "GET", "/v1/keys/"+id, admin, nil)
	if old.str("grace_until") == "" || old.str("rotated_to") != r.str("id") {
		t.Fatalf("old key after rotate: %s", old.Raw)
	}
	for _, k := range []string{oldKey, newKey} {
		if c := ts.verifyCode(t, map[string]any{"key": k, "scopes": []string{"data:read"}}); c != latchkey.CodeValid {
			t.Fatalf("during grace: %s", c)
		}
	}
	ts.Clock.Advance(time.Hour + time.Second)
	if c := ts.verifyCode(t, map[string]any{"key": oldKey}); c != latchkey.CodeRevoked {
		t.Fatalf("old key after grace: %s", c)
	}
	if c := ts.verifyCode(t, map[string]any{"key": newKey}); c != latchkey.CodeValid {
		t.Fatalf("new key after grace: %s", c)
	}
	if s := ts.call(t, "GET", "/v1/keys/"+id, admin, nil).str("state"); s != "revoked" {
		t.Fatalf("old key state after grace = %q", s)
	}

	newID := r.str("id")
	s := ts.call(t, "POST", "/v1/keys/"+newID+"/suspend", admin, map[string]any{"duration": "2h", "reason": "maintenance"})
	if s.Status != 200 || s.str("state") != "suspended" || s.str("suspended_until") == "" {
		t.Fatalf("suspend: %d %s", s.Status, s.Raw)
	}
	if c := ts.verifyCode(t, map[string]any{"key": newKey}); c != latchkey.CodeSuspended {
		t.Fatalf("suspended: %s", c)
	}
	ts.Clock.Advance(2 * time.Hour)
	if c := ts.verifyCode(t, map[string]any{"key": newKey}); c != latchkey.CodeValid {
		t.Fatalf("after the suspension ended by itself: %s", c)
	}
	if st := ts.call(t, "GET", "/v1/keys/"+newID, admin, nil).str("state"); st != "active" {
		t.Fatalf("state after suspension = %q", st)
	}

	if r := ts.call(t, "POST", "/v1/keys/"+newID+"/revoke", admin, map[string]any{"reason": "done"}); r.Status != 200 || r.str("state") != "revoked" {
		t.Fatalf("revoke: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "POST", "/v1/keys/"+newID+"/resume", admin, nil); r.Status != 409 || r.errCode() != latchkey.EConflict {
		t.Fatalf("resume revoked: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "POST", "/v1/keys/"+newID+"/rotate", admin, nil); r.Status != 409 {
		t.Fatalf("rotate revoked: %d %s", r.Status, r.Raw)
	}
}

func TestE2EAdminAPIErrors(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	_, reader := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"keys:read"}})
	big := `{"name": "` + strings.Repeat("x", 2<<20) + `"}`
	tests := []struct {
		name         string
		method, path string
		key          string
		body         any
		status       int
		code         string
	}{
		{"NoKey", "GET", "/v1/keys", "", nil, 401, latchkey.EUnauthenticated},
		{"UnknownKey", "GET", "/v1/keys", "lk_" + strings.Repeat("0", 49), nil, 401, latchkey.EUnauthenticated},
		{"MissingScope", "POST", "/v1/keys", reader, map[string]any{"name": "x"}, 403, latchkey.EForbidden},
		{"TenantAdminCannotManageTenants", "POST", "/v1/tenants", admin, map[string]any{"id": "x"}, 403, latchkey.EForbidden},
		{"UnknownField", "POST", "/v1/keys", admin, map[string]any{"name": "x", "scope": []string{"a:b"}}, 400, latchkey.EInvalid},
		{"WrongType", "POST", "/v1/keys", admin, `{"name": ["x"]}`, 400, latchkey.EInvalid},
		{"NotJSON", "POST", "/v1/keys", admin, `name=x`, 400, latchkey.EInvalid},
		{"TrailingData", "POST", "/v1/keys", admin, `{"name": "x"} {}`, 400, latchkey.EInvalid},
		{"BadDuration", "POST", "/v1/keys", admin, map[string]any{"name": "x", "expires_in": "soon"}, 400, latchkey.EInvalid},
		{"TooLarge", "POST", "/v1/keys", admin, big, 413, latchkey.ETooLarge},
		{"UnknownID", "GET", "/v1/keys/key_00000000000000000000000000", admin, nil, 404, latchkey.ENotFound},
		{"MalformedID", "GET", "/v1/keys/../../etc", admin, nil, 404, latchkey.ENotFound},
		{"NoRoute", "GET", "/v2/nothing", admin, nil, 404, latchkey.ENotFound},
		{"BadLimit", "GET", "/v1/keys?limit=0", admin, nil, 400, latchkey.EInvalid},
		{"DuplicateTenant", "POST", "/v1/tenants", ts.Root, map[string]any{"id": "acme"}, 409, latchkey.EConflict},
		{"BadTenantID", "POST", "/v1/tenants", ts.Root, map[string]any{"id": "Acme Corp"}, 400, latchkey.EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ts.call(t, tt.method, tt.path, tt.key, tt.body)
			if r.Status != tt.status || r.errCode() != tt.code {
				t.Fatalf("%s %s = %d %s, want %d %s", tt.method, tt.path, r.Status, clip(string(r.Raw), 200), tt.status, tt.code)
			}
			e := r.Body["error"].(map[string]any)
			if e["request_id"] == "" || e["request_id"] != r.Header.Get("X-Request-Id") {
				t.Fatalf("request_id %v vs header %q", e["request_id"], r.Header.Get("X-Request-Id"))
			}
		})
	}
	// Nothing of the failed creates was stored.
	list := ts.call(t, "GET", "/v1/keys", admin, nil)
	if n := len(list.Body["keys"].([]any)); n != 2 { // the admin key and reader
		t.Fatalf("tenant holds %d keys after failed creates, want 2", n)
	}
	for _, p := range []string{"/health", "/healthz", "/readyz"} {
		if r := do(t, "GET", ts.URL+p, nil, nil); r.Status != 200 {
			t.Fatalf("%s = %d", p, r.Status)
		}
	}
	if r := do(t, "GET", ts.URL+"/health", nil, nil); r.str("status") != "healthy" {
		t.Fatalf("/health = %s", r.Raw)
	}
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func TestE2ETenantIsolation(t *testing.T) {
	ts := startServer(t)
	a := ts.mustTenant(t, "tenant-a")
	b := ts.mustTenant(t, "tenant-b")
	aID, _ := ts.mustCreate(t, a, map[string]any{"scopes": []string{"data:read"}})
	bID, _ := ts.mustCreate(t, b, map[string]any{})
	routes := []struct{ method, path string }{
		{"GET", "/v1/keys/%s"},
		{"PATCH", "/v1/keys/%s"},
		{"POST", "/v1/keys/%s/rotate"},
		{"POST", "/v1/keys/%s/suspend"},
		{"POST", "/v1/keys/%s/resume"},
		{"POST", "/v1/keys/%s/revoke"},
		{"POST", "/v1/keys/%s/derive"},
	}
	for _, rt := range routes {
		t.Run(rt.method+strings.ReplaceAll(rt.path, "%s", "ID"), func(t *testing.T) {
			var body any
			if rt.method != "GET" {
				body = map[string]any{"name": "stolen"}
				if strings.HasSuffix(rt.path, "/suspend") || strings.HasSuffix(rt.path, "/revoke") || strings.HasSuffix(rt.path, "/resume") || strings.HasSuffix(rt.path, "/rotate") {
					body = nil
				}
			}
			r := ts.call(t, rt.method, fmt.Sprintf(rt.path, aID), b, body)
			if r.Status != 404 || r.errCode() != latchkey.ENotFound {
				t.Fatalf("tenant B on tenant A's key: %d %s", r.Status, r.Raw)
			}
		})
	}
	// A's key is untouched.
	k := ts.call(t, "GET", "/v1/keys/"+aID, a, nil)
	if k.str("state") != "active" || k.str("name") != "e2e" {
		t.Fatalf("tenant A's key changed: %s", k.Raw)
	}
	for admin, own := range map[string]string{a: "tenant-a", b: "tenant-b"} {
		list := ts.call(t, "GET", "/v1/keys", admin, nil)
		for _, it := range list.Body["keys"].([]any) {
			if tn := it.(map[string]any)["tenant"]; tn != own {
				t.Fatalf("%s sees a key of %v", own, tn)
			}
		}
	}
	if r := ts.call(t, "GET", "/v1/keys?parent_id="+aID, b, nil); len(r.Body["keys"].([]any)) != 0 {
		t.Fatal("a filter on another tenant's id found keys")
	}
	_ = bID
}

// TestE2ERestartKeepsAcknowledgedChanges kills a server process with
// SIGKILL right after its answers and checks that a new process on the same
// database has every change.
func TestE2ERestartKeepsAcknowledgedChanges(t *testing.T) {
	dir, err := os.MkdirTemp(e2eRoot, "restart-")
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "latchkey.db")
	url, root, child := startChild(t, dir, db, 1)
	registerKey(root)
	ts := &testServer{URL: url, Root: root}
	admin := ts.mustTenant(t, "acme")
	keep, keepKey := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	gone, goneKey := ts.mustCreate(t, admin, map[string]any{})
	if r := ts.call(t, "POST", "/v1/keys/"+gone+"/revoke", admin, nil); r.Status != 200 {
		t.Fatal(r.Status)
	}
	if r := ts.call(t, "PATCH", "/v1/keys/"+keep, admin, map[string]any{"owner": "ops"}); r.Status != 200 {
		t.Fatal(r.Status)
	}
	child.kill()

	// The second server writes quota and usage only at shutdown (its
	// periodic flushes are an hour apart), so what it counted in its last
	// moments survives only through SIGTERM's final flushes.
	url2, root2, child2 := startChildArgs(t, dir, db, 2, " --quota-flush 1h --usage-flush 1h")
	defer child2.kill()
	if root2 != "" {
		t.Fatal("a restart printed a new root key")
	}
	ts.URL = url2
	for key, want := range map[string]string{keepKey: latchkey.CodeValid, goneKey: latchkey.CodeRevoked} {
		if c := ts.verifyCode(t, map[string]any{"key": key, "scopes": []string{"data:read"}}); c != want {
			t.Fatalf("after restart: %s, want %s", c, want)
		}
	}
	if o := ts.call(t, "GET", "/v1/keys/"+keep, admin, nil).str("owner"); o != "ops" {
		t.Fatalf("owner after restart = %q", o)
	}
	if r := ts.call(t, "GET", "/v1/keys", root, nil); r.Status != 200 {
		t.Fatalf("root key after restart: %d", r.Status)
	}

	// Right before SIGTERM: consume 7 of a quota of 10, and have 9
	// verifications counted (7 VALID, 2 INSUFFICIENT_SCOPE; a denial
	// consumes no quota).
	meteredID, metered := ts.mustCreate(t, admin, map[string]any{
		"scopes": []string{"data:read"}, "quota": map[string]any{"limit": 10, "period": "monthly"}})
	for i := range 9 {
		scope, want := "data:read", latchkey.CodeValid
		if i%4 == 3 {
			scope, want = "data:write", latchkey.CodeInsufficientScope
		}
		if c := ts.verifyCode(t, map[string]any{"key": metered, "scopes": []string{scope}}); c != want {
			t.Fatalf("verification %d before SIGTERM: %s, want %s", i, c, want)
		}
	}

	// SIGTERM shuts down gracefully: exit status 0, nothing lost.
	if err := child2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := child2.wait(15 * time.Second); err != nil {
		t.Fatalf("server after SIGTERM: %v", err)
	}

	url3, _, child3 := startChild(t, dir, db, 3)
	defer child3.kill()
	ts.URL = url3
	// Usage first (reading it verifies nothing): exactly what was counted.
	r := ts.call(t, "GET", "/v1/keys/"+meteredID+"/usage", admin, nil)
	want := map[string]int64{latchkey.CodeValid: 7, latchkey.CodeInsufficientScope: 2}
	if got := usageTotals(r); r.Status != 200 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("usage after SIGTERM and restart: %d totals %v, want %v", r.Status, got, want)
	}
	// Quota: exactly 3 of 10 left.
	for i := range 4 {
		want := latchkey.CodeValid
		if i == 3 {
			want = latchkey.CodeQuotaExceeded
		}
		if c := ts.verifyCode(t, map[string]any{"key": metered, "scopes": []string{"data:read"}}); c != want {
			t.Fatalf("verification %d after SIGTERM and restart: %s, want %s (7 of 10 were consumed before)", i+1, c, want)
		}
	}
}

// child is a server process started from this test binary.
type child struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has exited
	err     error         // its exit error, once exited is closed
	once    sync.Once
	closeFn func()
}

// kill stops the process with SIGKILL, as a crash would. It may be called
// after the process has exited.
func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
	c.once.Do(c.closeFn)
}

// wait waits for the process to exit by itself and returns its error.
func (c *child) wait(limit time.Duration) error {
	select {
	case <-c.exited:
		c.once.Do(c.closeFn)
		return c.err
	case <-time.After(limit):
		c.kill()
		return fmt.Errorf("did not exit within %s", limit)
	}
}

// startChild runs this test binary as `latchkey server` and returns its URL,
// the root key from its banner (first start only) and the process.
func startChild(t *testing.T, dir, db string, n int) (url, root string, c *child) {
	t.Helper()
	return startChildArgs(t, dir, db, n, "")
}

// startChildArgs is startChild with more server flags (space-separated).
func startChildArgs(t *testing.T, dir, db string, n int, extra string) (url, root string, c *child) {
	t.Helper()
	return startChildEnv(t, dir, db, n, extra, nil)
}

// startChildEnv is startChildArgs with more environment (NAME=value).
func startChildEnv(t *testing.T, dir, db string, n int, extra string, env []string) (url, root string, c *child) {
	t.Helper()
	logPath := filepath.Join(dir, fmt.Sprintf("child-%d.log", n))
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LATCHKEY_E2E_CHILD=1", "LATCHKEY_E2E_ARGS=server --addr 127.0.0.1:0 --db "+db+extra)
	cmd.Env = append(cmd.Env, env...)
	pr, pw := io.Pipe()
	cmd.Stderr = io.MultiWriter(logFile, pw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c = &child{cmd: cmd, exited: make(chan struct{}), closeFn: func() { pw.Close(); logFile.Close() }}
	go func() { c.err = cmd.Wait(); close(c.exited) }()
	found := make(chan struct{ url, root string }, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		var r string
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if m := bannerLine.FindString(line); m != "" {
				r = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(m), "root key:"))
			}
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if !sent && json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
				found <- struct{ url, root string }{"http://" + rec.Addr, r}
				sent = true
			}
		}
	}()
	select {
	case f := <-found:
		registerServer(f.url)
		return f.url, f.root, c
	case <-time.After(30 * time.Second):
		c.kill()
		b, _ := os.ReadFile(logPath)
		t.Fatalf("child server did not start:\n%s", b)
	}
	return "", "", nil
}
