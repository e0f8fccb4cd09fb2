package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
)

// seedManifest is the seed's complete multi-agent manifest
// (shared/seeds), as its users write it.
const seedManifest = `# app_manifest.yml - Complete agent key configuration
app:
  name: "Multi-Agent Workspace"
  version: "1.0.0"
  description: "Collaborative AI workspace with specialized agents"
agents:
  - name: "orchestratorAgent"
    description: "Main orchestration agent"
    agent_type_id: "llm"
    api_key:
      generate: true
      name: "Orchestrator Master Key"
      scopes:
        - "agent:activate"
        - "agent:read"
        - "activations:read"
        - "activations:write"
        - "activations:stream"
        - "data:read"
        - "data:write"
        - "data:query"
        - "functions:invoke"
        - "webhooks:manage"
        - "credentials:use"
      expires_after: "365d"
      environment: "production"
      auto_rotate: true
      rotation_interval: "90d"
  - name: "dataProcessor"
    description: "Data analysis and processing agent"
    agent_type_id: "data-processing"
    api_key:
      generate: true
      name: "Data Processor Key"
      scopes:
        - "agent:activate"
        - "activations:read"
        - "data:read"
        - "data:write"
        - "data:query"
        - "functions:invoke"
      expires_after: "180d"
      environment: "production"
  - name: "notificationAgent"
    description: "Handles notifications and alerts"
    agent_type_id: "notification"
    api_key:
      generate: true
      name: "Notification Agent Key"
      scopes:
        - "agent:activate"
        - "activations:read"
        - "webhooks:manage"
        - "credentials:use" # For email/slack integrations
      expires_after: "90d"
  - name: "readOnlyReporter"
    description: "Read-only reporting agent"
    agent_type_id: "reporting"
    api_key:
      generate: true
      name: "Reporter Read-Only Key"
      scopes:
        - "agent:activate"
        - "activations:read"
        - "data:read"
        - "data:query"
      expires_after: "30d"
      environment: "reporting"
`

// The seed's manifest applies through the CLI; a second apply changes
// and mints nothing; one edited scope updates that key in place and the
// very next verify sees it; a broken file is refused with its line.
func TestCLIApplySeedManifest(t *testing.T) {
	n := startCLINode(t)
	if r := n.run(t, "apply", "-h"); r.err != nil || !strings.Contains(r.stderr, "-dry-run") {
		t.Fatalf("apply -h: %v %q", r.err, r.stderr)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "app_manifest.yml")
	if err := os.WriteFile(file, []byte(seedManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "keys.env")
	r := n.ok(t, "apply", "-f", file, "--out", out)
	if !strings.Contains(r.stdout, "4 to create, 0 to update, 0 unchanged, 0 to revoke") || len(plaintexts(r.stdout)) != 0 {
		t.Fatalf("first apply:\n%s", r.stdout)
	}
	st, err := os.Stat(out)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("--out file: %v %v", err, st)
	}
	env := readEnvFile(t, out)
	if len(env) != 4 {
		t.Fatalf("--out holds %d keys, want 4: %q", len(env), env)
	}
	reporter := env["READONLYREPORTER_API_KEY"]
	if code := n.verify(t, reporter, "--scope", "data:read"); code != latchkey.CodeValid {
		t.Fatalf("the reporter's key: %s", code)
	}
	if code := n.verify(t, reporter, "--scope", "data:write"); code != latchkey.CodeInsufficientScope {
		t.Fatalf("the reporter's key with data:write: %s", code)
	}

	again := n.okJSON(t, "apply", "-f", file, "--out", out)
	if ks, _ := again["keys"].([]any); len(ks) != 0 {
		t.Fatalf("the second apply minted %d keys", len(ks))
	}
	for _, step := range again["plan"].([]any) {
		if a := step.(map[string]any)["action"]; a != "unchanged" {
			t.Fatalf("second apply plan: %v", again["plan"])
		}
	}
	if len(readEnvFile(t, out)) != 4 {
		t.Fatal("the second apply wrote to --out")
	}

	edited := strings.Replace(seedManifest, `        - "data:query"
      expires_after: "30d"`, `        - "data:query"
        - "data:write"
      expires_after: "30d"`, 1)
	if err := os.WriteFile(file, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	r = n.ok(t, "apply", "-f", file)
	if !strings.Contains(r.stdout, "0 to create, 1 to update, 3 unchanged") || !strings.Contains(r.stdout, "scopes") {
		t.Fatalf("apply of one edited scope:\n%s", r.stdout)
	}
	if code := n.verify(t, reporter, "--scope", "data:write"); code != latchkey.CodeValid {
		t.Fatalf("the next verify after the edit: %s", code)
	}

	// An agent's keys are listed by the resource they cover.
	list := n.okJSON(t, "keys", "list", "--agent", "readOnlyReporter")
	found := false
	for _, k := range list["keys"].([]any) {
		m := k.(map[string]any)
		if m["name"] == "Reporter Read-Only Key" {
			found = true
		}
		if m["name"] == "Data Processor Key" {
			t.Error("keys list --agent readOnlyReporter lists the data processor's key")
		}
	}
	if !found {
		t.Errorf("keys list --agent readOnlyReporter: %v", list)
	}

	// A broken file is refused with its line, and nothing changes.
	broken := strings.Replace(edited, `expires_after: "180d"`, `expires_after: "180 days"`, 1)
	if err := os.WriteFile(file, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	r = n.run(t, "apply", "-f", file)
	if cliErrCode(r.err) != latchkey.EInvalid || !strings.Contains(r.err.Error(), "app_manifest.yml:42:") {
		t.Fatalf("broken manifest: %v", r.err)
	}
}

// POST /v1/apply takes JSON too, plans without changing on a dry run, and
// needs keys:write.
func TestApplyRoute(t *testing.T) {
	s := startServer(t)
	admin := s.mustTenant(t, "acme")
	body := map[string]any{"app": map[string]any{"name": "tiny"}, "agents": []any{
		map[string]any{"name": "bot", "api_key": map[string]any{"generate": true}},
	}}
	r := s.call(t, "POST", "/v1/apply?dry_run=true", admin, body)
	if r.Status != http.StatusOK || !strings.Contains(string(r.Raw), `"action":"create"`) || strings.Contains(string(r.Raw), `"key":"`) {
		t.Fatalf("dry run: %d %s", r.Status, r.Raw)
	}
	r = s.call(t, "POST", "/v1/apply", admin, body)
	var res struct {
		Keys []struct {
			Key   string `json:"key"`
			KeyID string `json:"key_id"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(r.Raw, &res); r.Status != http.StatusOK || err != nil || len(res.Keys) != 1 {
		t.Fatalf("apply: %d %s", r.Status, r.Raw)
	}
	registerKey(res.Keys[0].Key)
	if code := s.verifyCode(t, map[string]any{"key": res.Keys[0].Key, "resource": "agent:bot"}); code != latchkey.CodeValid {
		t.Fatalf("the applied key: %s", code)
	}
	if r := s.call(t, "POST", "/v1/apply", admin, body); r.Status != http.StatusOK || strings.Contains(string(r.Raw), `"key":"`) {
		t.Fatalf("second apply: %d %s", r.Status, r.Raw)
	}
	if r := s.call(t, "POST", "/v1/apply?prune=maybe", admin, body); r.Status != http.StatusBadRequest || r.errCode() != latchkey.EInvalid {
		t.Fatalf("prune=maybe: %d %s", r.Status, r.Raw)
	}
	if r := s.call(t, "POST", "/v1/apply?file=tiny.yml", admin, "app: [unclosed"); r.Status != http.StatusBadRequest || r.errCode() != latchkey.EInvalid || !strings.Contains(string(r.Raw), `"message":"tiny.yml:`) {
		t.Fatalf("broken YAML: %d %s", r.Status, r.Raw)
	}
	_, reader := s.mustCreate(t, admin, map[string]any{"scopes": []string{"keys:read"}})
	if r := s.call(t, "POST", "/v1/apply", reader, body); r.Status != http.StatusForbidden {
		t.Fatalf("apply with keys:read: %d %s", r.Status, r.Raw)
	}
}

// readEnvFile reads NAME=VALUE lines.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}
