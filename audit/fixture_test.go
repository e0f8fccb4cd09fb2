package audit_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
	"github.com/latchkeyhq/latchkey/internal/servicetest"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// fixture is an audit service as the server wires it, on the database of
// a key service that makes the keys and changes it reports on.
type fixture struct {
	svc   *audit.Service
	keys  *keys.Service
	db    *sqlite.DB
	clock *fakeclock.Clock
	admin *latchkey.Actor // tenant "acme" admin
	other *latchkey.Actor // tenant "globex" admin
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := fakeclock.New(t0)
	svc := audit.New(audit.Options{Store: latchkey.Narrow[audit.Tx](db), Now: clock.Now})
	t.Cleanup(func() { svc.Close(context.Background()) })
	ks := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db), Now: clock.Now})
	f := &fixture{svc: svc, keys: ks, db: db, clock: clock}
	_, f.admin, f.other = servicetest.Admins(t, ks)
	return f
}

// create makes a key in acme (named "test key" unless p names it).
func (f *fixture) create(t testing.TB, p keys.CreateParams) (*latchkey.Key, string) {
	t.Helper()
	if p.Name == nil {
		p.Name = ptr("test key")
	}
	k, tok, err := f.keys.CreateKey(context.Background(), f.admin, p)
	if err != nil {
		t.Fatal(err)
	}
	return k, tok.Reveal()
}
