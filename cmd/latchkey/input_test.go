package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Issue 9, items 7 and 8: input means one thing, and the friction a new
// user met trying the CLI and the API. Every test here talks to a real
// node over HTTP (or runs the CLI against one).

// TestE2EZeroDurationMeansNoTime: a zero duration is "no time at all"
// everywhere. A rotation's "0s" grace ends the old key at once; a "0s"
// suspension, which would end as it began, is refused rather than read as
// "until resumed" (which is what leaving the duration out means).
func TestE2EZeroDurationMeansNoTime(t *testing.T) {
	ts := startServer(t)
	id, _ := ts.mustCreate(t, ts.Root, map[string]any{"scopes": []string{"data:read"}})

	if r := ts.call(t, "POST", "/v1/keys/"+id+"/suspend", ts.Root, map[string]any{"duration": "0s"}); r.Status != http.StatusBadRequest || r.errCode() != latchkey.EInvalid {
		t.Fatalf("suspend for 0s: %d %s, want 400 invalid", r.Status, r.Raw)
	}
	if r := ts.call(t, "POST", "/v1/keys/"+id+"/suspend", ts.Root, map[string]any{"duration": "0"}); r.Status != http.StatusBadRequest {
		t.Fatalf("suspend for 0: %d %s, want 400", r.Status, r.Raw)
	}
	if r := ts.call(t, "GET", "/v1/keys/"+id, ts.Root, nil); r.str("state") != "active" {
		t.Fatalf("a refused suspension suspended the key: %s", r.Raw)
	}
	// Leaving the duration out still means "until resumed".
	if r := ts.call(t, "POST", "/v1/keys/"+id+"/suspend", ts.Root, map[string]any{"reason": "r"}); r.Status != 200 || r.str("state") != "suspended" || r.Body["suspended_until"] != nil {
		t.Fatalf("suspend without duration: %d %s", r.Status, r.Raw)
	}
	ts.call(t, "POST", "/v1/keys/"+id+"/resume", ts.Root, nil)

	// "0s" grace: the old key stops at once.
	_, oldKey := ts.mustCreate(t, ts.Root, map[string]any{"scopes": []string{"data:read"}})
	oldID := ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": oldKey}).str("key_id")
	r := ts.call(t, "POST", "/v1/keys/"+oldID+"/rotate", ts.Root, map[string]any{"grace_period": "0s"})
	if r.Status != http.StatusCreated {
		t.Fatalf("rotate with 0s grace: %d %s", r.Status, r.Raw)
	}
	if code := ts.verifyCode(t, map[string]any{"key": oldKey}); code == latchkey.CodeValid {
		t.Fatal("the old key still works after a 0s grace period")
	}
}

// TestE2EEveryWriteRouteRefusesAnUndecodableBody sends garbage to every
// POST, PATCH and PUT route: each answers 400 invalid, none acts on it.
// The routes that take no body accept an empty one (and {}), never garbage.
func TestE2EEveryWriteRouteRefusesAnUndecodableBody(t *testing.T) {
	ts := startServer(t)
	id, key := ts.mustCreate(t, ts.Root, map[string]any{"scopes": []string{"data:read"}, "max_concurrent": 1})
	lease := ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": key}).str("lease_id")
	if lease == "" {
		t.Fatal("verify of a max_concurrent key returned no lease_id")
	}
	hook := ts.call(t, "POST", "/v1/webhooks", ts.Root, map[string]any{"url": "https://hooks.example.com/in"})
	if hook.Status != http.StatusCreated {
		t.Fatalf("create webhook: %d %s", hook.Status, hook.Raw)
	}
	hookID := hook.str("id")
	delivery := "/v1/webhooks/" + hookID + "/deliveries/dlv_00000000000000000000000000/retry"

	routes := []struct {
		method, path string
		emptyOK      bool
	}{
		{"POST", "/v1/keys", false},
		{"PATCH", "/v1/keys/" + id, false},
		{"POST", "/v1/keys/" + id + "/rotate", true},
		{"POST", "/v1/keys/" + id + "/suspend", true},
		{"POST", "/v1/keys/" + id + "/resume", true},
		{"POST", "/v1/keys/" + id + "/revoke", true},
		{"POST", "/v1/keys/" + id + "/derive", false},
		{"POST", "/v1/keys/verify", false},
		{"POST", "/v1/leases/" + lease + "/release", true},
		{"POST", "/v1/webhooks", false},
		{"POST", delivery, true},
		{"POST", "/v1/tenants", false},
		{"PUT", "/v1/secrets/openai", false},
		{"POST", "/v1/keyring/rotate", true},
		{"POST", "/v1/keyring/rewrap", false},
		{"POST", "/v1/policies", false},
		{"PATCH", "/v1/policies/development", false},
		{"PUT", "/v1/owners/client-1", false},
		{"POST", "/v1/keys/batch", false},
		{"POST", "/v1/leaks", false},
		{"POST", "/v1/identity-providers", false},
	}
	for _, body := range []string{"garbage", "null", `{"bogus": 1}`, `[]`, `{} {}`} {
		for _, rt := range routes {
			r := ts.call(t, rt.method, rt.path, ts.Root, body)
			if r.Status != http.StatusBadRequest || r.errCode() != latchkey.EInvalid {
				t.Errorf("%s %s with body %q: %d %s, want 400 invalid", rt.method, rt.path, body, r.Status, r.Raw)
			}
		}
	}
	if r := ts.call(t, "GET", "/v1/keys/"+id, ts.Root, nil); r.str("state") != "active" {
		t.Fatalf("a refused body changed the key: %s", r.Raw)
	}
	// Empty and {} are fine where no body is needed.
	for _, body := range []string{"", "{}"} {
		for _, p := range []string{"/v1/keys/" + id + "/resume", "/v1/keyring/rotate"} {
			if r := ts.call(t, "POST", p, ts.Root, body); r.Status != http.StatusOK {
				t.Errorf("POST %s with body %q: %d %s", p, body, r.Status, r.Raw)
			}
		}
	}
	if r := ts.call(t, "POST", "/v1/leases/"+lease+"/release", key, "{}"); r.Status != http.StatusNoContent {
		t.Errorf("release with {}: %d %s", r.Status, r.Raw)
	}
}

// TestE2EScopesResourcesExpiryAndNetworksAreStrict: scopes are exactly
// two segments, resources kind:name, expires_at within the same 100 years
// as a duration, and an IPv6 zone is refused, never dropped.
func TestE2EScopesResourcesExpiryAndNetworksAreStrict(t *testing.T) {
	ts := startServer(t)
	id, key := ts.mustCreate(t, ts.Root, map[string]any{"scopes": []string{"data:read"}})
	far := ts.Clock.Now().Add(latchkey.MaxDuration + 48*time.Hour).UTC().Format(time.RFC3339)
	near := ts.Clock.Now().Add(latchkey.MaxDuration - 48*time.Hour).UTC().Format(time.RFC3339)
	bad := []map[string]any{
		{"scopes": []string{"data"}},
		{"scopes": []string{"data:read:all"}},
		{"scopes": []string{"a:b:c:d"}},
		{"resources": []string{"agent"}},
		{"resources": []string{"agent:x:y"}},
		{"resources": []string{"agent:*:x"}},
		{"expires_at": far},
		{"ip_allow": []string{"fe80::1%eth0"}},
		{"ip_allow": []string{"fe80::1%eth0/64"}},
	}
	for _, b := range bad {
		b["name"] = "strict"
		if r := ts.call(t, "POST", "/v1/keys", ts.Root, b); r.Status != http.StatusBadRequest || r.errCode() != latchkey.EInvalid {
			t.Errorf("create %v: %d %s, want 400 invalid", b, r.Status, r.Raw)
		}
		delete(b, "name")
		if r := ts.call(t, "PATCH", "/v1/keys/"+id, ts.Root, b); r.Status != http.StatusBadRequest || r.errCode() != latchkey.EInvalid {
			t.Errorf("update %v: %d %s, want 400 invalid", b, r.Status, r.Raw)
		}
	}
	for _, b := range []map[string]any{
		{"key": key, "scopes": []string{"data:read:all"}},
		{"key": key, "scopes": []string{"data"}},
		{"key": key, "resource": "agent"},
		{"key": key, "resource": "agent:a:b"},
		{"key": key, "ip": "fe80::1%eth0"},
	} {
		if r := ts.call(t, "POST", "/v1/keys/verify", "", b); r.Status != http.StatusBadRequest {
			t.Errorf("verify %v: %d %s, want 400", b, r.Status, r.Raw)
		}
	}
	good := map[string]any{"scopes": []string{"data:read", "agent:*", "*"}, "resources": []string{"agent:nlp-*", "*"}, "expires_at": near, "ip_allow": []string{"fe80::1", "2001:db8::/32"}}
	if r := ts.call(t, "PATCH", "/v1/keys/"+id, ts.Root, good); r.Status != http.StatusOK {
		t.Fatalf("update with good values: %d %s", r.Status, r.Raw)
	}
}

// TestE2EKeyInAURLPathIsRedactedInTheLog: a key pasted where an id
// belongs never reaches the request log.
func TestE2EKeyInAURLPathIsRedactedInTheLog(t *testing.T) {
	ts := startServer(t)
	_, key := ts.mustCreate(t, ts.Root, map[string]any{"scopes": []string{"data:read"}})
	for _, p := range []string{"/v1/keys/" + key, "/v1/keys/" + key + "/usage", "/v1/secrets/" + key, "/keys/" + key, "/v1/whatever/" + key + "/x", "/" + key} {
		ts.call(t, "GET", p, ts.Root, nil)
		ts.call(t, "POST", p, ts.Root, "{}")
	}
	ts.call(t, "GET", "/v1/keys/"+key, key, nil)
	logText := ts.Log.String()
	if strings.Contains(logText, key) {
		t.Fatalf("the request log holds a key pasted into a path")
	}
	if !strings.Contains(logText, "/v1/keys/[redacted]") {
		t.Fatalf("the request log does not show the redacted path:\n%s", logText)
	}
}

// TestE2EUsageDefaultWindowFollowsTheBucket: a usage report without a
// window answers for every bucket size.
func TestE2EUsageDefaultWindowFollowsTheBucket(t *testing.T) {
	ts := startServer(t)
	id, _ := ts.mustCreate(t, ts.Root, map[string]any{"scopes": []string{"data:read"}})
	for bucket, n := range map[string]int{"minute": 60, "hour": 24, "day": 30} {
		r := ts.call(t, "GET", "/v1/keys/"+id+"/usage?bucket="+bucket, ts.Root, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("usage ?bucket=%s: %d %s", bucket, r.Status, r.Raw)
		}
		series, _ := r.Body["series"].([]any)
		if len(series) < n || len(series) > n+1 {
			t.Errorf("usage ?bucket=%s: %d buckets, want %d", bucket, len(series), n)
		}
	}
}

// TestE2ESecretVersionKeepsExpiresIn: a new version without expires_in
// keeps the one before's, rather than falling back to the default.
func TestE2ESecretVersionKeepsExpiresIn(t *testing.T) {
	ts := startServer(t)
	ts.putSecret(t, ts.Root, "openai", map[string]any{"value": secretValue("sk-"), "expires_in": 120})
	r := ts.putSecret(t, ts.Root, "openai", map[string]any{"value": secretValue("sk-")})
	if r.Body["expires_in"] != 120.0 || r.Body["version"] != 2.0 {
		t.Fatalf("second version: %s, want expires_in 120", r.Raw)
	}
	if g := ts.call(t, "GET", "/v1/secrets/openai", ts.Root, nil); g.Body["expires_in"] != 120.0 {
		t.Fatalf("read: %s", g.Raw)
	}
	r = ts.putSecret(t, ts.Root, "openai", map[string]any{"value": secretValue("sk-"), "expires_in": 60})
	if r.Body["expires_in"] != 60.0 {
		t.Fatalf("a given expires_in is not taken: %s", r.Raw)
	}
	// A secret written afresh takes the default.
	if r := ts.call(t, "DELETE", "/v1/secrets/openai", ts.Root, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.Status, r.Raw)
	}
	if r := ts.putSecret(t, ts.Root, "openai", map[string]any{"value": secretValue("sk-")}); r.Body["expires_in"] != 3600.0 {
		t.Fatalf("a fresh secret: %s, want the default 3600", r.Raw)
	}
}

// TestE2EUnknownKeyRoutesSayNoSuchRoute: a path under /v1/keys that no
// route serves is a not_found that names the route, not a missing key.
func TestE2EUnknownKeyRoutesSayNoSuchRoute(t *testing.T) {
	ts := startServer(t)
	id, _ := ts.mustCreate(t, ts.Root, map[string]any{"scopes": []string{"data:read"}})
	msg := func(r resp) string {
		e, _ := r.Body["error"].(map[string]any)
		s, _ := e["message"].(string)
		return s
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/keys/exports"}, {"GET", "/v1/keys/stats"}, {"PATCH", "/v1/keys/export"},
		{"POST", "/v1/keys/export/rotate"}, {"GET", "/v1/keys/" + id + "/export"}, {"POST", "/v1/keys/" + id + "/frobnicate"},
		{"GET", "/v1/keys/export/usage"},
	} {
		r := ts.call(t, c.method, c.path, ts.Root, nil)
		if r.Status != http.StatusNotFound || r.errCode() != latchkey.ENotFound || !strings.Contains(msg(r), "no such route") {
			t.Errorf("%s %s: %d %s, want not_found naming no such route", c.method, c.path, r.Status, r.Raw)
		}
	}
	// A key id that names no key is still "no key".
	r := ts.call(t, "GET", "/v1/keys/key_00000000000000000000000000", ts.Root, nil)
	if r.Status != http.StatusNotFound || strings.Contains(msg(r), "no such route") {
		t.Fatalf("unknown key id: %d %s", r.Status, r.Raw)
	}
}

// TestCLIFriction plays the CLI friction of item 8 against a node.
func TestCLIFriction(t *testing.T) {
	n := startCLINode(t)

	t.Run("CreateTakesExpiresIn", func(t *testing.T) {
		m := n.okJSON(t, "keys", "create", "--name", "exp", "--expires-in", "30d")
		at, _ := time.Parse(time.RFC3339, m["expires_at"].(string))
		if d := time.Until(at); d < 29*24*time.Hour || d > 31*24*time.Hour {
			t.Fatalf("expires_at %v is not 30 days away", m["expires_at"])
		}
		registerKey(m["key"].(string))
	})

	t.Run("StatsByMinuteWithoutSince", func(t *testing.T) {
		id, _ := n.createKey(t, "--name", "stats")
		m := n.okJSON(t, "keys", "stats", id, "--bucket", "minute")
		if series, _ := m["series"].([]any); len(series) < 60 || len(series) > 61 {
			t.Fatalf("keys stats --bucket minute: %d buckets, want the last hour's 60", len(series))
		}
	})

	t.Run("EventsListsSecurityEvents", func(t *testing.T) {
		id, _ := n.createKey(t, "--name", "narrow", "--scopes", "data:read")
		n.ok(t, "keys", "update", id, "--scopes", "data:read,data:write")
		r := n.ok(t, "events")
		if !strings.Contains(r.stdout, "scopes_widened") || !strings.Contains(r.stdout, id) {
			t.Fatalf("events does not list the widening:\n%s", r.stdout)
		}
		m := n.okJSON(t, "events", "--kind", "scopes_widened", "--key-id", id)
		if evs, _ := m["events"].([]any); len(evs) != 1 {
			t.Fatalf("events --json --kind --key-id: %v", m)
		}
	})

	t.Run("ExitCodes", func(t *testing.T) {
		id, _ := n.createKey(t, "--name", "x")
		for _, c := range []struct {
			args []string
			want int
		}{
			{[]string{"keys", "frobnicate"}, 2},
			{[]string{"keys", "show"}, 2},
			{[]string{"keys", "list", "--timeout", "forever"}, 2},
			{[]string{"nosuchverb"}, 2},
			// Refused by the server, invalid included: 1.
			{[]string{"keys", "create", "--name", "x", "--scopes", "Not A Scope"}, 1},
			{[]string{"keys", "suspend", id, "--for", "0s"}, 1},
			{[]string{"keys", "show", "key_00000000000000000000000000"}, 1},
		} {
			r := n.run(t, c.args...)
			if got := exitCode(r.err); got != c.want {
				t.Errorf("latchkey %s: exit %d (err %v), want %d", strings.Join(c.args, " "), got, r.err, c.want)
			}
		}
	})

	t.Run("HelpListsEveryVerb", func(t *testing.T) {
		r := n.ok(t, "--help")
		groups := map[string]map[string]func(context.Context, *env, []string) error{
			"keys": keysCommands, "tenants": tenantsCommands, "secrets": secretsCommands, "keyring": keyringCommands,
			"audit": auditCommands, "reports": reportsCommands, "webhooks": webhooksCommands,
		}
		lines := strings.Split(r.stdout, "\n")
		for g, cmds := range groups {
			i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "latchkey "+g+" ") })
			if i < 0 {
				t.Errorf("--help has no line for %s", g)
				continue
			}
			for verb := range cmds {
				if !slices.Contains(strings.FieldsFunc(lines[i], func(c rune) bool { return c == '|' || c == ' ' || c == ',' }), verb) {
					t.Errorf("--help does not list %s %s: %q", g, verb, lines[i])
				}
			}
		}
		for _, top := range []string{"server", "exec", "events", "version"} {
			if !strings.Contains(r.stdout, "latchkey "+top) {
				t.Errorf("--help does not list %s", top)
			}
		}
	})
}

// TestCLICACert: the CLI trusts a server's certificate given with
// --cacert or LATCHKEY_CACERT, and without it says to pass one.
func TestCLICACert(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := selfSignedCert(t, dir)
	ts := startServer(t, func(c *serverConfig, _ *serverHooks) { c.TLSCert, c.TLSKey = certFile, keyFile })
	n := &cliNode{URL: "https" + ts.URL[len("http"):], Root: ts.Root, log: ts.Log}

	r := n.run(t, "keys", "list")
	if r.err == nil || cliErrCode(r.err) != latchkey.EUnavailable || !strings.Contains(r.err.Error(), "--cacert") {
		t.Fatalf("without the CA: err %v, want unavailable naming --cacert", r.err)
	}
	if r := n.run(t, "keys", "list", "--cacert", certFile); r.err != nil {
		t.Fatalf("--cacert: %v", r.err)
	}
	if r := n.runEnv(t, n.env("LATCHKEY_CACERT", certFile), "keys", "list"); r.err != nil {
		t.Fatalf("LATCHKEY_CACERT: %v", r.err)
	}
	missing := filepath.Join(dir, "nope.pem")
	if r := n.run(t, "keys", "list", "--cacert", missing); cliErrCode(r.err) != latchkey.EInvalid {
		t.Fatalf("--cacert of a missing file: %v, want invalid", r.err)
	}
	notPEM := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(notPEM, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := n.run(t, "keys", "list", "--cacert", notPEM); cliErrCode(r.err) != latchkey.EInvalid || errors.Is(r.err, errUsageShown) {
		t.Fatalf("--cacert of a non-PEM file: %v, want invalid", r.err)
	}
	var m map[string]any
	if r := n.run(t, "keys", "list", "--cacert", certFile, "--json"); r.err != nil || json.Unmarshal([]byte(r.stdout), &m) != nil {
		t.Fatalf("--json over TLS: %v %s", r.err, r.stdout)
	}
}
