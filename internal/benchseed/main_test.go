package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// TestSeededKeysVerify seeds a database the way scripts/bench does (a
// tenant made first, then keys in several transactions) and verifies every
// plaintext the tool wrote through the key service, as the server would.
func TestSeededKeysVerify(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "latchkey.db")
	st, err := sqlite.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Update(ctx, func(tx *sqlite.Tx) error {
		return tx.CreateTenant(&latchkey.Tenant{ID: latchkey.OperatorTenant, Name: "Operator", CreatedAt: time.Now().UTC()})
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	plain := filepath.Join(dir, "keys.txt")
	const n = 250
	if err := run([]string{"-db", db, "-n", "250", "-batch", "100", "-keys", plain, "-scopes", "data:read,data:write"}, io.Discard); err != nil {
		t.Fatal(err)
	}

	st, err = sqlite.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](st)})
	f, err := os.Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k := sc.Text()
		if seen[k] {
			t.Fatalf("key %d repeats an earlier one", len(seen)+1)
		}
		seen[k] = true
		v, err := svc.Verify(ctx, keys.VerifyRequest{Key: k, Scopes: []string{"data:read", "data:write"}})
		if err != nil {
			t.Fatal(err)
		}
		if v.Code != latchkey.CodeValid {
			t.Fatalf("seeded key %d: code %s, want %s", len(seen), v.Code, latchkey.CodeValid)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("%d keys in the file, want %d", len(seen), n)
	}
}

// TestSeedNeedsTheTenant: seeding a database without the tenant fails
// instead of writing keys that no server would find.
func TestSeedNeedsTheTenant(t *testing.T) {
	dir := t.TempDir()
	err := run([]string{"-db", filepath.Join(dir, "latchkey.db"), "-n", "3", "-keys", filepath.Join(dir, "keys.txt")}, io.Discard)
	if latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("seeding without the tenant: %v, want a not-found error", err)
	}
}
