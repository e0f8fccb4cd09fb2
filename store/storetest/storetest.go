// Package storetest is the conformance suite for keys.Store. Every backend
// runs Run from its own tests, so the key service behaves the same whichever
// database holds its data. The suite uses nothing but the keys.Store
// contract; it knows no SQL and no backend.
//
// Besides the comments on keys.Store, the suite pins down these behaviours,
// which callers may rely on:
//
//   - Times come back as the same instant in UTC, kept to the microsecond;
//     anything finer is dropped (truncated or rounded). A zero time comes
//     back zero.
//   - Scopes, Resources, IPAllow and Meta always come back non-nil: a nil
//     slice or map is stored as an empty one, so the API shows [] and {},
//     never null. Meta holds JSON values, so its numbers come back as
//     float64, arrays as []any and objects as map[string]any.
//   - Lists are ordered by id in Go's string order (byte by byte), never by a
//     locale's collation.
//   - A key id is unique across all tenants, as is a key hash.
//   - ParentID, RotatedFrom and RotatedTo are stored as given; the suite
//     always points them at keys that exist, so a backend may enforce that.
//   - Keys of a tenant that does not exist is an empty list, not an error.
//   - Policies and owner records keep their lists and maps non-nil, as
//     keys do; Preset is never stored. Only KeyByHash (in a transaction
//     or the store's transaction-free one) fills a key's Bound; Key, Keys
//     and Children leave it nil.
//   - An OwnerQuotaID's quota usage is kept apart from every key's, needs
//     no owner record, and outlives DeleteOwner.
//   - Keys with a State filter and a zero Now is an error: a forgotten Now
//     would otherwise silently filter at the year 1.
//   - Update returns fn's error unchanged. If fn panics, the transaction is
//     rolled back and the panic goes on up; the store stays usable.
//   - View cannot write.
//   - Update waits for no View, and View does not see what commits after its
//     first read.
//   - View and Update with a cancelled context fail with an error that
//     matches context.Canceled, and write nothing.
//
// A failing write is always tried in a transaction of its own, because some
// databases (PostgreSQL) refuse every later statement in a transaction once
// one has failed.
package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/usage"
	webhooksvc "github.com/latchkeyhq/latchkey/webhook"
)

// Run runs the conformance suite. open must return a new, empty store for
// the test it is given, and close it when that test ends (t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) keys.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s keys.Store)
	}{
		{"Ping", testPing},
		{"TenantRoundTrip", testTenantRoundTrip},
		{"TenantDuplicateIDConflicts", testTenantDuplicate},
		{"TenantMissingNotFound", testTenantMissing},
		{"TenantsPagedInByteOrder", testTenantsPagination},
		{"KeyRoundTripsEveryField", testKeyRoundTrip},
		{"KeyTimesKeepInstantToMicrosecondInUTC", testKeyTimes},
		{"KeyEmptyValuesComeBackEmpty", testKeyEmptyValues},
		{"KeyDuplicateIDConflicts", testKeyDuplicateID},
		{"KeyDuplicateHashConflicts", testKeyDuplicateHash},
		{"KeyInMissingTenantNotFound", testKeyMissingTenant},
		{"ImportKeysSkipsStoredHashes", testImportKeys},
		{"KeyIsolatedByTenant", testKeyTenantIsolation},
		{"UpdateKeyChangesOnlyMutableFields", testUpdateKey},
		{"UpdateKeyClearsFields", testUpdateKeyClears},
		{"UpdateKeyMissingNotFound", testUpdateKeyMissing},
		{"KeysFilterByField", testKeysFilters},
		{"KeysFilterByStateAtNow", testKeysState},
		{"KeysStateNeedsNow", testKeysStateNeedsNow},
		{"KeysPagedInByteOrder", testKeysPagination},
		{"Children", testChildren},
		{"UpdateRollsBackOnError", testUpdateRollback},
		{"UpdateRollsBackOnPanic", testUpdatePanic},
		{"ViewSeesSnapshot", testViewSnapshot},
		{"ViewCannotWrite", testViewReadOnly},
		{"CancelledContext", testCancelled},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"QuotaUsageRoundTrips", testQuotaUsage},
		{"QuotaUsageResetStopsStaleSaves", testQuotaUsageReset},
		{"AuditChainsPerTenant", testAuditChain},
		{"AuditCheckpoints", testAuditCheckpoints},
		{"AuditFilters", testAuditFilters},
		{"AuditAppendRollsBack", testAuditRollback},
		{"AuditConcurrentAppends", testAuditConcurrent},
		{"UsageAddsUp", testUsageAddsUp},
		{"UsageIsolatedByTenantAndWindow", testUsageIsolation},
		{"UsageNetworksAddUp", testUsageNetworks},
		{"SetLastUsedOnlyMovesForward", testSetLastUsed},
		{"PruneUsage", testPruneUsage},
		{"NetworkHistory", testNetworkHistory},
		{"UsageRollsUpToHoursAndDays", testUsageRollups},
	}
	tests = append(tests, moreTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// moreTests are the conformance tests of each capability's store methods,
// added by the file that tests them (events.go, webhooks.go, …) in its
// init, so capabilities do not crowd one list.
var moreTests []conformanceTest

// conformanceTest is one named test of the suite.
type conformanceTest = struct {
	name string
	fn   func(*testing.T, keys.Store)
}

// t0 is the suite's reference instant: microsecond precision, in a zone that
// is not UTC, so a store that keeps the zone or drops microseconds shows.
var t0 = time.Date(2031, 3, 14, 15, 9, 26, 535897000, time.FixedZone("IST", 5*3600+1800))

func testPing(t *testing.T, s keys.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testTenantRoundTrip(t *testing.T, s keys.Store) {
	want := &latchkey.Tenant{ID: "acme", Name: "Acme Zürich ☃", CreatedAt: t0}
	update(t, s, func(tx keys.Tx) error {
		if err := tx.CreateTenant(want); err != nil {
			return err
		}
		got, err := tx.Tenant("acme")
		if err != nil {
			return fmt.Errorf("Tenant in the creating transaction: %w", err)
		}
		checkEqual(t, "in the creating transaction", got, want)
		return nil
	})
	view(t, s, func(tx keys.Tx) error {
		got, err := tx.Tenant("acme")
		if err != nil {
			return err
		}
		checkEqual(t, "Tenant", got, want)
		list, err := tx.Tenants(latchkey.Page{})
		if err != nil {
			return err
		}
		if len(list) != 1 {
			t.Fatalf("Tenants returned %d tenants, want 1", len(list))
		}
		checkEqual(t, "Tenants", list[0], want)
		return nil
	})
}

func testTenantDuplicate(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	dup := &latchkey.Tenant{ID: "acme", Name: "Other", CreatedAt: t0.Add(time.Hour)}
	err := s.Update(t.Context(), func(tx keys.Tx) error { return tx.CreateTenant(dup) })
	wantCode(t, "CreateTenant of an existing id", err, latchkey.EConflict)
	view(t, s, func(tx keys.Tx) error {
		got, err := tx.Tenant("acme")
		if err != nil {
			return err
		}
		checkEqual(t, "tenant after the conflict", got, tenant("acme"))
		return nil
	})
}

func testTenantMissing(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	view(t, s, func(tx keys.Tx) error {
		_, err := tx.Tenant("other")
		wantCode(t, "Tenant of a missing id", err, latchkey.ENotFound)
		return nil
	})
}

func testTenantsPagination(t *testing.T, s keys.Store) {
	// '-' < '0' < '_' < 'a' in byte order; a locale collation that ignores
	// punctuation would put "a-z" after "ab".
	ids := []string{"b", "a-z", "ab", "a_z", "c", "a0", "a", "z9"}
	createTenants(t, s, ids...)
	sorted := slices.Sorted(slices.Values(ids))

	tests := []struct {
		name string
		page latchkey.Page
		want []string
	}{
		{"All", latchkey.Page{}, sorted},
		{"LimitAboveCount", latchkey.Page{Limit: 100}, sorted},
		{"FirstPage", latchkey.Page{Limit: 3}, sorted[:3]},
		{"AfterExisting", latchkey.Page{After: "a0"}, []string{"a_z", "ab", "b", "c", "z9"}},
		{"AfterMissing", latchkey.Page{After: "aa", Limit: 2}, []string{"ab", "b"}},
		{"AfterLast", latchkey.Page{After: "z9"}, nil},
		{"AfterEverything", latchkey.Page{After: "zz"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			view(t, s, func(tx keys.Tx) error {
				got, err := tx.Tenants(tt.page)
				if err != nil {
					return err
				}
				checkIDs(t, fmt.Sprintf("Tenants(%+v)", tt.page), tenantIDs(got), tt.want)
				return nil
			})
		})
	}

	t.Run("WalkPages", func(t *testing.T) {
		var all []string
		after := ""
		for range len(ids) + 1 {
			var page []*latchkey.Tenant
			view(t, s, func(tx keys.Tx) (err error) {
				page, err = tx.Tenants(latchkey.Page{After: after, Limit: 3})
				return err
			})
			if len(page) > 3 {
				t.Fatalf("page of %d tenants, limit 3", len(page))
			}
			if len(page) == 0 {
				break
			}
			all = append(all, tenantIDs(page)...)
			after = page[len(page)-1].ID
		}
		checkIDs(t, "walking pages of 3", all, sorted)
	})
}

func testKeyRoundTrip(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	createKeys(t, s, relatives("acme", 1)...)
	want := fullKey("acme", "key_full", 1)
	checkAllSet(t, want)

	update(t, s, func(tx keys.Tx) error {
		if err := tx.CreateKey(want); err != nil {
			return err
		}
		got, err := tx.Key("acme", want.ID)
		if err != nil {
			return fmt.Errorf("Key in the creating transaction: %w", err)
		}
		checkEqual(t, "Key in the creating transaction", got, want)
		return nil
	})
	view(t, s, func(tx keys.Tx) error {
		got, err := tx.Key("acme", want.ID)
		if err != nil {
			return fmt.Errorf("Key: %w", err)
		}
		checkEqual(t, "Key", got, want)

		got, err = tx.KeyByHash(want.Hash)
		if err != nil {
			return fmt.Errorf("KeyByHash: %w", err)
		}
		checkEqual(t, "KeyByHash", got, want)

		list, err := tx.Keys("acme", latchkey.KeyFilter{Owner: want.Owner})
		if err != nil {
			return fmt.Errorf("Keys: %w", err)
		}
		if len(list) != 1 {
			t.Fatalf("Keys returned %v, want [%s]", keyIDs(list), want.ID)
		}
		checkEqual(t, "Keys", list[0], want)

		list, err = tx.Children("acme", want.ParentID)
		if err != nil {
			return fmt.Errorf("Children: %w", err)
		}
		if len(list) != 1 {
			t.Fatalf("Children returned %v, want [%s]", keyIDs(list), want.ID)
		}
		checkEqual(t, "Children", list[0], want)
		return nil
	})
}

func testKeyTimes(t *testing.T, s keys.Store) {
	zone := time.FixedZone("PDT", -7*3600)
	instants := []struct {
		name string
		at   time.Time
	}{
		{"Nanoseconds", time.Date(2030, 5, 6, 7, 8, 9, 123456789, zone)},
		{"HalfMicrosecond", time.Date(2030, 5, 6, 7, 8, 9, 500, zone)},
		{"BeforeUnixEpoch", time.Date(1969, 7, 20, 20, 17, 40, 123456000, zone)},
		{"FarFuture", time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)},
		{"UnixEpoch", time.Unix(0, 0)},
	}
	createTenants(t, s, "acme")
	for i, tt := range instants {
		t.Run(tt.name, func(t *testing.T) {
			k := key("acme", fmt.Sprintf("key_t%d", i))
			k.ExpiresAt, k.SuspendedUntil, k.GraceUntil = tt.at, tt.at, tt.at
			k.CreatedAt, k.UpdatedAt, k.RevokedAt = tt.at, tt.at, tt.at
			createKeys(t, s, k)
			got := getKey(t, s, "acme", k.ID)
			for name, g := range map[string]time.Time{
				"ExpiresAt": got.ExpiresAt, "SuspendedUntil": got.SuspendedUntil,
				"GraceUntil": got.GraceUntil, "CreatedAt": got.CreatedAt,
				"UpdatedAt": got.UpdatedAt, "RevokedAt": got.RevokedAt,
			} {
				if !g.Equal(tt.at.Truncate(time.Microsecond)) && !g.Equal(tt.at.Round(time.Microsecond)) {
					t.Errorf("%s = %v, want %v to the microsecond", name, g, tt.at)
				}
				if g.Location() != time.UTC {
					t.Errorf("%s is in %v, want UTC", name, g.Location())
				}
			}
		})
	}
	t.Run("Tenant", func(t *testing.T) {
		at := instants[0].at
		update(t, s, func(tx keys.Tx) error {
			return tx.CreateTenant(&latchkey.Tenant{ID: "ns", Name: "ns", CreatedAt: at})
		})
		view(t, s, func(tx keys.Tx) error {
			got, err := tx.Tenant("ns")
			if err != nil {
				return err
			}
			if !got.CreatedAt.Equal(at.Truncate(time.Microsecond)) && !got.CreatedAt.Equal(at.Round(time.Microsecond)) ||
				got.CreatedAt.Location() != time.UTC {
				t.Errorf("CreatedAt = %v, want %v to the microsecond in UTC", got.CreatedAt, at)
			}
			return nil
		})
	})
}

func testKeyEmptyValues(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	nilKey := &latchkey.Key{
		ID: "key_nil", Tenant: "acme", Name: "nil", Prefix: "lk", Start: "lk_0000",
		Hash: hashOf("nil"), State: latchkey.StateActive, CreatedAt: t0, UpdatedAt: t0,
	}
	emptyKey := &latchkey.Key{
		ID: "key_empty", Tenant: "acme", Name: "empty", Prefix: "lk", Start: "lk_0000",
		Hash: hashOf("empty"), State: latchkey.StateActive, CreatedAt: t0, UpdatedAt: t0,
		Scopes: []string{}, Resources: []string{}, Meta: map[string]any{}, IPAllow: []netip.Prefix{},
		Countries: []string{}, TimeWindows: []latchkey.TimeWindow{}, RateLimits: []latchkey.RateLimit{},
	}
	createKeys(t, s, nilKey, emptyKey)
	for _, k := range []*latchkey.Key{nilKey, emptyKey} {
		want := withEmptyLists(*k)
		checkEqual(t, k.ID, getKey(t, s, "acme", k.ID), &want)
	}
}

func testKeyDuplicateID(t *testing.T, s keys.Store) {
	createTenants(t, s, "a", "b")
	orig := key("a", "key_1")
	createKeys(t, s, orig)
	for _, tenant := range []string{"a", "b"} {
		dup := key(tenant, "key_1")
		dup.Hash = hashOf("another " + tenant)
		dup.Name = "duplicate"
		err := s.Update(t.Context(), func(tx keys.Tx) error { return tx.CreateKey(dup) })
		wantCode(t, "CreateKey with an id taken in tenant a, in tenant "+tenant, err, latchkey.EConflict)
	}
	checkEqual(t, "key after the conflicts", getKey(t, s, "a", "key_1"), orig)
	view(t, s, func(tx keys.Tx) error {
		_, err := tx.Key("b", "key_1")
		wantCode(t, "Key b/key_1", err, latchkey.ENotFound)
		return nil
	})
}

func testKeyDuplicateHash(t *testing.T, s keys.Store) {
	createTenants(t, s, "a", "b")
	orig := key("a", "key_1")
	createKeys(t, s, orig)
	for _, tenant := range []string{"a", "b"} {
		dup := key(tenant, "key_2")
		dup.Hash = orig.Hash
		err := s.Update(t.Context(), func(tx keys.Tx) error { return tx.CreateKey(dup) })
		wantCode(t, "CreateKey with a hash taken in tenant a, in tenant "+tenant, err, latchkey.EConflict)
	}
	view(t, s, func(tx keys.Tx) error {
		got, err := tx.KeyByHash(orig.Hash)
		if err != nil {
			return err
		}
		checkEqual(t, "KeyByHash after the conflicts", got, orig)
		for _, tenant := range []string{"a", "b"} {
			_, err := tx.Key(tenant, "key_2")
			wantCode(t, "Key "+tenant+"/key_2", err, latchkey.ENotFound)
		}
		return nil
	})
}

func testKeyMissingTenant(t *testing.T, s keys.Store) {
	createTenants(t, s, "a")
	k := key("nobody", "key_1")
	err := s.Update(t.Context(), func(tx keys.Tx) error { return tx.CreateKey(k) })
	wantCode(t, "CreateKey in a missing tenant", err, latchkey.ENotFound)
	view(t, s, func(tx keys.Tx) error {
		_, err := tx.KeyByHash(k.Hash)
		wantCode(t, "KeyByHash of the refused key", err, latchkey.ENotFound)
		return nil
	})
}

func testKeyTenantIsolation(t *testing.T, s keys.Store) {
	createTenants(t, s, "a", "b")
	parent := key("a", "key_p")
	child := key("a", "key_c")
	child.ParentID = parent.ID
	createKeys(t, s, parent, child)
	view(t, s, func(tx keys.Tx) error {
		_, err := tx.Key("b", parent.ID)
		wantCode(t, "Key of tenant a's id in tenant b", err, latchkey.ENotFound)
		_, err = tx.Key("a", "key_missing")
		wantCode(t, "Key of a missing id", err, latchkey.ENotFound)
		_, err = tx.Key("nobody", parent.ID)
		wantCode(t, "Key in a missing tenant", err, latchkey.ENotFound)
		_, err = tx.KeyByHash(hashOf("never issued"))
		wantCode(t, "KeyByHash of an unknown hash", err, latchkey.ENotFound)

		for _, tenant := range []string{"b", "nobody"} {
			list, err := tx.Keys(tenant, latchkey.KeyFilter{})
			if err != nil {
				return fmt.Errorf("Keys(%q): %w", tenant, err)
			}
			checkIDs(t, "Keys of tenant "+tenant, keyIDs(list), nil)
			list, err = tx.Children(tenant, parent.ID)
			if err != nil {
				return fmt.Errorf("Children(%q): %w", tenant, err)
			}
			checkIDs(t, "Children in tenant "+tenant, keyIDs(list), nil)
		}
		return nil
	})
}

func testUpdateKey(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	createKeys(t, s, relatives("acme", 1)...)
	createKeys(t, s, relatives("acme", 2)...)
	orig := fullKey("acme", "key_1", 1)
	createKeys(t, s, orig)

	changed := fullKey("acme", "key_1", 2)
	update(t, s, func(tx keys.Tx) error { return tx.UpdateKey(changed) })

	want := *changed
	want.Hash, want.Prefix, want.Start, want.CreatedAt = orig.Hash, orig.Prefix, orig.Start, orig.CreatedAt
	// LastUsedAt belongs to SetLastUsed: UpdateKey leaves it.
	want.LastUsedAt = orig.LastUsedAt
	checkEqual(t, "Key after UpdateKey", getKey(t, s, "acme", "key_1"), &want)
	view(t, s, func(tx keys.Tx) error {
		got, err := tx.KeyByHash(orig.Hash)
		if err != nil {
			return fmt.Errorf("KeyByHash of the original hash: %w", err)
		}
		checkEqual(t, "KeyByHash after UpdateKey", got, &want)
		_, err = tx.KeyByHash(changed.Hash)
		wantCode(t, "KeyByHash of the hash UpdateKey was given", err, latchkey.ENotFound)
		return nil
	})
}

func testUpdateKeyClears(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	createKeys(t, s, relatives("acme", 1)...)
	orig := fullKey("acme", "key_1", 1)
	createKeys(t, s, orig)

	cleared := *orig
	cleared.Owner, cleared.Environment, cleared.StateReason = "", "", ""
	cleared.ParentID, cleared.RotatedFrom, cleared.RotatedTo, cleared.SuspendedBy = "", "", "", ""
	cleared.Scopes, cleared.Resources, cleared.Meta, cleared.IPAllow = nil, nil, nil, nil
	cleared.Countries, cleared.TimeWindows, cleared.RateLimits, cleared.Quota = nil, nil, nil, nil
	cleared.MaxConcurrent, cleared.LeaseTTL = 0, 0
	cleared.ExpiresAt, cleared.SuspendedUntil, cleared.GraceUntil, cleared.RevokedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	cleared.State = latchkey.StateActive
	update(t, s, func(tx keys.Tx) error { return tx.UpdateKey(&cleared) })

	want := withEmptyLists(cleared)
	checkEqual(t, "Key after clearing", getKey(t, s, "acme", "key_1"), &want)
}

func testUpdateKeyMissing(t *testing.T, s keys.Store) {
	createTenants(t, s, "a", "b")
	orig := key("a", "key_1")
	createKeys(t, s, orig)
	tests := []struct{ name, tenant, id string }{
		{"MissingID", "a", "key_missing"},
		{"OtherTenant", "b", "key_1"},
		{"MissingTenant", "nobody", "key_1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := key(tt.tenant, tt.id)
			k.Name = "changed"
			err := s.Update(t.Context(), func(tx keys.Tx) error { return tx.UpdateKey(k) })
			wantCode(t, "UpdateKey "+tt.tenant+"/"+tt.id, err, latchkey.ENotFound)
		})
	}
	checkEqual(t, "key after the failed updates", getKey(t, s, "a", "key_1"), orig)
}

func testKeysFilters(t *testing.T, s keys.Store) {
	createTenants(t, s, "a", "b")
	mk := func(tenant, id, owner, env, name, parent string) *latchkey.Key {
		k := key(tenant, id)
		k.Owner, k.Environment, k.Name, k.ParentID = owner, env, name, parent
		return k
	}
	// Created in an order unlike id order, parents first.
	createKeys(t, s,
		mk("a", "k2", "alice", "staging", "billing", ""),
		mk("a", "k1", "alice", "production", "billing", ""),
		mk("a", "k4", "bob", "production", "billing", "k1"),
		mk("a", "k3", "bob", "production", "reports", "k1"),
		mk("a", "k5", "", "", "ci", "k3"),
		mk("b", "k6", "alice", "production", "billing", ""),
	)
	tests := []struct {
		name string
		f    latchkey.KeyFilter
		want []string
	}{
		{"None", latchkey.KeyFilter{}, []string{"k1", "k2", "k3", "k4", "k5"}},
		{"Owner", latchkey.KeyFilter{Owner: "alice"}, []string{"k1", "k2"}},
		{"OwnerAndEnvironment", latchkey.KeyFilter{Owner: "bob", Environment: "production"}, []string{"k3", "k4"}},
		{"Environment", latchkey.KeyFilter{Environment: "staging"}, []string{"k2"}},
		{"Name", latchkey.KeyFilter{Name: "billing"}, []string{"k1", "k2", "k4"}},
		{"NameAndOwner", latchkey.KeyFilter{Name: "billing", Owner: "bob"}, []string{"k4"}},
		{"ParentID", latchkey.KeyFilter{ParentID: "k1"}, []string{"k3", "k4"}},
		{"ParentIDGrandchild", latchkey.KeyFilter{ParentID: "k3"}, []string{"k5"}},
		{"ParentIDAndName", latchkey.KeyFilter{ParentID: "k1", Name: "reports"}, []string{"k3"}},
		{"NoMatch", latchkey.KeyFilter{Owner: "carol"}, nil},
		{"NameIsExact", latchkey.KeyFilter{Name: "bill"}, nil},
		{"OwnerLimit", latchkey.KeyFilter{Owner: "alice", Page: latchkey.Page{Limit: 1}}, []string{"k1"}},
		{"OwnerAfter", latchkey.KeyFilter{Owner: "alice", Page: latchkey.Page{After: "k1"}}, []string{"k2"}},
		{"AfterAndLimit", latchkey.KeyFilter{Page: latchkey.Page{After: "k2", Limit: 2}}, []string{"k3", "k4"}},
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

func testKeysState(t *testing.T, s keys.Store) {
	now := t0
	us := time.Microsecond
	type mod func(k *latchkey.Key)
	suspended := func(until time.Time) mod {
		return func(k *latchkey.Key) { k.State, k.SuspendedUntil = latchkey.StateSuspended, until }
	}
	revoked := func(k *latchkey.Key) { k.State, k.RevokedAt = latchkey.StateRevoked, now.Add(-time.Hour) }
	expires := func(at time.Time) mod { return func(k *latchkey.Key) { k.ExpiresAt = at } }
	grace := func(until time.Time) mod { return func(k *latchkey.Key) { k.GraceUntil = until } }

	cases := []struct {
		name string
		mods []mod
		want latchkey.State // at now
	}{
		{"plain", nil, latchkey.StateActive},
		{"expires later", []mod{expires(now.Add(us))}, latchkey.StateActive},
		{"expires now", []mod{expires(now)}, latchkey.StateExpired},
		{"expired", []mod{expires(now.Add(-time.Hour))}, latchkey.StateExpired},
		{"suspended indefinitely", []mod{suspended(time.Time{})}, latchkey.StateSuspended},
		{"suspended until later", []mod{suspended(now.Add(us))}, latchkey.StateSuspended},
		{"suspension ends now", []mod{suspended(now)}, latchkey.StateActive},
		{"suspension ended", []mod{suspended(now.Add(-time.Hour))}, latchkey.StateActive},
		{"suspension ended then expired", []mod{suspended(now.Add(-time.Hour)), expires(now.Add(-time.Minute))}, latchkey.StateExpired},
		{"suspended and expired", []mod{suspended(time.Time{}), expires(now.Add(-time.Hour))}, latchkey.StateSuspended},
		{"suspended until later and expired", []mod{suspended(now.Add(time.Hour)), expires(now.Add(-time.Hour))}, latchkey.StateSuspended},
		{"revoked", []mod{revoked}, latchkey.StateRevoked},
		{"revoked and expired", []mod{revoked, expires(now.Add(-time.Hour))}, latchkey.StateRevoked},
		{"revoked in grace", []mod{revoked, grace(now.Add(time.Hour))}, latchkey.StateRevoked},
		{"grace later", []mod{grace(now.Add(us))}, latchkey.StateActive},
		{"grace ends now", []mod{grace(now)}, latchkey.StateRevoked},
		{"grace ended", []mod{grace(now.Add(-time.Hour))}, latchkey.StateRevoked},
		{"grace ended while suspended", []mod{suspended(time.Time{}), grace(now.Add(-time.Hour))}, latchkey.StateRevoked},
		{"grace ended and expired", []mod{grace(now.Add(-time.Hour)), expires(now.Add(-2 * time.Hour))}, latchkey.StateRevoked},
		{"in grace and expired", []mod{grace(now.Add(time.Hour)), expires(now.Add(-time.Hour))}, latchkey.StateExpired},
	}
	createTenants(t, s, "a", "b")
	var all []*latchkey.Key
	for i, c := range cases {
		k := key("a", fmt.Sprintf("key_s%02d", i))
		k.Name = c.name
		for _, m := range c.mods {
			m(k)
		}
		if got := k.StateAt(now); got != c.want {
			t.Fatalf("fixture %q: StateAt = %s, want %s", c.name, got, c.want)
		}
		all = append(all, k)
	}
	createKeys(t, s, all...)
	// A revoked key in another tenant must not leak into tenant a's list.
	other := key("b", "key_other")
	other.State = latchkey.StateRevoked
	createKeys(t, s, other)

	states := []latchkey.State{latchkey.StateActive, latchkey.StateSuspended, latchkey.StateRevoked, latchkey.StateExpired}
	// The expected lists come from StateAt itself, at instants around the
	// boundaries: exactly on them, a nanosecond either side (finer than the
	// store keeps), and an hour and more away.
	instants := []time.Duration{0, -time.Nanosecond, time.Nanosecond, -500 * time.Nanosecond, -us, us, -90 * time.Minute, 90 * time.Minute, 3 * time.Hour}
	for _, d := range instants {
		at := now.Add(d)
		for _, state := range states {
			t.Run(fmt.Sprintf("%s/at%+v", state, d), func(t *testing.T) {
				var want []string
				for _, k := range all {
					if k.StateAt(at) == state {
						want = append(want, k.ID)
					}
				}
				view(t, s, func(tx keys.Tx) error {
					got, err := tx.Keys("a", latchkey.KeyFilter{State: state, Now: at})
					if err != nil {
						return err
					}
					if len(got) != len(want) || !slices.Equal(keyIDs(got), want) {
						t.Errorf("Keys(state %s at now%+v) = %v, want %v", state, d, keyNames(got), namesOf(all, want))
					}
					return nil
				})
			})
		}
	}

	t.Run("WithOtherFiltersAndPages", func(t *testing.T) {
		// Every case at now is in tenant a; name filters down to one.
		view(t, s, func(tx keys.Tx) error {
			got, err := tx.Keys("a", latchkey.KeyFilter{State: latchkey.StateRevoked, Now: now, Name: "grace ended"})
			if err != nil {
				return err
			}
			i := slices.IndexFunc(cases, func(c struct {
				name string
				mods []mod
				want latchkey.State
			}) bool {
				return c.name == "grace ended"
			})
			checkIDs(t, "revoked named \"grace ended\"", keyIDs(got), []string{fmt.Sprintf("key_s%02d", i)})

			var walked []string
			after := ""
			for range len(all) {
				page, err := tx.Keys("a", latchkey.KeyFilter{State: latchkey.StateActive, Now: now, Page: latchkey.Page{After: after, Limit: 2}})
				if err != nil {
					return err
				}
				if len(page) == 0 {
					break
				}
				walked = append(walked, keyIDs(page)...)
				after = page[len(page)-1].ID
			}
			var want []string
			for i, c := range cases {
				if c.want == latchkey.StateActive {
					want = append(want, fmt.Sprintf("key_s%02d", i))
				}
			}
			checkIDs(t, "active keys in pages of 2", walked, want)
			return nil
		})
	})
}

func testKeysStateNeedsNow(t *testing.T, s keys.Store) {
	createTenants(t, s, "a")
	createKeys(t, s, key("a", "key_1"))
	err := s.View(t.Context(), func(tx keys.Tx) error {
		_, err := tx.Keys("a", latchkey.KeyFilter{State: latchkey.StateActive})
		return err
	})
	if err == nil {
		t.Fatal("Keys with a State filter and a zero Now succeeded; want an error")
	}
}

func testKeysPagination(t *testing.T, s keys.Store) {
	createTenants(t, s, "a")
	// Upper case sorts before lower case byte by byte, unlike in most
	// locales; '-' and '_' sort around the digits.
	ids := []string{"key_a", "key_B", "key_0", "key_Z", "key_-", "key__", "key_b", "key_A1"}
	for _, id := range ids {
		createKeys(t, s, key("a", id))
	}
	sorted := slices.Sorted(slices.Values(ids))
	tests := []struct {
		name string
		page latchkey.Page
		want []string
	}{
		{"All", latchkey.Page{}, sorted},
		{"Limit", latchkey.Page{Limit: 3}, sorted[:3]},
		{"After", latchkey.Page{After: "key_Z"}, []string{"key__", "key_a", "key_b"}},
		{"AfterAndLimit", latchkey.Page{After: "key_0", Limit: 2}, []string{"key_A1", "key_B"}},
		{"AfterLast", latchkey.Page{After: "key_b"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			view(t, s, func(tx keys.Tx) error {
				got, err := tx.Keys("a", latchkey.KeyFilter{Page: tt.page})
				if err != nil {
					return err
				}
				checkIDs(t, fmt.Sprintf("Keys(%+v)", tt.page), keyIDs(got), tt.want)
				return nil
			})
		})
	}
}

func testChildren(t *testing.T, s keys.Store) {
	createTenants(t, s, "a", "b")
	mk := func(tenant, id, parent string) *latchkey.Key {
		k := key(tenant, id)
		k.ParentID = parent
		return k
	}
	createKeys(t, s,
		mk("a", "key_p", ""),
		mk("a", "key_c2", "key_p"),
		mk("a", "key_c1", "key_p"),
		mk("a", "key_C0", "key_p"),
		mk("a", "key_g", "key_c1"),
		mk("a", "key_lone", ""),
		mk("b", "key_bp", ""),
		mk("b", "key_bc", "key_bp"),
	)
	tests := []struct {
		tenant, parent string
		want           []string
	}{
		{"a", "key_p", []string{"key_C0", "key_c1", "key_c2"}},
		{"a", "key_c1", []string{"key_g"}},
		{"a", "key_g", nil},
		{"a", "key_lone", nil},
		{"a", "key_missing", nil},
		{"a", "key_bp", nil},
		{"b", "key_p", nil},
		{"b", "key_bp", []string{"key_bc"}},
	}
	for _, tt := range tests {
		t.Run(tt.tenant+"/"+tt.parent, func(t *testing.T) {
			view(t, s, func(tx keys.Tx) error {
				got, err := tx.Children(tt.tenant, tt.parent)
				if err != nil {
					return err
				}
				checkIDs(t, "Children", keyIDs(got), tt.want)
				return nil
			})
		})
	}
}

func testUpdateRollback(t *testing.T, s keys.Store) {
	createTenants(t, s, "a")
	orig := key("a", "key_1")
	createKeys(t, s, orig)

	stop := errors.New("stop")
	added := key("a", "key_2")
	inNew := key("new", "key_3")
	err := s.Update(t.Context(), func(tx keys.Tx) error {
		if err := tx.CreateTenant(tenant("new")); err != nil {
			return err
		}
		if err := tx.CreateKey(added); err != nil {
			return err
		}
		if err := tx.CreateKey(inNew); err != nil {
			return err
		}
		changed := *orig
		changed.Name, changed.State = "changed", latchkey.StateRevoked
		if err := tx.UpdateKey(&changed); err != nil {
			return err
		}
		if got, err := tx.Key("a", "key_1"); err != nil || got.Name != "changed" {
			t.Errorf("the transaction does not see its own update: %v, %v", got, err)
		}
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	checkRolledBack(t, s, orig, added, inNew)
}

func testUpdatePanic(t *testing.T, s keys.Store) {
	createTenants(t, s, "a")
	orig := key("a", "key_1")
	createKeys(t, s, orig)

	added := key("a", "key_2")
	inNew := key("new", "key_3")
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the panic from fn", r)
			}
		}()
		_ = s.Update(t.Context(), func(tx keys.Tx) error {
			if err := tx.CreateTenant(tenant("new")); err != nil {
				return err
			}
			if err := tx.CreateKey(added); err != nil {
				return err
			}
			if err := tx.CreateKey(inNew); err != nil {
				return err
			}
			changed := *orig
			changed.Name = "changed"
			if err := tx.UpdateKey(&changed); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	checkRolledBack(t, s, orig, added, inNew)
	// The store must still take writes: a leaked transaction would hold the
	// write lock (or the only write connection) forever.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.Update(ctx, func(tx keys.Tx) error { return tx.CreateKey(added) }); err != nil {
		t.Fatalf("Update after a panic: %v", err)
	}
}

// checkRolledBack checks that nothing of a transaction that created tenant
// "new", the keys added and inNew, and changed orig is visible.
func checkRolledBack(t *testing.T, s keys.Store, orig, added, inNew *latchkey.Key) {
	t.Helper()
	view(t, s, func(tx keys.Tx) error {
		_, err := tx.Tenant("new")
		wantCode(t, "rolled back tenant", err, latchkey.ENotFound)
		_, err = tx.Key("a", added.ID)
		wantCode(t, "rolled back key", err, latchkey.ENotFound)
		_, err = tx.KeyByHash(added.Hash)
		wantCode(t, "rolled back key by hash", err, latchkey.ENotFound)
		_, err = tx.Key("new", inNew.ID)
		wantCode(t, "rolled back key in rolled back tenant", err, latchkey.ENotFound)
		ts, err := tx.Tenants(latchkey.Page{})
		if err != nil {
			return err
		}
		checkIDs(t, "tenants after rollback", tenantIDs(ts), []string{"a"})
		ks, err := tx.Keys("a", latchkey.KeyFilter{})
		if err != nil {
			return err
		}
		checkIDs(t, "keys after rollback", keyIDs(ks), []string{orig.ID})
		got, err := tx.Key("a", orig.ID)
		if err != nil {
			return err
		}
		checkEqual(t, "updated key after rollback", got, orig)
		return nil
	})
}

func testViewSnapshot(t *testing.T, s keys.Store) {
	createTenants(t, s, "a")
	orig := key("a", "key_1")
	createKeys(t, s, orig)

	err := s.View(t.Context(), func(tx keys.Tx) error {
		ts, err := tx.Tenants(latchkey.Page{})
		if err != nil {
			return err
		}
		checkIDs(t, "tenants before", tenantIDs(ts), []string{"a"})

		done := make(chan error, 1)
		go func() {
			done <- s.Update(t.Context(), func(tx keys.Tx) error {
				if err := tx.CreateTenant(tenant("b")); err != nil {
					return err
				}
				if err := tx.CreateKey(key("a", "key_2")); err != nil {
					return err
				}
				changed := *orig
				changed.Name = "changed"
				return tx.UpdateKey(&changed)
			})
		}()
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("Update during View: %w", err)
			}
		case <-time.After(30 * time.Second):
			return errors.New("Update waited for an open View")
		}

		ts, err = tx.Tenants(latchkey.Page{})
		if err != nil {
			return err
		}
		checkIDs(t, "tenants in the View after a commit", tenantIDs(ts), []string{"a"})
		_, err = tx.Tenant("b")
		wantCode(t, "tenant committed after the View began", err, latchkey.ENotFound)
		ks, err := tx.Keys("a", latchkey.KeyFilter{})
		if err != nil {
			return err
		}
		checkIDs(t, "keys in the View after a commit", keyIDs(ks), []string{"key_1"})
		got, err := tx.Key("a", "key_1")
		if err != nil {
			return err
		}
		checkEqual(t, "key in the View after a commit", got, orig)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	view(t, s, func(tx keys.Tx) error {
		if _, err := tx.Tenant("b"); err != nil {
			return fmt.Errorf("tenant in a later View: %w", err)
		}
		got, err := tx.Key("a", "key_1")
		if err != nil {
			return err
		}
		if got.Name != "changed" {
			t.Errorf("a later View sees name %q, want the committed %q", got.Name, "changed")
		}
		return nil
	})
}

func testViewReadOnly(t *testing.T, s keys.Store) {
	createTenants(t, s, "a")
	orig := key("a", "key_1")
	createKeys(t, s, orig)
	writes := map[string]func(tx keys.Tx) error{
		"CreateTenant": func(tx keys.Tx) error { return tx.CreateTenant(tenant("b")) },
		"CreateKey":    func(tx keys.Tx) error { return tx.CreateKey(key("a", "key_2")) },
		"UpdateKey": func(tx keys.Tx) error {
			changed := *orig
			changed.Name = "changed"
			return tx.UpdateKey(&changed)
		},
	}
	for name, write := range writes {
		if err := s.View(t.Context(), write); err == nil {
			t.Errorf("%s in a View succeeded; want an error", name)
		}
	}
	view(t, s, func(tx keys.Tx) error {
		_, err := tx.Tenant("b")
		wantCode(t, "tenant written in a View", err, latchkey.ENotFound)
		_, err = tx.Key("a", "key_2")
		wantCode(t, "key written in a View", err, latchkey.ENotFound)
		got, err := tx.Key("a", "key_1")
		if err != nil {
			return err
		}
		checkEqual(t, "key updated in a View", got, orig)
		return nil
	})
}

func testCancelled(t *testing.T, s keys.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := s.Update(ctx, func(tx keys.Tx) error { return tx.CreateTenant(tenant("a")) })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update with a cancelled context: %v, want context.Canceled", err)
	}
	err = s.View(ctx, func(tx keys.Tx) error {
		_, err := tx.Tenants(latchkey.Page{})
		return err
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("View with a cancelled context: %v, want context.Canceled", err)
	}

	// A context that ends inside the transaction stops it there.
	ctx, cancel = context.WithCancel(t.Context())
	err = s.Update(ctx, func(tx keys.Tx) error {
		if err := tx.CreateTenant(tenant("b")); err != nil {
			return err
		}
		cancel()
		_, err := tx.Tenant("b")
		return err
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update whose context ends inside: %v, want context.Canceled", err)
	}

	view(t, s, func(tx keys.Tx) error {
		for _, id := range []string{"a", "b"} {
			_, err := tx.Tenant(id)
			wantCode(t, "tenant created with a cancelled context", err, latchkey.ENotFound)
		}
		return nil
	})
}

func testConcurrentUpdates(t *testing.T, s keys.Store) {
	const writers, perWriter, readers = 8, 25, 2
	createTenants(t, s, "a")
	ctx := t.Context()

	errs := make(chan error, writers*perWriter+readers)
	stop := make(chan struct{})
	var readWG sync.WaitGroup
	for range readers {
		readWG.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := s.View(ctx, func(tx keys.Tx) error {
					_, err := tx.Keys("a", latchkey.KeyFilter{Page: latchkey.Page{Limit: 50}})
					return err
				})
				if err != nil {
					errs <- fmt.Errorf("View: %w", err)
					return
				}
			}
		})
	}
	var writeWG sync.WaitGroup
	var want []string
	for w := range writers {
		for i := range perWriter {
			want = append(want, fmt.Sprintf("key_%02d_%03d", w, i))
		}
		writeWG.Go(func() {
			for i := range perWriter {
				id := fmt.Sprintf("key_%02d_%03d", w, i)
				// Reading before writing is what makes SQLite's deferred
				// transactions fail to upgrade; every Update does it here.
				err := s.Update(ctx, func(tx keys.Tx) error {
					if _, err := tx.Tenant("a"); err != nil {
						return err
					}
					if _, err := tx.Keys("a", latchkey.KeyFilter{Page: latchkey.Page{Limit: 1}}); err != nil {
						return err
					}
					return tx.CreateKey(key("a", id))
				})
				if err != nil {
					errs <- fmt.Errorf("Update %s: %w", id, err)
				}
			}
		})
	}
	writeWG.Wait()
	close(stop)
	readWG.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	slices.Sort(want)
	view(t, s, func(tx keys.Tx) error {
		got, err := tx.Keys("a", latchkey.KeyFilter{})
		if err != nil {
			return err
		}
		checkIDs(t, "keys after concurrent inserts", keyIDs(got), want)
		return nil
	})
}

// update runs fn in s.Update and fails the test if it returns an error.
// auditTx is what the audit tests exercise: the audit service's
// transactions (audit.Tx) and the appends every change makes
// (latchkey.AuditWriter), whose chain they check.
type auditTx interface {
	audit.Tx
	latchkey.AuditWriter
}

// aud, hooks and use narrow the store to the audit service's
// transactions, the webhooks' and the usage recorder's, as the server
// wires them: each test reaches a method through the contract that owns
// it.
func aud(s keys.Store) latchkey.Store[auditTx] { return latchkey.Narrow[auditTx](s) }

func hooks(s keys.Store) latchkey.Store[webhookTx] { return latchkey.Narrow[webhookTx](s) }

// webhookTx is the webhook dispatcher's and service's contract (the
// package's name is taken here by the webhook fixture).
type webhookTx = webhooksvc.Tx

func use(s keys.Store) latchkey.Store[usage.Tx] { return latchkey.Narrow[usage.Tx](s) }

func update[T any](t *testing.T, s latchkey.Store[T], fn func(T) error) {
	t.Helper()
	if err := s.Update(t.Context(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// view runs fn in s.View and fails the test if it returns an error.
func view[T any](t *testing.T, s latchkey.Store[T], fn func(T) error) {
	t.Helper()
	if err := s.View(t.Context(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

func tenant(id string) *latchkey.Tenant {
	return &latchkey.Tenant{ID: id, Name: "Tenant " + id, CreatedAt: t0}
}

func createTenants(t *testing.T, s keys.Store, ids ...string) {
	t.Helper()
	update(t, s, func(tx keys.Tx) error {
		for _, id := range ids {
			if err := tx.CreateTenant(tenant(id)); err != nil {
				return fmt.Errorf("CreateTenant(%s): %w", id, err)
			}
		}
		return nil
	})
}

func createKeys(t *testing.T, s keys.Store, ks ...*latchkey.Key) {
	t.Helper()
	update(t, s, func(tx keys.Tx) error {
		for _, k := range ks {
			if err := tx.CreateKey(k); err != nil {
				return fmt.Errorf("CreateKey(%s/%s): %w", k.Tenant, k.ID, err)
			}
		}
		return nil
	})
}

func getKey(t *testing.T, s keys.Store, tenant, id string) *latchkey.Key {
	t.Helper()
	var k *latchkey.Key
	view(t, s, func(tx keys.Tx) (err error) {
		k, err = tx.Key(tenant, id)
		return err
	})
	return k
}

func hashOf(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// key returns an active key with the fields every key has and nothing else.
func key(tenant, id string) *latchkey.Key {
	return &latchkey.Key{
		ID:          id,
		Tenant:      tenant,
		Name:        "key " + id,
		Environment: "production",
		Prefix:      "lk",
		Start:       "lk_" + id,
		Hash:        hashOf(tenant + "/" + id),
		Scopes:      []string{"data:read"},
		Resources:   []string{},
		Meta:        map[string]any{},
		IPAllow:     []netip.Prefix{},
		Countries:   []string{},
		TimeWindows: []latchkey.TimeWindow{},
		RateLimits:  []latchkey.RateLimit{},
		State:       latchkey.StateActive,
		CreatedAt:   t0,
		UpdatedAt:   t0,
	}
}

// withEmptyLists returns k with every nil list or map replaced by an empty
// one, as a store reads it back.
func withEmptyLists(k latchkey.Key) latchkey.Key {
	k.Scopes, k.Resources, k.Meta, k.IPAllow = []string{}, []string{}, map[string]any{}, []netip.Prefix{}
	k.Countries, k.TimeWindows, k.RateLimits = []string{}, []latchkey.TimeWindow{}, []latchkey.RateLimit{}
	return k
}

// relatives returns the keys fullKey(tenant, _, v) points at.
func relatives(tenant string, v int) []*latchkey.Key {
	return []*latchkey.Key{
		key(tenant, fmt.Sprintf("key_parent%d", v)),
		key(tenant, fmt.Sprintf("key_from%d", v)),
		key(tenant, fmt.Sprintf("key_to%d", v)),
	}
}

// fullKey returns a key with every field set, each to a value that differs
// with v. The values need not make sense together: a store keeps what it is
// given.
func fullKey(tenant, id string, v int) *latchkey.Key {
	at := func(h int) time.Time {
		return t0.Add(time.Duration(v*100+h)*time.Hour + time.Duration(v)*time.Microsecond)
	}
	return &latchkey.Key{
		ID:          id,
		Tenant:      tenant,
		Name:        fmt.Sprintf("Zürich reports ☃ %d", v),
		Owner:       fmt.Sprintf("owner-%d@example.com", v),
		Environment: fmt.Sprintf("env-%d", v),
		Prefix:      fmt.Sprintf("sk_live%d", v),
		Start:       fmt.Sprintf("sk_live%d_Ab3x", v),
		Hash:        hashOf(fmt.Sprintf("%s/%s/%d", tenant, id, v)),
		Scopes:      []string{"data:read", fmt.Sprintf("agent:activate%d", v), "secrets:*"},
		Resources:   []string{"agent:report-generator", fmt.Sprintf("workflow:nightly%d", v)},
		Meta: map[string]any{
			"team":   "payments",
			"v":      float64(v),
			"ratio":  0.25,
			"on":     true,
			"none":   nil,
			"tags":   []any{"a", float64(v), false},
			"nested": map[string]any{"quote": `"<&>" ü`, "empty": map[string]any{}},
		},
		IPAllow: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix(fmt.Sprintf("192.0.2.%d/32", v)),
			netip.MustParsePrefix("2001:db8::/32"),
		},
		ExpiresAt:      at(5),
		State:          latchkey.StateSuspended,
		StateReason:    fmt.Sprintf("under review %d", v),
		SuspendedUntil: at(2),
		SuspendedBy:    fmt.Sprintf("key_suspender%d", v),
		Countries:      []string{"DE", fmt.Sprintf("F%c", 'A'+v%26)},
		TimeWindows: []latchkey.TimeWindow{
			{Days: []string{"mon", "fri"}, Start: "09:00", End: fmt.Sprintf("17:%02d", v%60), TZ: "Europe/Berlin"},
			{Start: "22:00", End: "06:00"},
		},
		RateLimits: []latchkey.RateLimit{
			{Name: "burst", Limit: int64(10 + v), Window: latchkey.Duration(time.Second)},
			{Name: "hourly", Limit: 1000, Window: latchkey.Duration(time.Hour)},
		},
		Quota:         &latchkey.Quota{Limit: int64(10000 + v), Period: "30d"},
		MaxConcurrent: 3 + v,
		LeaseTTL:      latchkey.Duration(time.Duration(30+v) * time.Second),
		ParentID:      fmt.Sprintf("key_parent%d", v),
		RotatedFrom:   fmt.Sprintf("key_from%d", v),
		RotatedTo:     fmt.Sprintf("key_to%d", v),
		GraceUntil:    at(3),
		CreatedAt:     at(0),
		UpdatedAt:     at(1),
		RevokedAt:     at(4),
		LastUsedAt:    at(6),
		Policy:        fmt.Sprintf("policy-%d", v),
		Condition:     fmt.Sprintf(`request.method == "GET" && request.headers["x-v"] == "%d"`, v),
	}
}

// checkAllSet fails the test if a field of k is zero or empty, so that a
// field added to latchkey.Key fails the round trip until fullKey sets it
// and the backends store it. Bound is not stored with the key (KeyByHash
// reads it from the policy and owner rows: policies.go, owners.go).
func checkAllSet(t *testing.T, k *latchkey.Key) {
	t.Helper()
	v := reflect.ValueOf(k).Elem()
	for i := range v.NumField() {
		if v.Type().Field(i).Name == "Bound" {
			continue
		}
		f := v.Field(i)
		empty := f.IsZero()
		if f.Kind() == reflect.Slice || f.Kind() == reflect.Map {
			empty = f.Len() == 0
		}
		if empty {
			t.Fatalf("fullKey leaves Key.%s empty; set it so the round trip covers it", v.Type().Field(i).Name)
		}
	}
}

// checkEqual compares two structs field by field: times by instant, and
// requiring got's to be in UTC; everything else with reflect.DeepEqual, so
// nil and empty differ.
func checkEqual[T any](t *testing.T, what string, got, want *T) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: got nil", what)
	}
	gv, wv := reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem()
	for i := range gv.NumField() {
		name := gv.Type().Field(i).Name
		g, w := gv.Field(i).Interface(), wv.Field(i).Interface()
		if gt, ok := g.(time.Time); ok {
			wt := w.(time.Time)
			if !gt.Equal(wt) || gt.Location() != time.UTC {
				t.Errorf("%s: %s = %v, want %v in UTC", what, name, gt, wt.UTC())
			}
			continue
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s: %s = %#v, want %#v", what, name, g, w)
		}
	}
}

// wantCode fails the test unless err carries the error code.
func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if !errors.Is(err, &latchkey.Error{Code: code}) {
		t.Errorf("%s: error %v (code %q), want code %q", what, err, latchkey.ErrorCode(err), code)
	}
}

func checkIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) || !slices.Equal(got, want) {
		t.Errorf("%s: ids %q, want %q", what, got, want)
	}
}

func tenantIDs(ts []*latchkey.Tenant) []string {
	var ids []string
	for _, x := range ts {
		ids = append(ids, x.ID)
	}
	return ids
}

func keyIDs(ks []*latchkey.Key) []string {
	var ids []string
	for _, k := range ks {
		ids = append(ids, k.ID)
	}
	return ids
}

// keyNames and namesOf describe the keys of a state test by the case
// names they carry, which read better in a failure than ids.
func keyNames(ks []*latchkey.Key) []string {
	var names []string
	for _, k := range ks {
		names = append(names, k.Name)
	}
	return names
}

func namesOf(all []*latchkey.Key, ids []string) []string {
	var names []string
	for _, k := range all {
		if slices.Contains(ids, k.ID) {
			names = append(names, k.Name)
		}
	}
	return names
}

func testQuotaUsage(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	createKeys(t, s, key("acme", "key_1"))
	view(t, s, func(tx keys.Tx) error {
		u, err := tx.QuotaUsage("key_1")
		if err != nil {
			return err
		}
		if u != (latchkey.QuotaUsage{KeyID: "key_1"}) {
			t.Errorf("usage before any save = %+v, want zero", u)
		}
		return nil
	})
	first := latchkey.QuotaUsage{KeyID: "key_1", PeriodStart: t0, Used: 42}
	update(t, s, func(tx keys.Tx) error {
		ok, err := tx.SaveQuotaUsage(first)
		if err != nil || !ok {
			t.Errorf("first save = %v, %v", ok, err)
		}
		// Saving again at the same epoch overwrites.
		first.Used = 43
		ok, err = tx.SaveQuotaUsage(first)
		if err != nil || !ok {
			t.Errorf("second save = %v, %v", ok, err)
		}
		return nil
	})
	view(t, s, func(tx keys.Tx) error {
		u, err := tx.QuotaUsage("key_1")
		if err != nil {
			return err
		}
		if u.Used != 43 || !u.PeriodStart.Equal(t0) || u.Epoch != 0 {
			t.Errorf("usage = %+v, want 43 used from %v at epoch 0", u, t0)
		}
		return nil
	})
	update(t, s, func(tx keys.Tx) error {
		_, err := tx.SaveQuotaUsage(latchkey.QuotaUsage{KeyID: "key_missing", Used: 1})
		wantCode(t, "SaveQuotaUsage of a missing key", err, latchkey.ENotFound)
		return nil
	})
}

func testQuotaUsageReset(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	createKeys(t, s, key("acme", "key_1"))
	stale := latchkey.QuotaUsage{KeyID: "key_1", PeriodStart: t0, Used: 10}
	update(t, s, func(tx keys.Tx) error {
		if _, err := tx.SaveQuotaUsage(stale); err != nil {
			return err
		}
		return tx.ResetQuotaUsage("key_1")
	})
	var fresh latchkey.QuotaUsage
	update(t, s, func(tx keys.Tx) error {
		stale.Used = 99
		ok, err := tx.SaveQuotaUsage(stale)
		if err != nil || ok {
			t.Errorf("save at the old epoch after a reset = %v, %v; want refused", ok, err)
		}
		fresh, err = tx.QuotaUsage("key_1")
		return err
	})
	if fresh.Used != 0 || fresh.Epoch == 0 {
		t.Fatalf("usage after reset = %+v, want 0 used at a new epoch", fresh)
	}
	update(t, s, func(tx keys.Tx) error {
		fresh.Used = 5
		ok, err := tx.SaveQuotaUsage(fresh)
		if err != nil || !ok {
			t.Errorf("save at the new epoch = %v, %v", ok, err)
		}
		if err := tx.ResetQuotaUsage("key_1"); err != nil {
			return err
		}
		u, err := tx.QuotaUsage("key_1")
		if err != nil {
			return err
		}
		if u.Used != 0 || u.Epoch <= fresh.Epoch {
			t.Errorf("second reset: %+v", u)
		}
		return nil
	})
}

func auditEv(tenant, action, target string, at time.Time) *latchkey.AuditEvent {
	return &latchkey.AuditEvent{
		At: at, Tenant: tenant, ActorKeyID: "key_actor", Action: action, TargetKeyID: target,
		IP: "192.0.2.1", UserAgent: "test/1", Result: latchkey.ResultSuccess,
		Details: map[string]string{"reason": "q\"uote ü"},
	}
}

func testAuditCheckpoints(t *testing.T, s keys.Store) {
	createTenants(t, s, "a", "b")
	update(t, s, func(tx keys.Tx) error {
		for _, tenant := range []string{"a", "a", "b"} {
			if err := tx.AppendAudit(auditEv(tenant, "key.updated", "key_1", t0)); err != nil {
				return err
			}
		}
		return nil
	})
	a1 := &latchkey.AuditCheckpoint{Tenant: "a", Seq: 1, Hash: "h1", Counter: 1, At: t0, MAC: "m1"}
	b1 := &latchkey.AuditCheckpoint{Tenant: "b", Seq: 1, Hash: "hb", Counter: 2, At: t0, MAC: "mb"}
	a2 := &latchkey.AuditCheckpoint{Tenant: "a", Seq: 2, Hash: "h2", Counter: 3, TamperKind: latchkey.AuditPastHead, TamperSeq: 2, At: t0.Add(time.Second), MAC: "m2"}
	for _, cp := range []*latchkey.AuditCheckpoint{a1, b1, a2} {
		update(t, aud(s), func(tx auditTx) error { return tx.PutAuditCheckpoint(cp) })
	}
	view(t, aud(s), func(tx auditTx) error {
		got, err := tx.AuditCheckpoint("a")
		if err != nil {
			return err
		}
		checkEqual(t, "checkpoint read back", got, a2)
		if none, err := tx.AuditCheckpoint("nobody"); err != nil || none != nil {
			t.Errorf("checkpoint of a tenant without one: %v, %v", none, err)
		}
		all, err := tx.AuditCheckpoints(0)
		if err != nil {
			return err
		}
		if len(all) != 2 || all[0].Tenant != "b" || all[1].Tenant != "a" {
			t.Errorf("checkpoints after 0: %+v; want b then a, in counter order", all)
		}
		later, err := tx.AuditCheckpoints(2)
		if err != nil || len(later) != 1 || later[0].Counter != 3 {
			t.Errorf("checkpoints after 2: %+v, %v", later, err)
		}
		seq, hash, err := tx.AuditLast("a")
		if err != nil {
			return err
		}
		hseq, hhash, err := tx.AuditHead("a")
		if err != nil || seq != 2 || seq != hseq || hash != hhash {
			t.Errorf("last event of a = %d %s, head %d %s, %v", seq, hash, hseq, hhash, err)
		}
		if seq, _, err := tx.AuditLast("nobody"); err != nil || seq != 0 {
			t.Errorf("last event of an empty log = %d, %v", seq, err)
		}
		return nil
	})
	err := aud(s).Update(context.Background(), func(tx auditTx) error {
		return tx.PutAuditCheckpoint(&latchkey.AuditCheckpoint{Tenant: "nobody", Seq: 1, Hash: "h", Counter: 9, At: t0, MAC: "m"})
	})
	if latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("checkpoint of an unknown tenant: %v", err)
	}
}

func testAuditChain(t *testing.T, s keys.Store) {
	createTenants(t, s, "a", "b")
	var appended []*latchkey.AuditEvent
	update(t, s, func(tx keys.Tx) error {
		for i, tenant := range []string{"a", "b", "a", "a", "b"} {
			e := auditEv(tenant, "key.updated", fmt.Sprintf("key_%d", i), t0.Add(time.Duration(i)*time.Second+time.Nanosecond))
			if err := tx.AppendAudit(e); err != nil {
				return err
			}
			appended = append(appended, e)
		}
		return nil
	})
	if appended[0].Seq != 1 || appended[2].Seq != 2 || appended[3].Seq != 3 || appended[4].Seq != 2 {
		t.Fatalf("seqs = %d %d %d %d %d; want one chain per tenant counting from 1",
			appended[0].Seq, appended[1].Seq, appended[2].Seq, appended[3].Seq, appended[4].Seq)
	}
	if appended[0].PrevHash != latchkey.GenesisHash || appended[2].PrevHash != appended[0].Hash {
		t.Fatal("prev_hash does not link the chain")
	}
	view(t, aud(s), func(tx auditTx) error {
		for _, tenant := range []string{"a", "b"} {
			evs, err := tx.AuditEvents(tenant, latchkey.AuditFilter{})
			if err != nil {
				return err
			}
			var c latchkey.ChainCheck
			for _, e := range evs {
				if e.Tenant != tenant {
					t.Errorf("tenant %s lists an event of %s", tenant, e.Tenant)
				}
				if !c.Next(e) {
					t.Errorf("tenant %s: chain broken at %d: %s", tenant, c.BrokenAt, c.Reason)
				}
			}
			seq, hash, err := tx.AuditHead(tenant)
			if err != nil {
				return err
			}
			c.Head(seq, hash)
			if c.BrokenAt != 0 || c.Events != int64(len(evs)) {
				t.Errorf("tenant %s: head check %+v", tenant, c)
			}
		}
		evs, err := tx.AuditEvents("a", latchkey.AuditFilter{})
		if err != nil {
			return err
		}
		checkEqual(t, "first audit event read back", evs[0], appended[0])
		seq, _, err := tx.AuditHead("nobody")
		if err != nil || seq != 0 {
			t.Errorf("head of an empty log = %d, %v", seq, err)
		}
		return nil
	})
}

func testAuditFilters(t *testing.T, s keys.Store) {
	createTenants(t, s, "a")
	update(t, s, func(tx keys.Tx) error {
		for i := range 6 {
			action := "key.created"
			if i%2 == 1 {
				action = "key.revoked"
			}
			if err := tx.AppendAudit(auditEv("a", action, fmt.Sprintf("key_%d", i%3), t0.Add(time.Duration(i)*time.Hour))); err != nil {
				return err
			}
		}
		return nil
	})
	tests := []struct {
		name string
		f    latchkey.AuditFilter
		want []int64
	}{
		{"All", latchkey.AuditFilter{}, []int64{1, 2, 3, 4, 5, 6}},
		{"AfterAndLimit", latchkey.AuditFilter{AfterSeq: 2, Limit: 2}, []int64{3, 4}},
		{"Action", latchkey.AuditFilter{Action: "key.revoked"}, []int64{2, 4, 6}},
		{"KeyAsTarget", latchkey.AuditFilter{KeyID: "key_1"}, []int64{2, 5}},
		{"KeyAsActor", latchkey.AuditFilter{KeyID: "key_actor", Limit: 1}, []int64{1}},
		{"SinceUntil", latchkey.AuditFilter{Since: t0.Add(time.Hour), Until: t0.Add(3 * time.Hour)}, []int64{2, 3}},
		{"Result", latchkey.AuditFilter{Result: "denied"}, nil},
	}
	for _, tt := range tests {
		view(t, aud(s), func(tx auditTx) error {
			evs, err := tx.AuditEvents("a", tt.f)
			if err != nil {
				return err
			}
			var got []int64
			for _, e := range evs {
				got = append(got, e.Seq)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("%s: seqs %v, want %v", tt.name, got, tt.want)
			}
			return nil
		})
	}
}

func testAuditRollback(t *testing.T, s keys.Store) {
	createTenants(t, s, "a")
	errBoom := latchkey.Errorf(latchkey.EConflict, "boom")
	err := s.Update(context.Background(), func(tx keys.Tx) error {
		if err := tx.AppendAudit(auditEv("a", "key.created", "key_1", t0)); err != nil {
			return err
		}
		return errBoom
	})
	if err != errBoom {
		t.Fatalf("Update = %v, want fn's error", err)
	}
	view(t, aud(s), func(tx auditTx) error {
		evs, err := tx.AuditEvents("a", latchkey.AuditFilter{})
		seq, _, herr := tx.AuditHead("a")
		if err != nil || herr != nil || len(evs) != 0 || seq != 0 {
			t.Errorf("after a rolled-back append: %d events, head %d (%v, %v)", len(evs), seq, err, herr)
		}
		return nil
	})
	update(t, s, func(tx keys.Tx) error {
		e := auditEv("a", "key.created", "key_1", t0)
		if err := tx.AppendAudit(e); err != nil {
			return err
		}
		if e.Seq != 1 {
			t.Errorf("seq after a rollback = %d, want 1", e.Seq)
		}
		return nil
	})
	update(t, s, func(tx keys.Tx) error {
		err := tx.AppendAudit(auditEv("nobody", "key.created", "key_1", t0))
		wantCode(t, "append to a missing tenant", err, latchkey.ENotFound)
		return nil
	})
}

func testAuditConcurrent(t *testing.T, s keys.Store) {
	createTenants(t, s, "a")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				err := s.Update(context.Background(), func(tx keys.Tx) error {
					return tx.AppendAudit(auditEv("a", "key.updated", fmt.Sprintf("key_%d_%d", g, i), t0))
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	view(t, aud(s), func(tx auditTx) error {
		evs, err := tx.AuditEvents("a", latchkey.AuditFilter{})
		if err != nil {
			return err
		}
		var c latchkey.ChainCheck
		for _, e := range evs {
			c.Next(e)
		}
		if len(evs) != 80 || c.BrokenAt != 0 {
			t.Errorf("%d events after 80 concurrent appends, chain %+v", len(evs), c)
		}
		return nil
	})
}

// minute returns the start of the n-th minute after t0's minute, in UTC.
func minute(n int) time.Time {
	return t0.UTC().Truncate(time.Minute).Add(time.Duration(n) * time.Minute)
}

func usageRows(t *testing.T, s keys.Store, tenant, keyID string, from, to time.Time) []latchkey.UsageRow {
	t.Helper()
	var rows []latchkey.UsageRow
	view(t, use(s), func(tx usage.Tx) (err error) {
		rows, err = tx.Usage(tenant, keyID, from, to)
		return err
	})
	return rows
}

func checkUsage(t *testing.T, what string, got, want []latchkey.UsageRow) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d rows %+v, want %+v", what, len(got), got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.KeyID != w.KeyID || g.Tenant != w.Tenant || !g.Minute.Equal(w.Minute) || g.Minute.Location() != time.UTC ||
			g.Code != w.Code || g.Count != w.Count {
			t.Errorf("%s: row %d = %+v, want %+v", what, i, g, w)
		}
	}
}

func testUsageAddsUp(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	createKeys(t, s, key("acme", "key_1"))
	if rows := usageRows(t, s, "acme", "key_1", minute(-10), minute(10)); rows == nil || len(rows) != 0 {
		t.Fatalf("Usage before any AddUsage = %#v, want an empty list", rows)
	}
	row := func(m int, code string, n int64) latchkey.UsageRow {
		return latchkey.UsageRow{KeyID: "key_1", Tenant: "acme", Minute: minute(m), Code: code, Count: n}
	}
	update(t, use(s), func(tx usage.Tx) error {
		return tx.AddUsage([]latchkey.UsageRow{row(0, "VALID", 3), row(0, "REVOKED", 1), row(1, "VALID", 2)})
	})
	update(t, use(s), func(tx usage.Tx) error {
		return tx.AddUsage([]latchkey.UsageRow{row(0, "VALID", 4), row(0, "VALID", 1)})
	})
	update(t, use(s), func(tx usage.Tx) error { return tx.AddUsage(nil) })
	checkUsage(t, "Usage", usageRows(t, s, "acme", "key_1", minute(0), minute(2)),
		[]latchkey.UsageRow{row(0, "REVOKED", 1), row(0, "VALID", 8), row(1, "VALID", 2)})
	// A rolled-back AddUsage adds nothing.
	errBoom := errors.New("boom")
	if err := use(s).Update(t.Context(), func(tx usage.Tx) error {
		if err := tx.AddUsage([]latchkey.UsageRow{row(0, "VALID", 100)}); err != nil {
			return err
		}
		return errBoom
	}); !errors.Is(err, errBoom) {
		t.Fatalf("Update = %v, want %v", err, errBoom)
	}
	checkUsage(t, "Usage after a rollback", usageRows(t, s, "acme", "key_1", minute(0), minute(1)),
		[]latchkey.UsageRow{row(0, "REVOKED", 1), row(0, "VALID", 8)})
}

func testUsageIsolation(t *testing.T, s keys.Store) {
	createTenants(t, s, "a", "b")
	createKeys(t, s, key("a", "key_1"), key("b", "key_2"))
	update(t, use(s), func(tx usage.Tx) error {
		return tx.AddUsage([]latchkey.UsageRow{
			{KeyID: "key_1", Tenant: "a", Minute: minute(0), Code: "VALID", Count: 1},
			{KeyID: "key_1", Tenant: "a", Minute: minute(5), Code: "VALID", Count: 2},
			{KeyID: "key_2", Tenant: "b", Minute: minute(0), Code: "VALID", Count: 3},
		})
	})
	if rows := usageRows(t, s, "b", "key_1", minute(-60), minute(60)); len(rows) != 0 {
		t.Errorf("another tenant reads %+v", rows)
	}
	// from is inclusive, to exclusive.
	checkUsage(t, "Usage [0, 5)", usageRows(t, s, "a", "key_1", minute(0), minute(5)),
		[]latchkey.UsageRow{{KeyID: "key_1", Tenant: "a", Minute: minute(0), Code: "VALID", Count: 1}})
	checkUsage(t, "Usage [1, 6)", usageRows(t, s, "a", "key_1", minute(1), minute(6)),
		[]latchkey.UsageRow{{KeyID: "key_1", Tenant: "a", Minute: minute(5), Code: "VALID", Count: 2}})
}

func testUsageNetworks(t *testing.T, s keys.Store) {
	createTenants(t, s, "a", "b")
	createKeys(t, s, key("a", "key_1"))
	n := func(m int, nw string, c int64) latchkey.UsageNetwork {
		return latchkey.UsageNetwork{KeyID: "key_1", Minute: minute(m), Network: nw, Count: c}
	}
	update(t, use(s), func(tx usage.Tx) error {
		return tx.AddUsageNetworks([]latchkey.UsageNetwork{n(0, "10.0.0.0/24", 2), n(0, "2001:db8::/48", 1), n(1, "10.0.0.0/24", 1)})
	})
	update(t, use(s), func(tx usage.Tx) error {
		return tx.AddUsageNetworks([]latchkey.UsageNetwork{n(0, "10.0.0.0/24", 5)})
	})
	var got []latchkey.UsageNetwork
	view(t, use(s), func(tx usage.Tx) (err error) {
		got, err = tx.UsageNetworks("a", "key_1", minute(0), minute(2))
		return err
	})
	want := []latchkey.UsageNetwork{n(0, "10.0.0.0/24", 7), n(0, "2001:db8::/48", 1), n(1, "10.0.0.0/24", 1)}
	if len(got) != len(want) {
		t.Fatalf("UsageNetworks = %+v, want %+v", got, want)
	}
	for i := range got {
		if got[i].KeyID != want[i].KeyID || !got[i].Minute.Equal(want[i].Minute) || got[i].Network != want[i].Network || got[i].Count != want[i].Count {
			t.Errorf("UsageNetworks row %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	view(t, use(s), func(tx usage.Tx) (err error) {
		got, err = tx.UsageNetworks("b", "key_1", minute(0), minute(2))
		if err == nil && (got == nil || len(got) != 0) {
			t.Errorf("UsageNetworks of another tenant's key = %#v, want an empty list", got)
		}
		return err
	})
}

func testSetLastUsed(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	created := key("acme", "key_1")
	createKeys(t, s, created)
	if k := getKey(t, s, "acme", "key_1"); !k.LastUsedAt.IsZero() {
		t.Fatalf("LastUsedAt of a new key = %v, want zero", k.LastUsedAt)
	}
	setLastUsed := func(id string, at, wantBefore time.Time) {
		t.Helper()
		update(t, use(s), func(tx usage.Tx) error {
			uses := []latchkey.LastUsed{{KeyID: id, At: at, Before: t0.Add(time.Hour)}}
			err := tx.SetLastUsed(uses)
			if err == nil && !uses[0].Before.Equal(wantBefore) {
				t.Errorf("SetLastUsed(%s, %v) returned before = %v, want %v", id, at, uses[0].Before, wantBefore)
			}
			return err
		})
	}
	// The first use reports the creation time as the last use before it.
	setLastUsed("key_1", t0, created.CreatedAt)
	setLastUsed("key_1", t0.Add(-time.Second), t0)
	if k := getKey(t, s, "acme", "key_1"); !k.LastUsedAt.Equal(t0) {
		t.Errorf("LastUsedAt after an earlier SetLastUsed = %v, want %v", k.LastUsedAt, t0)
	}
	setLastUsed("key_1", t0.Add(time.Second), t0)
	k := getKey(t, s, "acme", "key_1")
	if !k.LastUsedAt.Equal(t0.Add(time.Second)) {
		t.Errorf("LastUsedAt = %v, want %v", k.LastUsedAt, t0.Add(time.Second))
	}
	// UpdateKey with a key read before leaves it.
	stale := *k
	stale.LastUsedAt = time.Time{}
	stale.Name = "renamed"
	update(t, s, func(tx keys.Tx) error { return tx.UpdateKey(&stale) })
	if k := getKey(t, s, "acme", "key_1"); !k.LastUsedAt.Equal(t0.Add(time.Second)) || k.Name != "renamed" {
		t.Errorf("after UpdateKey: LastUsedAt %v, name %q; want %v, renamed", k.LastUsedAt, k.Name, t0.Add(time.Second))
	}
	setLastUsed("key_missing", t0, time.Time{})
	update(t, use(s), func(tx usage.Tx) error { return tx.SetLastUsed(nil) })

	// Many keys at once, each with its own time: one never used, one used
	// later than the new time (it stays), one missing, one moved forward.
	createKeys(t, s, key("acme", "key_2"), key("acme", "key_3"))
	setLastUsed("key_3", t0.Add(time.Hour), created.CreatedAt)
	uses := []latchkey.LastUsed{
		{KeyID: "key_2", At: t0.Add(time.Minute)},
		{KeyID: "key_3", At: t0.Add(time.Minute)},
		{KeyID: "key_gone", At: t0.Add(time.Minute)},
		{KeyID: "key_1", At: t0.Add(2 * time.Minute)},
	}
	update(t, use(s), func(tx usage.Tx) error { return tx.SetLastUsed(uses) })
	for i, want := range []time.Time{created.CreatedAt, t0.Add(time.Hour), {}, t0.Add(time.Second)} {
		if !uses[i].Before.Equal(want) {
			t.Errorf("%s: before = %v, want %v", uses[i].KeyID, uses[i].Before, want)
		}
	}
	for id, want := range map[string]time.Time{"key_1": t0.Add(2 * time.Minute), "key_2": t0.Add(time.Minute), "key_3": t0.Add(time.Hour)} {
		if k := getKey(t, s, "acme", id); !k.LastUsedAt.Equal(want) {
			t.Errorf("%s: LastUsedAt = %v, want %v", id, k.LastUsedAt, want)
		}
	}
}

func testPruneUsage(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	createKeys(t, s, key("acme", "key_1"))
	update(t, use(s), func(tx usage.Tx) error {
		if err := tx.AddUsage([]latchkey.UsageRow{
			{KeyID: "key_1", Tenant: "acme", Minute: minute(0), Code: "VALID", Count: 1},
			{KeyID: "key_1", Tenant: "acme", Minute: minute(1), Code: "VALID", Count: 1},
		}); err != nil {
			return err
		}
		return tx.AddUsageNetworks([]latchkey.UsageNetwork{{KeyID: "key_1", Minute: minute(0), Network: "10.0.0.0/24", Count: 1}})
	})
	update(t, use(s), func(tx usage.Tx) error {
		n, err := tx.PruneUsage(latchkey.GrainMinute, minute(1))
		if err == nil && n != 2 {
			t.Errorf("PruneUsage deleted %d rows, want 2", n)
		}
		return err
	})
	checkUsage(t, "Usage after PruneUsage", usageRows(t, s, "acme", "key_1", minute(0), minute(2)),
		[]latchkey.UsageRow{{KeyID: "key_1", Tenant: "acme", Minute: minute(1), Code: "VALID", Count: 1}})
	// The roll-ups outlive the minutes: each grain is pruned on its own.
	hour := minute(0).Truncate(time.Hour)
	checkUsage(t, "hour roll-up after pruning minutes", rollupRows(t, s, latchkey.GrainHour, hour, hour.Add(time.Hour)),
		[]latchkey.UsageRow{{KeyID: "key_1", Tenant: "acme", Minute: hour, Code: "VALID", Count: 2}})
	update(t, use(s), func(tx usage.Tx) error {
		n, err := tx.PruneUsage(latchkey.GrainHour, hour.Add(time.Hour))
		if err == nil && n != 1 {
			t.Errorf("PruneUsage(hour) deleted %d rows, want 1", n)
		}
		return err
	})
	day := minute(0).Truncate(24 * time.Hour)
	checkUsage(t, "day roll-up after pruning hours", rollupRows(t, s, latchkey.GrainDay, day, day.Add(24*time.Hour)),
		[]latchkey.UsageRow{{KeyID: "key_1", Tenant: "acme", Minute: day, Code: "VALID", Count: 2}})
	update(t, use(s), func(tx usage.Tx) error {
		n, err := tx.PruneUsage(latchkey.GrainDay, day.Add(24*time.Hour))
		if err == nil && n != 2 {
			t.Errorf("PruneUsage(day) deleted %d rows, want 2 (usage and network)", n)
		}
		return err
	})
	update(t, use(s), func(tx usage.Tx) error {
		_, err := tx.PruneUsage("week", day)
		if latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("PruneUsage(week) = %v, want invalid", err)
		}
		return nil
	})
}

func rollupRows(t *testing.T, s keys.Store, g latchkey.Grain, from, to time.Time) []latchkey.UsageRow {
	t.Helper()
	var rows []latchkey.UsageRow
	view(t, use(s), func(tx usage.Tx) (err error) {
		rows, err = tx.UsageRollup("acme", "key_1", g, from, to)
		return err
	})
	return rows
}

// testUsageRollups checks that minute rows add up into their UTC hour and
// day, and networks into their day.
func testUsageRollups(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "beta")
	createKeys(t, s, key("acme", "key_1"))
	hour := minute(0).Truncate(time.Hour)
	day := hour.Truncate(24 * time.Hour)
	at := func(d time.Duration) time.Time { return hour.Add(d) }
	row := func(m time.Time, code string, n int64) latchkey.UsageRow {
		return latchkey.UsageRow{KeyID: "key_1", Tenant: "acme", Minute: m, Code: code, Count: n}
	}
	nextDay := day.Add(24 * time.Hour)
	update(t, use(s), func(tx usage.Tx) error {
		if err := tx.AddUsage([]latchkey.UsageRow{
			row(at(0), "VALID", 1), row(at(59*time.Minute), "VALID", 2), row(at(59*time.Minute), "REVOKED", 5),
			row(at(time.Hour), "VALID", 4), row(nextDay, "VALID", 8),
		}); err != nil {
			return err
		}
		return tx.AddUsageNetworks([]latchkey.UsageNetwork{
			{KeyID: "key_1", Minute: at(0), Network: "10.0.0.0/24", Count: 1},
			{KeyID: "key_1", Minute: at(time.Hour), Network: "10.0.0.0/24", Count: 2},
			{KeyID: "key_1", Minute: nextDay, Network: "10.0.0.0/24", Count: 3},
		})
	})
	checkUsage(t, "hour roll-up", rollupRows(t, s, latchkey.GrainHour, hour, nextDay.Add(time.Hour)), []latchkey.UsageRow{
		row(hour, "REVOKED", 5), row(hour, "VALID", 3), row(hour.Add(time.Hour), "VALID", 4), row(nextDay, "VALID", 8),
	})
	checkUsage(t, "day roll-up", rollupRows(t, s, latchkey.GrainDay, day, nextDay.Add(24*time.Hour)), []latchkey.UsageRow{
		row(day, "REVOKED", 5), row(day, "VALID", 7), row(nextDay, "VALID", 8),
	})
	checkUsage(t, "minute grain = Usage", rollupRows(t, s, latchkey.GrainMinute, hour, hour.Add(time.Hour)),
		usageRows(t, s, "acme", "key_1", hour, hour.Add(time.Hour)))
	var nets []latchkey.UsageNetwork
	view(t, use(s), func(tx usage.Tx) (err error) {
		nets, err = tx.UsageNetworkDays("acme", "key_1", day, nextDay.Add(24*time.Hour))
		return err
	})
	if len(nets) != 2 || !nets[0].Minute.Equal(day) || nets[0].Count != 3 || !nets[1].Minute.Equal(nextDay) || nets[1].Count != 3 {
		t.Errorf("UsageNetworkDays = %+v, want 3 on each day", nets)
	}
	view(t, use(s), func(tx usage.Tx) error {
		other, err := tx.UsageRollup("beta", "key_1", latchkey.GrainDay, day, nextDay)
		if err == nil && len(other) != 0 {
			t.Errorf("another tenant reads roll-ups: %+v", other)
		}
		nets, err := tx.UsageNetworkDays("beta", "key_1", day, nextDay)
		if err == nil && len(nets) != 0 {
			t.Errorf("another tenant reads network roll-ups: %+v", nets)
		}
		if _, err := tx.UsageRollup("acme", "key_1", "week", day, nextDay); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("UsageRollup(week) = %v, want invalid", err)
		}
		return nil
	})
}

func testNetworkHistory(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	createKeys(t, s, key("acme", "key_1"), key("acme", "key_2"))
	check := func(id, network string, wantThis, wantAny bool) {
		t.Helper()
		view(t, use(s), func(tx usage.Tx) error {
			this, anyNet, err := tx.NetworkHistory(id, network)
			if err == nil && (this != wantThis || anyNet != wantAny) {
				t.Errorf("NetworkHistory(%s, %s) = %v, %v; want %v, %v", id, network, this, anyNet, wantThis, wantAny)
			}
			return err
		})
	}
	check("key_1", "10.0.0.0/24", false, false)
	update(t, use(s), func(tx usage.Tx) error {
		return tx.AddUsageNetworks([]latchkey.UsageNetwork{{KeyID: "key_1", Minute: minute(0), Network: "10.0.0.0/24", Count: 1}})
	})
	check("key_1", "10.0.0.0/24", true, true)
	check("key_1", "10.9.0.0/24", false, true)
	check("key_2", "10.0.0.0/24", false, false)
}
