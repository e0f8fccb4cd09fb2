package keys_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// brokenAudit is a store whose audit appends fail while fail is set, as a
// full disk or a broken audit table would.
type brokenAudit struct {
	keys.Store
	fail atomic.Bool
}

func (b *brokenAudit) Update(ctx context.Context, fn func(keys.Tx) error) error {
	return b.Store.Update(ctx, func(tx keys.Tx) error { return fn(&brokenAuditTx{Tx: tx, b: b}) })
}

type brokenAuditTx struct {
	keys.Tx
	b *brokenAudit
}

func (t *brokenAuditTx) AppendAudit(e *latchkey.AuditEvent) error {
	if t.b.fail.Load() {
		return latchkey.Errorf(latchkey.EUnavailable, "audit log unavailable")
	}
	return t.Tx.AppendAudit(e)
}

// TestMutationFailsWhenItsAuditEventCannotBeWritten: every mutation writes
// its event in its own transaction, so when the event cannot be written the
// mutation fails and leaves nothing changed (Vault's rule).
func TestMutationFailsWhenItsAuditEventCannotBeWritten(t *testing.T) {
	var store *brokenAudit
	f := newFixture(t, func(o *keys.Options) {
		store = &brokenAudit{Store: o.Store}
		o.Store = store
	})
	ctx := context.Background()
	k, key := f.create(t, keys.CreateParams{Settings: keys.Settings{Scopes: &[]string{"data:read"}}})
	suspended, _ := f.create(t, keys.CreateParams{})
	if _, err := f.svc.SuspendKey(ctx, f.admin, suspended.ID, time.Hour, ""); err != nil {
		t.Fatal(err)
	}
	f.verify(t, key, "data:read") // cached
	store.fail.Store(true)

	mutations := map[string]func() error{
		"Create": func() error {
			_, _, err := f.svc.CreateKey(ctx, f.admin, keys.CreateParams{Settings: keys.Settings{Name: ptr("x")}})
			return err
		},
		"Update": func() error {
			_, err := f.svc.UpdateKey(ctx, f.admin, k.ID, keys.Settings{Scopes: &[]string{"data:write"}})
			return err
		},
		"Rotate":  func() error { _, _, err := f.svc.RotateKey(ctx, f.admin, k.ID, keys.RotateParams{}); return err },
		"Suspend": func() error { _, err := f.svc.SuspendKey(ctx, f.admin, k.ID, time.Hour, ""); return err },
		"Resume":  func() error { _, err := f.svc.ResumeKey(ctx, f.admin, suspended.ID); return err },
		"CreateTenant": func() error {
			_, _, _, err := f.svc.CreateTenant(ctx, f.op, "initech", "")
			return err
		},
		"Revoke": func() error { _, err := f.svc.RevokeKey(ctx, f.admin, k.ID, ""); return err },
		"Derive": func() error {
			_, _, err := f.svc.DeriveKey(ctx, f.admin, k.ID, keys.CreateParams{Settings: keys.Settings{Name: ptr("c")}})
			return err
		},
		"Import": func() error {
			_, err := f.svc.ImportKeys(ctx, f.admin, strings.NewReader("an-imported-foreign-key-0001\n"), keys.ImportParams{Format: keys.ImportPlain})
			return err
		},
		// Secrets' writes: TestSecretWriteFailsWhenItsAuditEventCannotBeWritten
		// in package secrets; webhooks': TestWebhookChangeFailsWhenItsAuditEventCannotBeWritten
		// in package webhook.
	}
	for name, m := range mutations {
		t.Run(name, func(t *testing.T) {
			if err := m(); latchkey.ErrorCode(err) != latchkey.EUnavailable {
				t.Fatalf("mutation with a failing audit log: %v, want unavailable", err)
			}
		})
	}
	list, _, err := f.svc.ListKeys(ctx, f.admin, keys.ListParams{})
	if err != nil || len(list) != 3 { // the tenant's admin key, k and suspended
		t.Fatalf("keys after failed mutations: %d (%v), want 3", len(list), err)
	}
	if got, err := f.svc.GetKey(ctx, f.admin, suspended.ID); err != nil || got.State != latchkey.StateSuspended {
		t.Fatalf("suspended key after a failed resume: %+v, %v", got, err)
	}
	if ts, _, err := f.svc.ListTenants(ctx, f.op, "", 0); err != nil || len(ts) != 3 { // operator, acme, globex
		t.Fatalf("tenants after a failed create: %d (%v), want 3", len(ts), err)
	}
	got, err := f.svc.GetKey(ctx, f.admin, k.ID)
	if err != nil || got.State != latchkey.StateActive || got.RotatedTo != "" || len(got.Scopes) != 1 || got.Scopes[0] != "data:read" {
		t.Fatalf("key after failed mutations: %+v, %v", got, err)
	}
	if v := f.verify(t, key, "data:read"); v.Code != latchkey.CodeValid {
		t.Fatalf("verify after failed mutations: %s", v.Code)
	}
	store.fail.Store(false)
	evs, err := f.audit.ListAudit(ctx, f.admin, latchkey.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.TargetKeyID == k.ID && e.Action != "key.created" {
			t.Fatalf("an event of a failed mutation was kept: %+v", e)
		}
	}
}

func TestEveryMutationIsAudited(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	k, _ := f.create(t, keys.CreateParams{})
	steps := []func() error{
		func() error {
			_, err := f.svc.UpdateKey(ctx, f.admin, k.ID, keys.Settings{Owner: ptr("o")})
			return err
		},
		func() error { _, err := f.svc.SuspendKey(ctx, f.admin, k.ID, 0, "r"); return err },
		func() error { _, err := f.svc.ResumeKey(ctx, f.admin, k.ID); return err },
		func() error {
			_, _, err := f.svc.DeriveKey(ctx, f.admin, k.ID, keys.CreateParams{Settings: keys.Settings{Name: ptr("c")}})
			return err
		},
		func() error { _, _, err := f.svc.RotateKey(ctx, f.admin, k.ID, keys.RotateParams{}); return err },
		func() error { _, err := f.svc.RevokeKey(ctx, f.admin, k.ID, "done"); return err },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := f.audit.ListAudit(ctx, f.admin, latchkey.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for i, e := range evs {
		actions = append(actions, e.Action)
		// The first event is the tenant's admin key, created by the
		// operator; every later one is the tenant admin's.
		if i > 0 && e.ActorKeyID != f.admin.KeyID || e.Result != latchkey.ResultSuccess {
			t.Errorf("event %+v: want actor %s and success", e, f.admin.KeyID)
		}
	}
	want := "[key.created key.created key.updated key.suspended key.resumed key.derived key.rotated key.revoked]"
	if got := "[" + strings.Join(actions, " ") + "]"; got != want {
		t.Fatalf("actions = %s\nwant      %s", got, want)
	}
	v, err := f.audit.VerifyAudit(ctx, f.admin)
	if err != nil || !v.OK || v.Events != int64(len(evs)) {
		t.Fatalf("verify = %+v, %v", v, err)
	}
}
