package storetest

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/identity"
	"github.com/latchkeyhq/latchkey/keys"
)

func init() {
	moreTests = append(moreTests, []conformanceTest{
		{"IdentityProviderRoundTrips", testIdentityProviderRoundTrip},
		{"IdentityProviderDuplicateNameConflicts", testIdentityProviderDuplicate},
		{"IdentityProvidersListedByNamePerTenant", testIdentityProvidersList},
		{"IdentityProviderDeleteNotFound", testIdentityProviderDelete},
		{"IdentityJTIAcceptedOnce", testIdentityJTIOnce},
		{"IdentityJTIsPrunedByExpiry", testIdentityJTIPrune},
		{"IdentityJTIRollsBack", testIdentityJTIRollback},
	}...)
}

// idp is the identity service's view of a store, as the server wires it.
func idp(s keys.Store) latchkey.Store[identity.Tx] { return latchkey.Narrow[identity.Tx](s) }

const idpBody = `{"issuer": "https://token.actions.githubusercontent.com", "audience": "latchkey", "claims": {"sub": "repo:acme/*"}, "n": 1.5}`

// sameJSON reports whether a and b hold the same JSON value (a backend
// may store the body as JSON and give it back reformatted).
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

func createIdP(t *testing.T, s keys.Store, tenant, name, body string, at time.Time) {
	t.Helper()
	update(t, idp(s), func(tx identity.Tx) error { return tx.CreateIdentityProvider(tenant, name, []byte(body), at) })
}

func testIdentityProviderRoundTrip(t *testing.T, s keys.Store) {
	createIdP(t, s, "acme", "github", idpBody, t0)
	view(t, idp(s), func(tx identity.Tx) error {
		body, at, err := tx.IdentityProvider("acme", "github")
		if err != nil {
			t.Fatalf("IdentityProvider: %v", err)
		}
		if !sameJSON(t, body, []byte(idpBody)) {
			t.Errorf("body = %s, want %s", body, idpBody)
		}
		if !at.Equal(t0.Truncate(time.Microsecond)) || at.Location() != time.UTC {
			t.Errorf("created_at = %v, want %v in UTC to the microsecond", at, t0)
		}
		if _, _, err := tx.IdentityProvider("globex", "github"); latchkey.ErrorCode(err) != latchkey.ENotFound {
			t.Errorf("another tenant's provider: %v, want not_found", err)
		}
		return nil
	})
}

func testIdentityProviderDuplicate(t *testing.T, s keys.Store) {
	createIdP(t, s, "acme", "github", idpBody, t0)
	err := idp(s).Update(t.Context(), func(tx identity.Tx) error {
		return tx.CreateIdentityProvider("acme", "github", []byte(`{"other": true}`), t0)
	})
	if latchkey.ErrorCode(err) != latchkey.EConflict {
		t.Fatalf("a second provider of the same name: %v, want conflict", err)
	}
	createIdP(t, s, "globex", "github", `{"other": true}`, t0) // the name is per tenant
	view(t, idp(s), func(tx identity.Tx) error {
		body, _, err := tx.IdentityProvider("acme", "github")
		if err != nil || !sameJSON(t, body, []byte(idpBody)) {
			t.Errorf("after the conflict: %s, %v; want the first body", body, err)
		}
		return nil
	})
}

func testIdentityProvidersList(t *testing.T, s keys.Store) {
	for _, n := range []string{"k8s", "github", "b-ci", "a_ci"} {
		createIdP(t, s, "acme", n, `{"name": "`+n+`"}`, t0)
	}
	createIdP(t, s, "globex", "other", `{}`, t0)
	var names []string
	view(t, idp(s), func(tx identity.Tx) error {
		return tx.IdentityProviders("acme", func(name string, body []byte, at time.Time) error {
			if !sameJSON(t, body, []byte(`{"name": "`+name+`"}`)) {
				t.Errorf("%s: body %s", name, body)
			}
			names = append(names, name)
			return nil
		})
	})
	if want := []string{"a_ci", "b-ci", "github", "k8s"}; !reflect.DeepEqual(names, want) {
		t.Errorf("IdentityProviders = %v, want %v (byte order, this tenant only)", names, want)
	}
	stop := errors.New("stop")
	n := 0
	err := idp(s).View(t.Context(), func(tx identity.Tx) error {
		return tx.IdentityProviders("acme", func(string, []byte, time.Time) error { n++; return stop })
	})
	if err != stop || n != 1 {
		t.Errorf("fn's error: walk returned %v after %d calls, want it at once", err, n)
	}
	view(t, idp(s), func(tx identity.Tx) error {
		return tx.IdentityProviders("nobody", func(name string, _ []byte, _ time.Time) error {
			t.Errorf("a tenant without providers lists %s", name)
			return nil
		})
	})
}

func testIdentityProviderDelete(t *testing.T, s keys.Store) {
	createIdP(t, s, "acme", "github", idpBody, t0)
	createIdP(t, s, "globex", "github", idpBody, t0)
	update(t, idp(s), func(tx identity.Tx) error { return tx.DeleteIdentityProvider("acme", "github") })
	err := idp(s).Update(t.Context(), func(tx identity.Tx) error { return tx.DeleteIdentityProvider("acme", "github") })
	if latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("deleting a deleted provider: %v, want not_found", err)
	}
	view(t, idp(s), func(tx identity.Tx) error {
		if _, _, err := tx.IdentityProvider("globex", "github"); err != nil {
			t.Errorf("deleting acme's provider took globex's: %v", err)
		}
		return nil
	})
}

func testIdentityJTIOnce(t *testing.T, s keys.Store) {
	use := func(tenant, issuer, jti string) error {
		return idp(s).Update(t.Context(), func(tx identity.Tx) error { return tx.UseIdentityJTI(tenant, issuer, jti, t0.Add(time.Hour)) })
	}
	if err := use("acme", "https://a", "j1"); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := use("acme", "https://a", "j1"); latchkey.ErrorCode(err) != latchkey.EConflict {
		t.Errorf("second use of the jti: %v, want conflict", err)
	}
	// A jti is the issuer's, in the tenant: the same string elsewhere is
	// another token.
	for _, c := range [][3]string{{"acme", "https://b", "j1"}, {"globex", "https://a", "j1"}, {"acme", "https://a", "j2"}} {
		if err := use(c[0], c[1], c[2]); err != nil {
			t.Errorf("UseIdentityJTI%v: %v, want it accepted", c, err)
		}
	}
}

func testIdentityJTIPrune(t *testing.T, s keys.Store) {
	for i, exp := range []time.Time{t0.Add(-time.Second), t0, t0.Add(time.Second)} {
		jti := string(rune('a' + i))
		update(t, idp(s), func(tx identity.Tx) error { return tx.UseIdentityJTI("acme", "https://a", jti, exp) })
	}
	var n int
	update(t, idp(s), func(tx identity.Tx) (err error) {
		n, err = tx.PruneIdentityJTIs(t0)
		return err
	})
	if n != 2 {
		t.Errorf("PruneIdentityJTIs = %d, want 2 (expired at or before now)", n)
	}
	for jti, kept := range map[string]bool{"a": false, "b": false, "c": true} {
		err := idp(s).Update(t.Context(), func(tx identity.Tx) error { return tx.UseIdentityJTI("acme", "https://a", jti, t0.Add(time.Hour)) })
		if got := latchkey.ErrorCode(err) == latchkey.EConflict; got != kept {
			t.Errorf("jti %s still recorded = %v after the prune, want %v (err %v)", jti, got, kept, err)
		}
	}
}

func testIdentityJTIRollback(t *testing.T, s keys.Store) {
	errRollback := errors.New("roll back")
	err := idp(s).Update(t.Context(), func(tx identity.Tx) error {
		if err := tx.UseIdentityJTI("acme", "https://a", "j1", t0.Add(time.Hour)); err != nil {
			return err
		}
		return errRollback
	})
	if err != errRollback {
		t.Fatalf("Update = %v, want the function's error", err)
	}
	update(t, idp(s), func(tx identity.Tx) error { return tx.UseIdentityJTI("acme", "https://a", "j1", t0.Add(time.Hour)) })
}
