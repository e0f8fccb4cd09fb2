package postgres

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/internal/testenv"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/limit/limittest"
	"github.com/latchkeyhq/latchkey/secrets"
	"github.com/latchkeyhq/latchkey/store/sqlite"
	"github.com/latchkeyhq/latchkey/store/storetest"
	"github.com/latchkeyhq/latchkey/usage"
	"github.com/latchkeyhq/latchkey/webhook"
)

// One PostgreSQL server for the package's tests, stopped when they end;
// each test gets a database of its own on it.
func TestMain(m *testing.M) { os.Exit(testenv.PostgresMain(m)) }

// migratedTemplate is the template database with the schema applied, so
// that a test's database is a copy rather than a migration.
const migratedTemplate = "latchkey_migrated"

// newDSN returns the connection string of a new database for t, with the
// schema already in place.
func newDSN(t testing.TB) string {
	t.Helper()
	pg := testenv.SharedPostgres(t)
	err := pg.Template(migratedTemplate, func(ctx context.Context, dsn string) error {
		db, err := Open(ctx, dsn, Options{MinConns: 1})
		if err != nil {
			return err
		}
		return db.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	return pg.NewDatabaseFrom(t, migratedTemplate)
}

// openTest opens the database at dsn and closes it when t ends.
func openTest(t testing.TB, dsn string) *DB {
	t.Helper()
	db, err := Open(t.Context(), dsn, Options{})
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

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) keys.Store {
		return latchkey.Narrow[keys.Tx](openTest(t, newDSN(t)))
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

var created = time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)

func createTenant(t testing.TB, db keys.Store, id string) {
	t.Helper()
	err := db.Update(t.Context(), func(tx keys.Tx) error {
		return tx.CreateTenant(&latchkey.Tenant{ID: id, Name: "Tenant " + id, CreatedAt: created})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testKey(tenant, id string) *latchkey.Key {
	return &latchkey.Key{ID: id, Tenant: tenant, Name: "k", Prefix: "lk", Start: "lk_" + id,
		Hash: sha256.Sum256([]byte(tenant + "/" + id)), Scopes: []string{"data:read"}, State: latchkey.StateActive,
		CreatedAt: created, UpdatedAt: created}
}

// Two nodes on one database see each other's commits at once: there is
// no cache between a node and the database that could serve a stale key.
func TestTwoNodesSeeEachOthersCommits(t *testing.T) {
	dsn := newDSN(t)
	a, b := openTest(t, dsn), openTest(t, dsn)
	createTenant(t, latchkey.Narrow[keys.Tx](a), "acme")
	k := testKey("acme", "key_1")
	if err := a.Update(t.Context(), func(tx *Tx) error { return tx.CreateKey(k) }); err != nil {
		t.Fatal(err)
	}
	got, err := b.KeyByHash(t.Context(), k.Hash)
	if err != nil || got.ID != k.ID {
		t.Fatalf("node b reads the key node a created: %v, %v", got, err)
	}
	// b revokes it; a sees that in its next transaction.
	err = b.Update(t.Context(), func(tx *Tx) error {
		k, err := tx.Key("acme", "key_1")
		if err != nil {
			return err
		}
		k.State = latchkey.StateRevoked
		return tx.UpdateKey(k)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = a.View(t.Context(), func(tx *Tx) error {
		k, err := tx.Key("acme", "key_1")
		if err == nil && k.State != latchkey.StateRevoked {
			t.Errorf("node a sees state %s after node b's revocation, want revoked", k.State)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// The audit chain stays one chain with appends from both nodes.
	var wg sync.WaitGroup
	for _, db := range []*DB{a, b} {
		wg.Go(func() {
			for i := range 10 {
				err := db.Update(context.Background(), func(tx *Tx) error {
					return tx.AppendAudit(&latchkey.AuditEvent{At: created, Tenant: "acme", Action: "key.updated",
						TargetKeyID: fmt.Sprint("key_", i), Result: latchkey.ResultSuccess})
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	err = b.View(t.Context(), func(tx *Tx) error {
		evs, err := tx.AuditEvents("acme", latchkey.AuditFilter{})
		if err != nil {
			return err
		}
		var c latchkey.ChainCheck
		for _, e := range evs {
			c.Next(e)
		}
		if len(evs) != 20 || c.BrokenAt != 0 {
			t.Errorf("%d events after 20 appends from two nodes, chain %+v", len(evs), c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A read-modify-write in concurrent Updates never loses a write: each is
// serializable, and one that PostgreSQL fails for a conflict runs again.
func TestConcurrentReadModifyWriteLosesNothing(t *testing.T) {
	db := openTest(t, newDSN(t))
	createTenant(t, latchkey.Narrow[keys.Tx](db), "acme")
	if err := db.Update(t.Context(), func(tx *Tx) error { return tx.CreateKey(testKey("acme", "key_1")) }); err != nil {
		t.Fatal(err)
	}
	const workers, each = 6, 10
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				err := db.Update(t.Context(), func(tx *Tx) error {
					u, err := tx.QuotaUsage("key_1")
					if err != nil {
						return err
					}
					u.Used++
					ok, err := tx.SaveQuotaUsage(u)
					if err == nil && !ok {
						err = errors.New("save refused at the epoch just read")
					}
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d updates ran %d times more", workers*each, db.Retries())
	if db.Retries() == 0 {
		t.Log("no update met a conflict; the test did not exercise the retry")
	}
	err := db.View(t.Context(), func(tx *Tx) error {
		u, err := tx.QuotaUsage("key_1")
		if err == nil && u.Used != workers*each {
			t.Errorf("used = %d after %d increments", u.Used, workers*each)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// migrationRows describes schema_migrations, applied_at included, so that a
// migration run again shows.
func migrationRows(t *testing.T, db *DB) string {
	t.Helper()
	rows, err := db.pool.Query(t.Context(), `SELECT version, name, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out string
	for rows.Next() {
		var v int
		var name string
		var at time.Time
		if err := rows.Scan(&v, &name, &at); err != nil {
			t.Fatal(err)
		}
		out += fmt.Sprintf("%d %s %s; ", v, name, at.UTC().Format(time.RFC3339Nano))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if out == "" {
		t.Fatal("schema_migrations is empty")
	}
	return out
}

// Nodes that start together on an empty database migrate it once: each
// Open waits for the one migrating, then finds nothing left to do; and
// opening again changes nothing.
func TestMigrationsRaceSafeAndIdempotent(t *testing.T) {
	dsn := testenv.SharedPostgres(t).NewDatabase(t)
	const nodes = 4
	dbs := make([]*DB, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { dbs[i], errs[i] = Open(t.Context(), dsn, Options{MinConns: 1}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d of %d racing: %v", i+1, nodes, err)
		}
		t.Cleanup(func() { dbs[i].Close() })
	}
	before := migrationRows(t, dbs[0])
	if want := len(migrations()); strings.Count(before, ";") != want {
		t.Errorf("schema_migrations after racing Opens: %s; want each of %d migrations once", before, want)
	}
	createTenant(t, latchkey.Narrow[keys.Tx](dbs[1]), "acme")
	again := openTest(t, dsn)
	if after := migrationRows(t, again); after != before {
		t.Errorf("schema_migrations changed on reopening:\nbefore %s\nafter  %s", before, after)
	}
	err := again.View(t.Context(), func(tx *Tx) error {
		_, err := tx.Tenant("acme")
		return err
	})
	if err != nil {
		t.Errorf("data after reopening: %v", err)
	}
}

// schemaVersion returns the number of the last migration applied.
func schemaVersion(ctx context.Context, db *DB) (int, error) {
	var v int
	err := db.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

// withMigration returns the embedded migrations plus one more, numbered
// next.
func withMigration(name, sql string) []migration {
	ms := migrations()
	return append(ms, migration{version: len(ms) + 1, name: fmt.Sprintf("%04d_%s.sql", len(ms)+1, name), sql: sql})
}

func TestFailedMigrationChangesNothing(t *testing.T) {
	dsn := newDSN(t)
	db := openTest(t, dsn)
	before := migrationRows(t, db)
	// The first statement works; the second does not. Both must go.
	bad := withMigration("broken", `
		ALTER TABLE keys ADD COLUMN note TEXT NOT NULL DEFAULT '';
		CREATE TABLE extra (x INTEGER);
		INSERT INTO no_such_table VALUES (1);`)
	if db, err := open(t.Context(), dsn, Options{}, bad); err == nil {
		db.Close()
		t.Fatal("open with a broken migration succeeded")
	}
	if after := migrationRows(t, db); after != before {
		t.Errorf("schema_migrations after a failed migration:\nbefore %s\nafter  %s", before, after)
	}
	var n int
	if err := db.pool.QueryRow(t.Context(), `SELECT count(*) FROM information_schema.tables WHERE table_name = 'extra'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("table extra from the failed migration exists")
	}
	if err := db.pool.QueryRow(t.Context(), `SELECT count(*) FROM information_schema.columns WHERE table_name = 'keys' AND column_name = 'note'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("column keys.note from the failed migration exists")
	}
}

func TestNewMigrationAppliedOnce(t *testing.T) {
	dsn := newDSN(t)
	// ADD COLUMN fails if run twice, so reopening shows a repeat.
	more := withMigration("note", `ALTER TABLE keys ADD COLUMN note TEXT NOT NULL DEFAULT '';`)
	for range 2 {
		db, err := open(t.Context(), dsn, Options{}, more)
		if err != nil {
			t.Fatalf("open with a new migration: %v", err)
		}
		v, err := schemaVersion(t.Context(), db)
		if err != nil {
			t.Fatal(err)
		}
		if v != len(more) {
			t.Errorf("schema version %d, want %d", v, len(more))
		}
		db.Close()
	}
	// This program's migrations stop before it: it must not run on a
	// database it does not know.
	if db, err := Open(t.Context(), dsn, Options{}); err == nil {
		db.Close()
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
	if len(migrations()) == 0 {
		t.Error("no migrations embedded")
	}
}

// A database that goes away makes every call fail with EUnavailable,
// within the connect timeout rather than hanging; once it is back, the
// same DB works again without being reopened.
func TestServerAwayIsUnavailableAndRecovers(t *testing.T) {
	pg := testenv.StartPostgres(t)
	db, err := Open(t.Context(), pg.DSN("postgres"), Options{ConnectTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	createTenant(t, latchkey.Narrow[keys.Tx](db), "acme")
	k := testKey("acme", "key_1")
	if err := db.Update(t.Context(), func(tx *Tx) error { return tx.CreateKey(k) }); err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func(ctx context.Context) error{
		"Ping": db.Ping,
		"Update": func(ctx context.Context) error {
			return db.Update(ctx, func(tx *Tx) error { return tx.CreateTenant(&latchkey.Tenant{ID: "other", CreatedAt: created}) })
		},
		"View": func(ctx context.Context) error {
			return db.View(ctx, func(tx *Tx) error { _, err := tx.Tenant("acme"); return err })
		},
		"KeyByHash": func(ctx context.Context) error { _, err := db.KeyByHash(ctx, k.Hash); return err },
	}
	for name, call := range calls {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		start := time.Now()
		err := call(ctx)
		cancel()
		if code := latchkey.ErrorCode(err); code != latchkey.EUnavailable {
			t.Errorf("%s with the server stopped: %v (code %q), want %s", name, err, code, latchkey.EUnavailable)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s took %v to fail", name, d)
		}
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	for name, call := range calls {
		// The pool drops the connections the stop broke as it meets
		// them; a few calls at most.
		var err error
		for range 5 {
			if err = call(t.Context()); err == nil || latchkey.ErrorCode(err) != latchkey.EUnavailable {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("%s after the server is back: %v", name, err)
		}
	}
}

func TestClosedIsUnavailable(t *testing.T) {
	db, err := Open(t.Context(), newDSN(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := db.View(t.Context(), func(*Tx) error { return nil }); latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Errorf("View after Close: %v, want code %s", err, latchkey.EUnavailable)
	}
	if err := db.Update(t.Context(), func(*Tx) error { return nil }); latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Errorf("Update after Close: %v, want code %s", err, latchkey.EUnavailable)
	}
	if err := db.Ping(t.Context()); latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Errorf("Ping after Close: %v, want code %s", err, latchkey.EUnavailable)
	}
}

func TestReadersDoNotWaitForWriter(t *testing.T) {
	db := openTest(t, newDSN(t))
	err := db.Update(t.Context(), func(tx *Tx) error {
		if err := tx.CreateTenant(&latchkey.Tenant{ID: "acme", Name: "Acme", CreatedAt: created}); err != nil {
			return err
		}
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

// An error in the connection string is EInvalid and does not repeat the
// string, which may hold a password.
func TestOpenKeepsPasswordOutOfErrors(t *testing.T) {
	_, err := Open(t.Context(), "postgres://user:hunter2@127.0.0.1:badport/db", Options{})
	if latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Errorf("Open with a bad connection string: %v, want %s", err, latchkey.EInvalid)
	}
	if err != nil && strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the error shows the password: %v", err)
	}
}

func TestPoolOptions(t *testing.T) {
	dsn := newDSN(t)
	tests := []struct {
		name          string
		dsn           string
		opts          Options
		wantMax       int32
		wantMin       int32
		wantLifetime  time.Duration
		wantConnectTO time.Duration
	}{
		{"Defaults", dsn, Options{}, int32(max(8, 2*runtime.GOMAXPROCS(0))), defaultMinConns, defaultMaxConnLifetime, defaultConnectTimeout},
		{"Options", dsn, Options{MaxConns: 3, MinConns: 1, MaxConnLifetime: time.Minute, ConnectTimeout: time.Second}, 3, 1, time.Minute, time.Second},
		{"ConnectionString", dsn + "&pool_max_conns=5&pool_min_conns=0&connect_timeout=3", Options{}, 5, 0, defaultMaxConnLifetime, 3 * time.Second},
		{"MinAtMostMax", dsn, Options{MaxConns: 1}, 1, 1, defaultMaxConnLifetime, defaultConnectTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := Open(t.Context(), tt.dsn, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			c := db.pool.Config()
			if c.MaxConns != tt.wantMax || c.MinConns != tt.wantMin || c.MaxConnLifetime != tt.wantLifetime ||
				c.ConnConfig.ConnectTimeout != tt.wantConnectTO {
				t.Errorf("pool max %d min %d lifetime %v connect timeout %v; want %d %d %v %v",
					c.MaxConns, c.MinConns, c.MaxConnLifetime, c.ConnConfig.ConnectTimeout,
					tt.wantMax, tt.wantMin, tt.wantLifetime, tt.wantConnectTO)
			}
		})
	}
}

// The database itself refuses what the program never does to the audit
// log: an INSERT that does not extend the head, a head moved back or
// removed, a checkpoint moved back or removed, an event changed or removed.
func TestAuditLogAppendOnlyInTheDatabase(t *testing.T) {
	db := openTest(t, newDSN(t))
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
		VALUES ('a', $1, now(), '', 'key.updated', '', '', '', 'success', '{}', $2, 'x')`
	for name, q := range map[string][]any{
		"insert past the head":          {insert, 4, head.Hash},
		"insert with another prev_hash": {insert, 3, latchkey.GenesisHash},
		"insert over an event":          {insert, 2, head.PrevHash},
		"head moved back":               {`UPDATE audit_heads SET seq = 1, hash = $1 WHERE tenant_id = 'a'`, head.PrevHash},
		"head moved onto no event":      {`UPDATE audit_heads SET seq = 3, hash = 'x' WHERE tenant_id = 'a'`},
		"head removed":                  {`DELETE FROM audit_heads`},
		"heads truncated":               {`TRUNCATE audit_heads`},
		"checkpoint moved back":         {`UPDATE audit_checkpoints SET counter = 4`},
		"checkpoint removed":            {`DELETE FROM audit_checkpoints`},
		"event removed":                 {`DELETE FROM audit_events WHERE seq = 2`},
		"events truncated":              {`TRUNCATE audit_events`},
		"event changed":                 {`UPDATE audit_events SET action = 'x' WHERE seq = 1`},
	} {
		if _, err := db.pool.Exec(ctx, q[0].(string), q[1:]...); err == nil {
			t.Errorf("%s: the database allowed it", name)
		}
	}
	// The next event after the head passes.
	if _, err := db.pool.Exec(ctx, insert, 3, head.Hash); err != nil {
		t.Errorf("an event extending the head was refused: %v", err)
	}
}

// TestKeyByHashHonoursItsContext: the verify path's miss, outside a
// transaction, finds the key with a live context and reads nothing with
// one that has ended.
func TestKeyByHashHonoursItsContext(t *testing.T) {
	db := openTest(t, newDSN(t))
	createTenant(t, latchkey.Narrow[keys.Tx](db), "acme")
	k := testKey("acme", "key_1")
	if err := db.Update(t.Context(), func(tx *Tx) error { return tx.CreateKey(k) }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	got, err := db.KeyByHash(ctx, k.Hash)
	if err != nil || got.ID != k.ID {
		t.Fatalf("KeyByHash = %v, %v; want key %s", got, err, k.ID)
	}
	if _, err := db.KeyByHash(ctx, sha256.Sum256([]byte("nothing"))); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("KeyByHash of an unknown hash = %v, want %s", err, latchkey.ENotFound)
	}
	cancel()
	if _, err := db.KeyByHash(ctx, k.Hash); !errors.Is(err, context.Canceled) {
		t.Fatalf("KeyByHash with an ended context = %v, want context.Canceled", err)
	}
}

// An import of many keys in one call goes in as a whole, in one COPY and
// one INSERT, whatever the count.
func TestImportManyKeys(t *testing.T) {
	db := openTest(t, newDSN(t))
	createTenant(t, latchkey.Narrow[keys.Tx](db), "acme")
	const n = 20000
	ks := make([]*latchkey.Key, n)
	scopes := []string{"data:read"}
	for i := range ks {
		k := testKey("acme", fmt.Sprintf("key_%06d", i))
		k.Scopes = scopes
		ks[i] = k
	}
	var got int
	start := time.Now()
	err := db.Update(t.Context(), func(tx *Tx) (err error) {
		got, err = tx.ImportKeys(ks[:n/2])
		if err != nil {
			return err
		}
		// A second call in the same transaction, overlapping the first.
		more, err := tx.ImportKeys(ks[n/4:])
		got += more
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("imported %d keys in %v", got, time.Since(start))
	if got != n {
		t.Fatalf("ImportKeys created %d, want %d", got, n)
	}
	var count int
	if err := db.pool.QueryRow(t.Context(), `SELECT count(*) FROM keys`).Scan(&count); err != nil || count != n {
		t.Fatalf("keys stored: %d, %v; want %d", count, err, n)
	}
}

func BenchmarkKeyByHash(b *testing.B) {
	const n = 10000
	db := openTest(b, newDSN(b))
	ctx := b.Context()
	createTenant(b, latchkey.Narrow[keys.Tx](db), "acme")
	ks := make([]*latchkey.Key, n)
	for i := range ks {
		k := testKey("acme", fmt.Sprintf("key_%06d", i))
		k.Scopes, k.Resources, k.Meta = []string{"data:read", "agent:activate"}, []string{"agent:*"}, map[string]any{"team": "payments"}
		ks[i] = k
	}
	if err := db.Update(ctx, func(tx *Tx) error { _, err := tx.ImportKeys(ks); return err }); err != nil {
		b.Fatal(err)
	}
	lookup := func(i int) {
		err := db.View(ctx, func(tx *Tx) error {
			_, err := tx.KeyByHash(ks[i%n].Hash)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	// The verify path's miss: DB.KeyByHash, without a transaction.
	direct := func(i int) {
		if _, err := db.KeyByHash(ctx, ks[i%n].Hash); err != nil {
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

// The schema has the tables and columns of store/sqlite's, so that what
// one backend keeps the other keeps too: a column added to SQLite alone
// fails here.
func TestSchemaMatchesSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latchkey.db")
	lite, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := lite.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	want := columnsByTable(t, func() (tableColumnRows, error) {
		return raw.QueryContext(t.Context(), `SELECT m.name, p.name FROM sqlite_schema m, pragma_table_info(m.name) p
			WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.name`)
	})
	db := openTest(t, newDSN(t))
	got := columnsByTable(t, func() (tableColumnRows, error) {
		rows, err := db.pool.Query(t.Context(), `SELECT table_name::text, column_name::text FROM information_schema.columns
			WHERE table_schema = current_schema() ORDER BY table_name, column_name`)
		return pgxRows{rows}, err
	})
	if len(want) < 10 || want["keys"] == "" {
		t.Fatalf("read %d tables of the SQLite schema, keys %q: the query is wrong", len(want), want["keys"])
	}
	for table, cols := range want {
		if got[table] != cols {
			t.Errorf("table %s: PostgreSQL has columns %q, SQLite %q", table, got[table], cols)
		}
	}
	for table := range got {
		if _, ok := want[table]; !ok {
			t.Errorf("table %s is in PostgreSQL only", table)
		}
	}
}

// tableColumnRows is what columnsByTable reads: rows of (table, column).
type tableColumnRows interface {
	Next() bool
	Scan(...any) error
	Err() error
	Close() error
}

type pgxRows struct{ pgx.Rows }

func (r pgxRows) Close() error { r.Rows.Close(); return nil }

// columnsByTable maps each table to its column names, sorted and joined.
func columnsByTable(t *testing.T, query func() (tableColumnRows, error)) map[string]string {
	t.Helper()
	rows, err := query()
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var table, col string
		if err := rows.Scan(&table, &col); err != nil {
			t.Fatal(err)
		}
		if out[table] != "" {
			out[table] += ","
		}
		out[table] += col
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// A change committed on one node reaches the others through Follow, at
// once and in commit order; a rolled-back one does not; and a node that
// loses its feed is told to forget everything when it has it back.
func TestChangesReachOtherNodes(t *testing.T) {
	dsn := newDSN(t)
	a, b := openTest(t, dsn), openTest(t, dsn)
	createTenant(t, latchkey.Narrow[keys.Tx](a), "acme")
	got := make(chan latchkey.Change, 100)
	ctx, cancel := context.WithCancel(t.Context())
	followed := make(chan error, 1)
	go func() { followed <- b.Follow(ctx, func(c latchkey.Change) { got <- c }) }()
	defer func() {
		cancel()
		select {
		case err := <-followed:
			if err != nil {
				t.Errorf("Follow returned %v when its context ended, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Follow did not return when its context ended")
		}
	}()
	next := func(what string) latchkey.Change {
		t.Helper()
		select {
		case c := <-got:
			return c
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no change arrived within 5s", what)
			return latchkey.Change{}
		}
	}
	update := func(fn func(tx *Tx) error) {
		t.Helper()
		if err := a.Update(t.Context(), fn); err != nil {
			t.Fatal(err)
		}
	}
	// Follow listens a moment after it starts: probe until it hears.
	probe := testKey("acme", "key_probe")
	update(func(tx *Tx) error { return tx.CreateKey(probe) })
	for i := 0; ; i++ {
		select {
		case c := <-got:
			if c.Kind != latchkey.ChangeKey || c.Hash != probe.Hash {
				t.Fatalf("first change %+v, want the probe key's", c)
			}
		case <-time.After(100 * time.Millisecond):
			if i == 100 {
				t.Fatal("Follow heard nothing within 10s")
			}
			update(func(tx *Tx) error {
				p, err := tx.Key("acme", probe.ID)
				if err != nil {
					return err
				}
				return tx.UpdateKey(p)
			})
			continue
		}
		break
	}
	for len(got) > 0 {
		<-got
	}

	k := testKey("acme", "key_1")
	start := time.Now()
	update(func(tx *Tx) error { return tx.CreateKey(k) })
	if c := next("CreateKey"); c.Kind != latchkey.ChangeKey || c.Hash != k.Hash {
		t.Errorf("after CreateKey: %+v, want the key's hash", c)
	}
	update(func(tx *Tx) error {
		stored, err := tx.Key("acme", k.ID)
		if err != nil {
			return err
		}
		stored.State = latchkey.StateRevoked
		stored.Hash = [32]byte{} // the change names the stored hash, not the caller's
		return tx.UpdateKey(stored)
	})
	if c := next("revocation"); c.Kind != latchkey.ChangeKey || c.Hash != k.Hash {
		t.Errorf("after a revocation: %+v, want the key's hash", c)
	}
	t.Logf("a creation and a revocation reached the other node in %v", time.Since(start))
	boom := errors.New("boom")
	if err := a.Update(t.Context(), func(tx *Tx) error {
		if err := tx.CreateKey(testKey("acme", "key_rolled_back")); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	update(func(tx *Tx) error {
		_, err := tx.ImportKeys([]*latchkey.Key{testKey("acme", "key_2"), testKey("acme", "key_3")})
		return err
	})
	if c := next("ImportKeys"); c.Kind != latchkey.ChangeNewKeys {
		t.Errorf("after ImportKeys: %+v, want new keys (and nothing of the rolled-back Update)", c)
	}
	secret := func(v int64) *latchkey.SecretVersion {
		return &latchkey.SecretVersion{Tenant: "acme", Name: "openai", Version: v, Ciphertext: []byte{1}, CreatedAt: created, CreatedBy: "key_1"}
	}
	update(func(tx *Tx) error { return tx.PutSecret(secret(1)) })
	update(func(tx *Tx) error { return tx.DeleteSecret("acme", "openai") })
	for _, what := range []string{"PutSecret", "DeleteSecret"} {
		if c := next(what); c.Kind != latchkey.ChangeSecret || c.Tenant != "acme" || c.Name != "openai" {
			t.Errorf("after %s: %+v, want the secret", what, c)
		}
	}

	// Policies and owner records: every node drops the keys bound to
	// them. An owner id may hold ':' and be 200 bytes long.
	pol := &latchkey.Policy{Tenant: "acme", Name: "production", CreatedAt: created, UpdatedAt: created}
	owner := "urn:client:" + strings.Repeat("ü", 94) + "x"
	own := &latchkey.Owner{Tenant: "acme", ID: owner, CreatedAt: created, UpdatedAt: created}
	update(func(tx *Tx) error { return tx.PutPolicy(pol) })
	bound := testKey("acme", "key_bound")
	bound.Policy = "production"
	update(func(tx *Tx) error { return tx.CreateKey(bound) })
	if err := a.Update(t.Context(), func(tx *Tx) error { return tx.DeletePolicy("acme", "production") }); !errors.Is(err, &latchkey.Error{Code: latchkey.EConflict}) {
		t.Fatalf("DeletePolicy while a key names it: %v, want %s", err, latchkey.EConflict)
	}
	update(func(tx *Tx) error { return tx.PutOwner(own) })
	update(func(tx *Tx) error { return tx.DeleteOwner("acme", owner) })
	if err := a.Update(t.Context(), func(tx *Tx) error {
		if err := tx.PutOwner(&latchkey.Owner{Tenant: "acme", ID: "rolled-back"}); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	update(func(tx *Tx) error {
		stored, err := tx.Key("acme", bound.ID)
		if err != nil {
			return err
		}
		stored.State = latchkey.StateRevoked
		return tx.UpdateKey(stored)
	})
	update(func(tx *Tx) error { return tx.DeletePolicy("acme", "production") })
	for _, w := range []struct {
		what string
		want latchkey.Change
	}{
		{"PutPolicy", latchkey.Change{Kind: latchkey.ChangePolicy, Tenant: "acme", Name: "production"}},
		{"CreateKey naming the policy", latchkey.Change{Kind: latchkey.ChangeKey, Hash: bound.Hash}},
		// The refused DeletePolicy sent nothing.
		{"PutOwner", latchkey.Change{Kind: latchkey.ChangeOwner, Tenant: "acme", Name: owner}},
		{"DeleteOwner", latchkey.Change{Kind: latchkey.ChangeOwner, Tenant: "acme", Name: owner}},
		// Nor the rolled-back PutOwner.
		{"revoking the key", latchkey.Change{Kind: latchkey.ChangeKey, Hash: bound.Hash}},
		{"DeletePolicy", latchkey.Change{Kind: latchkey.ChangePolicy, Tenant: "acme", Name: "production"}},
	} {
		if c := next(w.what); c != w.want {
			t.Errorf("after %s: %+v, want %+v", w.what, c, w.want)
		}
	}

	// The feed's connection is cut: Follow connects again and says reset.
	if _, err := a.pool.Exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN `+changeChannel+`'`); err != nil {
		t.Fatal(err)
	}
	if c := next("a lost feed"); c.Kind != latchkey.ChangeReset {
		t.Errorf("after the feed was lost: %+v, want a reset", c)
	}
	k4 := testKey("acme", "key_4")
	update(func(tx *Tx) error { return tx.CreateKey(k4) })
	if c := next("CreateKey after the reset"); c.Kind != latchkey.ChangeKey || c.Hash != k4.Hash {
		t.Errorf("after CreateKey on the new connection: %+v, want the key's hash", c)
	}
}

// fakeSigner is an audit anchor that signs everything and remembers
// nothing, so that appends keep checkpoints.
type fakeSigner struct{}

func (fakeSigner) Anchored(string) *latchkey.AuditCheckpoint            { return nil }
func (fakeSigner) Valid(*latchkey.AuditCheckpoint) bool                 { return true }
func (fakeSigner) MaxCounter() int64                                    { return 0 }
func (fakeSigner) Sign(cp *latchkey.AuditCheckpoint)                    { cp.MAC = "mac" }
func (fakeSigner) FoundOnAppend(tenant string, f latchkey.AuditFinding) {}

// With an audit anchor, every append signs a checkpoint whose counter is
// one more than any stored: under concurrent appends to several tenants
// from two nodes, the counter still counts every append once.
func TestAuditCheckpointCounterUnderConcurrency(t *testing.T) {
	dsn := newDSN(t)
	a, b := openTest(t, dsn), openTest(t, dsn)
	for _, db := range []*DB{a, b} {
		db.SetAuditAnchor(fakeSigner{})
	}
	createTenant(t, latchkey.Narrow[keys.Tx](a), "t1")
	createTenant(t, latchkey.Narrow[keys.Tx](a), "t2")
	const each = 5
	var wg sync.WaitGroup
	for _, db := range []*DB{a, b} {
		for _, tenant := range []string{"t1", "t2"} {
			wg.Go(func() {
				for range each {
					err := db.Update(context.Background(), func(tx *Tx) error {
						return tx.AppendAudit(&latchkey.AuditEvent{At: created, Tenant: tenant, Action: "key.updated", Result: latchkey.ResultSuccess})
					})
					if err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	err := a.View(t.Context(), func(tx *Tx) error {
		cps, err := tx.AuditCheckpoints(0)
		if err != nil {
			return err
		}
		if len(cps) != 2 || cps[1].Counter != 4*each || cps[0].Counter >= cps[1].Counter {
			t.Errorf("checkpoints after %d appends: %+v; want the last counter %d", 4*each, cps, 4*each)
		}
		for _, cp := range cps {
			if cp.Seq != 2*each {
				t.Errorf("checkpoint of %s at seq %d, want %d", cp.Tenant, cp.Seq, 2*each)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Close stops a Follow that is listening, with EUnavailable.
func TestCloseStopsFollow(t *testing.T) {
	db, err := Open(t.Context(), newDSN(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	followed := make(chan error, 1)
	go func() { followed <- db.Follow(t.Context(), func(latchkey.Change) {}) }()
	time.Sleep(100 * time.Millisecond) // usually listening by now; either way it must stop
	db.Close()
	select {
	case err := <-followed:
		if latchkey.ErrorCode(err) != latchkey.EUnavailable {
			t.Errorf("Follow after Close returned %v, want %s", err, latchkey.EUnavailable)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Follow still running 10s after Close")
	}
}
