package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
)

// tamperDB opens a running server's database as an attacker with the file
// would, and drops the triggers that keep the log append-only (the server's
// own rules; someone with the file is not bound by them).
func tamperDB(t *testing.T, path string) (*sql.DB, func(q string, args ...any)) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'trigger'`)
	if err != nil {
		t.Fatal(err)
	}
	var triggers []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		triggers = append(triggers, n)
	}
	rows.Close()
	for _, n := range triggers {
		exec(`DROP TRIGGER ` + n)
	}
	return db, exec
}

// auditHead reads a tenant's head row as an attacker would.
func auditHead(t *testing.T, db *sql.DB, tenant string) (int64, string) {
	t.Helper()
	var seq int64
	var hash string
	if err := db.QueryRow(`SELECT seq, hash FROM audit_heads WHERE tenant_id = ?`, tenant).Scan(&seq, &hash); err != nil {
		t.Fatal(err)
	}
	return seq, hash
}

// insertAudit stores a well-formed event, sealed after (seq, hash), as a
// forger who knows the (public) hashing rule would.
func insertAudit(t *testing.T, exec func(string, ...any), e *latchkey.AuditEvent, seq int64, hash string) {
	t.Helper()
	e.Seal(seq, hash)
	d, _ := json.Marshal(e.Details)
	if e.Details == nil {
		d = []byte("{}")
	}
	exec(`INSERT INTO audit_events (tenant_id, seq, at, actor_key_id, action, target_key_id, ip, user_agent, result, details, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, e.Tenant, e.Seq, e.At.UnixMicro(), e.ActorKeyID, e.Action, e.TargetKeyID,
		e.IP, e.UserAgent, e.Result, string(d), e.PrevHash, e.Hash)
}

// auditVerdict asks GET /v1/audit/verify.
func auditVerdict(t *testing.T, ts *testServer, key string) resp {
	t.Helper()
	v := ts.call(t, "GET", "/v1/audit/verify", key, nil)
	if v.Status != http.StatusOK {
		t.Fatalf("audit verify: %d %s", v.Status, v.Raw)
	}
	return v
}

// syncAnchor writes the audit anchor file now instead of within its
// interval, through the audit service the server hands tests.
func syncAnchor(t *testing.T, aud *audit.Service) {
	t.Helper()
	if err := aud.SyncAuditAnchor(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func withAudit(aud **audit.Service) serverOption {
	return func(_ *serverConfig, h *serverHooks) { h.Audit = func(s *audit.Service) { *aud = s } }
}

// A forged event appended after the head (a perfect one: right seq, right
// prev_hash, right hash) is named by audit verify; it does not stop a
// revocation, it is reported as a security event, and /readyz says so.
func TestE2EAuditRowPastTheHeadIsFound(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	id, key := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	other, otherKey := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	if v := auditVerdict(t, ts, admin); v.Body["ok"] != true {
		t.Fatalf("verify of an intact log: %s", v.Raw)
	}
	if r := ts.call(t, "GET", "/readyz", "", nil); r.Status != 200 || r.str("status") != "ready" {
		t.Fatalf("/readyz before: %d %s", r.Status, r.Raw)
	}

	db, exec := tamperDB(t, ts.DB)
	seq, hash := auditHead(t, db, "acme")
	insertAudit(t, exec, &latchkey.AuditEvent{At: ts.Clock.Now(), Tenant: "acme", Action: "key.updated", TargetKeyID: id,
		Result: latchkey.ResultSuccess, Details: map[string]string{"note": "looks legitimate"}}, seq, hash)

	v := auditVerdict(t, ts, admin)
	if v.Body["ok"] != false || v.Body["broken_seq"] != float64(seq+1) || v.str("finding") != latchkey.AuditPastHead {
		t.Fatalf("verify after a row was added past the head: %s", v.Raw)
	}
	var out, errOut syncBuffer
	getenv := func(k string) string { return map[string]string{"LATCHKEY_ADDR": ts.URL, "LATCHKEY_KEY": admin}[k] }
	if err := run(context.Background(), []string{"audit", "verify"}, getenv, nil, &out, &errOut); !errors.Is(err, errAlreadyReported) ||
		!strings.Contains(out.String(), latchkey.AuditPastHead) {
		t.Fatalf("latchkey audit verify: %v\n%s", err, out.String())
	}

	// Suspension and revocation still take effect, and their records
	// continue the log.
	if r := ts.call(t, "POST", "/v1/keys/"+other+"/suspend", admin, map[string]any{"reason": "check"}); r.Status != 200 {
		t.Fatalf("suspend on a tampered log: %d %s", r.Status, r.Raw)
	}
	if c := ts.verifyCode(t, map[string]any{"key": otherKey}); c != latchkey.CodeSuspended {
		t.Fatalf("suspended key verifies %s", c)
	}
	if r := ts.call(t, "POST", "/v1/keys/"+id+"/revoke", admin, map[string]any{"reason": "leaked"}); r.Status != 200 {
		t.Fatalf("revoke on a tampered log: %d %s", r.Status, r.Raw)
	}
	if c := ts.verifyCode(t, map[string]any{"key": key}); c != latchkey.CodeRevoked {
		t.Fatalf("revoked key verifies %s", c)
	}
	list := ts.call(t, "GET", "/v1/audit?action=key.revoked", admin, nil)
	if evs, _ := list.Body["events"].([]any); len(evs) != 1 {
		t.Fatalf("the revocation is not in the log: %s", list.Raw)
	}
	// The evidence outlives the append.
	if v := auditVerdict(t, ts, admin); v.Body["ok"] != false || v.Body["broken_seq"] != float64(seq+1) || v.str("finding") != latchkey.AuditPastHead {
		t.Fatalf("verify after the revocation: %s", v.Raw)
	}

	sec := ts.call(t, "GET", "/v1/security-events", admin, nil)
	found := false
	evs, _ := sec.Body["events"].([]any)
	for _, e := range evs {
		if m, _ := e.(map[string]any); m["kind"] == latchkey.AnomalyAuditTampered {
			found = true
		}
	}
	if !found {
		t.Fatalf("no %s security event: %s", latchkey.AnomalyAuditTampered, sec.Raw)
	}
	r := ts.call(t, "GET", "/readyz", "", nil)
	if r.Status != 200 || r.str("status") != "degraded" || !strings.Contains(string(r.Raw), latchkey.AnomalyAuditTampered) {
		t.Fatalf("/readyz after tampering: %d %s", r.Status, r.Raw)
	}

	// After a restart the signed checkpoint still holds the finding.
	ts.Stop()
	ts = startServer(t, withDB(ts.DB))
	if r := ts.call(t, "GET", "/readyz", "", nil); r.Status != 200 || r.str("status") != "degraded" {
		t.Fatalf("/readyz after a restart: %d %s", r.Status, r.Raw)
	}
	if v := auditVerdict(t, ts, admin); v.Body["ok"] != false || v.Body["broken_seq"] != float64(seq+1) || v.str("finding") != latchkey.AuditPastHead {
		t.Fatalf("verify after a restart: %s", v.Raw)
	}
}

// Deleting the newest events and moving audit_heads back to match leaves a
// chain that looks whole; the checkpoint gives it away.
func TestE2EAuditTruncatedTailIsFound(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	id, _ := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	for _, p := range []string{"/suspend", "/resume", "/revoke"} {
		body := map[string]any{"reason": "x"}
		if p == "/resume" {
			body = map[string]any{} // resume takes no fields
		}
		if r := ts.call(t, "POST", "/v1/keys/"+id+p, admin, body); r.Status != 200 {
			t.Fatalf("%s: %d %s", p, r.Status, r.Raw)
		}
	}
	db, exec := tamperDB(t, ts.DB)
	seq, _ := auditHead(t, db, "acme")
	var keep string
	if err := db.QueryRow(`SELECT hash FROM audit_events WHERE tenant_id = 'acme' AND seq = ?`, seq-2).Scan(&keep); err != nil {
		t.Fatal(err)
	}
	exec(`DELETE FROM audit_events WHERE tenant_id = 'acme' AND seq > ?`, seq-2)
	exec(`UPDATE audit_heads SET seq = ?, hash = ? WHERE tenant_id = 'acme'`, seq-2, keep)

	v := auditVerdict(t, ts, admin)
	if v.Body["ok"] != false || v.Body["broken_seq"] != float64(seq-1) || v.str("finding") != latchkey.AuditTruncated {
		t.Fatalf("verify after the tail was cut and the head moved back: %s", v.Raw)
	}
	// A change after the cut is stored, and the finding outlives it.
	ts.mustCreate(t, admin, map[string]any{})
	if v := auditVerdict(t, ts, admin); v.Body["ok"] != false || v.Body["broken_seq"] != float64(seq-1) || v.str("finding") != latchkey.AuditTruncated {
		t.Fatalf("verify after a change on the cut log: %s", v.Raw)
	}
}

// A rewind to an older, genuinely signed checkpoint (the log, its head and
// its checkpoint put back as they were) is caught by the anchor kept
// outside the database.
func TestE2EAuditRewindToAnOlderCheckpointIsFound(t *testing.T) {
	var aud *audit.Service
	ts := startServer(t, withAudit(&aud))
	admin := ts.mustTenant(t, "acme")
	id, _ := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})

	db, err := sql.Open("sqlite", "file:"+ts.DB+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	type row struct {
		seq, counter, tseq, at int64
		hash, kind, mac        string
	}
	var old row
	if err := db.QueryRow(`SELECT seq, hash, counter, tamper_kind, tamper_seq, at, mac FROM audit_checkpoints WHERE tenant_id = 'acme'`).
		Scan(&old.seq, &old.hash, &old.counter, &old.kind, &old.tseq, &old.at, &old.mac); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/suspend", "/resume"} {
		body := map[string]any{"reason": "x"}
		if p == "/resume" {
			body = map[string]any{} // resume takes no fields
		}
		if r := ts.call(t, "POST", "/v1/keys/"+id+p, admin, body); r.Status != 200 {
			t.Fatalf("%s: %d %s", p, r.Status, r.Raw)
		}
	}
	syncAnchor(t, aud)

	_, exec := tamperDB(t, ts.DB)
	exec(`DELETE FROM audit_events WHERE tenant_id = 'acme' AND seq > ?`, old.seq)
	exec(`UPDATE audit_heads SET seq = ?, hash = ? WHERE tenant_id = 'acme'`, old.seq, old.hash)
	exec(`UPDATE audit_checkpoints SET seq = ?, hash = ?, counter = ?, tamper_kind = ?, tamper_seq = ?, at = ?, mac = ? WHERE tenant_id = 'acme'`,
		old.seq, old.hash, old.counter, old.kind, old.tseq, old.at, old.mac)

	v := auditVerdict(t, ts, admin)
	if v.Body["ok"] != false || v.str("finding") != latchkey.AuditRewound {
		t.Fatalf("verify after a rewind to an older checkpoint: %s", v.Raw)
	}
	// The anchor file outlives the process: a restart on the rewound
	// database finds it too.
	ts.Stop()
	ts = startServer(t, withDB(ts.DB), withAudit(&aud))
	if r := ts.call(t, "GET", "/readyz", "", nil); r.str("status") != "degraded" {
		t.Fatalf("/readyz after a restart on a rewound database: %d %s", r.Status, r.Raw)
	}
	if v := auditVerdict(t, ts, admin); v.Body["ok"] != false || v.str("finding") != latchkey.AuditRewound {
		t.Fatalf("verify after a restart on a rewound database: %s", v.Raw)
	}
	// A write after the rewind still succeeds and keeps the finding.
	if r := ts.call(t, "POST", "/v1/keys/"+id+"/revoke", admin, map[string]any{"reason": "x"}); r.Status != 200 {
		t.Fatalf("revoke after a rewind: %d %s", r.Status, r.Raw)
	}
	if v := auditVerdict(t, ts, admin); v.Body["ok"] != false || v.str("finding") != latchkey.AuditRewound {
		t.Fatalf("verify after a write on the rewound log: %s", v.Raw)
	}
}

// Rewriting an event and recomputing every hash after it (and the head)
// leaves a chain that checks out link by link; the signed checkpoint does
// not match it. Forging the checkpoint row too fails its MAC.
func TestE2EAuditForgedHeadIsFound(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	id, _ := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	for _, p := range []string{"/suspend", "/resume"} {
		body := map[string]any{"reason": "x"}
		if p == "/resume" {
			body = map[string]any{} // resume takes no fields
		}
		if r := ts.call(t, "POST", "/v1/keys/"+id+p, admin, body); r.Status != 200 {
			t.Fatalf("%s: %d %s", p, r.Status, r.Raw)
		}
	}
	list := ts.call(t, "GET", "/v1/audit", admin, nil)
	raw, _ := json.Marshal(list.Body["events"])
	var evs []*latchkey.AuditEvent
	if err := json.Unmarshal(raw, &evs); err != nil || len(evs) < 3 {
		t.Fatalf("events: %v %s", err, list.Raw)
	}
	_, exec := tamperDB(t, ts.DB)
	// Event 2 now says someone else did it; every later hash is redone.
	evs[1].ActorKeyID = "key_someone_else"
	prev := evs[0].Hash
	for _, e := range evs[1:] {
		e.Seal(e.Seq-1, prev)
		exec(`UPDATE audit_events SET actor_key_id = ?, prev_hash = ?, hash = ? WHERE tenant_id = 'acme' AND seq = ?`, e.ActorKeyID, e.PrevHash, e.Hash, e.Seq)
		prev = e.Hash
	}
	last := evs[len(evs)-1]
	exec(`UPDATE audit_heads SET hash = ? WHERE tenant_id = 'acme'`, last.Hash)

	v := auditVerdict(t, ts, admin)
	if v.Body["ok"] != false || v.Body["broken_seq"] != float64(last.Seq) || v.str("finding") != latchkey.AuditHeadForged {
		t.Fatalf("verify after the chain was recomputed: %s", v.Raw)
	}
	exec(`UPDATE audit_checkpoints SET hash = ?, mac = ? WHERE tenant_id = 'acme'`, last.Hash, strings.Repeat("ab", 32))
	if v := auditVerdict(t, ts, admin); v.Body["ok"] != false || v.str("finding") != latchkey.AuditCheckpointForged {
		t.Fatalf("verify after the checkpoint was forged too: %s", v.Raw)
	}
	// A change after the forgery is stored under a genuine checkpoint that
	// keeps the finding.
	if r := ts.call(t, "POST", "/v1/keys/"+id+"/revoke", admin, map[string]any{"reason": "x"}); r.Status != 200 {
		t.Fatalf("revoke after a forged checkpoint: %d %s", r.Status, r.Raw)
	}
	if v := auditVerdict(t, ts, admin); v.Body["ok"] != false || v.str("finding") != latchkey.AuditCheckpointForged || v.Body["signed"] != true {
		t.Fatalf("verify after a change on the forged log: %s", v.Raw)
	}
}

// The audit_tampered finding reaches the tenant's webhooks as a
// security.anomaly event.
func TestE2EAuditTamperingIsDeliveredToWebhooks(t *testing.T) {
	rcv := newHookReceiver(t, 0)
	ts := startServer(t, withWebhookPoll(20*time.Millisecond), withLocalReceivers())
	admin := ts.mustTenant(t, "acme")
	r := ts.call(t, "POST", "/v1/webhooks", admin, map[string]any{"url": rcv.URL, "events": []string{"security.anomaly"}})
	if r.Status != http.StatusCreated {
		t.Fatalf("create webhook: %d %s", r.Status, r.Raw)
	}
	rcv.setSecret(r.str("secret"))
	id, _ := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	db, exec := tamperDB(t, ts.DB)
	seq, hash := auditHead(t, db, "acme")
	insertAudit(t, exec, &latchkey.AuditEvent{At: ts.Clock.Now(), Tenant: "acme", Action: "key.updated", TargetKeyID: id, Result: latchkey.ResultSuccess}, seq, hash)
	if r := ts.call(t, "POST", "/v1/keys/"+id+"/revoke", admin, map[string]any{"reason": "leaked"}); r.Status != 200 {
		t.Fatalf("revoke on a tampered log: %d %s", r.Status, r.Raw)
	}
	eventually(t, 10*time.Second, "an audit_tampered delivery", func() bool {
		for _, a := range rcv.seen() {
			var p struct {
				Type string `json:"type"`
				Data struct {
					Kind    string            `json:"kind"`
					Details map[string]string `json:"details"`
				} `json:"data"`
			}
			if a.signedOK && json.Unmarshal(a.body, &p) == nil && p.Type == latchkey.EventSecurityAnomaly &&
				p.Data.Kind == latchkey.AnomalyAuditTampered && p.Data.Details["finding"] == latchkey.AuditPastHead {
				return true
			}
		}
		return false
	})
}
