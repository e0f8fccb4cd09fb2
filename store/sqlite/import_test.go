package sqlite

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
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
		if plan := queryPlan(t, db, q, args...); !strings.Contains(plan, "INDEX keys_tenant_parent (tenant_id=? AND parent_id=?") {
			t.Errorf("%s\nplan:\n%s", q, plan)
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
	if err := db.Update(ctx, func(tx *Tx) error { return tx.CreateTenant(&latchkey.Tenant{ID: "a", Name: "A", CreatedAt: at}) }); err != nil {
		t.Fatal(err)
	}
	importKeys := func(ks []*latchkey.Key) {
		if err := db.Update(ctx, func(tx *Tx) error { _, err := tx.ImportKeys(ks); return err }); err != nil {
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
	if err := db.View(context.Background(), func(tx *Tx) error {
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

// Runs of keys that share a template go in through one statement per
// thousand (fixed or varying lengths), the others a row at a time; every
// key reads back exactly as it was given, whichever way it went in.
func TestImportRunsStoreEveryKeyAsGiven(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "latchkey.db"))
	ctx := t.Context()
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	if err := db.Update(ctx, func(tx *Tx) error { return tx.CreateTenant(&latchkey.Tenant{ID: "a", Name: "A", CreatedAt: at}) }); err != nil {
		t.Fatal(err)
	}
	scopes, resources := []string{"data:read"}, []string{"agent:x"}
	tmpl := latchkey.Key{Tenant: "a", Name: "imported", Environment: "live", Scopes: scopes, Resources: resources,
		State: latchkey.StateActive, CreatedAt: at, UpdatedAt: at, ExpiresAt: at.Add(time.Hour), MaxConcurrent: 3}
	ids := latchkey.NewIDSequence("key", at)
	var ks []*latchkey.Key
	add := func(n int, f func(i int, k *latchkey.Key)) {
		for i := range n {
			k := new(latchkey.Key)
			*k = tmpl
			k.ID = ids.Next()
			k.Hash[0], k.Hash[1], k.Hash[2] = byte(len(ks)>>16), byte(len(ks)>>8), byte(len(ks))
			k.Start = "abcd"
			f(i, k)
			ks = append(ks, k)
		}
	}
	// A run longer than a statement takes, with fixed lengths.
	add(2500, func(i int, k *latchkey.Key) {})
	// Lengths that vary, owners JSON must escape, and characters substr
	// counts one each although they take several bytes.
	owners := []string{`quote"d`, `back\slash`, "tab\there", "ctl\x01", "über", "日本", ""}
	add(100, func(i int, k *latchkey.Key) {
		k.Start = strings.Repeat("s", i%7)
		k.Prefix = strings.Repeat("p", i%3)
		k.Owner = owners[i%len(owners)]
		if i%5 == 0 {
			k.Start = "é" + k.Start
		}
	})
	// Strings that are not UTF-8 cannot ride in JSON: those keys go in a
	// row at a time, and the run goes on after them.
	add(60, func(i int, k *latchkey.Key) {
		if i%20 == 7 {
			k.Start = "\xff\xfe"
			k.Owner = "o\xc3"
		}
	})
	// Another template (a different name) breaks the run.
	add(30, func(i int, k *latchkey.Key) { k.Name = "second" })
	// A hash twice in the batch is stored once.
	dup := new(latchkey.Key)
	*dup = *ks[10]
	dup.ID = ids.Next()
	ks = append(ks, dup)

	var created int
	if err := db.Update(ctx, func(tx *Tx) error {
		var err error
		created, err = tx.ImportKeys(ks)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if want := len(ks) - 1; created != want {
		t.Errorf("created %d, want %d", created, want)
	}
	// Again: all are stored already.
	if err := db.Update(ctx, func(tx *Tx) error {
		var err error
		created, err = tx.ImportKeys(ks[:50])
		return err
	}); err != nil || created != 0 {
		t.Errorf("re-import created %d (%v), want 0", created, err)
	}
	if err := db.View(ctx, func(tx *Tx) error {
		for _, want := range ks[:len(ks)-1] {
			got, err := tx.KeyByHash(want.Hash)
			if err != nil {
				return err
			}
			if got.ID != want.ID || got.Owner != want.Owner || got.Prefix != want.Prefix || got.Start != want.Start ||
				got.Name != want.Name || got.Environment != want.Environment || !got.ExpiresAt.Equal(want.ExpiresAt) ||
				got.MaxConcurrent != 3 || len(got.Scopes) != 1 || len(got.Resources) != 1 || got.Resources[0] != "agent:x" {
				t.Fatalf("stored %+v\nwant %+v", got, want)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A key's usage report reads minute rows through the primary key (0012
// dropped the tenant index that duplicated it).
func TestUsageLookupsUseThePrimaryKey(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "latchkey.db"))
	for _, table := range []string{"usage_minutes", "usage_hours", "usage_days"} {
		column := map[string]string{"usage_minutes": "minute", "usage_hours": "hour", "usage_days": "day"}[table]
		plan := queryPlan(t, db, `SELECT `+column+`, code, count FROM `+table+`
			WHERE tenant_id = ? AND key_id = ? AND `+column+` >= ? AND `+column+` < ? ORDER BY `+column+`, code`, "t", "k", 0, 1)
		if !strings.Contains(plan, "USING INDEX sqlite_autoindex_"+table+"_1 (key_id=? AND "+column+">? AND "+column+"<?)") {
			t.Errorf("%s:\n%s", table, plan)
		}
	}
}

// queryPlan is SQLite's plan for q, a line per step.
func queryPlan(t *testing.T, db *DB, q string, args ...any) string {
	t.Helper()
	rows, err := db.read.QueryContext(t.Context(), `EXPLAIN QUERY PLAN `+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan strings.Builder
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(detail + "\n")
	}
	return plan.String()
}

// The flush's last-use statements find each key by its id, not by
// reading every key.
func TestLastUsedStatementsSearchKeysById(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "latchkey.db"))
	for _, q := range []string{lastUsedGetQuery, lastUsedSetQuery} {
		plan := queryPlan(t, db, q, "[]")
		if !strings.Contains(plan, "USING INDEX sqlite_autoindex_keys_1 (id=?)") || strings.Contains(plan, "SCAN k\n") || strings.Contains(plan, "SCAN keys\n") {
			t.Errorf("%s\nplan:\n%s", q, plan)
		}
	}
}

// BenchmarkImportMillion imports 1,000,000 keys of one template into a new
// store as keys.Service does: batches of 100,000 sorted by hash, ids from
// one sequence. It reports keys/s for the whole million (the later
// batches, into a larger hash index, are the slower ones).
//
//	go test ./store/sqlite -run '^$' -bench ImportMillion -benchtime 1x
func BenchmarkImportMillion(b *testing.B) {
	const batch, batches = 100_000, 10
	at := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	scopes := []string{"data:read"}
	for b.Loop() {
		b.StopTimer()
		db := openTest(b, filepath.Join(b.TempDir(), "latchkey.db"))
		if err := db.Update(b.Context(), func(tx *Tx) error { return tx.CreateTenant(&latchkey.Tenant{ID: "a", Name: "A", CreatedAt: at}) }); err != nil {
			b.Fatal(err)
		}
		ids := latchkey.NewIDSequence("key", at)
		var took time.Duration
		for range batches {
			ks := make([]*latchkey.Key, batch)
			for i := range ks {
				k := &latchkey.Key{Tenant: "a", Name: "imported", Scopes: scopes, Resources: []string{},
					State: latchkey.StateActive, CreatedAt: at, UpdatedAt: at, Start: "abcd"}
				_, _ = rand.Read(k.Hash[:])
				ks[i] = k
			}
			slices.SortFunc(ks, func(x, y *latchkey.Key) int { return bytes.Compare(x.Hash[:], y.Hash[:]) })
			for _, k := range ks {
				k.ID = ids.Next()
			}
			start := time.Now()
			if err := db.Update(b.Context(), func(tx *Tx) error { _, err := tx.ImportKeys(ks); return err }); err != nil {
				b.Fatal(err)
			}
			took += time.Since(start)
		}
		b.ReportMetric(float64(batch*batches)/took.Seconds(), "keys/s")
		b.StartTimer()
	}
}
