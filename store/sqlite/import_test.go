package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// The index of children by parent holds only derived keys (0011); the
// lookups by parent still search it instead of scanning the tenant.
func TestParentLookupsUseThePartialIndex(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "latchkey.db"))
	for _, q := range []string{
		`SELECT ` + keyColumns + ` FROM keys WHERE tenant_id = ? AND parent_id = ? ORDER BY id`,
		`SELECT ` + keyColumns + ` FROM keys WHERE tenant_id = ? AND id > ? AND parent_id = ? ORDER BY id LIMIT 10`,
	} {
		args := []any{"t", "p"}
		if strings.Contains(q, "id > ?") {
			args = []any{"t", "", "p"}
		}
		rows, err := db.read.QueryContext(t.Context(), `EXPLAIN QUERY PLAN `+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan strings.Builder
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan.WriteString(detail + "\n")
		}
		rows.Close()
		if !strings.Contains(plan.String(), "INDEX keys_tenant_parent (tenant_id=? AND parent_id=?") {
			t.Errorf("%s\nplan:\n%s", q, plan.String())
		}
	}
}

// An import raises the write connection's page cache for its batches and
// the end of the import (no keys) brings it back.
func TestImportCacheShrinksAtTheEnd(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "latchkey.db"))
	ctx := t.Context()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cache := func() (n int64) {
		if err := db.write.QueryRowContext(ctx, `PRAGMA cache_size`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := db.Update(ctx, func(tx keys.Tx) error { return tx.CreateTenant(&latchkey.Tenant{ID: "a", Name: "A", CreatedAt: at}) }); err != nil {
		t.Fatal(err)
	}
	importKeys := func(ks []*latchkey.Key) {
		if err := db.Update(ctx, func(tx keys.Tx) error { _, err := tx.ImportKeys(ks); return err }); err != nil {
			t.Fatal(err)
		}
	}
	scopes := []string{"data:read"}
	var ks []*latchkey.Key
	for i := range 3 {
		k := &latchkey.Key{ID: fmt.Sprintf("key_%d", i), Tenant: "a", Name: "imported", Scopes: scopes, State: latchkey.StateActive, CreatedAt: at, UpdatedAt: at}
		k.Hash[0] = byte(i)
		ks = append(ks, k)
	}
	importKeys(ks)
	if got := cache(); got != -importCacheKiB {
		t.Errorf("cache_size during an import %d, want %d", got, -importCacheKiB)
	}
	importKeys(nil)
	if got := cache(); got != -normalCacheKiB {
		t.Errorf("cache_size after an import %d, want %d", got, -normalCacheKiB)
	}
	// The keys sharing one template's lists were stored with them.
	if err := db.View(context.Background(), func(tx keys.Tx) error {
		for _, want := range ks {
			got, err := tx.KeyByHash(want.Hash)
			if err != nil {
				return err
			}
			if got.ID != want.ID || len(got.Scopes) != 1 || got.Scopes[0] != "data:read" {
				t.Errorf("stored %+v", got)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
