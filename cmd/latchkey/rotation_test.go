package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

func withRotationCheck(d time.Duration) serverOption {
	return func(c *serverConfig, _ *serverHooks) { c.RotationCheck = d }
}

// A key on a schedule is rotated by the server's own loop when the
// (fake) clock reaches the interval; the reader fetches the successor from
// the seed route, both keys work during the grace, the old one stops
// after it, and no other key can fetch the successor.
func TestE2EScheduledRotation(t *testing.T) {
	s := startServer(t, withRotationCheck(20*time.Millisecond))
	admin := s.mustTenant(t, "acme")
	agentID, agent := s.mustCreate(t, admin, map[string]any{"name": "Report Agent", "scopes": []string{"data:read"}})
	readerID, reader := s.mustCreate(t, admin, map[string]any{"name": "deployer", "scopes": []string{"secrets:read"}, "resources": []string{"secret:key-report-agent"}})
	_, other := s.mustCreate(t, admin, map[string]any{"name": "other", "scopes": []string{"secrets:read"}})
	r := s.call(t, "PUT", "/v1/keys/"+agentID+"/rotation", admin, map[string]any{"interval": "30d", "grace_period": "1h", "reader": readerID})
	if r.Status != http.StatusOK || r.str("secret_name") != "key-report-agent" {
		t.Fatalf("set rotation: %d %s", r.Status, r.Raw)
	}
	if r := s.call(t, "GET", "/keys/key-report-agent", reader, nil); r.Status != http.StatusNotFound {
		t.Fatalf("the secret before the first rotation: %d %s", r.Status, r.Raw)
	}

	s.Clock.Advance(30 * 24 * time.Hour)
	var successor string
	deadline := time.Now().Add(5 * time.Second)
	for successor == "" {
		if k := s.call(t, "GET", "/v1/keys/"+agentID, admin, nil); k.str("rotated_to") != "" {
			successor = k.str("rotated_to")
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the key was not rotated at its interval")
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := s.call(t, "GET", "/keys/key-report-agent", reader, nil)
	plain := got.str("api_key")
	if got.Status != http.StatusOK || plain == "" || got.Body["expires_in"] != 1800.0 {
		t.Fatalf("the reader's fetch of the successor: %d %s", got.Status, got.Raw)
	}
	registerKey(plain)
	if r := s.call(t, "GET", "/keys/key-report-agent", other, nil); r.Status != http.StatusNotFound || strings.Contains(string(r.Raw), plain) {
		t.Fatalf("another key's fetch of the successor: %d", r.Status)
	}
	if code := s.verifyCode(t, map[string]any{"key": plain}); code != latchkey.CodeValid {
		t.Fatalf("successor: %s", code)
	}
	if code := s.verifyCode(t, map[string]any{"key": agent}); code != latchkey.CodeValid {
		t.Fatalf("old key during the grace: %s", code)
	}
	s.Clock.Advance(time.Hour)
	if code := s.verifyCode(t, map[string]any{"key": agent}); code != latchkey.CodeRevoked {
		t.Fatalf("old key after the grace: %s", code)
	}
	if r := s.call(t, "GET", "/v1/keys/"+successor+"/rotation", admin, nil); r.Status != http.StatusOK || r.str("key_id") != successor {
		t.Fatalf("the schedule after the rotation: %d %s", r.Status, r.Raw)
	}
}

// The CLI shows, sets and stops a schedule.
func TestCLIKeysRotation(t *testing.T) {
	n := startCLINode(t)
	id, _ := n.createKey(t, "--name", "svc")
	if r := n.run(t, "keys", "rotation", id); cliErrCode(r.err) != latchkey.ENotFound {
		t.Fatalf("show without a schedule: %v", r.err)
	}
	r := n.ok(t, "keys", "rotation", id, "--every", "30d", "--grace", "2h")
	if !strings.Contains(r.stdout, "every 30d") || !strings.Contains(r.stdout, "key-svc") {
		t.Fatalf("set:\n%s", r.stdout)
	}
	if m := n.okJSON(t, "keys", "rotation", id); m["interval"] != "30d" || m["grace_period"] != "2h" {
		t.Fatalf("show --json: %v", m)
	}
	if r := n.run(t, "keys", "rotation", id, "--every", "10m"); cliErrCode(r.err) != latchkey.EInvalid {
		t.Fatalf("--every 10m: %v", r.err)
	}
	n.ok(t, "keys", "rotation", id, "--off")
	if r := n.run(t, "keys", "rotation", id); cliErrCode(r.err) != latchkey.ENotFound {
		t.Fatalf("show after --off: %v", r.err)
	}
}
