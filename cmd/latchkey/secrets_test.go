package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keyring"
)

// secretValue makes a provider-looking value and registers it with the
// leak check.
func secretValue(prefix string) string {
	b := make([]byte, 18)
	rand.Read(b)
	v := prefix + base64.RawURLEncoding.EncodeToString(b)
	registerSecret(v)
	return v
}

func (ts *testServer) putSecret(t *testing.T, admin, name string, body map[string]any) resp {
	t.Helper()
	r := ts.call(t, "PUT", "/v1/secrets/"+name, admin, body)
	if r.Status != http.StatusOK {
		t.Fatalf("put secret %s: %d %s", name, r.Status, r.Raw)
	}
	return r
}

func TestE2ESecretsAPI(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	v1, v2 := secretValue("sk-proj-"), secretValue("sk-proj-")
	r := ts.putSecret(t, admin, "openai", map[string]any{"value": v1})
	if r.Body["version"] != 1.0 || r.Body["expires_in"] != 3600.0 || strings.Contains(string(r.Raw), v1) {
		t.Fatalf("put answer: %s", r.Raw)
	}
	ts.putSecret(t, admin, "openai", map[string]any{"value": v2, "expires_in": 1800, "meta": map[string]string{"team": "ml"}})

	g := ts.call(t, "GET", "/v1/secrets/openai", admin, nil)
	if g.Status != 200 || g.str("value") != v2 || g.Body["version"] != 2.0 || g.Body["expires_in"] != 1800.0 || g.str("name") != "openai" {
		t.Fatalf("get: %d %s", g.Status, g.Raw)
	}
	if g.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("a secret answer may be cached: %q", g.Header.Get("Cache-Control"))
	}
	if g := ts.call(t, "GET", "/v1/secrets/openai?version=1", admin, nil); g.str("value") != v1 {
		t.Fatalf("get version 1: %d %s", g.Status, g.Raw)
	}
	l := ts.call(t, "GET", "/v1/secrets", admin, nil)
	if l.Status != 200 || strings.Contains(string(l.Raw), v1) || strings.Contains(string(l.Raw), v2) {
		t.Fatalf("list: %d %s", l.Status, l.Raw)
	}
	if list, _ := l.Body["secrets"].([]any); len(list) != 1 || list[0].(map[string]any)["versions"] != 2.0 {
		t.Fatalf("list: %s", l.Raw)
	}
	vs := ts.call(t, "GET", "/v1/secrets/openai/versions", admin, nil)
	if vl, _ := vs.Body["versions"].([]any); vs.Status != 200 || len(vl) != 2 || strings.Contains(string(vs.Raw), v1) {
		t.Fatalf("versions: %d %s", vs.Status, vs.Raw)
	}

	for _, c := range []struct {
		method, path string
		body         any
		code         string
	}{
		{"PUT", "/v1/secrets/OpenAI", map[string]any{"value": "x"}, latchkey.EInvalid},
		{"PUT", "/v1/secrets/openai", map[string]any{"value": ""}, latchkey.EInvalid},
		{"PUT", "/v1/secrets/openai", map[string]any{}, latchkey.EInvalid},
		{"PUT", "/v1/secrets/openai", map[string]any{"value": "x", "expires_in": -1}, latchkey.EInvalid},
		{"PUT", "/v1/secrets/openai", map[string]any{"value": "x", "colour": "red"}, latchkey.EInvalid},
		{"GET", "/v1/secrets/openai?version=0", nil, latchkey.EInvalid},
		{"GET", "/v1/secrets/openai?version=9", nil, latchkey.ENotFound},
		{"GET", "/v1/secrets/missing", nil, latchkey.ENotFound},
		{"DELETE", "/v1/secrets/missing", nil, latchkey.ENotFound},
	} {
		if r := ts.call(t, c.method, c.path, admin, c.body); r.errCode() != c.code || r.Status != latchkey.HTTPStatus(c.code) {
			t.Errorf("%s %s: %d %s, want %s", c.method, c.path, r.Status, r.Raw, c.code)
		}
	}

	// Scopes: reading needs secrets:read, writing secrets:write.
	_, readOnly := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"secrets:read"}})
	if r := ts.call(t, "PUT", "/v1/secrets/openai", readOnly, map[string]any{"value": "x"}); r.errCode() != latchkey.EForbidden {
		t.Fatalf("write with secrets:read: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "GET", "/v1/secrets/openai", readOnly, nil); r.str("value") != v2 {
		t.Fatalf("read with secrets:read: %d %s", r.Status, r.Raw)
	}

	if r := ts.call(t, "DELETE", "/v1/secrets/openai", admin, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "GET", "/v1/secrets/openai", admin, nil); r.errCode() != latchkey.ENotFound {
		t.Fatalf("get after delete: %d %s", r.Status, r.Raw)
	}

	// The audit log has every access, with its actor, and no value.
	a := ts.call(t, "GET", "/v1/audit", admin, nil)
	if strings.Contains(string(a.Raw), v1) || strings.Contains(string(a.Raw), v2) {
		t.Fatal("the audit log holds a secret value")
	}
	counts := map[string]int{}
	evs, _ := a.Body["events"].([]any)
	for _, e := range evs {
		ev := e.(map[string]any)
		counts[ev["action"].(string)]++
	}
	if counts["secret.written"] != 2 || counts["secret.read"] != 3 || counts["secret.deleted"] != 1 {
		t.Fatalf("audited actions: %v\n%s", counts, a.Raw)
	}
}

// rawGet sends a hand-written HTTP/1.1 GET over a fresh TCP connection and
// reads the answer, as a seed client would, with no project code. It
// reports whether the server closed the connection after answering.
func rawGet(t *testing.T, base, path, header string) (status int, h http.Header, body []byte, closed bool) {
	t.Helper()
	addr := strings.TrimPrefix(base, "http://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: seed-client/1.0\r\nAccept: application/json\r\n%s\r\n\r\n", path, addr, header); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(res.Body)
	res.Body.Close()
	if res.Close { // ReadResponse takes "Connection: close" out of the header
		res.Header.Set("Connection", "close")
	}
	if err != nil {
		t.Fatal(err)
	}
	// A closed connection reads EOF at once; an open one times out.
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = br.ReadByte()
	return res.StatusCode, res.Header, body, err == io.EOF
}

// keySet is the set of a JSON object's keys.
func keySet(t *testing.T, body []byte) (map[string]any, []string) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, body)
	}
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return m, ks
}

// TestE2ESeedContract performs the two seed requests exactly as the seed
// clients do and checks exactly the two answer shapes.
func TestE2ESeedContract(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	openai, anthropic := secretValue("sk-proj-"), secretValue("sk-ant-")
	ts.putSecret(t, admin, "openai", map[string]any{"value": openai, "expires_in": 1800})
	ts.putSecret(t, admin, "anthropic", map[string]any{"value": anthropic})
	_, agent := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"secrets:read"}})

	// fast-agent: GET {base}/keys/{provider} with a bearer key.
	status, h, body, closed := rawGet(t, ts.URL, "/keys/openai", "Authorization: Bearer "+agent)
	m, ks := keySet(t, body)
	if status != 200 || len(ks) != 2 || m["api_key"] != openai || m["expires_in"] != 1800.0 {
		t.Fatalf("GET /keys/openai: %d %s", status, body)
	}
	if !strings.Contains(string(body), `"expires_in":1800`) {
		t.Fatalf("expires_in is not a plain number: %s", body)
	}
	if !closed || !strings.EqualFold(h.Get("Connection"), "close") {
		t.Fatalf("GET /keys/openai kept the connection (Connection: %q, closed %v)", h.Get("Connection"), closed)
	}
	// mdcgen: GET {endpoint}/llm-keys, its endpoint ending in '/', with X-API-Key.
	for _, path := range []string{"/llm-keys", "//llm-keys"} {
		for _, hdr := range []string{"X-API-Key: " + agent, "Authorization: Bearer " + agent} {
			status, h, body, closed := rawGet(t, ts.URL, path, hdr)
			m, ks := keySet(t, body)
			if status != 200 || len(ks) != 2 || m["openai"] != openai || m["anthropic"] != anthropic {
				t.Fatalf("GET %s (%s): %d %s", path, hdr[:9], status, body)
			}
			if !closed || !strings.EqualFold(h.Get("Connection"), "close") {
				t.Fatalf("GET %s kept the connection", path)
			}
		}
	}
	if status, _, body, _ := rawGet(t, ts.URL, "//keys/anthropic", "X-API-Key: "+agent); status != 200 || !strings.Contains(string(body), anthropic) {
		t.Fatalf("GET //keys/anthropic: %d %s", status, body)
	}

	// Errors carry API.md's error body, and close too.
	errBody := func(body []byte) string {
		var e struct {
			Error struct {
				Code      string `json:"code"`
				Message   string `json:"message"`
				RequestID string `json:"request_id"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" || e.Error.RequestID == "" {
			t.Fatalf("not an API.md error body: %s", body)
		}
		return e.Error.Code
	}
	_, noScope := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	_, onlyOpenAI := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"secrets:read"}, "resources": []string{"secret:openai"}})
	globex := ts.mustTenant(t, "globex")
	_, stranger := ts.mustCreate(t, globex, map[string]any{"scopes": []string{"secrets:read"}})
	for _, c := range []struct {
		name, path, header string
		status             int
	}{
		{"NoScope", "/keys/openai", "Authorization: Bearer " + noScope, 403},
		{"NoScopeList", "/llm-keys", "X-API-Key: " + noScope, 403},
		{"ForbiddenProvider", "/keys/anthropic", "Authorization: Bearer " + onlyOpenAI, 403},
		{"UnknownProvider", "/keys/mistral", "Authorization: Bearer " + agent, 404},
		{"OtherTenant", "/keys/openai", "X-API-Key: " + stranger, 404},
		{"NoKey", "/keys/openai", "X-Nothing: 1", 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, h, body, closed := rawGet(t, ts.URL, c.path, c.header)
			if status != c.status || errBody(body) != latchkey.CodeForStatus(c.status) {
				t.Fatalf("%d %s, want %d", status, body, c.status)
			}
			if !closed || !strings.EqualFold(h.Get("Connection"), "close") {
				t.Fatal("an error answer kept the connection")
			}
		})
	}
	// /llm-keys lists only what the key may read; another tenant's key
	// reads an empty map.
	if _, _, body, _ := rawGet(t, ts.URL, "/llm-keys", "X-API-Key: "+onlyOpenAI); string(body) != fmt.Sprintf("{\"openai\":%q}\n", openai) {
		t.Fatalf("/llm-keys for a key limited to openai: %s", body)
	}
	if status, _, body, _ := rawGet(t, ts.URL, "/llm-keys", "X-API-Key: "+stranger); status != 200 || string(body) != "{}\n" {
		t.Fatalf("/llm-keys for another tenant: %d %s", status, body)
	}
	// GET /health is the seed services' health contract.
	if status, _, body, _ := rawGet(t, ts.URL, "/health", ""); status != 200 || string(body) != "{\"status\":\"healthy\"}\n" {
		t.Fatalf("/health: %d %s", status, body)
	}
}

func TestE2ESeedKeepAliveConfigurable(t *testing.T) {
	ts := startServer(t, func(c *serverConfig, _ *serverHooks) { c.SeedKeepAlive = true })
	admin := ts.mustTenant(t, "acme")
	ts.putSecret(t, admin, "openai", map[string]any{"value": secretValue("sk-")})
	status, h, _, closed := rawGet(t, ts.URL, "/keys/openai", "X-API-Key: "+admin)
	if status != 200 || closed || h.Get("Connection") != "" {
		t.Fatalf("with --seed-keep-alive: %d, closed %v, Connection %q", status, closed, h.Get("Connection"))
	}
}

func withDB(path string) serverOption {
	return func(c *serverConfig, _ *serverHooks) { c.DB = path }
}

// Rotation and rewrap through the API, while a reader keeps reading; a
// second node on the same database learns the new term; after the rewrap
// a restart uses the replaced key file.
func TestE2EKeyringRotateAndRewrapOnline(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	values := map[string]string{}
	for _, n := range []string{"openai", "anthropic"} {
		values[n] = secretValue("sk-" + n + "-")
		ts.putSecret(t, admin, n, map[string]any{"value": values[n]})
	}
	// openai gets a second version; the reader reads both.
	first := values["openai"]
	values["openai"] = secretValue("sk-openai-v2-")
	ts.putSecret(t, admin, "openai", map[string]any{"value": values["openai"]})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures []string
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for n, v := range values {
				r := do(t, "GET", ts.URL+"/keys/"+n, map[string]string{"X-API-Key": admin}, nil)
				if r.Status != 200 || r.str("api_key") != v {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %d %s", n, r.Status, r.Raw))
					mu.Unlock()
				}
			}
			if r := ts.call(t, "GET", "/v1/secrets/openai?version=1", admin, nil); r.str("value") != first {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("openai version 1: %d %s", r.Status, r.Raw))
				mu.Unlock()
			}
		}
	}()

	// Tenants' keys do not manage the keyring.
	if r := ts.call(t, "POST", "/v1/keyring/rotate", admin, nil); r.errCode() != latchkey.EForbidden {
		t.Fatalf("rotate by a tenant admin: %d %s", r.Status, r.Raw)
	}
	r := ts.call(t, "POST", "/v1/keyring/rotate", ts.Root, nil)
	if r.Status != 200 || r.Body["active_term"] != 2.0 {
		t.Fatalf("rotate: %d %s", r.Status, r.Raw)
	}
	later := secretValue("sk-after-rotate-")
	ts.putSecret(t, admin, "mistral", map[string]any{"value": later})

	// Rewrap: the new key is a file on the server's host.
	dir := t.TempDir()
	newKey := filepath.Join(dir, "new.key")
	nk, err := keyring.CreateMasterKeyFile(newKey)
	if err != nil {
		t.Fatal(err)
	}
	if r := ts.call(t, "POST", "/v1/keyring/rewrap", ts.Root, map[string]any{"new_master_key_file": "relative.key"}); r.errCode() != latchkey.EInvalid {
		t.Fatalf("rewrap with a relative path: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "POST", "/v1/keyring/rewrap", ts.Root, map[string]any{"new_master_key_file": filepath.Join(dir, "none.key")}); r.errCode() != latchkey.ENotFound {
		t.Fatalf("rewrap with a missing file: %d %s", r.Status, r.Raw)
	}
	r = ts.call(t, "POST", "/v1/keyring/rewrap", ts.Root, map[string]any{"new_master_key_file": newKey})
	own := defaultMasterKeyFile(ts.DB)
	if r.Status != 200 || r.Body["terms"] != 2.0 || r.str("master_key_file") != own {
		t.Fatalf("rewrap: %d %s", r.Status, r.Raw)
	}
	if got, err := keyring.ReadMasterKeyFile(own); err != nil || string(got) != string(nk) {
		t.Fatalf("the server's key file does not hold the new key: %v", err)
	}
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d reads failed during rotate and rewrap, first: %s", len(failures), failures[0])
	}
	if strings.Contains(ts.Log.String(), base64.StdEncoding.EncodeToString(nk)) {
		t.Fatal("the log holds the new master key")
	}

	// A second node on the same database, started with the (replaced) key
	// file, reads everything, including values of term 2.
	ts2 := startServer(t, withDB(ts.DB))
	for n, v := range map[string]string{"openai": values["openai"], "mistral": later} {
		if r := ts2.call(t, "GET", "/v1/secrets/"+n, admin, nil); r.str("value") != v {
			t.Fatalf("second node reads %s: %d %s", n, r.Status, r.Raw)
		}
	}
	st := ts2.call(t, "GET", "/v1/keyring", ts.Root, nil)
	if st.Status != 200 || st.Body["active_term"] != 2.0 {
		t.Fatalf("keyring status: %d %s", st.Status, st.Raw)
	}
	a := ts.call(t, "GET", "/v1/audit", ts.Root, nil)
	if !strings.Contains(string(a.Raw), "keyring.rotated") || !strings.Contains(string(a.Raw), "keyring.rewrapped") {
		t.Fatalf("keyring changes are not audited: %s", a.Raw)
	}
	// The rewrap signed the audit checkpoints again under the new master
	// key: both nodes find every log intact and signed, before and after
	// another change.
	for _, n := range []*testServer{ts, ts2, ts} {
		for _, k := range []string{ts.Root, admin} {
			if v := n.call(t, "GET", "/v1/audit/verify", k, nil); v.Body["ok"] != true || v.Body["signed"] != true {
				t.Fatalf("audit verify after the rewrap: %s", v.Raw)
			}
		}
		ts.putSecret(t, admin, "mistral", map[string]any{"value": later})
	}
}
