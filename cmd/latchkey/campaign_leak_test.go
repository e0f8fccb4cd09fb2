package main

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey/httpapi"
)

// The leak scan campaign (docs/reliability.md). TestMain's leak check
// already searches every database file (with -wal and -shm), every child
// log and every captured log for every plaintext key and secret value the
// tests were given; this test adds what the server answers outside the
// once-only answers: /metrics, the exports (GET /v1/audit/export, and GET
// /v1/keys/export once it answers 200), every listing and object read of
// httpapi.Routes, and any HTML served. Run with the other campaigns
// (scripts/campaign leak), it scans for the keys those issued too.

// returnsSecrets are the GET routes whose answer is a stored secret by
// design (the secret read API and the seed contract); they are read here
// but not scanned.
var returnsSecrets = map[string]bool{
	"GET /v1/secrets/{name}": true,
	"GET /keys/{provider}":   true,
	"GET /llm-keys":          true,
}

func TestCampaignLeakScan(t *testing.T) {
	f, _ := newIsolationFixture(t)
	ts := f.ts
	// More plaintexts than the fixture's: a rotated key (old and new), a
	// derived one, a second secret version.
	rot := ts.call(t, "POST", "/v1/keys/"+f.keyID+"/rotate", f.a, nil)
	if rot.Status != http.StatusCreated || rot.str("key") == "" {
		t.Fatalf("rotate: %d %s", rot.Status, rot.Raw)
	}
	if r := ts.call(t, "POST", "/v1/keys/"+rot.str("id")+"/derive", f.a, map[string]any{"name": "child"}); r.Status != http.StatusCreated {
		t.Fatalf("derive: %d %s", r.Status, r.Raw)
	}
	// The successor rotates on a schedule (GET …/rotation reads it).
	if r := ts.call(t, "PUT", "/v1/keys/"+rot.str("id")+"/rotation", f.a, map[string]any{"interval": "30d"}); r.Status != http.StatusOK {
		t.Fatalf("set rotation: %d %s", r.Status, r.Raw)
	}
	ts.putSecret(t, f.a, f.secretName, map[string]any{"value": secretValue("sk-second-")})
	ts.call(t, "GET", "/keys/"+f.secretName, f.a, nil) // a seed read: audited, never logged with its value

	var scanned, html int
	scan := func(name string, r resp) {
		registerOutput(name, r.Raw)
		scanned++
		if strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
			html++
		}
		if hit := leakIn(r.Raw); hit != "" {
			t.Errorf("%s: %s", name, hit)
		}
	}
	for _, rt := range httpapi.Routes() {
		name := rt.Method + " " + rt.Pattern
		if rt.Method != "GET" || returnsSecrets[name] {
			continue
		}
		key := f.a
		if rt.Scope == "tenants:admin" {
			key = ts.Root
		}
		path := f.fill(t, rt.Pattern, true)
		if name == "GET /v1/keys/{id}/rotation" {
			path = "/v1/keys/" + rot.str("id") + "/rotation" // the fixture's key was rotated above
		}
		r := ts.call(t, "GET", path, key, nil)
		if r.Status != 200 {
			t.Errorf("%s: %d %s", name, r.Status, r.Raw)
		}
		scan(name, r)
	}
	if r := ts.call(t, "GET", "/v1/keys/export", f.a, nil); r.Status == 200 {
		scan("GET /v1/keys/export", r)
	}
	for _, p := range []string{"/", "/index.html", "/v1/", "/admin"} {
		scan("GET "+p, ts.call(t, "GET", p, "", nil))
	}
	campaignReport(t, "leak", "answers_scanned=%d html_answers=%d (database files, WAL/SHM, logs: TestMain's leak check line)", scanned, html)
}

// leakIn says which issued key or stored secret b holds, if any.
func leakIn(b []byte) string {
	issuedMu.Lock()
	defer issuedMu.Unlock()
	for _, k := range issued {
		if bytes.Contains(b, []byte(k)) {
			return "plaintext key " + k[:8] + "… found"
		}
	}
	for _, v := range stored {
		if bytes.Contains(b, []byte(v)) {
			return "secret value " + v[:min(6, len(v))] + "… found"
		}
	}
	return ""
}
