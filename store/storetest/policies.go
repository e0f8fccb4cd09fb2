package storetest

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

func init() {
	moreTests = append(moreTests, []conformanceTest{
		{"PolicyRoundTripsEveryField", testPolicyRoundTrip},
		{"PolicyEmptyListsComeBackEmpty", testPolicyEmptyLists},
		{"PolicyPutReplacesKeepingCreatedAt", testPolicyReplace},
		{"PolicyInMissingTenantNotFound", testPolicyMissingTenant},
		{"PolicyNotFound", testPolicyNotFound},
		{"PoliciesPagedInByteOrder", testPoliciesPagination},
		{"PolicyIsolatedByTenant", testPolicyIsolation},
		{"DeletePolicyRefusedWhileLiveKeysNameIt", testDeletePolicyConflict},
		{"KeyPolicyStoredByCreateAndUpdate", testKeyPolicy},
		{"KeysFilterByPolicy", testKeysFilterPolicy},
	}...)
}

// fullPolicy returns a policy with every field set (but Preset, which is
// never stored), each to a value that differs with v.
func fullPolicy(tenant, name string, v int) *latchkey.Policy {
	return &latchkey.Policy{
		Tenant:      tenant,
		Name:        name,
		Description: fmt.Sprintf("Production keys ☃ \"%d\"", v),
		Scopes:      []string{"data:read", fmt.Sprintf("agent:activate%d", v)},
		Resources:   []string{fmt.Sprintf("workflow:nightly%d", v)},
		IPAllow:     []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x::/48", v))},
		Countries:   []string{"DE", fmt.Sprintf("F%c", 'A'+v%26)},
		TimeWindows: []latchkey.TimeWindow{
			{Days: []string{"mon", "tue"}, Start: "09:00", End: fmt.Sprintf("17:%02d", v%60), TZ: "Europe/Berlin"},
		},
		RateLimits: []latchkey.RateLimit{
			{Name: "burst", Limit: int64(10 + v), Window: latchkey.Duration(time.Second)},
			{Name: "tokens", Limit: 100000, Window: latchkey.Duration(time.Hour), Apply: latchkey.ApplyOnRequest},
		},
		Quota:         &latchkey.Quota{Limit: int64(5000 + v), Period: "monthly"},
		MaxConcurrent: 2 + v,
		ExpiresAfter:  latchkey.Duration(time.Duration(90+v) * 24 * time.Hour),
		Condition:     fmt.Sprintf(`request.ip in cidr("10.%d.0.0/16")`, v),
		CreatedAt:     t0.Add(time.Duration(v) * time.Hour),
		UpdatedAt:     t0.Add(time.Duration(v)*time.Hour + 30*time.Minute),
	}
}

// checkAllSetExcept fails the test if a field of the struct *p is zero or
// empty, but those named in skip: a field added to the type then fails
// the round trip until the fixture sets it and the backends store it.
func checkAllSetExcept[T any](t *testing.T, p *T, skip ...string) {
	t.Helper()
	v := reflect.ValueOf(p).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		if slices.Contains(skip, name) {
			continue
		}
		f := v.Field(i)
		empty := f.IsZero()
		if f.Kind() == reflect.Slice || f.Kind() == reflect.Map {
			empty = f.Len() == 0
		}
		if empty {
			t.Fatalf("the fixture leaves %s.%s empty; set it so the round trip covers it", v.Type().Name(), name)
		}
	}
}

// putPolicies stores ps in one transaction and fails the test on an error.
func putPolicies(t *testing.T, s keys.Store, ps ...*latchkey.Policy) {
	t.Helper()
	update(t, s, func(tx keys.Tx) error {
		for _, p := range ps {
			// A copy: a store may set the stored CreatedAt in what it is
			// given, and the fixtures are compared afterwards.
			c := *p
			if err := tx.PutPolicy(&c); err != nil {
				return fmt.Errorf("PutPolicy(%s/%s): %w", p.Tenant, p.Name, err)
			}
		}
		return nil
	})
}

func getPolicy(t *testing.T, s keys.Store, tenant, name string) (*latchkey.Policy, error) {
	var p *latchkey.Policy
	err := s.View(t.Context(), func(tx keys.Tx) (err error) {
		p, err = tx.Policy(tenant, name)
		return err
	})
	return p, err
}

func listPolicies(t *testing.T, s keys.Store, tenant string, pg latchkey.Page) []*latchkey.Policy {
	t.Helper()
	var list []*latchkey.Policy
	view(t, s, func(tx keys.Tx) (err error) {
		list, err = tx.Policies(tenant, pg)
		return err
	})
	if list == nil {
		t.Fatalf("Policies(%s, %+v) returned nil, want a list", tenant, pg)
	}
	return list
}

func policyNames(ps []*latchkey.Policy) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func testPolicyRoundTrip(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	want := fullPolicy("acme", "production", 1)
	checkAllSetExcept(t, want, "Preset")
	update(t, s, func(tx keys.Tx) error {
		c := *want
		if err := tx.PutPolicy(&c); err != nil {
			return err
		}
		got, err := tx.Policy("acme", "production")
		if err != nil {
			return fmt.Errorf("Policy in the writing transaction: %w", err)
		}
		checkEqual(t, "Policy in the writing transaction", got, want)
		return nil
	})
	got, err := getPolicy(t, s, "acme", "production")
	if err != nil {
		t.Fatalf("Policy: %v", err)
	}
	checkEqual(t, "Policy", got, want)
	list := listPolicies(t, s, "acme", latchkey.Page{})
	if len(list) != 1 {
		t.Fatalf("Policies returned %d, want 1", len(list))
	}
	checkEqual(t, "Policies", list[0], want)
}

func testPolicyEmptyLists(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	bare := &latchkey.Policy{Tenant: "acme", Name: "bare", CreatedAt: t0, UpdatedAt: t0}
	putPolicies(t, s, bare)
	got, err := getPolicy(t, s, "acme", "bare")
	if err != nil {
		t.Fatalf("Policy: %v", err)
	}
	want := *bare
	want.Scopes, want.Resources, want.Countries = []string{}, []string{}, []string{}
	want.IPAllow, want.TimeWindows, want.RateLimits = []netip.Prefix{}, []latchkey.TimeWindow{}, []latchkey.RateLimit{}
	checkEqual(t, "Policy with no lists", got, &want)

	// Preset is never stored: a policy that is stored is the tenant's own.
	preset := fullPolicy("acme", "flagged", 2)
	preset.Preset = true
	putPolicies(t, s, preset)
	if got, err := getPolicy(t, s, "acme", "flagged"); err != nil {
		t.Fatalf("Policy: %v", err)
	} else if got.Preset {
		t.Error("a stored policy reads back with Preset set")
	}
}

func testPolicyReplace(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	first := fullPolicy("acme", "production", 1)
	putPolicies(t, s, first)
	second := fullPolicy("acme", "production", 2)
	second.CreatedAt = first.CreatedAt.Add(72 * time.Hour)
	second.Quota = nil
	putPolicies(t, s, second)
	got, err := getPolicy(t, s, "acme", "production")
	if err != nil {
		t.Fatalf("Policy: %v", err)
	}
	want := *second
	want.CreatedAt = first.CreatedAt
	checkEqual(t, "Policy after a replacing PutPolicy", got, &want)
	if n := len(listPolicies(t, s, "acme", latchkey.Page{})); n != 1 {
		t.Errorf("Policies after a replace: %d, want 1", n)
	}
}

func testPolicyMissingTenant(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	err := s.Update(t.Context(), func(tx keys.Tx) error { return tx.PutPolicy(fullPolicy("nope", "production", 1)) })
	wantCode(t, "PutPolicy in a missing tenant", err, latchkey.ENotFound)
	if list := listPolicies(t, s, "nope", latchkey.Page{}); len(list) != 0 {
		t.Errorf("Policies of a missing tenant: %d", len(list))
	}
}

func testPolicyNotFound(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	putPolicies(t, s, fullPolicy("acme", "production", 1))
	_, err := getPolicy(t, s, "acme", "staging")
	wantCode(t, "Policy of a missing name", err, latchkey.ENotFound)
	err = s.Update(t.Context(), func(tx keys.Tx) error { return tx.DeletePolicy("acme", "staging") })
	wantCode(t, "DeletePolicy of a missing name", err, latchkey.ENotFound)

	update(t, s, func(tx keys.Tx) error { return tx.DeletePolicy("acme", "production") })
	_, err = getPolicy(t, s, "acme", "production")
	wantCode(t, "Policy after DeletePolicy", err, latchkey.ENotFound)
	err = s.Update(t.Context(), func(tx keys.Tx) error { return tx.DeletePolicy("acme", "production") })
	wantCode(t, "DeletePolicy twice", err, latchkey.ENotFound)
}

func testPoliciesPagination(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "other")
	// '-' < '0' < '_' < 'a' in byte order; a locale collation that ignores
	// punctuation would put "a-z" after "ab".
	names := []string{"b", "a-z", "ab", "a_z", "c", "a0", "a", "z9"}
	var ps []*latchkey.Policy
	for i, n := range names {
		ps = append(ps, fullPolicy("acme", n, i))
	}
	putPolicies(t, s, ps...)
	putPolicies(t, s, fullPolicy("other", "aa", 1), fullPolicy("other", "zz", 1))
	sorted := slices.Sorted(slices.Values(names))
	tests := []struct {
		name string
		page latchkey.Page
		want []string
	}{
		{"All", latchkey.Page{}, sorted},
		{"FirstPage", latchkey.Page{Limit: 3}, sorted[:3]},
		{"AfterExisting", latchkey.Page{After: "a0"}, []string{"a_z", "ab", "b", "c", "z9"}},
		{"AfterMissing", latchkey.Page{After: "aa", Limit: 2}, []string{"ab", "b"}},
		{"AfterLast", latchkey.Page{After: "z9"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := policyNames(listPolicies(t, s, "acme", tt.page))
			if !slices.Equal(got, tt.want) {
				t.Errorf("Policies(acme, %+v) = %q, want %q", tt.page, got, tt.want)
			}
		})
	}
	t.Run("WalkPages", func(t *testing.T) {
		var all []string
		after := ""
		for range len(names) + 1 {
			page := listPolicies(t, s, "acme", latchkey.Page{After: after, Limit: 3})
			if len(page) > 3 {
				t.Fatalf("page of %d policies, limit 3", len(page))
			}
			if len(page) == 0 {
				break
			}
			all = append(all, policyNames(page)...)
			after = page[len(page)-1].Name
		}
		checkIDs(t, "walking pages of 3", all, sorted)
	})
}

func testPolicyIsolation(t *testing.T, s keys.Store) {
	createTenants(t, s, "a", "b")
	pa := fullPolicy("a", "production", 1)
	putPolicies(t, s, pa)
	_, err := getPolicy(t, s, "b", "production")
	wantCode(t, "Policy of another tenant's", err, latchkey.ENotFound)
	if list := listPolicies(t, s, "b", latchkey.Page{}); len(list) != 0 {
		t.Errorf("Policies(b) lists %q", policyNames(list))
	}
	err = s.Update(t.Context(), func(tx keys.Tx) error { return tx.DeletePolicy("b", "production") })
	wantCode(t, "DeletePolicy of another tenant's", err, latchkey.ENotFound)

	// The same name in b is b's own; writing and deleting it leaves a's.
	pb := fullPolicy("b", "production", 2)
	putPolicies(t, s, pb)
	update(t, s, func(tx keys.Tx) error { return tx.DeletePolicy("b", "production") })
	got, err := getPolicy(t, s, "a", "production")
	if err != nil {
		t.Fatalf("a's policy after b's came and went: %v", err)
	}
	checkEqual(t, "a's policy after b's came and went", got, pa)
}

func testDeletePolicyConflict(t *testing.T, s keys.Store) {
	createTenants(t, s, "a", "b")
	putPolicies(t, s, fullPolicy("a", "production", 1), fullPolicy("a", "staging", 1))
	active, suspended, other := key("a", "key_active"), key("a", "key_suspended"), key("b", "key_b")
	active.Policy, suspended.Policy, other.Policy = "production", "production", "staging"
	suspended.State = latchkey.StateSuspended
	preset := key("a", "key_preset")
	preset.Policy = "preset-only"
	createKeys(t, s, active, suspended, other, preset)

	deleteErr := func(tenant, name string) error {
		return s.Update(t.Context(), func(tx keys.Tx) error { return tx.DeletePolicy(tenant, name) })
	}
	wantCode(t, "DeletePolicy while an active and a suspended key name it", deleteErr("a", "production"), latchkey.EConflict)
	if _, err := getPolicy(t, s, "a", "production"); err != nil {
		t.Fatalf("the refused delete removed the policy: %v", err)
	}
	// A name only keys use (a preset, say) is not a stored policy.
	wantCode(t, "DeletePolicy of a name keys use but no policy has", deleteErr("a", "preset-only"), latchkey.ENotFound)
	// Another tenant's key naming "staging" does not hold a's.
	if err := deleteErr("a", "staging"); err != nil {
		t.Fatalf("DeletePolicy of a policy only another tenant's key names: %v", err)
	}

	revoke := func(k *latchkey.Key) {
		t.Helper()
		k.State, k.RevokedAt, k.UpdatedAt = latchkey.StateRevoked, t0.Add(time.Hour), t0.Add(time.Hour)
		update(t, s, func(tx keys.Tx) error { return tx.UpdateKey(k) })
	}
	revoke(active)
	wantCode(t, "DeletePolicy while a suspended key names it", deleteErr("a", "production"), latchkey.EConflict)
	revoke(suspended)
	if err := deleteErr("a", "production"); err != nil {
		t.Fatalf("DeletePolicy once every key naming it is revoked: %v", err)
	}
	_, err := getPolicy(t, s, "a", "production")
	wantCode(t, "Policy after DeletePolicy", err, latchkey.ENotFound)
	// The revoked keys keep the name.
	if k := getKey(t, s, "a", "key_active"); k.Policy != "production" {
		t.Errorf("a revoked key's Policy after its policy was deleted = %q, want production", k.Policy)
	}
}

func testKeyPolicy(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	k := key("acme", "key_1")
	k.Policy = "production"
	createKeys(t, s, k, key("acme", "key_none"))
	if got := getKey(t, s, "acme", "key_1"); got.Policy != "production" {
		t.Errorf("Policy after CreateKey = %q, want production", got.Policy)
	}
	if got := getKey(t, s, "acme", "key_none"); got.Policy != "" {
		t.Errorf("Policy of a key created without one = %q", got.Policy)
	}
	for _, p := range []string{"staging", ""} {
		k.Policy = p
		update(t, s, func(tx keys.Tx) error { return tx.UpdateKey(k) })
		if got := getKey(t, s, "acme", "key_1"); got.Policy != p {
			t.Errorf("Policy after UpdateKey to %q = %q", p, got.Policy)
		}
	}
}

func testKeysFilterPolicy(t *testing.T, s keys.Store) {
	createTenants(t, s, "a", "b")
	mk := func(tenant, id, policy, owner string) *latchkey.Key {
		k := key(tenant, id)
		k.Policy, k.Owner = policy, owner
		return k
	}
	createKeys(t, s,
		mk("a", "k3", "production", "alice"),
		mk("a", "k1", "production", "bob"),
		mk("a", "k2", "staging", "alice"),
		mk("a", "k4", "", "alice"),
		mk("a", "k5", "production", "alice"),
		mk("b", "k6", "production", "alice"),
	)
	tests := []struct {
		name string
		f    latchkey.KeyFilter
		want []string
	}{
		{"Policy", latchkey.KeyFilter{Policy: "production"}, []string{"k1", "k3", "k5"}},
		{"PolicyAndOwner", latchkey.KeyFilter{Policy: "production", Owner: "alice"}, []string{"k3", "k5"}},
		{"OtherPolicy", latchkey.KeyFilter{Policy: "staging"}, []string{"k2"}},
		{"PolicyIsExact", latchkey.KeyFilter{Policy: "prod"}, nil},
		{"PolicyPaged", latchkey.KeyFilter{Policy: "production", Page: latchkey.Page{After: "k1", Limit: 1}}, []string{"k3"}},
		{"NoPolicyFilter", latchkey.KeyFilter{Owner: "alice"}, []string{"k2", "k3", "k4", "k5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			view(t, s, func(tx keys.Tx) error {
				got, err := tx.Keys("a", tt.f)
				if err != nil {
					return err
				}
				checkIDs(t, fmt.Sprintf("Keys(a, %+v)", tt.f), keyIDs(got), tt.want)
				return nil
			})
		})
	}
}
