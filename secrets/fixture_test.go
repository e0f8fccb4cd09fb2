package secrets_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
	"github.com/latchkeyhq/latchkey/internal/servicetest"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/secrets"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// fixture is a secret service as the server wires it: on the key
// service's database, sealed by a keyring, beside the key service (which
// authenticates the actors) and the audit service (which lists the log,
// flushing the queued read events first).
type fixture struct {
	svc    *secrets.Service
	keys   *keys.Service
	audit  *audit.Service
	db     *sqlite.DB
	dbPath string
	sealer latchkey.Sealer
	clock  *fakeclock.Clock
	admin  *latchkey.Actor // tenant "acme" admin
	other  *latchkey.Actor // tenant "globex" admin
}

// setup is what a test may change before the services start: the secret
// service's options (Store comes wrapped around the database) and the
// audit anchor.
type setup struct {
	secrets.Options
	Anchor *audit.Anchor
}

func newFixture(t testing.TB, opts ...func(*setup)) *fixture {
	t.Helper()
	ctx := context.Background()
	dbPath := filepath.Join(t.TempDir(), "keys.db")
	db, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := fakeclock.New(t0)
	master, err := keyring.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.Open(ctx, latchkey.Narrow[keyring.Tx](db), master, keyring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o := setup{Options: secrets.Options{Store: latchkey.Narrow[secrets.Tx](db), Now: clock.Now, Sealer: kr}}
	for _, f := range opts {
		f(&o)
	}
	if o.Anchor != nil {
		db.SetAuditAnchor(o.Anchor)
	}
	svc := secrets.New(o.Options)
	ks := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db), Now: clock.Now})
	aud := audit.New(audit.Options{Store: latchkey.Narrow[audit.Tx](db), Now: clock.Now, Anchor: o.Anchor, BeforeRead: svc.FlushReadAudits})
	// Run before the database closes, in the server's order: the queued
	// read audits are written, then the anchor's file.
	t.Cleanup(func() {
		svc.Close(context.Background())
		aud.Close(context.Background())
	})
	f := &fixture{svc: svc, keys: ks, audit: aud, db: db, dbPath: dbPath, sealer: kr, clock: clock}
	_, f.admin, f.other = servicetest.Admins(t, ks)
	return f
}

// reader creates a key in acme with the scopes and resources and returns
// it as an authenticated actor.
func (f *fixture) reader(t *testing.T, scopes, resources []string) *latchkey.Actor {
	t.Helper()
	ctx := context.Background()
	name := "reader"
	_, tok, err := f.keys.CreateKey(ctx, f.admin, keys.CreateParams{Settings: keys.Settings{Name: &name, Scopes: &scopes, Resources: &resources}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := f.keys.Authenticate(ctx, tok.Reveal(), netip.Addr{}, "")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (f *fixture) put(t *testing.T, a *latchkey.Actor, name, value string) *latchkey.Secret {
	t.Helper()
	s, err := f.svc.PutSecret(context.Background(), a, name, secrets.SecretParams{Value: value})
	if err != nil {
		t.Fatalf("PutSecret(%s): %v", name, err)
	}
	if s.Value != "" {
		t.Fatal("PutSecret answered with the value")
	}
	return s
}

// brokenAudit is a store whose audit appends fail while fail is set, as a
// full disk or a lost database would make them.
type brokenAudit struct {
	latchkey.Store[secrets.Tx]
	fail atomic.Bool
}

func (b *brokenAudit) Update(ctx context.Context, fn func(secrets.Tx) error) error {
	return b.Store.Update(ctx, func(tx secrets.Tx) error { return fn(&brokenAuditTx{Tx: tx, b: b}) })
}

type brokenAuditTx struct {
	secrets.Tx
	b *brokenAudit
}

func (t *brokenAuditTx) AppendAudit(e *latchkey.AuditEvent) error {
	if t.b.fail.Load() {
		return latchkey.Errorf(latchkey.EUnavailable, "audit log unavailable")
	}
	return t.Tx.AppendAudit(e)
}
