// Package servicetest holds the setup the services' tests share: a key
// service's operator and the admins of two tenants, acme and globex, as
// the secrets, audit and webhook tests need them to act as.
package servicetest

import (
	"context"
	"net/netip"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// Admins bootstraps ks's operator tenant and creates the tenants acme and
// globex, and returns the operator's root key and each tenant's admin key
// as authenticated actors.
func Admins(t testing.TB, ks *keys.Service) (op, acme, globex *latchkey.Actor) {
	t.Helper()
	ctx := context.Background()
	root, _, _, err := ks.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if op, err = ks.Authenticate(ctx, root.Reveal(), netip.Addr{}, "tenants:admin"); err != nil {
		t.Fatal(err)
	}
	admin := func(id string) *latchkey.Actor {
		_, _, tok, err := ks.CreateTenant(ctx, op, id, "")
		if err != nil {
			t.Fatal(err)
		}
		a, err := ks.Authenticate(ctx, tok.Reveal(), netip.Addr{}, "keys:write")
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	return op, admin("acme"), admin("globex")
}
