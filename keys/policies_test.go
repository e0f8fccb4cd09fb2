package keys_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/limit"
)

func verifyScope(t *testing.T, f *fixture, key, scope, want string) {
	t.Helper()
	if v := f.verify(t, key, scope); v.Code != want {
		t.Fatalf("verify %s = %s, want %s", scope, v.Code, want)
	}
}

// A policy change reaches every key that names it at its very next
// verification, without touching the keys.
func TestPolicyChangeReachesItsKeysAtOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.svc.CreatePolicy(ctx, f.admin, "agents", keys.PolicyParams{Scopes: &[]string{"agent:*"}}); err != nil {
		t.Fatal(err)
	}
	_, key := f.create(t, keys.CreateParams{Settings: keys.Settings{Policy: ptr("agents")}})
	verifyScope(t, f, key, "agent:activate", latchkey.CodeValid)
	verifyScope(t, f, key, "data:read", latchkey.CodeInsufficientScope)
	if _, err := f.svc.UpdatePolicy(ctx, f.admin, "agents", keys.PolicyParams{Scopes: &[]string{"data:*"}}); err != nil {
		t.Fatal(err)
	}
	verifyScope(t, f, key, "agent:activate", latchkey.CodeInsufficientScope)
	verifyScope(t, f, key, "data:read", latchkey.CodeValid)
	// A later expiry from the policy ends keys created long ago.
	f.clock.Advance(48 * time.Hour)
	if _, err := f.svc.UpdatePolicy(ctx, f.admin, "agents", keys.PolicyParams{ExpiresAfter: ptr(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	verifyScope(t, f, key, "data:read", latchkey.CodeExpired)
}

func TestPolicyWritesAreChecked(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.svc.CreatePolicy(ctx, f.admin, "readers", keys.PolicyParams{Scopes: &[]string{"data:read"}, IPAllow: &[]string{"10.0.0.0/8"}}); err != nil {
		t.Fatal(err)
	}
	_, err := f.svc.CreatePolicy(ctx, f.admin, "readers", keys.PolicyParams{})
	wantCode(t, err, latchkey.EConflict)
	for name, p := range map[string]keys.PolicyParams{
		"Bad Name":  {},
		"badscope":  {Scopes: &[]string{"no spaces"}},
		"badrate":   {RateLimits: &[]latchkey.RateLimit{{Limit: 0, Window: latchkey.Duration(time.Minute)}}},
		"usesquota": {Uses: ptr(int64(1)), Quota: &latchkey.Quota{Limit: 5, Period: "daily"}},
		"badexpiry": {ExpiresAfter: ptr(-time.Hour)},
	} {
		_, err := f.svc.CreatePolicy(ctx, f.admin, name, p)
		wantCode(t, err, latchkey.EInvalid)
	}
	for name, s := range map[string]keys.Settings{
		"UnknownPolicy":       {Policy: ptr("nope")},
		"ScopeOutside":        {Policy: ptr("readers"), Scopes: &[]string{"data:write"}},
		"AddressOutside":      {Policy: ptr("readers"), IPAllow: &[]string{"192.0.2.0/24"}},
		"MalformedPolicyName": {Policy: ptr("Not A Name")},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := f.svc.CreateKey(ctx, f.admin, keys.CreateParams{Settings: withName(s)})
			wantCode(t, err, latchkey.EInvalid)
		})
	}
	// A key that may not hand out admin powers cannot hand them out
	// through a policy either.
	if _, err := f.svc.CreatePolicy(ctx, f.admin, "keymasters", keys.PolicyParams{Scopes: &[]string{"keys:*"}}); err != nil {
		t.Fatal(err)
	}
	_, writer := f.create(t, keys.CreateParams{Settings: keys.Settings{Scopes: &[]string{"keys:write", "keys:read"}}})
	actor, err := f.svc.Authenticate(ctx, writer, netip.Addr{}, "keys:write")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = f.svc.CreateKey(ctx, actor, keys.CreateParams{Settings: keys.Settings{Name: ptr("x"), Policy: ptr("keymasters")}})
	wantCode(t, err, latchkey.EForbidden)
	_, err = f.svc.CreatePolicy(ctx, actor, "sneaky", keys.PolicyParams{Scopes: &[]string{"keys:derive"}})
	wantCode(t, err, latchkey.EForbidden)

	// A key without resources of its own takes the policy's.
	if _, err := f.svc.CreatePolicy(ctx, f.admin, "one-agent", keys.PolicyParams{Resources: &[]string{"agent:a"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.CreateKey(ctx, f.admin, keys.CreateParams{Settings: keys.Settings{Name: ptr("x"), Policy: ptr("one-agent")}}); err != nil {
		t.Fatalf("a key with no resources of its own under a policy with some: %v", err)
	}

	// In use: not deleted; once its keys are revoked, it may go.
	k, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Policy: ptr("readers")}})
	wantCode(t, f.svc.DeletePolicy(ctx, f.admin, "readers"), latchkey.EConflict)
	if _, err := f.svc.RevokeKey(ctx, f.admin, k.ID, ""); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeletePolicy(ctx, f.admin, "readers"); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.GetPolicy(ctx, f.admin, "readers")
	wantCode(t, err, latchkey.ENotFound)
	// Another tenant's policies are not there.
	if _, err := f.svc.CreatePolicy(ctx, f.admin, "mine", keys.PolicyParams{}); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.GetPolicy(ctx, f.other, "mine")
	wantCode(t, err, latchkey.ENotFound)
	wantCode(t, f.svc.DeletePolicy(ctx, f.other, "mine"), latchkey.ENotFound)
	_, _, err = f.svc.CreateKey(ctx, f.other, keys.CreateParams{Settings: keys.Settings{Name: ptr("x"), Policy: ptr("mine")}})
	wantCode(t, err, latchkey.EInvalid)
}

func withName(s keys.Settings) keys.Settings {
	s.Name = ptr("test key")
	return s
}

// Every tenant lists the presets among its own policies, in name order; a
// stored policy of a preset's name replaces it; pages walk them all.
func TestListPoliciesMergesThePresets(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, name := range []string{"alpha", "production", "zeta"} {
		if _, err := f.svc.CreatePolicy(ctx, f.admin, name, keys.PolicyParams{Scopes: &[]string{"data:read"}}); err != nil {
			t.Fatal(err)
		}
	}
	want := []struct {
		name   string
		preset bool
	}{{"alpha", false}, {"development", true}, {"emergency", true}, {"integration", true}, {"production", false}, {"zeta", false}}
	var got []*latchkey.Policy
	cursor := ""
	for range 10 {
		page, next, err := f.svc.ListPolicies(ctx, f.admin, cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if cursor = next; cursor == "" {
			break
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d policies, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].Name != w.name || got[i].Preset != w.preset {
			t.Errorf("policy %d = %s (preset %v), want %s (preset %v)", i, got[i].Name, got[i].Preset, w.name, w.preset)
		}
	}
	// Patching a preset gives the tenant its own copy of it.
	p, err := f.svc.UpdatePolicy(ctx, f.admin, "integration", keys.PolicyParams{Description: ptr("ours")})
	if err != nil || p.Preset || p.Description != "ours" || len(p.RateLimits) != 1 {
		t.Fatalf("patched preset = %+v, %v", p, err)
	}
}

// Single use through the emergency preset: one verification, then none.
func TestEmergencyPresetIsSingleUse(t *testing.T) {
	var lim *limit.Memory
	f := newFixture(t, func(o *keys.Options) {
		lim = limit.NewMemory(limit.Options{Store: latchkey.Narrow[latchkey.QuotaStore](o.Store), FlushInterval: time.Hour})
		o.Limiter = lim
	})
	t.Cleanup(func() { lim.Close(context.Background()) })
	_, key := f.create(t, keys.CreateParams{Settings: keys.Settings{Policy: ptr("emergency")}})
	ctx := context.Background()
	for i, want := range []string{latchkey.CodeValid, latchkey.CodeQuotaExceeded} {
		v, err := f.svc.Verify(ctx, keys.VerifyRequest{Key: key, Cost: 1})
		if err != nil || v.Code != want {
			t.Fatalf("use %d: %s, %v; want %s", i+1, v.Code, err, want)
		}
	}
}

// An owner limited to 100 requests a minute gets 100 in all across three
// of its keys, and a change of the owner's record applies at once.
func TestOwnerLimitsAreSharedByItsKeys(t *testing.T) {
	var lim *limit.Memory
	f := newFixture(t, func(o *keys.Options) {
		lim = limit.NewMemory(limit.Options{Store: latchkey.Narrow[latchkey.QuotaStore](o.Store), FlushInterval: time.Hour})
		o.Limiter = lim
	})
	t.Cleanup(func() { lim.Close(context.Background()) })
	ctx := context.Background()
	if _, err := f.svc.PutOwner(ctx, f.admin, "client-7", keys.OwnerParams{RateLimits: []latchkey.RateLimit{{Limit: 100, Window: latchkey.Duration(time.Minute)}}}); err != nil {
		t.Fatal(err)
	}
	var ks []string
	for range 3 {
		_, key := f.create(t, keys.CreateParams{Settings: keys.Settings{Owner: ptr("client-7")}})
		ks = append(ks, key)
	}
	_, stranger := f.create(t, keys.CreateParams{Settings: keys.Settings{Owner: ptr("client-8")}})
	valid := 0
	for i := range 300 {
		v, err := f.svc.Verify(ctx, keys.VerifyRequest{Key: ks[i%3]})
		if err != nil {
			t.Fatal(err)
		}
		switch v.Code {
		case latchkey.CodeValid:
			valid++
		case latchkey.CodeRateLimited:
			if !v.Admission.Owner {
				t.Fatalf("denied by the key's limits, not the owner's")
			}
		default:
			t.Fatalf("verify = %s", v.Code)
		}
	}
	if valid != 100 {
		t.Fatalf("%d of 300 admitted across the owner's keys, want 100", valid)
	}
	if v := f.verify(t, stranger); v.Code != latchkey.CodeValid {
		t.Fatalf("another owner's key = %s", v.Code)
	}
	// Lifting the owner's limits is seen by the next verification.
	if err := f.svc.DeleteOwner(ctx, f.admin, "client-7"); err != nil {
		t.Fatal(err)
	}
	if v := f.verify(t, ks[0]); v.Code != latchkey.CodeValid {
		t.Fatalf("after the owner's record is gone: %s", v.Code)
	}
	_, err := f.svc.GetOwner(ctx, f.other, "client-7")
	wantCode(t, err, latchkey.ENotFound)
	_, err = f.svc.PutOwner(ctx, f.admin, "client-7", keys.OwnerParams{Quota: &latchkey.Quota{Remaining: ptr(int64(5))}})
	wantCode(t, err, latchkey.EInvalid)
}

func TestBatchSetPolicy(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var ids []string
	for range 3 {
		k, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Owner: ptr("team-a")}})
		ids = append(ids, k.ID)
	}
	res, err := f.svc.BatchKeys(ctx, f.admin, keys.BatchParams{Op: keys.BatchSetPolicy, Policy: ptr("integration"), Filter: &keys.BatchFilter{Owner: "team-a"}})
	if err != nil || res.Matched != 3 {
		t.Fatalf("batch = %+v, %v", res, err)
	}
	for _, it := range res.Results {
		if !it.OK {
			t.Fatalf("item %+v", it)
		}
	}
	res, err = f.svc.BatchKeys(ctx, f.admin, keys.BatchParams{Op: keys.BatchSetPolicy, Policy: ptr(""), Filter: &keys.BatchFilter{Policy: "integration"}, DryRun: true})
	if err != nil || res.Matched != 3 {
		t.Fatalf("dry run by policy = %+v, %v", res, err)
	}
	k, err := f.svc.GetKey(ctx, f.admin, ids[0])
	if err != nil || k.Policy != "integration" {
		t.Fatalf("key policy %q, %v", k.Policy, err)
	}
}
