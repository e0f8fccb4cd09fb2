package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/testenv"
)

// tokenURLSafe is Python's secrets.token_urlsafe(32), registered for the
// leak scan.
func tokenURLSafe(t *testing.T) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	k := base64.RawURLEncoding.EncodeToString(b[:])
	registerKey(k)
	return k
}

// seedEnv is a seed service's .env with its API_KEYS line.
func seedEnv(keys map[string]string) string {
	var pairs []string
	for k, client := range keys {
		pairs = append(pairs, fmt.Sprintf("%q: %q", k, client))
	}
	return "APP_NAME=logger\nAPI_KEYS={" + strings.Join(pairs, ", ") + "}\nLOG_LEVEL=info\n"
}

func importCounts(t *testing.T, r resp) (created, skipped, invalid float64) {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("import: %d %s", r.Status, r.Raw)
	}
	c, _ := r.Body["imported"].(float64)
	s, _ := r.Body["skipped"].(float64)
	i, _ := r.Body["invalid"].(float64)
	return c, s, i
}

// A seed service's .env API_KEYS line imports; each key then passes
// forward-auth behind real nginx as its client id; garbage is refused
// without a store read per request; a re-run skips everything.
func TestE2EImportEnvKeysPassForwardAuthBehindNginx(t *testing.T) {
	ts := startServer(t, withTrustedProxies("127.0.0.1/32"))
	admin := ts.mustTenant(t, "acme")
	clients := map[string]string{tokenURLSafe(t): "acme_corp", tokenURLSafe(t): "widget_co", tokenURLSafe(t): "client_demo"}
	env := seedEnv(clients)
	r := ts.call(t, "POST", "/v1/keys/import?format=env&scopes=data:read", admin, env)
	if c, s, i := importCounts(t, r); c != 3 || s != 0 || i != 0 {
		t.Fatalf("import: %s", r.Raw)
	}
	for k := range clients {
		if strings.Contains(string(r.Raw), k) {
			t.Fatal("the import's answer shows a key")
		}
	}

	type seen struct{ tenant, owner string }
	got := make(chan seen, 8)
	app := loopbackApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Header.Get("X-Latchkey-Tenant"), r.Header.Get("X-Latchkey-Owner")}
		w.Write([]byte("logs"))
	}))
	defer app.Close()
	ngx := testenv.StartNginx(t, testenv.NginxConfig{
		AuthURL:     ts.URL + "/v1/auth?scope=data:read&proxy=nginx",
		UpstreamURL: app.URL,
	})
	for k, client := range clients {
		r := do(t, "GET", ngx.URL+"/api/v1/logs", map[string]string{"Authorization": bearer(k)}, nil)
		if r.Status != 200 || string(r.Raw) != "logs" {
			t.Fatalf("%s through nginx: %d %s", client, r.Status, r.Raw)
		}
		if s := <-got; s.tenant != "acme" || s.owner != client {
			t.Fatalf("upstream saw %+v, want owner %s", s, client)
		}
	}

	// Garbage: refused, and the second identical request reads no store.
	garbage := "this-is-not-a-key-at-all-but-long"
	for i, want := range []int64{1, 0} {
		before, _ := scrapeMetrics(t, ts.URL)
		r := do(t, "GET", ts.URL+"/v1/auth", map[string]string{"Authorization": bearer(garbage)}, nil)
		if r.Status != 401 || r.Header.Get("X-Latchkey-Code") != latchkey.CodeNotFound {
			t.Fatalf("garbage %d: %d %q", i, r.Status, r.Header.Get("X-Latchkey-Code"))
		}
		after, _ := scrapeMetrics(t, ts.URL)
		if d := int64(sample(t, after, "latchkey_store_reads_total") - sample(t, before, "latchkey_store_reads_total")); d != want {
			t.Fatalf("garbage request %d read the store %d times, want %d", i+1, d, want)
		}
	}
	r = do(t, "GET", ts.URL+"/v1/auth", map[string]string{"Authorization": bearer("short")}, nil)
	if r.Status != 401 || r.Header.Get("X-Latchkey-Code") != latchkey.CodeMalformed {
		t.Fatalf("a short string: %d %q", r.Status, r.Header.Get("X-Latchkey-Code"))
	}

	r = ts.call(t, "POST", "/v1/keys/import?format=env", admin, env)
	if c, s, i := importCounts(t, r); c != 0 || s != 3 || i != 0 {
		t.Fatalf("re-import: %s", r.Raw)
	}
}

// Every key of one node, exported and imported into another node's
// tenant, keeps verifying there; the export holds no plaintext.
func TestE2EExportImportRoundTripIntoAnotherNode(t *testing.T) {
	a, b := startServer(t), startServer(t)
	srcAdmin := a.mustTenant(t, "acme")
	foreign := tokenURLSafe(t)
	if c, _, _ := importCounts(t, a.call(t, "POST", "/v1/keys/import?owner=legacy&scopes=data:read", srcAdmin, foreign+"\n")); c != 1 {
		t.Fatal("import of one plaintext key")
	}
	_, ours := a.mustCreate(t, srcAdmin, map[string]any{"owner": "acme_corp", "scopes": []string{"data:write"}})
	exp := a.call(t, "GET", "/v1/keys/export", srcAdmin, nil)
	if exp.Status != 200 || exp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("export: %d %s", exp.Status, exp.Raw)
	}
	lines := strings.Split(strings.TrimSpace(string(exp.Raw)), "\n")
	if len(lines) != 3 { // the tenant's admin key, the imported and the created one
		t.Fatalf("export has %d lines:\n%s", len(lines), exp.Raw)
	}
	for _, k := range []string{foreign, ours, srcAdmin} {
		if strings.Contains(string(exp.Raw), k) {
			t.Fatal("the export holds a plaintext key")
		}
	}
	dstAdmin := b.mustTenant(t, "globex")
	// The admin key line grants admin scopes the importing key holds too.
	r := b.call(t, "POST", "/v1/keys/import?format=jsonl", dstAdmin, string(exp.Raw))
	if c, _, i := importCounts(t, r); c != 3 || i != 0 {
		t.Fatalf("import into node b: %s", r.Raw)
	}
	for key, scope := range map[string]string{foreign: "data:read", ours: "data:write"} {
		v := b.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": key, "scopes": []string{scope}})
		if v.str("code") != latchkey.CodeValid {
			t.Fatalf("after the round trip: %s", v.Raw)
		}
		if v.str("tenant") != "globex" {
			t.Fatalf("verified in tenant %q", v.str("tenant"))
		}
	}
	// The broker route takes the imported foreign key too.
	b.putSecret(t, dstAdmin, "openai", map[string]any{"value": secretValue("sk-proj-")})
	broker := tokenURLSafe(t)
	if c, _, _ := importCounts(t, b.call(t, "POST", "/v1/keys/import?scopes=secrets:read", dstAdmin, broker)); c != 1 {
		t.Fatal("import of a broker key")
	}
	if r := b.call(t, "GET", "/keys/openai", broker, nil); r.Status != http.StatusOK || r.str("api_key") == "" {
		t.Fatalf("GET /keys/openai with an imported foreign key: %d %s", r.Status, r.Raw)
	}
	// The import route needs keys:write; the export keys:read.
	_, reader := b.mustCreate(t, dstAdmin, map[string]any{"scopes": []string{"keys:read"}})
	if r := b.call(t, "POST", "/v1/keys/import", reader, foreign); r.Status != http.StatusForbidden {
		t.Fatalf("import with keys:read only: %d %s", r.Status, r.Raw)
	}
}

// The CLI imports a file (format from its name) and exports to a 0600
// file; stderr is no terminal here, so no progress bar is drawn.
func TestCLIKeysImportExport(t *testing.T) {
	n := startCLINode(t)
	dir := t.TempDir()
	k1, k2 := tokenURLSafe(t), tokenURLSafe(t)
	envFile := filepath.Join(dir, ".env")
	if err := os.WriteFile(envFile, []byte(seedEnv(map[string]string{k1: "acme_corp", k2: "widget_co"})), 0o600); err != nil {
		t.Fatal(err)
	}
	r := n.ok(t, "keys", "import", envFile, "--scopes", "data:read")
	if !strings.Contains(r.stdout, "imported 2, skipped 0") || r.stderr != "" {
		t.Fatalf("import: %q %q", r.stdout, r.stderr)
	}
	m := n.okJSON(t, "keys", "import", envFile)
	if m["imported"] != 0.0 || m["skipped"] != 2.0 {
		t.Fatalf("re-import --json: %v", m)
	}
	r = n.runStdin(t, n.env(), k1+"\nnot-ok\n", "keys", "import", "-", "--format", "plain")
	if r.err != nil || !strings.Contains(r.stdout, "skipped 1") || !strings.Contains(r.stdout, "line 2:") {
		t.Fatalf("import from stdin: %v %q", r.err, r.stdout)
	}
	out := filepath.Join(dir, "keys.jsonl")
	n.ok(t, "keys", "export", "--out", out)
	st, err := os.Stat(out)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v %v", err, st)
	}
	b, _ := os.ReadFile(out)
	if strings.Count(string(b), "\n") != 3 || strings.Contains(string(b), k1) {
		t.Fatalf("export:\n%s", b)
	}
	if r := n.run(t, "keys", "import", out, "--format", "csv"); r.err == nil {
		t.Fatal("an unknown --format was accepted")
	}
}
