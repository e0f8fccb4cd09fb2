package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
)

func TestE2EAuditTamperIsFoundAtTheEvent(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	id, _ := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	for _, step := range []struct{ path, body string }{
		{"/v1/keys/" + id + "/suspend", `{"duration": "1h", "reason": "check"}`},
		{"/v1/keys/" + id + "/resume", ``},
		{"/v1/keys/" + id + "/revoke", `{"reason": "done"}`},
	} {
		if r := ts.call(t, "POST", step.path, admin, step.body); r.Status != 200 {
			t.Fatalf("%s: %d", step.path, r.Status)
		}
	}
	list := ts.call(t, "GET", "/v1/audit", admin, nil)
	evs, _ := list.Body["events"].([]any)
	if len(evs) != 5 { // admin key created, key created, suspended, resumed, revoked
		t.Fatalf("audit events: %s", list.Raw)
	}
	third := evs[2].(map[string]any)
	if third["action"] != "key.suspended" || third["actor_key_id"] == "" || third["ip"] != "127.0.0.1" || third["user_agent"] == "" {
		t.Fatalf("event 3: %v", third)
	}
	if v := ts.call(t, "GET", "/v1/audit/verify", admin, nil); v.Body["ok"] != true || v.Body["events"] != float64(5) {
		t.Fatalf("verify of an intact log: %s", v.Raw)
	}

	// The CLI agrees, exports every event and tails the latest.
	cli := func(args ...string) (string, error) {
		var out, errOut syncBuffer
		getenv := func(k string) string { return map[string]string{"LATCHKEY_ADDR": ts.URL, "LATCHKEY_KEY": admin}[k] }
		err := run(context.Background(), args, getenv, nil, &out, &errOut)
		return out.String(), err
	}
	if _, err := cli("audit", "verify"); err != nil {
		t.Fatalf("audit verify of an intact log: %v", err)
	}
	exported, err := cli("audit", "export")
	if err != nil || strings.Count(exported, "\n") != 5 {
		t.Fatalf("audit export: %v\n%s", err, exported)
	}
	for _, line := range strings.Split(strings.TrimSpace(exported), "\n") {
		var ev latchkey.AuditEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Hash == "" {
			t.Fatalf("export line %q: %v", line, err)
		}
	}
	tail, err := cli("audit", "tail", "-n", "2")
	if err != nil || strings.Count(tail, "\n") != 2 || !strings.Contains(tail, "key.revoked") {
		t.Fatalf("audit tail -n 2: %v\n%s", err, tail)
	}

	db, err := sql.Open("sqlite", "file:"+ts.DB+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// Someone with the database file can drop the append-only triggers; the
	// chain is what catches them.
	exec(`DROP TRIGGER audit_events_no_update`)
	exec(`DROP TRIGGER audit_events_no_delete`)

	flip := `CASE WHEN substr(%[1]s, 1, 1) = 'x' THEN 'y' || substr(%[1]s, 2) ELSE 'x' || substr(%[1]s, 2) END`
	for _, col := range []string{"actor_key_id", "action", "target_key_id", "ip", "user_agent", "result", "details", "prev_hash", "hash", "at", "seq", "tenant_id"} {
		t.Run(col, func(t *testing.T) {
			var orig any
			if err := db.QueryRow(`SELECT ` + col + ` FROM audit_events WHERE tenant_id = 'acme' AND seq = 3`).Scan(&orig); err != nil {
				t.Fatal(err)
			}
			switch col {
			case "at":
				exec(`UPDATE audit_events SET at = at + 1 WHERE tenant_id = 'acme' AND seq = 3`)
			case "seq":
				exec(`UPDATE audit_events SET seq = 33 WHERE tenant_id = 'acme' AND seq = 3`)
			case "tenant_id":
				exec(`UPDATE audit_events SET tenant_id = 'operator', seq = 1003 WHERE tenant_id = 'acme' AND seq = 3`)
			default:
				exec(`UPDATE audit_events SET ` + col + ` = ` + fmt.Sprintf(flip, col) + ` WHERE tenant_id = 'acme' AND seq = 3`)
			}
			v := ts.call(t, "GET", "/v1/audit/verify", admin, nil)
			if v.Body["ok"] != false || v.Body["broken_seq"] != float64(3) {
				t.Errorf("after changing %s of event 3: %s", col, v.Raw)
			}
			switch col {
			case "seq":
				exec(`UPDATE audit_events SET seq = 3 WHERE tenant_id = 'acme' AND seq = 33`)
			case "tenant_id":
				exec(`UPDATE audit_events SET tenant_id = 'acme', seq = 3 WHERE tenant_id = 'operator' AND seq = 1003`)
			default:
				exec(`UPDATE audit_events SET `+col+` = ? WHERE tenant_id = 'acme' AND seq = 3`, orig)
			}
			if v := ts.call(t, "GET", "/v1/audit/verify", admin, nil); v.Body["ok"] != true {
				t.Fatalf("restoring %s did not heal the chain: %s", col, v.Raw)
			}
		})
	}
	// Removing the newest event leaves a chain that looks whole; the head
	// recorded apart from the events gives it away.
	exec(`DELETE FROM audit_events WHERE tenant_id = 'acme' AND seq = 5`)
	if v := ts.call(t, "GET", "/v1/audit/verify", admin, nil); v.Body["ok"] != false || v.Body["broken_seq"] != float64(5) {
		t.Fatalf("after deleting the last event: %s", v.Raw)
	}
	if _, err := cli("audit", "verify"); !errors.Is(err, errAlreadyReported) {
		t.Fatalf("audit verify of a broken log: %v, want a failure exit", err)
	}
	// Audit routes need audit:read.
	_, reader := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"keys:read"}})
	if r := ts.call(t, "GET", "/v1/audit", reader, nil); r.Status != 403 || r.errCode() != latchkey.EForbidden {
		t.Fatalf("audit without audit:read: %d", r.Status)
	}
}
