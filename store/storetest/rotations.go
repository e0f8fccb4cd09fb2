package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

func init() {
	moreTests = append(moreTests, []conformanceTest{
		{"RotationRoundTripsEveryField", testRotationRoundTrip},
		{"RotationTimesKeepInstantToMicrosecondInUTC", testRotationTimes},
		{"RotationPutReplacesByID", testRotationUpsert},
		{"RotationOnePerKeyAndSecretInTenant", testRotationConflicts},
		{"RotationNotFound", testRotationNotFound},
		{"RotationIsolatedByTenant", testRotationIsolation},
		{"DueRotationsEarliestFirstAcrossTenants", testDueRotations},
		{"DeleteRotation", testDeleteRotation},
		{"RotationPutRollsBack", testRotationRollback},
	}...)
}

// rotation returns a rotation of the key with every field set: the secret
// is named after the id, so rotations of one tenant do not collide.
func rotation(tenant, id, keyID string, next time.Time) *latchkey.Rotation {
	return &latchkey.Rotation{
		ID:        id,
		Tenant:    tenant,
		KeyID:     keyID,
		Interval:  latchkey.Duration(30 * 24 * time.Hour),
		Grace:     latchkey.Duration(36*time.Hour + 7*time.Nanosecond),
		Secret:    "secret-" + id,
		Reader:    "key_reader",
		NextAt:    next,
		CreatedAt: t0.Add(-48 * time.Hour),
		UpdatedAt: t0.Add(-time.Hour),
	}
}

// putRotations stores rs in one transaction and fails the test on an
// error.
func putRotations(t *testing.T, s keys.Store, rs ...*latchkey.Rotation) {
	t.Helper()
	update(t, s, func(tx keys.Tx) error {
		for _, r := range rs {
			if err := tx.PutRotation(r); err != nil {
				return fmt.Errorf("PutRotation(%s/%s): %w", r.Tenant, r.ID, err)
			}
		}
		return nil
	})
}

// putRotationErr tries to store r in a transaction of its own and returns
// the error.
func putRotationErr(t *testing.T, s keys.Store, r *latchkey.Rotation) error {
	return s.Update(t.Context(), func(tx keys.Tx) error { return tx.PutRotation(r) })
}

func getRotation(t *testing.T, s keys.Store, tenant, id string) (*latchkey.Rotation, error) {
	var r *latchkey.Rotation
	err := s.View(t.Context(), func(tx keys.Tx) (err error) {
		r, err = tx.Rotation(tenant, id)
		return err
	})
	return r, err
}

// checkRotation fails the test unless the tenant's rotation id reads back
// as want.
func checkRotation(t *testing.T, s keys.Store, what string, want *latchkey.Rotation) {
	t.Helper()
	got, err := getRotation(t, s, want.Tenant, want.ID)
	if err != nil {
		t.Fatalf("%s: Rotation(%s, %s): %v", what, want.Tenant, want.ID, err)
	}
	checkEqual(t, what, got, want)
}

func dueRotations(t *testing.T, s keys.Store, now time.Time, limit int) []*latchkey.Rotation {
	t.Helper()
	var got []*latchkey.Rotation
	view(t, s, func(tx keys.Tx) (err error) {
		got, err = tx.DueRotations(now, limit)
		return err
	})
	if got == nil {
		t.Fatalf("DueRotations(%v, %d) returned nil, want a list", now, limit)
	}
	return got
}

func rotationIDs(rs []*latchkey.Rotation) []string {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	return ids
}

func testRotationRoundTrip(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	createKeys(t, s, key("acme", "key_1"), key("acme", "key_reader"))
	want := rotation("acme", "rot_1", "key_1", t0)
	update(t, s, func(tx keys.Tx) error {
		if err := tx.PutRotation(want); err != nil {
			return err
		}
		got, err := tx.Rotation("acme", "rot_1")
		if err != nil {
			return fmt.Errorf("Rotation in the putting transaction: %w", err)
		}
		checkEqual(t, "in the putting transaction", got, want)
		return nil
	})
	view(t, s, func(tx keys.Tx) error {
		got, err := tx.Rotation("acme", "rot_1")
		if err != nil {
			return fmt.Errorf("Rotation: %w", err)
		}
		checkEqual(t, "Rotation", got, want)
		got, err = tx.RotationOfKey("acme", "key_1")
		if err != nil {
			return fmt.Errorf("RotationOfKey: %w", err)
		}
		checkEqual(t, "RotationOfKey", got, want)
		due, err := tx.DueRotations(t0, 10)
		if err != nil {
			return fmt.Errorf("DueRotations: %w", err)
		}
		if len(due) != 1 {
			t.Fatalf("DueRotations: %q, want [rot_1]", rotationIDs(due))
		}
		checkEqual(t, "DueRotations", due[0], want)
		return nil
	})

	// An empty Reader and zero durations are values like any other.
	bare := rotation("acme", "rot_2", "key_reader", t0)
	bare.Reader, bare.Interval, bare.Grace = "", 0, 0
	putRotations(t, s, bare)
	checkRotation(t, s, "rotation with no reader", bare)
}

func testRotationTimes(t *testing.T, s keys.Store) {
	zone := time.FixedZone("PDT", -7*3600)
	instants := []struct {
		name string
		at   time.Time
	}{
		{"Nanoseconds", time.Date(2030, 5, 6, 7, 8, 9, 123456789, zone)},
		{"BeforeUnixEpoch", time.Date(1969, 7, 20, 20, 17, 40, 123456000, zone)},
		{"FarFuture", time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)},
	}
	createTenants(t, s, "acme")
	for i, tt := range instants {
		t.Run(tt.name, func(t *testing.T) {
			k := key("acme", fmt.Sprintf("key_t%d", i))
			createKeys(t, s, k)
			r := rotation("acme", fmt.Sprintf("rot_t%d", i), k.ID, tt.at)
			r.CreatedAt, r.UpdatedAt = tt.at, tt.at
			putRotations(t, s, r)
			got, err := getRotation(t, s, "acme", r.ID)
			if err != nil {
				t.Fatalf("Rotation: %v", err)
			}
			for name, g := range map[string]time.Time{
				"NextAt": got.NextAt, "CreatedAt": got.CreatedAt, "UpdatedAt": got.UpdatedAt,
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
}

func testRotationUpsert(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	createKeys(t, s, key("acme", "key_1"), key("acme", "key_2"))
	first := rotation("acme", "rot_1", "key_1", t0)
	putRotations(t, s, first)

	// A rotation: the successor takes KeyID, the next one is due an
	// interval later.
	next := *first
	next.KeyID = "key_2"
	next.NextAt = t0.Add(time.Duration(first.Interval))
	next.UpdatedAt = t0
	putRotations(t, s, &next)
	checkRotation(t, s, "after the second put", &next)

	view(t, s, func(tx keys.Tx) error {
		got, err := tx.RotationOfKey("acme", "key_2")
		if err != nil {
			return fmt.Errorf("RotationOfKey of the new key: %w", err)
		}
		checkEqual(t, "RotationOfKey of the new key", got, &next)
		_, err = tx.RotationOfKey("acme", "key_1")
		wantCode(t, "RotationOfKey of the key it moved off", err, latchkey.ENotFound)
		due, err := tx.DueRotations(t0, 10)
		if err != nil {
			return err
		}
		checkIDs(t, "DueRotations at the old NextAt", rotationIDs(due), []string{})
		return nil
	})

	// Every other field is replaced too, in a transaction that first reads
	// the rotation.
	changed := next
	changed.Interval, changed.Grace = latchkey.Duration(time.Hour), 0
	changed.Secret, changed.Reader = "renamed", ""
	changed.CreatedAt = t0.Add(-time.Minute)
	update(t, s, func(tx keys.Tx) error {
		if _, err := tx.Rotation("acme", "rot_1"); err != nil {
			return err
		}
		return tx.PutRotation(&changed)
	})
	checkRotation(t, s, "after the third put", &changed)
}

func testRotationConflicts(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "beta")
	createKeys(t, s, key("acme", "key_1"), key("acme", "key_2"), key("acme", "key_3"),
		key("beta", "key_b1"))
	rot1 := rotation("acme", "rot_1", "key_1", t0)
	putRotations(t, s, rot1)

	sameKey := rotation("acme", "rot_2", "key_1", t0)
	wantCode(t, "a second rotation of the same key", putRotationErr(t, s, sameKey), latchkey.EConflict)

	sameSecret := rotation("acme", "rot_2", "key_2", t0)
	sameSecret.Secret = rot1.Secret
	wantCode(t, "a second rotation with the same secret", putRotationErr(t, s, sameSecret), latchkey.EConflict)

	// The same secret name in another tenant is another secret.
	other := rotation("beta", "rot_b1", "key_b1", t0)
	other.Secret = rot1.Secret
	putRotations(t, s, other)

	rot2 := rotation("acme", "rot_2", "key_2", t0.Add(time.Hour))
	putRotations(t, s, rot2)

	// Replacing a rotation cannot take another's key or secret either.
	moved := *rot2
	moved.KeyID = "key_1"
	wantCode(t, "replacing a rotation with another's key", putRotationErr(t, s, &moved), latchkey.EConflict)
	moved = *rot2
	moved.Secret = rot1.Secret
	wantCode(t, "replacing a rotation with another's secret", putRotationErr(t, s, &moved), latchkey.EConflict)

	// Replacing a rotation with its own key and secret is no conflict.
	same := *rot2
	same.NextAt = t0.Add(2 * time.Hour)
	putRotations(t, s, &same)

	checkRotation(t, s, "rot_1 after the conflicts", rot1)
	checkRotation(t, s, "rot_2 after the conflicts", &same)
	checkRotation(t, s, "beta's rotation", other)

	// A free key and secret are still free after the refusals.
	putRotations(t, s, rotation("acme", "rot_3", "key_3", t0))
}

func testRotationNotFound(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	createKeys(t, s, key("acme", "key_1"), key("acme", "key_2"))
	putRotations(t, s, rotation("acme", "rot_1", "key_1", t0))

	err := putRotationErr(t, s, rotation("nobody", "rot_x", "key_2", t0))
	wantCode(t, "PutRotation in a missing tenant", err, latchkey.ENotFound)
	err = putRotationErr(t, s, rotation("acme", "rot_x", "key_missing", t0))
	wantCode(t, "PutRotation of a missing key", err, latchkey.ENotFound)

	view(t, s, func(tx keys.Tx) error {
		_, err := tx.Rotation("acme", "rot_missing")
		wantCode(t, "Rotation of a missing id", err, latchkey.ENotFound)
		_, err = tx.Rotation("nobody", "rot_1")
		wantCode(t, "Rotation in a missing tenant", err, latchkey.ENotFound)
		_, err = tx.Rotation("acme", "rot_x")
		wantCode(t, "Rotation refused before", err, latchkey.ENotFound)
		_, err = tx.RotationOfKey("acme", "key_2")
		wantCode(t, "RotationOfKey of a key without one", err, latchkey.ENotFound)
		_, err = tx.RotationOfKey("acme", "key_missing")
		wantCode(t, "RotationOfKey of a missing key", err, latchkey.ENotFound)
		return nil
	})
	err = s.Update(t.Context(), func(tx keys.Tx) error { return tx.DeleteRotation("acme", "rot_missing") })
	wantCode(t, "DeleteRotation of a missing id", err, latchkey.ENotFound)
}

func testRotationIsolation(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "beta")
	createKeys(t, s, key("acme", "key_a"), key("beta", "key_b"), key("beta", "key_b2"))
	mine := rotation("acme", "rot_a", "key_a", t0)
	putRotations(t, s, mine)

	view(t, s, func(tx keys.Tx) error {
		_, err := tx.Rotation("beta", "rot_a")
		wantCode(t, "Rotation of another tenant's id", err, latchkey.ENotFound)
		_, err = tx.RotationOfKey("beta", "key_a")
		wantCode(t, "RotationOfKey of another tenant's key", err, latchkey.ENotFound)
		return nil
	})
	err := s.Update(t.Context(), func(tx keys.Tx) error { return tx.DeleteRotation("beta", "rot_a") })
	wantCode(t, "DeleteRotation of another tenant's id", err, latchkey.ENotFound)

	// A tenant's rotation cannot name another tenant's key, nor take over
	// another tenant's rotation id.
	err = putRotationErr(t, s, rotation("beta", "rot_b", "key_a", t0))
	wantCode(t, "PutRotation of another tenant's key", err, latchkey.ENotFound)
	err = putRotationErr(t, s, rotation("beta", "rot_a", "key_b", t0.Add(time.Hour)))
	wantCode(t, "PutRotation with another tenant's rotation id", err, latchkey.EConflict)

	checkRotation(t, s, "acme's rotation after beta's attempts", mine)
	view(t, s, func(tx keys.Tx) error {
		_, err := tx.RotationOfKey("beta", "key_b")
		wantCode(t, "RotationOfKey of beta's key after the refusal", err, latchkey.ENotFound)
		return nil
	})
	// beta's own rotation of its key is fine.
	putRotations(t, s, rotation("beta", "rot_b", "key_b2", t0))
}

func testDueRotations(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "beta")
	var ks []*latchkey.Key
	for i := 1; i <= 6; i++ {
		tn := "acme"
		if i%2 == 1 {
			tn = "beta"
		}
		ks = append(ks, key(tn, fmt.Sprintf("key_%d", i)))
	}
	createKeys(t, s, ks...)
	// Put in an order that is neither NextAt's nor the ids'.
	putRotations(t, s,
		rotation("acme", "rot_4", "key_4", t0.Add(time.Microsecond)), // just after now
		rotation("beta", "rot_5", "key_5", t0.Add(-2*time.Hour)),
		rotation("acme", "rot_2", "key_2", t0), // exactly now: due
		rotation("beta", "rot_3", "key_3", t0.Add(-time.Hour)),
		rotation("acme", "rot_6", "key_6", t0.Add(time.Hour)),
		rotation("beta", "rot_1", "key_1", t0.Add(-time.Hour)), // ties with rot_3: by id
	)
	tests := []struct {
		name  string
		now   time.Time
		limit int
		want  []string
	}{
		{"All", t0, 10, []string{"rot_5", "rot_1", "rot_3", "rot_2"}},
		{"Limit", t0, 2, []string{"rot_5", "rot_1"}},
		{"LimitSplitsTie", t0, 3, []string{"rot_5", "rot_1", "rot_3"}},
		{"NowInUTC", t0.UTC(), 10, []string{"rot_5", "rot_1", "rot_3", "rot_2"}},
		{"NowBelowMicrosecond", t0.Add(999 * time.Nanosecond), 10, []string{"rot_5", "rot_1", "rot_3", "rot_2"}},
		{"NowOnLater", t0.Add(time.Microsecond), 10, []string{"rot_5", "rot_1", "rot_3", "rot_2", "rot_4"}},
		{"Later", t0.Add(24 * time.Hour), 10, []string{"rot_5", "rot_1", "rot_3", "rot_2", "rot_4", "rot_6"}},
		{"NoneDue", t0.Add(-3 * time.Hour), 10, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkIDs(t, "DueRotations", rotationIDs(dueRotations(t, s, tt.now, tt.limit)), tt.want)
		})
	}

	// A rotation that ran moves its NextAt on and is no longer due.
	ran := rotation("beta", "rot_5", "key_5", t0.Add(24*time.Hour))
	putRotations(t, s, ran)
	checkIDs(t, "DueRotations after rot_5 ran", rotationIDs(dueRotations(t, s, t0, 10)),
		[]string{"rot_1", "rot_3", "rot_2"})
	due := dueRotations(t, s, t0, 1)
	if len(due) == 1 {
		checkEqual(t, "the earliest due rotation", due[0], rotation("beta", "rot_1", "key_1", t0.Add(-time.Hour)))
	}
}

func testDeleteRotation(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	createKeys(t, s, key("acme", "key_1"), key("acme", "key_2"))
	r := rotation("acme", "rot_1", "key_1", t0)
	keep := rotation("acme", "rot_2", "key_2", t0)
	putRotations(t, s, r, keep)

	update(t, s, func(tx keys.Tx) error {
		if err := tx.DeleteRotation("acme", "rot_1"); err != nil {
			return err
		}
		_, err := tx.Rotation("acme", "rot_1")
		wantCode(t, "Rotation in the deleting transaction", err, latchkey.ENotFound)
		return nil
	})
	_, err := getRotation(t, s, "acme", "rot_1")
	wantCode(t, "Rotation after DeleteRotation", err, latchkey.ENotFound)
	view(t, s, func(tx keys.Tx) error {
		_, err := tx.RotationOfKey("acme", "key_1")
		wantCode(t, "RotationOfKey after DeleteRotation", err, latchkey.ENotFound)
		due, err := tx.DueRotations(t0, 10)
		if err != nil {
			return err
		}
		checkIDs(t, "DueRotations after DeleteRotation", rotationIDs(due), []string{"rot_2"})
		return nil
	})
	err = s.Update(t.Context(), func(tx keys.Tx) error { return tx.DeleteRotation("acme", "rot_1") })
	wantCode(t, "DeleteRotation twice", err, latchkey.ENotFound)
	checkRotation(t, s, "the other rotation", keep)

	// The key and the secret name are free again.
	again := rotation("acme", "rot_3", "key_1", t0)
	again.Secret = r.Secret
	putRotations(t, s, again)
	checkRotation(t, s, "a new rotation of the key", again)
}

func testRotationRollback(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	createKeys(t, s, key("acme", "key_1"), key("acme", "key_2"))
	orig := rotation("acme", "rot_1", "key_1", t0)
	putRotations(t, s, orig)

	stop := errors.New("stop")
	err := s.Update(t.Context(), func(tx keys.Tx) error {
		changed := *orig
		changed.KeyID, changed.NextAt = "key_2", t0.Add(time.Hour)
		if err := tx.PutRotation(&changed); err != nil {
			return err
		}
		if err := tx.PutRotation(rotation("acme", "rot_2", "key_1", t0)); err != nil {
			return err
		}
		if got, err := tx.Rotation("acme", "rot_2"); err != nil || got.KeyID != "key_1" {
			t.Errorf("the transaction does not see its own put: %v, %v", got, err)
		}
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	checkRotation(t, s, "the replaced rotation after the rollback", orig)
	_, err = getRotation(t, s, "acme", "rot_2")
	wantCode(t, "the inserted rotation after the rollback", err, latchkey.ENotFound)

	// A delete rolls back too.
	err = s.Update(t.Context(), func(tx keys.Tx) error {
		if err := tx.DeleteRotation("acme", "rot_1"); err != nil {
			return err
		}
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	checkRotation(t, s, "the deleted rotation after the rollback", orig)
}
