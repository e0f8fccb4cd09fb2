package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client"
)

// withSecretSourceAllow runs the server with --secret-source-allow.
func withSecretSourceAllow(spec string) serverOption {
	return func(c *serverConfig, _ *serverHooks) { c.SecretSourceAllow = spec }
}

// writeSourceScript writes an executable shell script for an exec:
// source, outside the server's directory (the leak check reads that one).
func writeSourceScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
}

// seedValue reads GET /keys/{provider} with key and returns the api_key.
func (ts *testServer) seedValue(t *testing.T, key, provider string) resp {
	t.Helper()
	return do(t, "GET", ts.URL+"/keys/"+provider, map[string]string{"X-API-Key": key}, nil)
}

func TestE2ESecretSources(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh for the exec: source's script")
	}
	base := t.TempDir()
	allowed := filepath.Join(base, "run-secrets")
	bin := filepath.Join(base, "bin")
	outside := filepath.Join(base, "elsewhere")
	for _, d := range []string{allowed, bin, outside} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	prog := filepath.Join(bin, "getkey")
	envValue, fileValue, fileValue2, execValue := secretValue("sk-env-"), secretValue("sk-file-"), secretValue("sk-file2-"), secretValue("sk-exec-")
	t.Setenv("LKTEST_SRC_OPENAI", envValue)
	fileKey := filepath.Join(allowed, "anthropic")
	if err := os.WriteFile(fileKey, []byte(fileValue+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeSourceScript(t, prog, `if [ "$1" = mistral ]; then printf '%s\n' '`+execValue+`'; else echo "no such item" >&2; exit 1; fi`)

	ts := startServer(t, withSecretSourceAllow("env:LKTEST_SRC_*,file:"+allowed+"/,exec:"+prog))
	admin := ts.mustTenant(t, "acme")
	_, reader := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"secrets:read"}})

	w := ts.putSecret(t, admin, "openai", map[string]any{"source": "env:LKTEST_SRC_OPENAI", "refresh": "5m", "expires_in": 60})
	if meta, _ := w.Body["meta"].(map[string]any); meta["source"] != "env:LKTEST_SRC_OPENAI" || meta["refresh"] != "5m" || w.Body["value"] != nil {
		t.Fatalf("the write's answer: %s", w.Raw)
	}
	ts.putSecret(t, admin, "anthropic", map[string]any{"source": "file:" + fileKey, "refresh": "1m"})
	ts.putSecret(t, admin, "mistral", map[string]any{"source": "exec:" + prog + " mistral", "refresh": "10m"})

	// Each serves through both seed routes, without the trailing newline.
	for name, want := range map[string]string{"openai": envValue, "anthropic": fileValue, "mistral": execValue} {
		r := ts.seedValue(t, reader, name)
		if r.Status != http.StatusOK || r.str("api_key") != want {
			t.Fatalf("GET /keys/%s: %d, want its source's value", name, r.Status)
		}
	}
	if r := ts.seedValue(t, reader, "openai"); r.Body["expires_in"] != float64(60) {
		t.Fatalf("expires_in: %v", r.Body["expires_in"])
	}
	all := do(t, "GET", ts.URL+"/llm-keys", map[string]string{"Authorization": bearer(reader)}, nil)
	if all.Status != http.StatusOK || all.str("openai") != envValue || all.str("anthropic") != fileValue || all.str("mistral") != execValue {
		t.Fatalf("GET /llm-keys: %d", all.Status)
	}

	// The file changes on disk: served changed within its refresh interval
	// (here, once the secret cache's 5 s have passed).
	if err := os.WriteFile(fileKey, []byte(fileValue2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts.Clock.Advance(5 * time.Second)
	if r := ts.seedValue(t, reader, "anthropic"); r.str("api_key") != fileValue2 {
		t.Fatalf("after the file changed: %d, want the new value", r.Status)
	}

	// Lists and versions show the reference, never a value.
	for _, path := range []string{"/v1/secrets", "/v1/secrets/anthropic/versions"} {
		r := ts.call(t, "GET", path, admin, nil)
		registerOutput(path, r.Raw)
		if r.Status != http.StatusOK || !strings.Contains(string(r.Raw), "file:"+fileKey) {
			t.Fatalf("GET %s: %d %s", path, r.Status, r.Raw)
		}
	}

	// Outside the allowlist: refused at the write, after resolving links
	// and "..".
	secretFile := filepath.Join(outside, "server-secret")
	os.WriteFile(secretFile, []byte("the server's own"), 0o600)
	if err := os.Symlink(secretFile, filepath.Join(allowed, "link-out")); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(bin, "other")
	writeSourceScript(t, other, "echo other")
	for _, src := range []string{
		"env:HOME",
		"env:LATCHKEY_MASTER_KEY",
		"file:" + secretFile,
		"file:" + allowed + "/../elsewhere/server-secret",
		"file:" + allowed + "/link-out",
		"file:/etc/passwd",
		"exec:" + other,
		"exec:/bin/sh -c id",
	} {
		r := ts.call(t, "PUT", "/v1/secrets/refused", admin, map[string]any{"source": src})
		if r.Status != http.StatusForbidden || r.errCode() != latchkey.EForbidden {
			t.Errorf("PUT source %s: %d %s, want 403 forbidden", src, r.Status, r.Raw)
		}
	}
	for _, body := range []map[string]any{
		{"source": "vault:x"},
		{"source": "env:LKTEST_SRC_OPENAI", "value": "both"},
		{"source": "env:LKTEST_SRC_OPENAI", "refresh": "soon"},
		{"value": "v", "meta": map[string]string{"source": "file:/etc/passwd"}},
	} {
		if r := ts.call(t, "PUT", "/v1/secrets/refused", admin, body); r.Status != http.StatusBadRequest || r.errCode() != latchkey.EInvalid {
			t.Errorf("PUT %v: %d %s, want 400 invalid", body, r.Status, r.Raw)
		}
	}
	if r := ts.call(t, "GET", "/v1/secrets/refused", admin, nil); r.Status != http.StatusNotFound {
		t.Fatalf("a refused source was stored: %d", r.Status)
	}

	// Failing sources answer 503 unavailable, the reason in the log.
	ts.putSecret(t, admin, "gone", map[string]any{"source": "file:" + filepath.Join(allowed, "missing")})
	ts.putSecret(t, admin, "broken", map[string]any{"source": "exec:" + prog + " nothing"})
	ts.putSecret(t, admin, "unset", map[string]any{"source": "env:LKTEST_SRC_UNSET"})
	for _, name := range []string{"gone", "broken", "unset"} {
		r := ts.seedValue(t, reader, name)
		if r.Status != http.StatusServiceUnavailable || r.errCode() != latchkey.EUnavailable {
			t.Fatalf("GET /keys/%s: %d %s, want 503 unavailable", name, r.Status, r.Raw)
		}
	}
	if r := do(t, "GET", ts.URL+"/llm-keys", map[string]string{"Authorization": bearer(reader)}, nil); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("GET /llm-keys with failing sources: %d", r.Status)
	}
	log := string(ts.Log.Bytes())
	for _, why := range []string{"missing", "exit status 1", "LKTEST_SRC_UNSET is not set"} {
		if !strings.Contains(log, why) {
			t.Errorf("the log does not say why a source failed (%q)", why)
		}
	}

	// The Go client's fallbacks take over for a failing source; a working
	// one is served by the broker.
	env := &fakeEnv{m: map[string]string{"GONE_API_KEY": "sk-env-fallback-gone", "OPENAI_API_KEY": "sk-env-fallback-openai"}}
	c, err := client.NewSecrets(client.SecretsConfig{EndpointURL: ts.URL + "/keys", AuthToken: reader, Getenv: env.get, Now: ts.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if sec := lookup(t, c, "openai"); sec.Value != envValue || sec.Source != client.SourceBroker {
		t.Fatalf("a working source, per provider: %v", sec)
	}
	if sec := lookup(t, c, "gone"); sec.Value != "sk-env-fallback-gone" || sec.Source != client.SourceEnv {
		t.Fatalf("a failing source, per provider: %v, want the environment's key", sec)
	}
	m, err := client.NewSecrets(client.SecretsConfig{EndpointURL: ts.URL, Route: client.LLMKeys, AuthToken: reader, Getenv: env.get, Now: ts.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if sec := lookup(t, m, "openai"); sec.Value != "sk-env-fallback-openai" || sec.Source != client.SourceEnv {
		t.Fatalf("llm-keys with a failing source: %v, want the environment's key", sec)
	}

	// Fixed, the source serves again once its failure has aged.
	ts.call(t, "DELETE", "/v1/secrets/gone", admin, nil)
	os.WriteFile(filepath.Join(allowed, "missing"), []byte(fileValue+"\n"), 0o600)
	ts.putSecret(t, admin, "gone", map[string]any{"source": "file:" + filepath.Join(allowed, "missing")})
	if r := ts.seedValue(t, reader, "gone"); r.str("api_key") != fileValue {
		t.Fatalf("a fixed source: %d", r.Status)
	}

	// Reads are audited with the kind of source; no event holds a value
	// (the leak check reads the database and the log for every value).
	a := ts.call(t, "GET", "/v1/audit", admin, nil)
	registerOutput("audit", a.Raw)
	kinds := map[string]bool{}
	evs, _ := a.Body["events"].([]any)
	for _, e := range evs {
		ev := e.(map[string]any)
		if d, _ := ev["details"].(map[string]any); ev["action"] == "secret.read" && d["source"] != nil {
			kinds[d["source"].(string)] = true
		}
	}
	if !kinds["env"] || !kinds["file"] || !kinds["exec"] {
		t.Fatalf("read events name the sources %v, want env, file and exec", kinds)
	}
	// The check reads the database files: no value read from a source is
	// in them, only the references.
	ts.Stop()
	db, _ := filepath.Glob(ts.DB + "*")
	for _, p := range db {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{envValue, fileValue, fileValue2, execValue} {
			if strings.Contains(string(b), v) {
				t.Fatalf("%s holds a value read from a source", p)
			}
		}
	}
}

func TestCLISecretSources(t *testing.T) {
	n := startCLINode(t, withSecretSourceAllow("env:LKCLI_SRC_*"))
	value := secretValue("sk-cli-env-")
	t.Setenv("LKCLI_SRC_SERVICE", value)
	r := n.ok(t, "secrets", "put", "service", "--source", "env:LKCLI_SRC_SERVICE", "--refresh", "5m")
	if !strings.Contains(r.stdout, "env:LKCLI_SRC_SERVICE") || !strings.Contains(r.stdout, "every 5m") {
		t.Fatalf("put --source: %s", r.stdout)
	}
	if r := n.ok(t, "secrets", "get", "service"); r.stdout != value+"\n" {
		t.Fatal("get: not the environment variable's value")
	}
	if m := n.okJSON(t, "secrets", "versions", "service"); !strings.Contains(fmt.Sprint(m), "source:env:LKCLI_SRC_SERVICE") {
		t.Fatalf("versions: %v", m)
	}
	for _, args := range [][]string{
		{"secrets", "put", "other", "--source", "file:/etc/passwd"},
		{"secrets", "put", "other", "--source", "env:LKCLI_SRC_SERVICE", "--stdin"},
		{"secrets", "put", "other", "--from-env", "LKCLI_SRC_SERVICE", "--refresh", "5m"},
	} {
		if r := n.run(t, args...); r.err == nil {
			t.Errorf("latchkey %s succeeded", strings.Join(args, " "))
		}
	}
}
