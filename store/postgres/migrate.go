package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The schema is the numbered SQL files in migrations, applied in order, each
// once. To change it, add the next file (0002_what_it_does.sql, say); never
// edit one that has shipped. The files are this backend's own: they follow
// store/sqlite's in meaning, not in number.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations; they are checked by a test,
// so a bad one cannot ship.
func migrations() []migration {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the directory is embedded, so this cannot happen
	}
	ms, err := loadMigrations(sub)
	if err != nil {
		panic(err)
	}
	return ms
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// loadMigrations reads the migrations in fsys: NNNN_name.sql files numbered
// 1, 2, 3… with no gap or repeat, which catches two changes that both added
// the same number.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("postgres: migrations: %w", err)
	}
	ms := make([]migration, 0, len(names))
	for i, name := range names { // Glob sorts them
		m := migrationName.FindStringSubmatch(name)
		if m == nil {
			return nil, fmt.Errorf("postgres: migration %s: name is not NNNN_name.sql", name)
		}
		v, _ := strconv.Atoi(m[1])
		if v != i+1 {
			return nil, fmt.Errorf("postgres: migration %s: want number %04d next", name, i+1)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("postgres: migration %s: %w", name, err)
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	return ms, nil
}

// migrationLock is the key of the advisory lock that Open holds while it
// migrates: the bytes of "latch" read as a number, unlikely to be another
// program's lock on a shared server.
const migrationLock = 0x6c61746368

// migrate applies the migrations the database has not had yet, all in one
// transaction that also records them in schema_migrations: a migration
// that fails leaves the schema as it was. The transaction first takes an
// advisory lock, so nodes that start together take turns: the first
// migrates, the others then find nothing left to do. (The transaction is
// READ COMMITTED, PostgreSQL's default, so each statement after the lock
// sees what the node before it committed.)
func migrate(ctx context.Context, pool *pgxpool.Pool, ms []migration) error {
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			name       TEXT NOT NULL,
			applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
		)`); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return err
		}
		if current > len(ms) {
			return fmt.Errorf("the database has schema version %d, newer than this program's %d; run a newer latchkey", current, len(ms))
		}
		for _, m := range ms[current:] {
			// The simple protocol runs a file of many statements.
			if _, err := tx.Exec(ctx, m.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fail(ctx, "migrate", err)
	}
	return nil
}
