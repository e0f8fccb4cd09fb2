package keys_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// ActorOf rebuilds a dashboard session's actor from the stored key on
// every request: only a key that is active now, in its tenant, from an
// address its allowlist admits, gives one.
func TestActorOfNeedsAnActiveKeyNow(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := fakeclock.New(t0)
	s := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db), Now: clock.Now})
	root, _, _, err := s.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	op, err := s.Authenticate(ctx, root.Reveal(), netip.Addr{}, "")
	if err != nil {
		t.Fatal(err)
	}
	create := func(name string, set func(*keys.CreateParams)) *latchkey.Key {
		p := keys.CreateParams{}
		p.Name = &name
		sc := []string{"keys:read"}
		p.Scopes = &sc
		if set != nil {
			set(&p)
		}
		k, _, err := s.CreateKey(ctx, op, p)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	active := create("active", func(p *keys.CreateParams) { rs := []string{"agent:x"}; p.Resources = &rs })
	revoked := create("revoked", nil)
	if _, err := s.RevokeKey(ctx, op, revoked.ID, ""); err != nil {
		t.Fatal(err)
	}
	suspended := create("suspended", nil)
	if _, err := s.SuspendKey(ctx, op, suspended.ID, time.Hour, ""); err != nil {
		t.Fatal(err)
	}
	expiring := create("expiring", func(p *keys.CreateParams) { d := time.Minute; p.ExpiresIn = &d })
	fenced := create("fenced", func(p *keys.CreateParams) { ips := []string{"10.0.0.0/8"}; p.IPAllow = &ips })
	clock.Advance(2 * time.Minute)

	ip := netip.MustParseAddr("192.0.2.7")
	a, err := s.ActorOf(ctx, op.Tenant, active.ID, ip)
	if err != nil {
		t.Fatal(err)
	}
	if a.KeyID != active.ID || a.Tenant != op.Tenant || !slices.Equal(a.Scopes, []string{"keys:read"}) ||
		!slices.Equal(a.Resources, []string{"agent:x"}) || a.IP != ip {
		t.Errorf("ActorOf = %+v, want the key's id, tenant, scopes, resources and the address", a)
	}
	tests := []struct {
		name, tenant, id string
		ip               netip.Addr
		want             string
	}{
		{"Revoked", op.Tenant, revoked.ID, ip, latchkey.EUnauthenticated},
		{"Suspended", op.Tenant, suspended.ID, ip, latchkey.EUnauthenticated},
		{"Expired", op.Tenant, expiring.ID, ip, latchkey.EUnauthenticated},
		{"OtherTenant", "globex", active.ID, ip, latchkey.EUnauthenticated},
		{"Missing", op.Tenant, "key_00000000000000000000000000", ip, latchkey.EUnauthenticated},
		{"NotAnID", op.Tenant, "../x", ip, latchkey.EUnauthenticated},
		{"OutsideAllowlist", op.Tenant, fenced.ID, ip, latchkey.EForbidden},
		{"InsideAllowlist", op.Tenant, fenced.ID, netip.MustParseAddr("10.1.2.3"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.ActorOf(ctx, tt.tenant, tt.id, tt.ip)
			if got := latchkey.ErrorCode(err); got != tt.want {
				t.Fatalf("ActorOf: %v (code %q), want code %q", err, got, tt.want)
			}
		})
	}
}

// A session's actor has the key's effective rights: a key that takes its
// scopes from a policy signs in with them, and loses them with the policy.
func TestActorOfAppliesTheKeysPolicy(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.svc.CreatePolicy(ctx, f.admin, "viewers", keys.PolicyParams{Scopes: &[]string{"keys:read"}}); err != nil {
		t.Fatal(err)
	}
	k, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Policy: ptr("viewers")}})
	a, err := f.svc.ActorOf(ctx, "acme", k.ID, netip.Addr{})
	if err != nil || !latchkey.ScopesAllow(a.Scopes, "keys:read") {
		t.Fatalf("actor %+v, %v: want the policy's keys:read", a, err)
	}
	if _, err := f.svc.UpdatePolicy(ctx, f.admin, "viewers", keys.PolicyParams{ExpiresAfter: ptr(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	_, err = f.svc.ActorOf(ctx, "acme", k.ID, netip.Addr{})
	wantCode(t, err, latchkey.EUnauthenticated)
}
