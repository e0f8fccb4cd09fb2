package audit_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

func FuzzParseAnchorFile(f *testing.F) {
	f.Add([]byte(`{"v":1,"heads":[{"tenant":"a","seq":3,"hash":"ab","counter":4,"at":"2026-01-02T03:04:05Z","mac":"cd"}]}`))
	f.Add([]byte(`{"v":1,"heads":[]}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"heads":[{"tenant":"a","counter":1},{"tenant":"a","counter":2}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cps, err := audit.ParseAnchorFile(b)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("error code %q", latchkey.ErrorCode(err))
			}
			if len(b) >= 8 && strings.Contains(latchkey.ErrorMessage(err), string(b)) {
				t.Fatal("the error quotes the input")
			}
			return
		}
		seen := map[string]bool{}
		for _, cp := range cps {
			if cp.Tenant == "" || seen[cp.Tenant] || cp.Counter <= 0 || cp.Seq < 0 {
				t.Fatalf("accepted a malformed entry %+v", cp)
			}
			seen[cp.Tenant] = true
		}
	})
}

// The anchor signs each append's head, copies it to its file (0600), and a
// new anchor on the same file starts from it. A rewrap signs the
// checkpoints again under the new master key's audit key and leaves a
// forged one forged.
func TestAuditAnchorFileAndRewrap(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	master, _ := keyring.GenerateMasterKey()
	kr, err := keyring.Open(ctx, latchkey.Narrow[keyring.Tx](db), master, keyring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "a.audit-anchor")
	a, err := audit.NewAnchor(kr.AuditKey(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.SetAuditAnchor(a)
	kr.OnRewrap(a.Rewrap)
	update := func(fn func(tx *sqlite.Tx) error) {
		t.Helper()
		if err := db.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	update(func(tx *sqlite.Tx) error {
		for _, id := range []string{"a", "b"} {
			if err := tx.CreateTenant(&latchkey.Tenant{ID: id, Name: id, CreatedAt: t0}); err != nil {
				return err
			}
			for range 3 {
				if err := tx.AppendAudit(&latchkey.AuditEvent{At: t0, Tenant: id, Action: "key.updated", Result: latchkey.ResultSuccess}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err := a.Sync(ctx, latchkey.Narrow[audit.Tx](db)); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("anchor file: %v %v", st, err)
	}
	b, err := audit.NewAnchor(kr.AuditKey(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkpoints := func() map[string]*latchkey.AuditCheckpoint {
		out := map[string]*latchkey.AuditCheckpoint{}
		if err := db.View(ctx, func(tx *sqlite.Tx) error {
			cps, err := tx.AuditCheckpoints(0)
			for _, cp := range cps {
				out[cp.Tenant] = cp
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	cps := checkpoints()
	if cps["a"] == nil || cps["a"].Seq != 3 || !a.Valid(cps["a"]) || !b.Valid(cps["b"]) || cps["b"].Counter <= cps["a"].Counter {
		t.Fatalf("checkpoints after the appends: %+v %+v", cps["a"], cps["b"])
	}
	if err := b.Check(ctx, latchkey.Narrow[audit.Tx](db), t0); err != nil || len(b.Findings()) != 0 {
		t.Fatalf("a new anchor on the same file finds %v, %v", b.Findings(), err)
	}

	// Forge b's checkpoint, then rewrap.
	forged := *cps["b"]
	forged.Seq, forged.Counter = 99, forged.Counter+1
	update(func(tx *sqlite.Tx) error { return tx.PutAuditCheckpoint(&forged) })
	newMaster, _ := keyring.GenerateMasterKey()
	if _, err := kr.Rewrap(ctx, newMaster, nil); err != nil {
		t.Fatal(err)
	}
	c, err := audit.NewAnchor(kr.AuditKey(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	cps = checkpoints()
	if !c.Valid(cps["a"]) || !a.Valid(cps["a"]) || c.Valid(cps["b"]) || a.Valid(cps["b"]) {
		t.Fatal("after the rewrap: a's checkpoint must verify under the new audit key, b's forged one must not")
	}
	old, _ := audit.NewAnchor(auditKeyOf(t, master), "", nil)
	if old.Valid(cps["a"]) {
		t.Fatal("the old master key's audit key still verifies a checkpoint signed after the rewrap")
	}
}

// auditKeyOf derives the audit key a keyring opened with master would use.
func auditKeyOf(t *testing.T, master []byte) []byte {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	kr, err := keyring.Open(context.Background(), latchkey.Narrow[keyring.Tx](db), master, keyring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return kr.AuditKey()
}

// A tenant the anchor holds a checkpoint of, but the database does not
// hold at all (its rows deleted, or another database put in its place),
// is a finding, raised in the operator's tenant; the server still starts.
func TestAuditAnchorFindsATenantGoneFromTheDatabase(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := make([]byte, 32)
	path := filepath.Join(dir, "a.audit-anchor")
	open := func(name string, tenants ...string) *sqlite.DB {
		t.Helper()
		db, err := sqlite.Open(ctx, filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		a, err := audit.NewAnchor(key, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		db.SetAuditAnchor(a)
		err = db.Update(ctx, func(tx *sqlite.Tx) error {
			for _, id := range tenants {
				if err := tx.CreateTenant(&latchkey.Tenant{ID: id, Name: id, CreatedAt: t0}); err != nil {
					return err
				}
				if err := tx.AppendAudit(&latchkey.AuditEvent{At: t0, Tenant: id, Action: "key.updated", Result: latchkey.ResultSuccess}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Sync(ctx, latchkey.Narrow[audit.Tx](db)); err != nil {
			t.Fatal(err)
		}
		return db
	}
	open("first.db", "acme")
	second := open("second.db", latchkey.OperatorTenant)
	b, err := audit.NewAnchor(key, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(ctx, latchkey.Narrow[audit.Tx](second), t0); err != nil {
		t.Fatalf("the check at start failed: %v", err)
	}
	if f := b.Findings()["acme"]; f.Kind != latchkey.AuditCheckpointMissing {
		t.Fatalf("findings %v, want acme's checkpoint missing", b.Findings())
	}
	var evs []*latchkey.Event
	if err := second.View(ctx, func(tx *sqlite.Tx) (err error) {
		evs, err = tx.Events(latchkey.OperatorTenant, latchkey.EventFilter{Type: latchkey.EventSecurityAnomaly})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || !strings.Contains(string(evs[0].Data), `"tenant acme is gone from the database`) {
		t.Fatalf("operator events: %d %v", len(evs), evs)
	}
}
