package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

func init() {
	moreTests = append(moreTests, []conformanceTest{
		{"OwnerRoundTripsEveryField", testOwnerRoundTrip},
		{"OwnerEmptyValuesComeBackEmpty", testOwnerEmptyValues},
		{"OwnerPutReplacesKeepingCreatedAt", testOwnerReplace},
		{"OwnerInMissingTenantNotFound", testOwnerMissingTenant},
		{"OwnerNotFound", testOwnerNotFound},
		{"OwnersPagedInByteOrder", testOwnersPagination},
		{"OwnerIsolatedByTenant", testOwnerIsolation},
		{"KeyByHashReadsBound", testKeyByHashBound},
		{"KeyByHashBoundFollowsWrites", testKeyByHashBoundChanges},
		{"OwnerQuotaUsageRoundTrips", testOwnerQuotaUsage},
		{"OwnerQuotaUsageResetStopsStaleSaves", testOwnerQuotaUsageReset},
	}...)
}

// fullOwner returns an owner record with every field set, each to a value
// that differs with v.
func fullOwner(tenant, id string, v int) *latchkey.Owner {
	return &latchkey.Owner{
		Tenant: tenant,
		ID:     id,
		RateLimits: []latchkey.RateLimit{
			{Name: "minute", Limit: int64(600 + v), Window: latchkey.Duration(time.Minute)},
			{Name: "tokens", Limit: 1000000, Window: latchkey.Duration(24 * time.Hour), Apply: latchkey.ApplyOnRequest},
		},
		Quota:     &latchkey.Quota{Limit: int64(100000 + v), Period: "30d"},
		Meta:      map[string]any{"plan": fmt.Sprintf("pro-%d", v), "seats": float64(v), "tags": []any{"a", true}},
		CreatedAt: t0.Add(time.Duration(v) * time.Hour),
		UpdatedAt: t0.Add(time.Duration(v)*time.Hour + time.Minute),
	}
}

// putOwners stores os in one transaction and fails the test on an error.
func putOwners(t *testing.T, s keys.Store, os ...*latchkey.Owner) {
	t.Helper()
	update(t, s, func(tx keys.Tx) error {
		for _, o := range os {
			c := *o // a store may set the stored CreatedAt in what it is given
			if err := tx.PutOwner(&c); err != nil {
				return fmt.Errorf("PutOwner(%s/%s): %w", o.Tenant, o.ID, err)
			}
		}
		return nil
	})
}

func getOwner(t *testing.T, s keys.Store, tenant, id string) (*latchkey.Owner, error) {
	var o *latchkey.Owner
	err := s.View(t.Context(), func(tx keys.Tx) (err error) {
		o, err = tx.Owner(tenant, id)
		return err
	})
	return o, err
}

func listOwners(t *testing.T, s keys.Store, tenant string, pg latchkey.Page) []*latchkey.Owner {
	t.Helper()
	var list []*latchkey.Owner
	view(t, s, func(tx keys.Tx) (err error) {
		list, err = tx.Owners(tenant, pg)
		return err
	})
	if list == nil {
		t.Fatalf("Owners(%s, %+v) returned nil, want a list", tenant, pg)
	}
	return list
}

func ownerIDs(os []*latchkey.Owner) []string {
	out := []string{}
	for _, o := range os {
		out = append(out, o.ID)
	}
	return out
}

func deleteOwnerErr(t *testing.T, s keys.Store, tenant, id string) error {
	return s.Update(t.Context(), func(tx keys.Tx) error { return tx.DeleteOwner(tenant, id) })
}

func testOwnerRoundTrip(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	// Owners are the seeds' client ids: any text, up to 200 bytes.
	long := "urn:client:" + strings.Repeat("ü", 94) + "x"
	for _, id := range []string{"alice@example.com", long} {
		want := fullOwner("acme", id, 1)
		checkAllSetExcept(t, want)
		update(t, s, func(tx keys.Tx) error {
			c := *want
			if err := tx.PutOwner(&c); err != nil {
				return err
			}
			got, err := tx.Owner("acme", id)
			if err != nil {
				return fmt.Errorf("Owner in the writing transaction: %w", err)
			}
			checkEqual(t, "Owner in the writing transaction", got, want)
			return nil
		})
		got, err := getOwner(t, s, "acme", id)
		if err != nil {
			t.Fatalf("Owner(%q): %v", id, err)
		}
		checkEqual(t, "Owner", got, want)
	}
	list := listOwners(t, s, "acme", latchkey.Page{})
	if len(list) != 2 {
		t.Fatalf("Owners returned %d, want 2", len(list))
	}
	checkEqual(t, "Owners", list[0], fullOwner("acme", "alice@example.com", 1))
}

func testOwnerEmptyValues(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	putOwners(t, s, &latchkey.Owner{Tenant: "acme", ID: "bare", CreatedAt: t0, UpdatedAt: t0})
	got, err := getOwner(t, s, "acme", "bare")
	if err != nil {
		t.Fatalf("Owner: %v", err)
	}
	want := &latchkey.Owner{Tenant: "acme", ID: "bare", RateLimits: []latchkey.RateLimit{}, Meta: map[string]any{}, CreatedAt: t0, UpdatedAt: t0}
	checkEqual(t, "Owner with no limits", got, want)
}

func testOwnerReplace(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	first := fullOwner("acme", "alice", 1)
	putOwners(t, s, first)
	second := fullOwner("acme", "alice", 2)
	second.CreatedAt = first.CreatedAt.Add(48 * time.Hour)
	second.Quota = nil
	second.RateLimits = nil
	putOwners(t, s, second)
	got, err := getOwner(t, s, "acme", "alice")
	if err != nil {
		t.Fatalf("Owner: %v", err)
	}
	want := *second
	want.CreatedAt = first.CreatedAt
	want.RateLimits = []latchkey.RateLimit{}
	checkEqual(t, "Owner after a replacing PutOwner", got, &want)
	if n := len(listOwners(t, s, "acme", latchkey.Page{})); n != 1 {
		t.Errorf("Owners after a replace: %d, want 1", n)
	}
}

func testOwnerMissingTenant(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	err := s.Update(t.Context(), func(tx keys.Tx) error { return tx.PutOwner(fullOwner("nope", "alice", 1)) })
	wantCode(t, "PutOwner in a missing tenant", err, latchkey.ENotFound)
	if list := listOwners(t, s, "nope", latchkey.Page{}); len(list) != 0 {
		t.Errorf("Owners of a missing tenant: %d", len(list))
	}
}

func testOwnerNotFound(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	putOwners(t, s, fullOwner("acme", "alice", 1))
	_, err := getOwner(t, s, "acme", "bob")
	wantCode(t, "Owner of a missing id", err, latchkey.ENotFound)
	wantCode(t, "DeleteOwner of a missing id", deleteOwnerErr(t, s, "acme", "bob"), latchkey.ENotFound)

	// An owner's keys do not hold its record.
	k := key("acme", "key_1")
	k.Owner = "alice"
	createKeys(t, s, k)
	if err := deleteOwnerErr(t, s, "acme", "alice"); err != nil {
		t.Fatalf("DeleteOwner: %v", err)
	}
	_, err = getOwner(t, s, "acme", "alice")
	wantCode(t, "Owner after DeleteOwner", err, latchkey.ENotFound)
	wantCode(t, "DeleteOwner twice", deleteOwnerErr(t, s, "acme", "alice"), latchkey.ENotFound)
	if got := getKey(t, s, "acme", "key_1"); got.Owner != "alice" {
		t.Errorf("the key's Owner after DeleteOwner = %q, want alice", got.Owner)
	}
}

func testOwnersPagination(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "other")
	// Byte order: 'B' < 'a' < 'b' < 'ü'; '-' < '.' < '@'.
	ids := []string{"bob", "Bob", "alice@example.com", "alice-2", "alice.b", "ülrich", "b", "a"}
	var os []*latchkey.Owner
	for i, id := range ids {
		os = append(os, fullOwner("acme", id, i))
	}
	putOwners(t, s, os...)
	putOwners(t, s, fullOwner("other", "aa", 1))
	sorted := slices.Sorted(slices.Values(ids))
	tests := []struct {
		name string
		page latchkey.Page
		want []string
	}{
		{"All", latchkey.Page{}, sorted},
		{"FirstPage", latchkey.Page{Limit: 3}, sorted[:3]},
		{"AfterExisting", latchkey.Page{After: "alice.b"}, []string{"alice@example.com", "b", "bob", "ülrich"}},
		{"AfterMissing", latchkey.Page{After: "az", Limit: 2}, []string{"b", "bob"}},
		{"AfterLast", latchkey.Page{After: "ülrich"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ownerIDs(listOwners(t, s, "acme", tt.page))
			if !slices.Equal(got, tt.want) {
				t.Errorf("Owners(acme, %+v) = %q, want %q", tt.page, got, tt.want)
			}
		})
	}
	t.Run("WalkPages", func(t *testing.T) {
		var all []string
		after := ""
		for range len(ids) + 1 {
			page := listOwners(t, s, "acme", latchkey.Page{After: after, Limit: 3})
			if len(page) > 3 {
				t.Fatalf("page of %d owners, limit 3", len(page))
			}
			if len(page) == 0 {
				break
			}
			all = append(all, ownerIDs(page)...)
			after = page[len(page)-1].ID
		}
		checkIDs(t, "walking pages of 3", all, sorted)
	})
}

func testOwnerIsolation(t *testing.T, s keys.Store) {
	createTenants(t, s, "a", "b")
	oa := fullOwner("a", "alice", 1)
	putOwners(t, s, oa)
	_, err := getOwner(t, s, "b", "alice")
	wantCode(t, "Owner of another tenant's", err, latchkey.ENotFound)
	if list := listOwners(t, s, "b", latchkey.Page{}); len(list) != 0 {
		t.Errorf("Owners(b) lists %q", ownerIDs(list))
	}
	wantCode(t, "DeleteOwner of another tenant's", deleteOwnerErr(t, s, "b", "alice"), latchkey.ENotFound)
	putOwners(t, s, fullOwner("b", "alice", 2))
	if err := deleteOwnerErr(t, s, "b", "alice"); err != nil {
		t.Fatalf("DeleteOwner(b, alice): %v", err)
	}
	got, err := getOwner(t, s, "a", "alice")
	if err != nil {
		t.Fatalf("a's owner after b's came and went: %v", err)
	}
	checkEqual(t, "a's owner after b's came and went", got, oa)
}

// keyByHashBoth reads the key by hash in a View (Tx.KeyByHash) and, when
// the store has one, with its transaction-free reader (the verify path's
// latchkey.HashReader), fails the test unless both agree on the Bound,
// and returns the first.
func keyByHashBoth(t *testing.T, s keys.Store, hash [32]byte) *latchkey.Key {
	t.Helper()
	var k *latchkey.Key
	view(t, s, func(tx keys.Tx) (err error) {
		k, err = tx.KeyByHash(hash)
		return err
	})
	if hr, ok := s.(latchkey.HashReader); ok {
		direct, err := hr.KeyByHash(t.Context(), hash)
		if err != nil {
			t.Fatalf("HashReader.KeyByHash: %v", err)
		}
		checkBound(t, "HashReader.KeyByHash of "+k.ID, direct.Bound, k.Bound)
	}
	return k
}

// checkBound fails the test unless got is want: both nil, or the same
// policy and owner (each compared field by field, or both nil).
func checkBound(t *testing.T, what string, got, want *latchkey.Bound) {
	t.Helper()
	if got == nil || want == nil {
		if got != want {
			t.Errorf("%s: Bound = %+v, want %+v", what, got, want)
		}
		return
	}
	switch {
	case (got.Policy == nil) != (want.Policy == nil):
		t.Errorf("%s: Bound.Policy = %+v, want %+v", what, got.Policy, want.Policy)
	case got.Policy != nil:
		checkEqual(t, what+": Bound.Policy", got.Policy, want.Policy)
	}
	switch {
	case (got.Owner == nil) != (want.Owner == nil):
		t.Errorf("%s: Bound.Owner = %+v, want %+v", what, got.Owner, want.Owner)
	case got.Owner != nil:
		checkEqual(t, what+": Bound.Owner", got.Owner, want.Owner)
	}
}

// boundFixture stores, in tenants a and b, a's policy "production" and
// a's record of owner "alice", and keys naming each, both, neither, or
// names with nothing stored; it returns the keys by id.
func boundFixture(t *testing.T, s keys.Store) (map[string]*latchkey.Key, *latchkey.Policy, *latchkey.Owner) {
	t.Helper()
	createTenants(t, s, "a", "b")
	pol, own := fullPolicy("a", "production", 1), fullOwner("a", "alice", 1)
	putPolicies(t, s, pol)
	putOwners(t, s, own)
	ks := map[string]*latchkey.Key{}
	for _, f := range []struct{ tenant, id, policy, owner string }{
		{"a", "key_neither", "", ""},
		{"a", "key_unstored", "preset-only", "nobody"},
		{"a", "key_policy", "production", "bob"},
		{"a", "key_owner", "", "alice"},
		{"a", "key_both", "production", "alice"},
		// b has neither stored: a's do not bind b's keys.
		{"b", "key_b", "production", "alice"},
	} {
		k := key(f.tenant, f.id)
		k.Policy, k.Owner = f.policy, f.owner
		ks[f.id] = k
	}
	createKeys(t, s, ks["key_neither"], ks["key_unstored"], ks["key_policy"], ks["key_owner"], ks["key_both"], ks["key_b"])
	return ks, pol, own
}

func testKeyByHashBound(t *testing.T, s keys.Store) {
	ks, pol, own := boundFixture(t, s)
	tests := []struct {
		id   string
		want *latchkey.Bound
	}{
		{"key_neither", nil},
		{"key_unstored", nil},
		{"key_policy", &latchkey.Bound{Policy: pol}},
		{"key_owner", &latchkey.Bound{Owner: own}},
		{"key_both", &latchkey.Bound{Policy: pol, Owner: own}},
		{"key_b", nil},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			k := ks[tt.id]
			got := keyByHashBoth(t, s, k.Hash)
			checkBound(t, "KeyByHash of "+tt.id, got.Bound, tt.want)
			// The key itself reads as Key does.
			plain := *got
			plain.Bound = nil
			checkEqual(t, "KeyByHash of "+tt.id, &plain, k)
		})
	}
	// Key, Keys and Children read no Bound.
	view(t, s, func(tx keys.Tx) error {
		k, err := tx.Key("a", "key_both")
		if err != nil {
			return err
		}
		if k.Bound != nil {
			t.Errorf("Key filled Bound: %+v", k.Bound)
		}
		list, err := tx.Keys("a", latchkey.KeyFilter{})
		if err != nil {
			return err
		}
		for _, k := range list {
			if k.Bound != nil {
				t.Errorf("Keys filled the Bound of %s: %+v", k.ID, k.Bound)
			}
		}
		return nil
	})
}

func testKeyByHashBoundChanges(t *testing.T, s keys.Store) {
	ks, pol, own := boundFixture(t, s)
	both := ks["key_both"].Hash

	changed := fullPolicy("a", "production", 2)
	putPolicies(t, s, changed)
	if err := deleteOwnerErr(t, s, "a", "alice"); err != nil {
		t.Fatalf("DeleteOwner: %v", err)
	}
	wantPol := *changed
	wantPol.CreatedAt = pol.CreatedAt
	checkBound(t, "KeyByHash after PutPolicy and DeleteOwner", keyByHashBoth(t, s, both).Bound, &latchkey.Bound{Policy: &wantPol})
	checkBound(t, "KeyByHash of the owner's other key after DeleteOwner", keyByHashBoth(t, s, ks["key_owner"].Hash).Bound, nil)

	// A key moved to a policy that is not stored loses it; an owner
	// recorded again binds its keys again.
	k := ks["key_both"]
	k.Policy = "staging"
	update(t, s, func(tx keys.Tx) error { return tx.UpdateKey(k) })
	putOwners(t, s, own)
	checkBound(t, "KeyByHash after UpdateKey to an unstored policy and PutOwner", keyByHashBoth(t, s, both).Bound, &latchkey.Bound{Owner: own})
	putPolicies(t, s, fullPolicy("a", "staging", 3))
	stg := fullPolicy("a", "staging", 3)
	checkBound(t, "KeyByHash after the policy the key names is stored", keyByHashBoth(t, s, both).Bound, &latchkey.Bound{Policy: stg, Owner: own})
}

func testOwnerQuotaUsage(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "other")
	createKeys(t, s, key("acme", "key_1"))
	// An owner needs no record for its usage; its id may hold ':'.
	alice := latchkey.OwnerQuotaID("acme", "urn:client:alice")
	view(t, s, func(tx keys.Tx) error {
		u, err := tx.QuotaUsage(alice)
		if err != nil {
			return err
		}
		if u != (latchkey.QuotaUsage{KeyID: alice}) {
			t.Errorf("owner usage before any save = %+v, want zero", u)
		}
		return nil
	})
	first := latchkey.QuotaUsage{KeyID: alice, PeriodStart: t0, Used: 42}
	update(t, s, func(tx keys.Tx) error {
		ok, err := tx.SaveQuotaUsage(first)
		if err != nil || !ok {
			t.Errorf("first save = %v, %v", ok, err)
		}
		first.Used = 43
		ok, err = tx.SaveQuotaUsage(first)
		if err != nil || !ok {
			t.Errorf("second save at the same epoch = %v, %v", ok, err)
		}
		// The key's usage and another tenant's owner of the same id are
		// their own.
		if ok, err := tx.SaveQuotaUsage(latchkey.QuotaUsage{KeyID: "key_1", PeriodStart: t0, Used: 7}); err != nil || !ok {
			t.Errorf("key save = %v, %v", ok, err)
		}
		if ok, err := tx.SaveQuotaUsage(latchkey.QuotaUsage{KeyID: latchkey.OwnerQuotaID("other", "urn:client:alice"), Used: 5}); err != nil || !ok {
			t.Errorf("other tenant's owner save = %v, %v", ok, err)
		}
		return nil
	})
	view(t, s, func(tx keys.Tx) error {
		for _, c := range []struct {
			id   string
			used int64
		}{
			{alice, 43},
			{"key_1", 7},
			{latchkey.OwnerQuotaID("other", "urn:client:alice"), 5},
			{latchkey.OwnerQuotaID("acme", "urn:client:bob"), 0},
		} {
			u, err := tx.QuotaUsage(c.id)
			if err != nil {
				return fmt.Errorf("QuotaUsage(%s): %w", c.id, err)
			}
			if u.KeyID != c.id || u.Used != c.used || u.Epoch != 0 {
				t.Errorf("QuotaUsage(%s) = %+v, want %d used at epoch 0", c.id, u, c.used)
			}
		}
		u, err := tx.QuotaUsage(alice)
		if err != nil {
			return err
		}
		if !u.PeriodStart.Equal(t0) || u.PeriodStart.Location() != time.UTC {
			t.Errorf("owner usage PeriodStart = %v, want %v in UTC", u.PeriodStart, t0)
		}
		return nil
	})
	missing := latchkey.OwnerQuotaID("nope", "alice")
	err := s.Update(t.Context(), func(tx keys.Tx) error {
		_, err := tx.SaveQuotaUsage(latchkey.QuotaUsage{KeyID: missing, Used: 1})
		return err
	})
	wantCode(t, "SaveQuotaUsage of an owner of a missing tenant", err, latchkey.ENotFound)
	err = s.Update(t.Context(), func(tx keys.Tx) error { return tx.ResetQuotaUsage(missing) })
	wantCode(t, "ResetQuotaUsage of an owner of a missing tenant", err, latchkey.ENotFound)
}

func testOwnerQuotaUsageReset(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	createKeys(t, s, key("acme", "key_1"))
	alice := latchkey.OwnerQuotaID("acme", "alice")
	stale := latchkey.QuotaUsage{KeyID: alice, PeriodStart: t0, Used: 10}
	update(t, s, func(tx keys.Tx) error {
		if _, err := tx.SaveQuotaUsage(stale); err != nil {
			return err
		}
		if _, err := tx.SaveQuotaUsage(latchkey.QuotaUsage{KeyID: "key_1", Used: 3}); err != nil {
			return err
		}
		return tx.ResetQuotaUsage(alice)
	})
	var fresh latchkey.QuotaUsage
	update(t, s, func(tx keys.Tx) error {
		stale.Used = 99
		ok, err := tx.SaveQuotaUsage(stale)
		if err != nil || ok {
			t.Errorf("save at the old epoch after a reset = %v, %v; want refused", ok, err)
		}
		fresh, err = tx.QuotaUsage(alice)
		return err
	})
	if fresh.Used != 0 || fresh.Epoch == 0 || !fresh.PeriodStart.IsZero() {
		t.Fatalf("owner usage after reset = %+v, want 0 used at a new epoch", fresh)
	}
	update(t, s, func(tx keys.Tx) error {
		fresh.Used, fresh.PeriodStart = 5, t0
		ok, err := tx.SaveQuotaUsage(fresh)
		if err != nil || !ok {
			t.Errorf("save at the new epoch = %v, %v", ok, err)
		}
		// A reset of an owner never saved starts it at a new epoch too.
		if err := tx.ResetQuotaUsage(latchkey.OwnerQuotaID("acme", "bob")); err != nil {
			return err
		}
		bob, err := tx.QuotaUsage(latchkey.OwnerQuotaID("acme", "bob"))
		if err != nil {
			return err
		}
		if bob.Used != 0 || bob.Epoch == 0 {
			t.Errorf("usage of an owner reset before any save = %+v", bob)
		}
		ok, err = tx.SaveQuotaUsage(latchkey.QuotaUsage{KeyID: bob.KeyID, Used: 1})
		if err != nil || ok {
			t.Errorf("save at epoch 0 after a reset = %v, %v; want refused", ok, err)
		}
		return nil
	})
	view(t, s, func(tx keys.Tx) error {
		u, err := tx.QuotaUsage(alice)
		if err != nil {
			return err
		}
		if u.Used != 5 || u.Epoch != fresh.Epoch {
			t.Errorf("owner usage = %+v, want 5 used at epoch %d", u, fresh.Epoch)
		}
		k, err := tx.QuotaUsage("key_1")
		if err != nil {
			return err
		}
		if k.Used != 3 || k.Epoch != 0 {
			t.Errorf("the key's usage after its owner's reset = %+v, want 3 at epoch 0", k)
		}
		return nil
	})
}
