package keys_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

type fixture struct {
	svc   *keys.Service
	audit *audit.Service // the audit log's reader, on the same database
	clock *fakeclock.Clock
	admin *latchkey.Actor // tenant "acme" admin
	other *latchkey.Actor // tenant "globex" admin
	op    *latchkey.Actor // the operator's root key
}

func newFixture(t testing.TB, opts ...func(*keys.Options)) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keys.db"))
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
	// A keyring seals the successors of scheduled rotations.
	o := keys.Options{Store: latchkey.Narrow[keys.Tx](db), Now: clock.Now, Sealer: kr}
	for _, f := range opts {
		f(&o)
	}
	svc := keys.New(o)
	// The audit service reads what the key service's changes appended.
	aud := audit.New(audit.Options{Store: latchkey.Narrow[audit.Tx](db), Now: clock.Now})
	t.Cleanup(func() { aud.Close(context.Background()) })
	root, _, _, err := svc.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	op, err := svc.Authenticate(ctx, root.Reveal(), netip.Addr{}, "tenants:admin")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{svc: svc, audit: aud, clock: clock, op: op}
	for _, id := range []string{"acme", "globex"} {
		_, _, tok, err := svc.CreateTenant(ctx, op, id, "")
		if err != nil {
			t.Fatal(err)
		}
		a, err := svc.Authenticate(ctx, tok.Reveal(), netip.Addr{}, "keys:write")
		if err != nil {
			t.Fatal(err)
		}
		if id == "acme" {
			f.admin = a
		} else {
			f.other = a
		}
	}
	return f
}

func ptr[T any](v T) *T { return &v }

// create issues a key in acme with the given scopes.
func (f *fixture) create(t testing.TB, p keys.CreateParams) (*latchkey.Key, string) {
	t.Helper()
	if p.Name == nil {
		p.Name = ptr("test key")
	}
	k, tok, err := f.svc.CreateKey(context.Background(), f.admin, p)
	if err != nil {
		t.Fatal(err)
	}
	return k, tok.Reveal()
}

func (f *fixture) verify(t testing.TB, key string, scopes ...string) keys.Verdict {
	t.Helper()
	v, err := f.svc.Verify(context.Background(), keys.VerifyRequest{Key: key, Scopes: scopes, IP: netip.MustParseAddr("10.1.2.3")})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	if got := latchkey.ErrorCode(err); got != code {
		t.Fatalf("error = %v (code %q), want code %q", err, got, code)
	}
}

func TestVerifyCodes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, good := f.create(t, keys.CreateParams{Settings: keys.Settings{Scopes: &[]string{"data:read", "agent:*"}, Resources: &[]string{"agent:report-*"}}})
	_, expiring := f.create(t, keys.CreateParams{Settings: keys.Settings{ExpiresIn: ptr(time.Hour)}})
	revokedK, revoked := f.create(t, keys.CreateParams{})
	suspendedK, suspended := f.create(t, keys.CreateParams{})
	_, fenced := f.create(t, keys.CreateParams{Settings: keys.Settings{IPAllow: &[]string{"192.0.2.0/24"}}})
	if _, err := f.svc.RevokeKey(ctx, f.admin, revokedK.ID, "leaked"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SuspendKey(ctx, f.admin, suspendedK.ID, 0, "audit"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	unknown, _ := latchkey.GenerateToken("", nil)
	// Change the last character of the checksum; picking a fixed letter
	// would leave the key intact whenever it already ends in that letter.
	last := byte('x')
	if good[len(good)-1] == last {
		last = 'y'
	}
	corrupted := good[:len(good)-1] + string(last)

	tests := []struct {
		name     string
		req      keys.VerifyRequest
		wantCode string
	}{
		{"ValidKey", keys.VerifyRequest{Key: good, Scopes: []string{"data:read"}}, latchkey.CodeValid},
		{"ValidWithWildcardScopeAndResourceGlob", keys.VerifyRequest{Key: good, Scopes: []string{"agent:activate"}, Resource: "agent:report-generator"}, latchkey.CodeValid},
		{"MalformedKeyRejected", keys.VerifyRequest{Key: corrupted}, latchkey.CodeMalformed},
		{"UnknownKeyNotFound", keys.VerifyRequest{Key: unknown.Reveal()}, latchkey.CodeNotFound},
		{"ExpiredKeyRejected", keys.VerifyRequest{Key: expiring}, latchkey.CodeExpired},
		{"RevokedKeyRejected", keys.VerifyRequest{Key: revoked}, latchkey.CodeRevoked},
		{"SuspendedKeyRejected", keys.VerifyRequest{Key: suspended}, latchkey.CodeSuspended},
		{"WrongNetworkRejected", keys.VerifyRequest{Key: fenced, IP: netip.MustParseAddr("198.51.100.1")}, latchkey.CodeIPNotAllowed},
		{"UnknownAddressRejectedWhenFenced", keys.VerifyRequest{Key: fenced}, latchkey.CodeIPNotAllowed},
		{"AllowedNetworkPasses", keys.VerifyRequest{Key: fenced, IP: netip.MustParseAddr("192.0.2.9")}, latchkey.CodeValid},
		{"MissingScopeRejected", keys.VerifyRequest{Key: good, Scopes: []string{"data:read", "data:write"}}, latchkey.CodeInsufficientScope},
		{"OtherResourceRejected", keys.VerifyRequest{Key: good, Resource: "workflow:nightly"}, latchkey.CodeResourceNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := f.svc.Verify(ctx, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if v.Code != tt.wantCode {
				t.Fatalf("code = %s, want %s", v.Code, tt.wantCode)
			}
		})
	}
}

func TestRotationGracePeriod(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	old, oldKey := f.create(t, keys.CreateParams{Settings: keys.Settings{Scopes: &[]string{"data:read"}, ExpiresIn: ptr(90 * 24 * time.Hour)}})
	f.clock.Advance(24 * time.Hour)
	succ, tok, err := f.svc.RotateKey(ctx, f.admin, old.ID, keys.RotateParams{Grace: ptr(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if succ.RotatedFrom != old.ID || !succ.ExpiresAt.Equal(f.clock.Now().Add(90*24*time.Hour)) {
		t.Fatalf("successor %+v: want rotated_from and the old key's 90-day lifetime from now", succ)
	}
	for _, k := range []string{oldKey, tok.Reveal()} {
		if v := f.verify(t, k, "data:read"); v.Code != latchkey.CodeValid {
			t.Fatalf("during grace: %s", v.Code)
		}
	}
	f.clock.Advance(time.Hour)
	if v := f.verify(t, oldKey); v.Code != latchkey.CodeRevoked {
		t.Fatalf("old key after grace: %s, want REVOKED", v.Code)
	}
	if v := f.verify(t, tok.Reveal(), "data:read"); v.Code != latchkey.CodeValid {
		t.Fatalf("new key after grace: %s", v.Code)
	}
	_, _, err = f.svc.RotateKey(ctx, f.admin, old.ID, keys.RotateParams{})
	wantCode(t, err, latchkey.EConflict)
}

func TestRotationWithoutGraceStopsOldKeyAtOnce(t *testing.T) {
	f := newFixture(t)
	old, oldKey := f.create(t, keys.CreateParams{})
	if v := f.verify(t, oldKey); v.Code != latchkey.CodeValid { // now cached
		t.Fatal(v.Code)
	}
	if _, _, err := f.svc.RotateKey(context.Background(), f.admin, old.ID, keys.RotateParams{Grace: ptr(time.Duration(0))}); err != nil {
		t.Fatal(err)
	}
	if v := f.verify(t, oldKey); v.Code != latchkey.CodeRevoked {
		t.Fatalf("old key = %s, want REVOKED", v.Code)
	}
}

func TestSuspensionForADurationEndsByItself(t *testing.T) {
	f := newFixture(t)
	k, key := f.create(t, keys.CreateParams{})
	got, err := f.svc.SuspendKey(context.Background(), f.admin, k.ID, 2*time.Hour, "maintenance")
	if err != nil {
		t.Fatal(err)
	}
	if !got.SuspendedUntil.Equal(t0.Add(2 * time.Hour)) {
		t.Fatalf("suspended_until = %v", got.SuspendedUntil)
	}
	if v := f.verify(t, key); v.Code != latchkey.CodeSuspended {
		t.Fatal(v.Code)
	}
	f.clock.Advance(2*time.Hour - time.Microsecond)
	if v := f.verify(t, key); v.Code != latchkey.CodeSuspended {
		t.Fatalf("just before the end: %s", v.Code)
	}
	f.clock.Advance(time.Microsecond)
	if v := f.verify(t, key); v.Code != latchkey.CodeValid {
		t.Fatalf("after the suspension: %s", v.Code)
	}
	list, _, err := f.svc.ListKeys(context.Background(), f.admin, keys.ListParams{State: latchkey.StateActive, Name: "test key"})
	if err != nil || len(list) != 1 || list[0].ID != k.ID {
		t.Fatalf("state=active list = %v, %v", list, err)
	}
}

func TestResumeRevokedKeyIsConflict(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	k, _ := f.create(t, keys.CreateParams{})
	if _, err := f.svc.RevokeKey(ctx, f.admin, k.ID, ""); err != nil {
		t.Fatal(err)
	}
	_, err := f.svc.ResumeKey(ctx, f.admin, k.ID)
	wantCode(t, err, latchkey.EConflict)
	_, err = f.svc.UpdateKey(ctx, f.admin, k.ID, keys.Settings{Name: ptr("x")})
	wantCode(t, err, latchkey.EConflict)
	_, err = f.svc.SuspendKey(ctx, f.admin, k.ID, 0, "")
	wantCode(t, err, latchkey.EConflict)
}

func TestEveryChangeIsVisibleToTheNextVerify(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	k, key := f.create(t, keys.CreateParams{Settings: keys.Settings{Scopes: &[]string{"data:read"}}})
	steps := []struct {
		name   string
		change func() error
		want   string
	}{
		{"NarrowScopes", func() error {
			_, err := f.svc.UpdateKey(ctx, f.admin, k.ID, keys.Settings{Scopes: &[]string{"data:write"}})
			return err
		}, latchkey.CodeInsufficientScope},
		{"WidenScopes", func() error {
			_, err := f.svc.UpdateKey(ctx, f.admin, k.ID, keys.Settings{Scopes: &[]string{"data:*"}})
			return err
		}, latchkey.CodeValid},
		{"FenceNetwork", func() error {
			_, err := f.svc.UpdateKey(ctx, f.admin, k.ID, keys.Settings{IPAllow: &[]string{"192.0.2.0/24"}})
			return err
		}, latchkey.CodeIPNotAllowed},
		{"UnfenceNetwork", func() error {
			_, err := f.svc.UpdateKey(ctx, f.admin, k.ID, keys.Settings{IPAllow: &[]string{}})
			return err
		}, latchkey.CodeValid},
		{"Suspend", func() error { _, err := f.svc.SuspendKey(ctx, f.admin, k.ID, 0, ""); return err }, latchkey.CodeSuspended},
		{"Resume", func() error { _, err := f.svc.ResumeKey(ctx, f.admin, k.ID); return err }, latchkey.CodeValid},
		{"Revoke", func() error { _, err := f.svc.RevokeKey(ctx, f.admin, k.ID, ""); return err }, latchkey.CodeRevoked},
	}
	for _, st := range steps {
		f.verify(t, key, "data:read") // make sure the key is cached
		if err := st.change(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if v := f.verify(t, key, "data:read"); v.Code != st.want {
			t.Fatalf("%s: verify = %s, want %s", st.name, v.Code, st.want)
		}
	}
}

// TestRevokeRacesWithVerify checks the cache's generation guard: while other
// goroutines keep loading the key into the cache (a tiny TTL makes every
// verify reload it), once a revoke has returned no verify may succeed.
func TestRevokeRacesWithVerify(t *testing.T) {
	f := newFixture(t, func(o *keys.Options) { o.CacheTTL = time.Nanosecond })
	ctx := context.Background()
	for round := range 20 {
		k, key := f.create(t, keys.CreateParams{})
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := f.svc.Verify(ctx, keys.VerifyRequest{Key: key}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		if _, err := f.svc.RevokeKey(ctx, f.admin, k.ID, ""); err != nil {
			t.Fatal(err)
		}
		for range 50 {
			if v := f.verify(t, key); v.Code != latchkey.CodeRevoked {
				t.Errorf("round %d: verify after revoke returned %s", round, v.Code)
			}
		}
		close(stop)
		wg.Wait()
	}
}

func TestNegativeCacheForgetsANewKey(t *testing.T) {
	// A deterministic key source lets the test know the next key before it
	// is issued and verify it while it is still unknown.
	seed := bytes.Repeat([]byte{7}, 32)
	src := &switchReader{fixed: seed}
	f := newFixture(t, func(o *keys.Options) { o.Rand = src })
	next, err := latchkey.GenerateToken("", &repeatReader{b: seed})
	if err != nil {
		t.Fatal(err)
	}
	if v := f.verify(t, next.Reveal()); v.Code != latchkey.CodeNotFound {
		t.Fatalf("before issue: %s", v.Code)
	}
	reads := f.svc.StoreReads()
	if v := f.verify(t, next.Reveal()); v.Code != latchkey.CodeNotFound || f.svc.StoreReads() != reads {
		t.Fatalf("unknown key should be answered from the negative cache (reads %d → %d)", reads, f.svc.StoreReads())
	}
	src.on.Store(true)
	_, key := f.create(t, keys.CreateParams{})
	if key != next.Reveal() {
		t.Fatal("deterministic source produced another key")
	}
	if v := f.verify(t, key); v.Code != latchkey.CodeValid {
		t.Fatalf("a new key must verify at once, got %s", v.Code)
	}
}

// switchReader reads crypto/rand until switched on, then repeats fixed.
type switchReader struct {
	on    atomic.Bool
	fixed []byte
}

func (r *switchReader) Read(p []byte) (int, error) {
	if !r.on.Load() {
		return rand.Read(p)
	}
	return (&repeatReader{b: r.fixed}).Read(p)
}

type repeatReader struct{ b []byte }

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], r.b)
	}
	return n, nil
}

func TestTenantIsolation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	k, _ := f.create(t, keys.CreateParams{})
	ops := map[string]func() error{
		"Get":     func() error { _, err := f.svc.GetKey(ctx, f.other, k.ID); return err },
		"Update":  func() error { _, err := f.svc.UpdateKey(ctx, f.other, k.ID, keys.Settings{Name: ptr("x")}); return err },
		"Rotate":  func() error { _, _, err := f.svc.RotateKey(ctx, f.other, k.ID, keys.RotateParams{}); return err },
		"Suspend": func() error { _, err := f.svc.SuspendKey(ctx, f.other, k.ID, 0, ""); return err },
		"Resume":  func() error { _, err := f.svc.ResumeKey(ctx, f.other, k.ID); return err },
		"Revoke":  func() error { _, err := f.svc.RevokeKey(ctx, f.other, k.ID, ""); return err },
		"Derive": func() error {
			_, _, err := f.svc.DeriveKey(ctx, f.other, k.ID, keys.CreateParams{})
			return err
		},
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) { wantCode(t, op(), latchkey.ENotFound) })
	}
	list, _, err := f.svc.ListKeys(ctx, f.other, keys.ListParams{})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range list {
		if x.Tenant != "globex" {
			t.Fatalf("globex sees %s of %s", x.ID, x.Tenant)
		}
	}
}

func TestDerivedKeysStayWithinTheirParentAndCascade(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	parent, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{
		Scopes: &[]string{"agent:*", "data:read"}, Resources: &[]string{"agent:nlp-*"}, ExpiresIn: ptr(24 * time.Hour),
	}})
	child, childTok, err := f.svc.DeriveKey(ctx, f.admin, parent.ID, keys.CreateParams{Settings: keys.Settings{
		Scopes: &[]string{"agent:activate"}, Resources: &[]string{"agent:nlp-summary"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !child.ExpiresAt.Equal(parent.ExpiresAt) || child.ParentID != parent.ID {
		t.Fatalf("child %+v should inherit the parent's expiry and name it", child)
	}
	grand, grandTok, err := f.svc.DeriveKey(ctx, f.admin, child.ID, keys.CreateParams{})
	if err != nil {
		t.Fatal(err)
	}
	childKey, grandKey := childTok.Reveal(), grandTok.Reveal()
	for name, p := range map[string]keys.CreateParams{
		"WiderScope":     {Settings: keys.Settings{Scopes: &[]string{"data:write"}}},
		"WiderResource":  {Settings: keys.Settings{Resources: &[]string{"agent:*"}}},
		"AllResources":   {Settings: keys.Settings{Resources: &[]string{}}},
		"LongerLife":     {Settings: keys.Settings{ExpiresIn: ptr(48 * time.Hour)}},
		"NoExpiry":       {Settings: keys.Settings{ExpiresAt: &time.Time{}}},
		"AdminScopeLeak": {Settings: keys.Settings{Scopes: &[]string{"keys:write"}}},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := f.svc.DeriveKey(ctx, f.admin, parent.ID, p)
			wantCode(t, err, latchkey.EForbidden)
		})
	}
	// Suspending the parent suspends the subtree; resuming brings it back.
	if _, err := f.svc.SuspendKey(ctx, f.admin, parent.ID, 0, "incident"); err != nil {
		t.Fatal(err)
	}
	if v := f.verify(t, grandKey); v.Code != latchkey.CodeSuspended {
		t.Fatalf("grandchild while parent suspended: %s", v.Code)
	}
	_, err = f.svc.ResumeKey(ctx, f.admin, grand.ID)
	wantCode(t, err, latchkey.EConflict)
	if _, err := f.svc.ResumeKey(ctx, f.admin, parent.ID); err != nil {
		t.Fatal(err)
	}
	if v := f.verify(t, grandKey, "agent:activate"); v.Code != latchkey.CodeValid {
		t.Fatalf("grandchild after resume: %s", v.Code)
	}
	// A child suspended in its own right stays suspended when a cascade
	// from its parent is lifted.
	if _, err := f.svc.SuspendKey(ctx, f.admin, grand.ID, 0, "own reasons"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SuspendKey(ctx, f.admin, parent.ID, time.Hour, "incident 2"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ResumeKey(ctx, f.admin, parent.ID); err != nil {
		t.Fatal(err)
	}
	if v := f.verify(t, childKey, "agent:activate"); v.Code != latchkey.CodeValid {
		t.Fatalf("child after its parent's resume: %s", v.Code)
	}
	if v := f.verify(t, grandKey); v.Code != latchkey.CodeSuspended {
		t.Fatalf("grandchild suspended in its own right was resumed by its grandparent: %s", v.Code)
	}
	if _, err := f.svc.ResumeKey(ctx, f.admin, grand.ID); err != nil {
		t.Fatal(err)
	}
	// Rotation moves children to the successor; revoking it reaches them.
	succ, _, err := f.svc.RotateKey(ctx, f.admin, parent.ID, keys.RotateParams{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.RevokeKey(ctx, f.admin, succ.ID, "compromised"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{childKey, grandKey} {
		if v := f.verify(t, k); v.Code != latchkey.CodeRevoked {
			t.Fatalf("descendant after revoking the successor: %s", v.Code)
		}
	}
	old, err := f.svc.GetKey(ctx, f.admin, parent.ID)
	if err != nil || old.StateAt(f.clock.Now()) != latchkey.StateRevoked {
		t.Fatalf("revoking a successor must end its predecessor's grace: %v %v", old, err)
	}
}

func TestKeysDeriveOnlyFromThemselves(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	agent, agentKey := f.create(t, keys.CreateParams{Settings: keys.Settings{Scopes: &[]string{"keys:derive", "agent:activate"}}})
	other, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Scopes: &[]string{"agent:activate"}}})
	actor, err := f.svc.Authenticate(ctx, agentKey, netip.Addr{}, "keys:derive")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.DeriveKey(ctx, actor, agent.ID, keys.CreateParams{Settings: keys.Settings{Scopes: &[]string{"agent:activate"}}}); err != nil {
		t.Fatalf("derive from self: %v", err)
	}
	_, _, err = f.svc.DeriveKey(ctx, actor, other.ID, keys.CreateParams{})
	wantCode(t, err, latchkey.EForbidden)
}

func TestCreateValidatesEveryField(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	past := t0.Add(-time.Hour)
	tests := map[string]keys.CreateParams{
		"MissingName":      {Settings: keys.Settings{}},
		"BlankName":        {Settings: keys.Settings{Name: ptr("  ")}},
		"BadScope":         {Settings: keys.Settings{Name: ptr("x"), Scopes: &[]string{"Data:Read"}}},
		"BadResource":      {Settings: keys.Settings{Name: ptr("x"), Resources: &[]string{"agent::x"}}},
		"BadCIDR":          {Settings: keys.Settings{Name: ptr("x"), IPAllow: &[]string{"10.0.0.0/40"}}},
		"PastExpiry":       {Settings: keys.Settings{Name: ptr("x"), ExpiresAt: &past}},
		"BothExpiries":     {Settings: keys.Settings{Name: ptr("x"), ExpiresAt: ptr(t0.Add(time.Hour)), ExpiresIn: ptr(time.Hour)}},
		"BadEnvironment":   {Settings: keys.Settings{Name: ptr("x"), Environment: ptr("Prod uction")}},
		"BadPrefix":        {Settings: keys.Settings{Name: ptr("x")}, Prefix: "Bad-"},
		"ControlCharOwner": {Settings: keys.Settings{Name: ptr("x"), Owner: ptr("a\nb")}},
	}
	for name, p := range tests {
		t.Run(name, func(t *testing.T) {
			_, _, err := f.svc.CreateKey(ctx, f.admin, p)
			wantCode(t, err, latchkey.EInvalid)
		})
	}
	_, _, err := f.svc.CreateKey(ctx, f.admin, keys.CreateParams{Settings: keys.Settings{Name: ptr("x"), Scopes: &[]string{"tenants:admin"}}})
	wantCode(t, err, latchkey.EForbidden)
	list, _, err := f.svc.ListKeys(ctx, f.admin, keys.ListParams{})
	if err != nil || len(list) != 1 { // the tenant's admin key
		t.Fatalf("failed creates left %d keys behind (%v)", len(list)-1, err)
	}
}

func TestListPaginatesAndFilters(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i := range 7 {
		env := "staging"
		if i%2 == 0 {
			env = "production"
		}
		f.create(t, keys.CreateParams{Settings: keys.Settings{Environment: &env, Owner: ptr("team-a")}})
		f.clock.Advance(time.Millisecond)
	}
	var all []*latchkey.Key
	cursor := ""
	for {
		page, next, err := f.svc.ListKeys(ctx, f.admin, keys.ListParams{Limit: 3, Cursor: cursor, Owner: "team-a"})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(all) != 7 {
		t.Fatalf("paged through %d keys, want 7", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i-1].ID >= all[i].ID {
			t.Fatal("pages are not in id order")
		}
	}
	prod, _, err := f.svc.ListKeys(ctx, f.admin, keys.ListParams{Environment: "production"})
	if err != nil || len(prod) != 4 {
		t.Fatalf("production keys = %d, %v", len(prod), err)
	}
	_, _, err = f.svc.ListKeys(ctx, f.admin, keys.ListParams{Cursor: "!!"})
	wantCode(t, err, latchkey.EInvalid)
	_, _, err = f.svc.ListKeys(ctx, f.admin, keys.ListParams{State: "gone"})
	wantCode(t, err, latchkey.EInvalid)
}

func TestAuthenticateDistinguishesWhoFromWhat(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, reader := f.create(t, keys.CreateParams{Settings: keys.Settings{Scopes: &[]string{"keys:read"}}})
	_, err := f.svc.Authenticate(ctx, "", netip.Addr{}, "keys:read")
	wantCode(t, err, latchkey.EUnauthenticated)
	_, err = f.svc.Authenticate(ctx, "garbage", netip.Addr{}, "keys:read")
	wantCode(t, err, latchkey.EUnauthenticated)
	_, err = f.svc.Authenticate(ctx, reader, netip.Addr{}, "keys:write")
	wantCode(t, err, latchkey.EForbidden)
	if _, err := f.svc.Authenticate(ctx, reader, netip.Addr{}, "keys:read"); err != nil {
		t.Fatal(err)
	}
	var le *latchkey.Error
	if !errors.As(err, &le) && err != nil {
		t.Fatal("errors must be *latchkey.Error")
	}
}

func BenchmarkVerifyCacheHit(b *testing.B) {
	f := newFixture(b)
	_, key := f.create(b, keys.CreateParams{Settings: keys.Settings{Scopes: &[]string{"data:read"}, IPAllow: &[]string{"10.0.0.0/8"}}})
	ctx := context.Background()
	req := keys.VerifyRequest{Key: key, Scopes: []string{"data:read"}, IP: netip.MustParseAddr("10.1.2.3")}
	if v, _ := f.svc.Verify(ctx, req); v.Code != latchkey.CodeValid {
		b.Fatal(v.Code)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		v, err := f.svc.Verify(ctx, req)
		if err != nil || v.Code != latchkey.CodeValid {
			b.Fatal(v.Code, err)
		}
	}
}

func BenchmarkVerifyCacheHitParallel(b *testing.B) {
	f := newFixture(b)
	_, key := f.create(b, keys.CreateParams{Settings: keys.Settings{Scopes: &[]string{"data:read"}}})
	ctx := context.Background()
	req := keys.VerifyRequest{Key: key, Scopes: []string{"data:read"}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if v, _ := f.svc.Verify(ctx, req); v.Code != latchkey.CodeValid {
				b.Fatal(v.Code)
			}
		}
	})
}
