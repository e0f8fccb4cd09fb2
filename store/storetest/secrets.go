package storetest

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/secrets"
)

func init() {
	moreTests = append(moreTests, []conformanceTest{
		{"KeyringTermsRoundTrip", testKeyringTerms},
		{"KeyringCheckRoundTrip", testKeyringCheck},
		{"SecretVersionsRoundTrip", testSecretVersions},
		{"SecretVersionNumbersNeverReused", testSecretNumbering},
		{"SecretsIsolatedByTenant", testSecretsTenants},
		{"SecretsListedByName", testSecretsList},
		{"SecretVersionsPruned", testSecretPrune},
		{"SecretInMissingTenantNotFound", testSecretMissingTenant},
	}...)
}

// sec and kr narrow the store to the secret service's transactions and
// the keyring's, as the server wires them.
func sec(s keys.Store) latchkey.Store[secrets.Tx] { return latchkey.Narrow[secrets.Tx](s) }

func kr(s keys.Store) latchkey.Store[latchkey.KeyringStore] {
	return latchkey.Narrow[latchkey.KeyringStore](s)
}

func testKeyringTerms(t *testing.T, s keys.Store) {
	view(t, kr(s), func(tx latchkey.KeyringStore) error {
		terms, err := tx.KeyringTerms()
		if err != nil || terms == nil || len(terms) != 0 {
			t.Fatalf("terms of an empty store: %v, %v; want [] and no error", terms, err)
		}
		return nil
	})
	at := t0.Add(1500 * time.Nanosecond)
	update(t, kr(s), func(tx latchkey.KeyringStore) error {
		for _, n := range []int64{2, 1} {
			if err := tx.AddKeyringTerm(latchkey.KeyringTerm{Term: n, Wrapped: []byte{byte(n), 0, 0xff}, CreatedAt: at}); err != nil {
				return err
			}
		}
		return nil
	})
	if err := kr(s).Update(t.Context(), func(tx latchkey.KeyringStore) error {
		return tx.AddKeyringTerm(latchkey.KeyringTerm{Term: 1, Wrapped: []byte{9}, CreatedAt: at})
	}); latchkey.ErrorCode(err) != latchkey.EConflict {
		t.Fatalf("duplicate term: %v, want conflict", err)
	}
	update(t, kr(s), func(tx latchkey.KeyringStore) error { return tx.RewrapKeyringTerm(2, []byte{7, 7}) })
	if err := kr(s).Update(t.Context(), func(tx latchkey.KeyringStore) error { return tx.RewrapKeyringTerm(3, []byte{1}) }); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("rewrap a missing term: %v, want not_found", err)
	}
	view(t, kr(s), func(tx latchkey.KeyringStore) error {
		terms, err := tx.KeyringTerms()
		if err != nil {
			return err
		}
		want := []latchkey.KeyringTerm{
			{Term: 1, Wrapped: []byte{1, 0, 0xff}, CreatedAt: at.UTC().Truncate(time.Microsecond)},
			{Term: 2, Wrapped: []byte{7, 7}, CreatedAt: at.UTC().Truncate(time.Microsecond)},
		}
		if !reflect.DeepEqual(terms, want) {
			t.Fatalf("terms = %+v\nwant %+v", terms, want)
		}
		return nil
	})
}

func testKeyringCheck(t *testing.T, s keys.Store) {
	view(t, kr(s), func(tx latchkey.KeyringStore) error {
		c, err := tx.KeyringCheck()
		if err != nil || c != nil {
			t.Fatalf("check of an empty store: %v, %v; want nil", c, err)
		}
		return nil
	})
	for _, v := range [][]byte{{1, 2, 3}, {4, 0, 5}} {
		update(t, kr(s), func(tx latchkey.KeyringStore) error { return tx.SetKeyringCheck(v) })
		view(t, kr(s), func(tx latchkey.KeyringStore) error {
			c, err := tx.KeyringCheck()
			if err != nil || !bytes.Equal(c, v) {
				t.Fatalf("check = %v, %v; want %v", c, err, v)
			}
			return nil
		})
	}
}

func secretVersion(tenant, name string, version int64, at time.Time) *latchkey.SecretVersion {
	return &latchkey.SecretVersion{
		Tenant: tenant, Name: name, Version: version,
		Ciphertext: []byte{0, byte(version), 0xfe, 0},
		ExpiresIn:  int64(1800 + version), Meta: map[string]string{"v": string(rune('0' + version))},
		CreatedAt: at.UTC(), CreatedBy: "key_writer",
	}
}

// putSecret stores the next version of a secret and returns it.
func putSecret(t *testing.T, s keys.Store, tenant, name string, at time.Time) *latchkey.SecretVersion {
	t.Helper()
	var v *latchkey.SecretVersion
	update(t, sec(s), func(tx secrets.Tx) error {
		n, err := tx.NextSecretVersion(tenant, name)
		if err != nil {
			return err
		}
		v = secretVersion(tenant, name, n, at)
		return tx.PutSecret(v)
	})
	return v
}

func testSecretVersions(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	v1 := putSecret(t, s, "acme", "openai", t0)
	v2 := putSecret(t, s, "acme", "openai", t0.Add(time.Minute))
	v2.Meta = map[string]string{"v": "2"}
	if v1.Version != 1 || v2.Version != 2 {
		t.Fatalf("versions %d, %d; want 1, 2", v1.Version, v2.Version)
	}
	view(t, sec(s), func(tx secrets.Tx) error {
		for _, c := range []struct {
			version int64
			want    *latchkey.SecretVersion
		}{{0, v2}, {1, v1}, {2, v2}} {
			got, err := tx.Secret("acme", "openai", c.version)
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("Secret(version %d) = %+v\nwant %+v", c.version, got, c.want)
			}
		}
		if _, err := tx.Secret("acme", "openai", 3); latchkey.ErrorCode(err) != latchkey.ENotFound {
			t.Fatalf("missing version: %v, want not_found", err)
		}
		if _, err := tx.Secret("acme", "anthropic", 0); latchkey.ErrorCode(err) != latchkey.ENotFound {
			t.Fatalf("missing secret: %v, want not_found", err)
		}
		vs, err := tx.SecretVersions("acme", "openai")
		if err != nil || len(vs) != 2 || vs[0].Version != 2 || vs[1].Version != 1 {
			t.Fatalf("versions = %v, %v; want 2, 1", vs, err)
		}
		if _, err := tx.SecretVersions("acme", "anthropic"); latchkey.ErrorCode(err) != latchkey.ENotFound {
			t.Fatalf("versions of a missing secret: %v, want not_found", err)
		}
		return nil
	})
	// A version that is not the next one conflicts.
	if err := sec(s).Update(t.Context(), func(tx secrets.Tx) error {
		return tx.PutSecret(secretVersion("acme", "openai", 2, t0))
	}); latchkey.ErrorCode(err) != latchkey.EConflict {
		t.Fatalf("put an old version number: %v, want conflict", err)
	}
}

func testSecretNumbering(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	putSecret(t, s, "acme", "openai", t0)
	putSecret(t, s, "acme", "openai", t0)
	update(t, sec(s), func(tx secrets.Tx) error { return tx.DeleteSecret("acme", "openai") })
	if err := sec(s).Update(t.Context(), func(tx secrets.Tx) error { return tx.DeleteSecret("acme", "openai") }); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("delete twice: %v, want not_found", err)
	}
	view(t, sec(s), func(tx secrets.Tx) error {
		if _, err := tx.Secret("acme", "openai", 1); latchkey.ErrorCode(err) != latchkey.ENotFound {
			t.Fatalf("deleted version: %v, want not_found", err)
		}
		if l, err := tx.Secrets("acme", latchkey.Page{}); err != nil || len(l) != 0 {
			t.Fatalf("list after delete: %v, %v", l, err)
		}
		if l, err := tx.LatestSecrets("acme"); err != nil || len(l) != 0 {
			t.Fatalf("latest after delete: %v, %v", l, err)
		}
		return nil
	})
	v := putSecret(t, s, "acme", "openai", t0.Add(time.Hour))
	if v.Version != 3 {
		t.Fatalf("version after delete and put: %d, want 3", v.Version)
	}
	view(t, sec(s), func(tx secrets.Tx) error {
		l, err := tx.Secrets("acme", latchkey.Page{})
		if err != nil || len(l) != 1 || l[0].Version != 3 || l[0].Versions != 1 || !l[0].CreatedAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("list after re-put: %+v, %v", l, err)
		}
		return nil
	})
}

func testSecretsTenants(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "globex")
	putSecret(t, s, "acme", "openai", t0)
	view(t, sec(s), func(tx secrets.Tx) error {
		if _, err := tx.Secret("globex", "openai", 0); latchkey.ErrorCode(err) != latchkey.ENotFound {
			t.Fatalf("another tenant's secret: %v, want not_found", err)
		}
		if l, err := tx.Secrets("globex", latchkey.Page{}); err != nil || len(l) != 0 {
			t.Fatalf("another tenant's list: %v, %v", l, err)
		}
		if n, err := tx.NextSecretVersion("globex", "openai"); err != nil || n != 1 {
			t.Fatalf("another tenant's next version: %d, %v", n, err)
		}
		return nil
	})
	if err := sec(s).Update(t.Context(), func(tx secrets.Tx) error { return tx.DeleteSecret("globex", "openai") }); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("delete another tenant's secret: %v, want not_found", err)
	}
}

func testSecretsList(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	for _, n := range []string{"openai", "anthropic", "my-service"} {
		putSecret(t, s, "acme", n, t0)
	}
	putSecret(t, s, "acme", "openai", t0.Add(time.Minute))
	view(t, sec(s), func(tx secrets.Tx) error {
		l, err := tx.Secrets("acme", latchkey.Page{})
		if err != nil {
			return err
		}
		var names []string
		for _, i := range l {
			names = append(names, i.Name)
		}
		if !reflect.DeepEqual(names, []string{"anthropic", "my-service", "openai"}) {
			t.Fatalf("names = %v", names)
		}
		o := l[2]
		if o.Version != 2 || o.Versions != 2 || o.ExpiresIn != 1802 || o.Meta["v"] != "2" ||
			!o.CreatedAt.Equal(t0) || !o.UpdatedAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("openai = %+v", o)
		}
		page, err := tx.Secrets("acme", latchkey.Page{After: "anthropic", Limit: 1})
		if err != nil || len(page) != 1 || page[0].Name != "my-service" {
			t.Fatalf("page after anthropic = %v, %v", page, err)
		}
		latest, err := tx.LatestSecrets("acme")
		if err != nil || len(latest) != 3 || latest[2].Name != "openai" || latest[2].Version != 2 {
			t.Fatalf("latest = %v, %v", latest, err)
		}
		return nil
	})
}

func testSecretPrune(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	for range 5 {
		putSecret(t, s, "acme", "openai", t0)
	}
	update(t, sec(s), func(tx secrets.Tx) error {
		n, err := tx.PruneSecretVersions("acme", "openai", 2)
		if err != nil || n != 3 {
			t.Fatalf("pruned %d, %v; want 3", n, err)
		}
		return nil
	})
	view(t, sec(s), func(tx secrets.Tx) error {
		vs, err := tx.SecretVersions("acme", "openai")
		if err != nil || len(vs) != 2 || vs[0].Version != 5 || vs[1].Version != 4 {
			t.Fatalf("after pruning: %v, %v", vs, err)
		}
		return nil
	})
	if v := putSecret(t, s, "acme", "openai", t0); v.Version != 6 {
		t.Fatalf("next version after pruning: %d, want 6", v.Version)
	}
}

func testSecretMissingTenant(t *testing.T, s keys.Store) {
	err := sec(s).Update(t.Context(), func(tx secrets.Tx) error {
		return tx.PutSecret(secretVersion("nobody", "openai", 1, t0))
	})
	if latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("put in a missing tenant: %v, want not_found", err)
	}
}
