package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/limit/limittest"
	"github.com/latchkeyhq/latchkey/secrets"
	"github.com/latchkeyhq/latchkey/store/storetest"
	"github.com/latchkeyhq/latchkey/usage"
	"github.com/latchkeyhq/latchkey/webhook"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) keys.Store {
		return latchkey.Narrow[keys.Tx](openTest(t, filepath.Join(t.TempDir(), "latchkey.db")))
	})
}

// The transaction implements the contract of every service and port a
// node narrows it to (latchkey.Narrow); storetest's sections, and
// limittest for the limiter's, prove them.
var (
	_ keys.Tx             = (*Tx)(nil)
	_ secrets.Tx          = (*Tx)(nil)
	_ audit.Tx            = (*Tx)(nil)
	_ webhook.Tx          = (*Tx)(nil)
	_ usage.Tx            = (*Tx)(nil)
	_ keyring.Tx          = (*Tx)(nil)
	_ limittest.Tx        = (*Tx)(nil)
	_ latchkey.QuotaStore = (*Tx)(nil)
	_ latchkey.FlushTx    = (*Tx)(nil)
)

func openTest(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

var created = time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)

func TestReopenKeepsDataAndSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "dir", "latchkey.db")
	db, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(t.Context(), func(tx *Tx) error {
		return tx.CreateTenant(&latchkey.Tenant{ID: "acme", Name: "Acme", CreatedAt: created})
	})
	if err != nil {
		t.Fatal(err)
	}
	before := migrationRows(t, db.read)
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	db = openTest(t, path)
	err = db.View(t.Context(), func(tx *Tx) error {
		tn, err := tx.Tenant("acme")
		if err != nil {
			return err
		}
		if tn.Name != "Acme" || !tn.CreatedAt.Equal(created) {
			t.Errorf("tenant after reopening = %+v", tn)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if after := migrationRows(t, db.read); after != before {
		t.Errorf("schema_migrations changed on reopening:\nbefore %s\nafter  %s", before, after)
	}
}

// migrationRows describes schema_migrations, applied_at included, so that a
// migration run again shows.
func migrationRows(t *testing.T, db *sql.DB) string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), `SELECT version, name, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out string
	for rows.Next() {
		var v int
		var name string
		var at int64
		if err := rows.Scan(&v, &name, &at); err != nil {
			t.Fatal(err)
		}
		out += fmt.Sprintf("%d %s %d; ", v, name, at)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if out == "" {
		t.Fatal("schema_migrations is empty")
	}
	return out
}

// withMigration returns the embedded migrations plus one more.
// nextMigration returns the number the next migration file must carry and
// a file name with it, so these tests keep working as migrations are added.
func nextMigration(t *testing.T, suffix string) (int, string) {
	t.Helper()
	names, err := fs.Glob(migrations(), "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	n := len(names) + 1
	return n, fmt.Sprintf("%04d_%s.sql", n, suffix)
}

func withMigration(t *testing.T, name, sql string) fs.FS {
	t.Helper()
	fsys := fstest.MapFS{}
	names, err := fs.Glob(migrations(), "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		b, err := fs.ReadFile(migrations(), n)
		if err != nil {
			t.Fatal(err)
		}
		fsys[n] = &fstest.MapFile{Data: b}
	}
	fsys[name] = &fstest.MapFile{Data: []byte(sql)}
	return fsys
}

func TestFailedMigrationChangesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latchkey.db")
	db := openTest(t, path)
	before := migrationRows(t, db.read)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// The first statement works; the second does not. Both must go.
	_, brokenName := nextMigration(t, "broken")
	bad := withMigration(t, brokenName, `
		ALTER TABLE keys ADD COLUMN note TEXT NOT NULL DEFAULT '';
		CREATE TABLE extra (x INTEGER);
		INSERT INTO no_such_table VALUES (1);`)
	if _, err := open(t.Context(), path, bad); err == nil {
		t.Fatal("open with a broken migration succeeded")
	}

	db = openTest(t, path)
	if after := migrationRows(t, db.read); after != before {
		t.Errorf("schema_migrations after a failed migration:\nbefore %s\nafter  %s", before, after)
	}
	var n int
	if err := db.read.QueryRowContext(t.Context(),
		`SELECT count(*) FROM sqlite_schema WHERE name = 'extra'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("table extra from the failed migration exists")
	}
	if err := db.read.QueryRowContext(t.Context(),
		`SELECT count(*) FROM pragma_table_info('keys') WHERE name = 'note'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("column keys.note from the failed migration exists")
	}
}

func TestNewMigrationAppliedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latchkey.db")
	db := openTest(t, path)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// ADD COLUMN fails if run twice, so reopening shows a repeat.
	next, noteName := nextMigration(t, "note")
	more := withMigration(t, noteName, `ALTER TABLE keys ADD COLUMN note TEXT NOT NULL DEFAULT '';`)
	for range 2 {
		db, err := open(t.Context(), path, more)
		if err != nil {
			t.Fatalf("open with a new migration: %v", err)
		}
		v, err := schemaVersion(t.Context(), db.write)
		if err != nil {
			t.Fatal(err)
		}
		if v != next {
			t.Errorf("schema version %d, want %d", v, next)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// This program's migrations stop before next: it must not run on a database
	// it does not know.
	if _, err := Open(t.Context(), path); err == nil {
		t.Error("Open of a database with a newer schema succeeded")
	}
}

func TestMigrationNamesChecked(t *testing.T) {
	tests := map[string]fstest.MapFS{
		"Gap":       {"0001_a.sql": {}, "0003_c.sql": {}},
		"Duplicate": {"0001_a.sql": {}, "0001_b.sql": {}},
		"BadName":   {"1_a.sql": {}},
	}
	for name, fsys := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := loadMigrations(fsys); err == nil {
				t.Error("loadMigrations succeeded")
			}
		})
	}
}

func TestPragmas(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "latchkey.db"))
	for name, pool := range map[string]*sql.DB{"write": db.write, "read": db.read} {
		t.Run(name, func(t *testing.T) {
			var mode string
			var sync, fk int
			if err := pool.QueryRowContext(t.Context(), `PRAGMA journal_mode`).Scan(&mode); err != nil {
				t.Fatal(err)
			}
			if err := pool.QueryRowContext(t.Context(), `PRAGMA synchronous`).Scan(&sync); err != nil {
				t.Fatal(err)
			}
			if err := pool.QueryRowContext(t.Context(), `PRAGMA foreign_keys`).Scan(&fk); err != nil {
				t.Fatal(err)
			}
			if mode != "wal" || sync != 2 || fk != 1 {
				t.Errorf("journal_mode %q, synchronous %d, foreign_keys %d; want wal, 2 (FULL), 1", mode, sync, fk)
			}
		})
	}
}

func TestFilePrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latchkey.db")
	openTest(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("database file mode %v, want 0600", perm)
	}
}

func TestPathWithURICharacters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a dir?x=1#frag%20", "latchkey.db")
	openTest(t, path)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at the path given: %v", err)
	}
}

func TestCloseCheckpoints(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latchkey.db")
	db, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(t.Context(), func(tx *Tx) error {
		return tx.CreateTenant(&latchkey.Tenant{ID: "acme", Name: "Acme", CreatedAt: created})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() != 0 {
		t.Errorf("write-ahead log holds %d bytes after Close", fi.Size())
	}

	err = db.View(t.Context(), func(*Tx) error { return nil })
	if latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Errorf("View after Close: %v, want code %s", err, latchkey.EUnavailable)
	}
	if err := db.Ping(t.Context()); latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Errorf("Ping after Close: %v, want code %s", err, latchkey.EUnavailable)
	}

	// The file alone, without its log, holds the commit.
	db = openTest(t, path)
	err = db.View(t.Context(), func(tx *Tx) error {
		_, err := tx.Tenant("acme")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestReadersDoNotWaitForWriter(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "latchkey.db"))
	err := db.Update(t.Context(), func(tx *Tx) error {
		if err := tx.CreateTenant(&latchkey.Tenant{ID: "acme", Name: "Acme", CreatedAt: created}); err != nil {
			return err
		}
		// The write transaction holds SQLite's write lock here.
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		return db.View(ctx, func(tx *Tx) error {
			_, err := tx.Tenant("acme")
			if !errors.Is(err, &latchkey.Error{Code: latchkey.ENotFound}) {
				t.Errorf("View during an Update: %v, want the uncommitted tenant not found", err)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenRejectsMemory(t *testing.T) {
	for _, path := range []string{"", ":memory:"} {
		if db, err := Open(t.Context(), path); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", path)
		}
	}
}

func BenchmarkKeyByHash(b *testing.B) {
	const n = 10000
	db := openTest(b, filepath.Join(b.TempDir(), "latchkey.db"))
	ctx := b.Context()
	hashes := make([][32]byte, n)
	err := db.Update(ctx, func(tx *Tx) error {
		if err := tx.CreateTenant(&latchkey.Tenant{ID: "acme", Name: "Acme", CreatedAt: created}); err != nil {
			return err
		}
		for i := range n {
			var seed [8]byte
			binary.BigEndian.PutUint64(seed[:], uint64(i))
			hashes[i] = sha256.Sum256(seed[:])
			k := &latchkey.Key{
				ID: fmt.Sprintf("key_%06d", i), Tenant: "acme", Name: "bench", Owner: "owner@example.com",
				Environment: "production", Prefix: "lk", Start: "lk_abcd", Hash: hashes[i],
				Scopes: []string{"data:read", "agent:activate"}, Resources: []string{"agent:*"},
				Meta: map[string]any{"team": "payments"}, State: latchkey.StateActive,
				CreatedAt: created, UpdatedAt: created,
			}
			if err := tx.CreateKey(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	lookup := func(i int) {
		err := db.View(ctx, func(tx *Tx) error {
			_, err := tx.KeyByHash(hashes[i%n])
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}

	// The verify path's miss: DB.KeyByHash, without a transaction.
	direct := func(i int) {
		if _, err := db.KeyByHash(ctx, hashes[i%n]); err != nil {
			b.Fatal(err)
		}
	}
	for _, m := range []struct {
		name string
		fn   func(int)
	}{{"", lookup}, {"Direct", direct}} {
		b.Run(m.name+"Serial", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				m.fn(i)
				i++
			}
		})
		b.Run(m.name+"Parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					m.fn(i)
					i += 7
				}
			})
		})
	}
}

// The database itself refuses what the program never does to the audit
// log: an INSERT that does not extend the head, a head moved back or
// removed, a checkpoint moved back or removed.
func TestAuditLogAppendOnlyInTheDatabase(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "latchkey.db"))
	ctx := t.Context()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var head *latchkey.AuditEvent
	if err := db.Update(ctx, func(tx *Tx) error {
		if err := tx.CreateTenant(&latchkey.Tenant{ID: "a", Name: "A", CreatedAt: at}); err != nil {
			return err
		}
		for range 2 {
			head = &latchkey.AuditEvent{At: at, Tenant: "a", Action: "key.updated", Result: latchkey.ResultSuccess}
			if err := tx.AppendAudit(head); err != nil {
				return err
			}
		}
		return tx.PutAuditCheckpoint(&latchkey.AuditCheckpoint{Tenant: "a", Seq: 2, Hash: head.Hash, Counter: 5, At: at, MAC: "m"})
	}); err != nil {
		t.Fatal(err)
	}
	insert := `INSERT INTO audit_events (tenant_id, seq, at, actor_key_id, action, target_key_id, ip, user_agent, result, details, prev_hash, hash)
		VALUES ('a', ?, 0, '', 'key.updated', '', '', '', 'success', '{}', ?, 'x')`
	for name, q := range map[string][]any{
		"insert past the head":          {insert, 4, head.Hash},
		"insert with another prev_hash": {insert, 3, latchkey.GenesisHash},
		"insert over an event":          {insert, 2, head.PrevHash},
		"head moved back":               {`UPDATE audit_heads SET seq = 1, hash = ? WHERE tenant_id = 'a'`, head.PrevHash},
		"head moved onto no event":      {`UPDATE audit_heads SET seq = 3, hash = 'x' WHERE tenant_id = 'a'`},
		"head removed":                  {`DELETE FROM audit_heads`},
		"checkpoint moved back":         {`UPDATE audit_checkpoints SET counter = 4`},
		"checkpoint removed":            {`DELETE FROM audit_checkpoints`},
		"event removed (as before)":     {`DELETE FROM audit_events WHERE seq = 2`},
		"event changed (as before)":     {`UPDATE audit_events SET action = 'x' WHERE seq = 1`},
	} {
		if _, err := db.write.ExecContext(ctx, q[0].(string), q[1:]...); err == nil {
			t.Errorf("%s: the database allowed it", name)
		}
	}
	// The next event after the head passes.
	if _, err := db.write.ExecContext(ctx, insert, 3, head.Hash); err != nil {
		t.Errorf("an event extending the head was refused: %v", err)
	}
}

// FuzzScanStrings checks the fast decoder of string arrays against
// encoding/json: the same list for every input json accepts as one, and
// an error wherever json gives one.
func FuzzScanStrings(f *testing.F) {
	for _, s := range []string{`[]`, `["a"]`, `["data:read","agent:activate"]`, `["a\"b"]`, `["é"]`, `[1]`, `["a",]`, `[,"a"]`, `null`, ` ["a"]`, `["a" ,"b"]`, `[""]`, `["",""]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got, want []string
		gotErr := scanStrings(b, &got)
		wantErr := json.Unmarshal(b, &want)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("scanStrings(%q) error %v, json %v", b, gotErr, wantErr)
		}
		if wantErr == nil && !slices.Equal(got, want) {
			t.Fatalf("scanStrings(%q) = %q, json %q", b, got, want)
		}
	})
}

// TestKeyByHashHonoursItsContext: the verify path's miss runs its one
// statement without the driver's interrupt goroutine, yet a context that
// has ended still gets no read, and a live one finds the key.
func TestKeyByHashHonoursItsContext(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "latchkey.db"))
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	k := &latchkey.Key{ID: "key_1", Tenant: "acme", Name: "k", Prefix: "lk", Start: "abcd",
		Hash: sha256.Sum256([]byte("secret")), Scopes: []string{"data:read"}, State: latchkey.StateActive,
		CreatedAt: at, UpdatedAt: at}
	err := db.Update(t.Context(), func(tx *Tx) error {
		if err := tx.CreateTenant(&latchkey.Tenant{ID: "acme", Name: "Acme", CreatedAt: at}); err != nil {
			return err
		}
		return tx.CreateKey(k)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	got, err := db.KeyByHash(ctx, k.Hash)
	if err != nil || got.ID != k.ID {
		t.Fatalf("KeyByHash = %v, %v; want key %s", got, err, k.ID)
	}
	cancel()
	if _, err := db.KeyByHash(ctx, k.Hash); !errors.Is(err, context.Canceled) {
		t.Fatalf("KeyByHash with an ended context = %v, want context.Canceled", err)
	}
}
