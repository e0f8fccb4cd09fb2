package keys

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

var created = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func policyKey(own func(*latchkey.Key), p *latchkey.Policy) *Entry {
	k := &latchkey.Key{ID: "key_1", Tenant: "acme", Policy: "p", CreatedAt: created, State: latchkey.StateActive}
	if own != nil {
		own(k)
	}
	if p != nil {
		p.Name = "p"
		k.Bound = &latchkey.Bound{Policy: p}
	}
	return NewEntry(k)
}

// A key that names a policy is governed by the policy's settings, its own
// only narrowing them, whatever the policy became since the key was
// written.
func TestPolicyGovernsItsKeys(t *testing.T) {
	day := latchkey.Duration(24 * time.Hour)
	pol := func() *latchkey.Policy {
		return &latchkey.Policy{
			Scopes:       []string{"data:*"},
			Resources:    []string{"agent:*"},
			IPAllow:      []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			RateLimits:   []latchkey.RateLimit{{Name: "1m", Limit: 60, Window: latchkey.Duration(time.Minute)}},
			Quota:        &latchkey.Quota{Limit: 100, Period: "daily"},
			ExpiresAfter: day,
		}
	}
	t.Run("KeyWithoutSettingsTakesThePolicys", func(t *testing.T) {
		e := policyKey(nil, pol())
		k := &e.Key
		if !slices.Equal(k.Scopes, []string{"data:*"}) || !slices.Equal(k.Resources, []string{"agent:*"}) {
			t.Fatalf("scopes %v resources %v", k.Scopes, k.Resources)
		}
		if !latchkey.IPAllowed(k.IPAllow, netip.MustParseAddr("10.1.1.1")) || latchkey.IPAllowed(k.IPAllow, netip.MustParseAddr("192.0.2.1")) {
			t.Fatalf("ip_allow %v", k.IPAllow)
		}
		if len(k.RateLimits) != 1 || k.Quota == nil || k.Quota.Limit != 100 {
			t.Fatalf("limits %v %v", k.RateLimits, k.Quota)
		}
		if !k.ExpiresAt.Equal(created.Add(24 * time.Hour)) {
			t.Fatalf("expires_at %v", k.ExpiresAt)
		}
		if k.Bound != nil {
			t.Fatalf("the entry keeps the applied policy: %+v", k.Bound)
		}
	})
	t.Run("OwnSettingsNarrow", func(t *testing.T) {
		e := policyKey(func(k *latchkey.Key) {
			k.Scopes = []string{"data:read", "admin:write"}
			k.Resources = []string{"agent:one", "workflow:x"}
			k.IPAllow = []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("192.0.2.0/24")}
			k.RateLimits = []latchkey.RateLimit{{Name: "1s", Limit: 5, Window: latchkey.Duration(time.Second)}}
			k.Quota = &latchkey.Quota{Limit: 10, Period: "daily"}
			k.ExpiresAt = created.Add(time.Hour)
			k.MaxConcurrent = 4
		}, func() *latchkey.Policy { p := pol(); p.MaxConcurrent = 2; return p }())
		k := &e.Key
		if !slices.Equal(k.Scopes, []string{"data:read"}) {
			t.Errorf("scopes %v: want only those the policy allows", k.Scopes)
		}
		if !slices.Equal(k.Resources, []string{"agent:one"}) {
			t.Errorf("resources %v", k.Resources)
		}
		if latchkey.IPAllowed(k.IPAllow, netip.MustParseAddr("10.2.0.1")) || !latchkey.IPAllowed(k.IPAllow, netip.MustParseAddr("10.1.0.1")) || latchkey.IPAllowed(k.IPAllow, netip.MustParseAddr("192.0.2.1")) {
			t.Errorf("ip_allow %v", k.IPAllow)
		}
		if len(k.RateLimits) != 2 {
			t.Errorf("ratelimits %v: want the key's and the policy's", k.RateLimits)
		}
		if k.Quota.Limit != 10 || k.MaxConcurrent != 2 || !k.ExpiresAt.Equal(created.Add(time.Hour)) {
			t.Errorf("quota %v max_concurrent %d expires %v", k.Quota, k.MaxConcurrent, k.ExpiresAt)
		}
	})
	t.Run("NothingLeftAllowsNothing", func(t *testing.T) {
		e := policyKey(func(k *latchkey.Key) {
			k.Resources = []string{"workflow:x"}
			k.IPAllow = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
		}, pol())
		k := &e.Key
		for _, r := range []string{"workflow:x", "agent:one"} {
			if latchkey.ResourcesAllow(k.Resources, r) {
				t.Errorf("resource %s allowed by %q", r, k.Resources)
			}
		}
		for _, ip := range []string{"192.0.2.1", "10.0.0.1"} {
			if latchkey.IPAllowed(k.IPAllow, netip.MustParseAddr(ip)) {
				t.Errorf("address %s allowed by %v", ip, k.IPAllow)
			}
		}
	})
	t.Run("PolicyTimeWindowsApplyBesidesTheKeys", func(t *testing.T) {
		p := pol()
		p.TimeWindows = []latchkey.TimeWindow{{Start: "09:00", End: "17:00"}}
		e := policyKey(func(k *latchkey.Key) { k.TimeWindows = []latchkey.TimeWindow{{Start: "12:00", End: "20:00"}} }, p)
		for at, want := range map[string]bool{"10:00": false, "13:00": true, "18:00": false} {
			tm, _ := time.Parse("15:04", at)
			now := time.Date(2026, 3, 2, tm.Hour(), 0, 0, 0, time.UTC)
			if got := e.AllowsTime(now); got != want {
				t.Errorf("at %s allowed %v, want %v", at, got, want)
			}
		}
	})
	t.Run("MissingPolicySuspends", func(t *testing.T) {
		e := policyKey(func(k *latchkey.Key) { k.Policy = "gone" }, nil)
		if st := e.Key.StateAt(created); st != latchkey.StateSuspended {
			t.Fatalf("state %s, want suspended (fail closed)", st)
		}
	})
	t.Run("PresetWhenNoneIsStored", func(t *testing.T) {
		e := policyKey(func(k *latchkey.Key) { k.Policy = "emergency" }, nil)
		k := &e.Key
		if k.StateAt(created) != latchkey.StateActive || !k.Quota.IsCredit() || *k.Quota.Remaining != 1 {
			t.Fatalf("state %s quota %+v", k.StateAt(created), k.Quota)
		}
		if k.StateAt(created.Add(time.Hour)) != latchkey.StateExpired {
			t.Fatalf("an emergency key outlives its hour")
		}
	})
}

// Keys of one owner share one Bound in the cache, and only while the
// record is the same.
func TestEntriesShareTheirOwnersRecord(t *testing.T) {
	o1 := &latchkey.Owner{Tenant: "acme", ID: "client-1", UpdatedAt: created}
	o2 := *o1 // read again for another key: an equal copy
	a := NewEntry(&latchkey.Key{ID: "key_a", Tenant: "acme", Owner: "client-1", Bound: &latchkey.Bound{Owner: o1}})
	b := NewEntry(&latchkey.Key{ID: "key_b", Tenant: "acme", Owner: "client-1", Bound: &latchkey.Bound{Owner: &o2}})
	if a.Key.Bound == nil || a.Key.Bound != b.Key.Bound {
		t.Fatalf("bounds %p and %p: want one shared", a.Key.Bound, b.Key.Bound)
	}
	o3 := *o1
	o3.UpdatedAt = created.Add(time.Second)
	c := NewEntry(&latchkey.Key{ID: "key_c", Tenant: "acme", Owner: "client-1", Bound: &latchkey.Bound{Owner: &o3}})
	if c.Key.Bound == a.Key.Bound || c.Key.Bound.Owner != &o3 {
		t.Fatalf("a changed record shares the old one")
	}
	if d := NewEntry(&latchkey.Key{ID: "key_d", Tenant: "acme"}); d.Key.Bound != nil {
		t.Fatalf("a key without owner record has a Bound")
	}
}
