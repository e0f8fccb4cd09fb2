// Package sqlite keeps tenants and keys in an embedded SQLite database: the
// default store, one file and no other process.
//
// The database runs in WAL mode with synchronous=FULL, so a committed Update
// survives a power cut, and a reader works from its snapshot while the writer
// goes on. SQLite allows one writer at a time, so writes go through a pool of
// one connection that begins every transaction IMMEDIATE: writers queue in Go
// for that connection instead of inside SQLite, and none ever fails with
// SQLITE_BUSY trying to turn a read lock into a write lock. Reads use a
// separate pool of query-only connections, which never wait for the writer.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchkeyhq/latchkey"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DB is a store of tenants and keys in one SQLite file, whose
// transactions are *Tx: a service takes it narrowed to its own contract
// (latchkey.Narrow[keys.Tx](db)), and it keeps every rule written on
// keys.Store. It is safe for concurrent use.
type DB struct {
	write      *sql.DB // one connection; every transaction BEGIN IMMEDIATE
	read       *sql.DB // query-only connections
	writeStmts *stmts
	readStmts  *stmts
	file       *fileWatch // the identity of the file opened (fileid.go)
	closed     atomic.Bool
	anchor     atomic.Pointer[auditSigner]

	closeOnce sync.Once
	closeErr  error
}

var (
	_ latchkey.Store[*Tx] = (*DB)(nil)
	_ latchkey.HashReader = (*DB)(nil)
)

// busyTimeout bounds how long a connection waits for a lock held by another
// process (a backup, the sqlite3 shell). Writers in this process never wait
// on it: they queue for the one write connection.
const busyTimeout = 10 * time.Second

// Open opens the database file at path, creating it and its directory if
// they do not exist, and brings its schema up to date.
func Open(ctx context.Context, path string) (*DB, error) {
	return open(ctx, path, migrations())
}

// open is Open with the migrations taken from fsys, so tests can try
// migrations that are not embedded.
func open(ctx context.Context, path string, fsys fs.FS) (_ *DB, err error) {
	if path == "" || path == ":memory:" {
		// The two pools would each get a database of their own.
		return nil, fmt.Errorf("sqlite: need a file path, not %q", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	// Creating the file here, rather than letting SQLite, keeps it (and the
	// -wal and -shm files, which SQLite gives the same mode) private: it
	// holds key hashes. The descriptor stays open until Close: it pins the
	// file's identity (fileid.go).
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	file, err := newFileWatch(abs, f)
	if err != nil {
		_ = f.Close()
		return nil, err
	}

	db := &DB{file: file}
	defer func() {
		if err != nil {
			db.closeQuietly()
		}
	}()
	if db.write, err = sql.Open("sqlite", dsn(abs, false)); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	db.write.SetMaxOpenConns(1)
	db.write.SetMaxIdleConns(1)
	// The write connection switches the file to WAL, so it connects first.
	if err := db.write.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	if err := migrate(ctx, db.write, fsys); err != nil {
		return nil, err
	}
	if db.writeStmts, err = prepare(ctx, db.write); err != nil {
		return nil, err
	}

	if db.read, err = sql.Open("sqlite", dsn(abs, true)); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	db.read.SetMaxOpenConns(n)
	db.read.SetMaxIdleConns(n)
	if db.readStmts, err = prepare(ctx, db.read); err != nil {
		return nil, err
	}
	return db, nil
}

// dsn returns the modernc.org/sqlite data source name for a pool on the file
// at path: a file: URI, so that any character in the path survives.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(busyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(FULL)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
		// Readers do not map the file (mmap_size 0, SQLite's default).
		// Each connection maps it separately, so with a million keys in
		// use every connection took a page fault per page on first touch
		// (measured over HTTP with every key active: 10–35 % more CPU per
		// request than a read(2) per page), and every page touched stayed
		// in the process's resident memory, up to the file's size.
		q.Add("_pragma", "mmap_size(0)")
	} else {
		// WAL is a property of the file; setting it once, from the
		// writer, is enough, and a reader cannot set it anyway.
		q.Add("_pragma", "journal_mode(WAL)")
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}
	return u.String()
}

// View runs fn in a read-only transaction on a snapshot of the database
// taken at fn's first read.
func (db *DB) View(ctx context.Context, fn func(*Tx) error) error {
	return db.run(ctx, db.read, db.readStmts, &sql.TxOptions{ReadOnly: true}, fn)
}

// SetAuditAnchor makes every audit append check the log's end against the
// tenant's signed checkpoint and sign the new head with a (see
// latchkey.AppendAudit): the key service's audit anchor. Set it before the
// first append; nil (or a nil pointer) sets none.
func (db *DB) SetAuditAnchor(a latchkey.AuditSigner) {
	if a = latchkey.OrNil(a); a == nil {
		db.anchor.Store(nil)
		return
	}
	db.anchor.Store(&auditSigner{a})
}

// auditSigner holds the signer, so that it can be swapped atomically.
type auditSigner struct{ s latchkey.AuditSigner }

// Update runs fn in a write transaction and commits it if fn returns nil.
// Updates run one at a time, in the order they ask.
func (db *DB) Update(ctx context.Context, fn func(*Tx) error) error {
	return db.run(ctx, db.write, db.writeStmts, nil, fn)
}

func (db *DB) run(ctx context.Context, pool *sql.DB, st *stmts, opts *sql.TxOptions, fn func(*Tx) error) error {
	if db.closed.Load() {
		return errClosed
	}
	write := pool == db.write
	if write && db.file.lostFlag.Load() {
		return db.file.lostErr()
	}
	sqlTx, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return fail(ctx, "begin", err)
	}
	finished := false
	defer func() {
		// Also when fn panics: a transaction left open would keep the
		// only write connection.
		if !finished {
			_ = sqlTx.Rollback()
		}
	}()
	stmtCtx := ctx
	if write {
		// Writes are short statements on the one write connection, and a
		// usage flush runs thousands of them in a transaction: with ctx
		// itself the driver would start a goroutine per statement to
		// interrupt it, which piled up ahead of every verification on a
		// busy core. The transaction still ends with ctx (database/sql
		// rolls it back, and the next statement fails); a statement
		// already running finishes first.
		stmtCtx = quietCtx{ctx}
	}
	if err := fn(&Tx{ctx: stmtCtx, tx: sqlTx, stmts: st, anchor: db.anchor.Load()}); err != nil {
		return err
	}
	if write {
		// Last moment before the write is acknowledged: a commit into a
		// file that is no longer the database would be lost.
		if err := db.file.check(); err != nil {
			return err
		}
	}
	finished = true
	if err := sqlTx.Commit(); err != nil {
		return fail(ctx, "commit", err)
	}
	return nil
}

// quietCtx is a context whose Done channel is nil, for statements:
// modernc.org/sqlite starts a goroutine for every statement run with a
// context that can end (to interrupt it then), which costs more than a
// short statement and, thousands at a time, queues ahead of the requests
// on a busy core. Err, Deadline and Value are ctx's, so a context that has
// ended is still reported (fail) and checked before each statement of a
// transaction (database/sql rolls the transaction back when ctx ends).
type quietCtx struct{ context.Context }

func (quietCtx) Done() <-chan struct{} { return nil }

// Ping reports whether the database file can be read and is still the
// file the store opened.
func (db *DB) Ping(ctx context.Context) error {
	if db.closed.Load() {
		return errClosed
	}
	if err := db.file.check(); err != nil {
		return err
	}
	var n int
	if err := db.read.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("sqlite: ping: %w", ctx.Err())
		}
		return unavailable("ping", err)
	}
	return nil
}

// Close closes the database after copying the write-ahead log into the
// database file, so that the file alone holds everything (and a copy of it
// is a complete backup). Transactions still running fail. Close may be
// called more than once.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.closed.Store(true)
		// Readers first: a reader's snapshot would stop the checkpoint
		// short of the end of the log.
		errs := []error{db.readStmts.close(), db.read.Close(), db.writeStmts.close()}
		var busy, logPages, donePages int
		err := db.write.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logPages, &donePages)
		if err == nil && busy != 0 {
			// Another process is reading; it, or the next Open, will
			// finish the checkpoint. Nothing is lost.
			err = fmt.Errorf("checkpoint stopped at page %d of %d by another connection", donePages, logPages)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sqlite: close: %w", err))
		}
		errs = append(errs, db.write.Close(), db.file.close())
		db.closeErr = errors.Join(errs...)
	})
	return db.closeErr
}

// closeQuietly releases what a failed open got as far as opening.
func (db *DB) closeQuietly() {
	_ = db.readStmts.close()
	_ = db.writeStmts.close()
	if db.read != nil {
		_ = db.read.Close()
	}
	if db.write != nil {
		_ = db.write.Close()
	}
	_ = db.file.close()
}

// Watch checks every interval, until Close, that the database file is
// still the one opened, and calls lost once, the first time it is found
// deleted or replaced (by this check, by Ping or by a write's). Writes
// and Ping check by themselves; Watch makes the loss known, and /readyz
// fail, when there are none. No caller is handed the loss before lost
// has returned; lost must not use the DB. Call Watch at most once.
func (db *DB) Watch(interval time.Duration, lost func(error)) {
	db.file.watch(interval, lost)
}

// stmts are the statements of the hot read paths, prepared once per pool:
// parsing the SQL took half the time of a KeyByHash. A transaction binds them
// to its connection with Tx.StmtContext, which prepares them there once.
// They are prepared at Open because preparing on a pool takes a connection,
// and inside an Update the write pool has none to give.
//
// The audit append's statements are prepared too: with their triggers
// compiled in, preparing them costs more than running them. (The read
// pool prepares the writing ones as well; its connections are query-only
// and would refuse to run them.)
type stmts struct {
	tenant, key, keyByHash                              *sql.Stmt
	auditHead, auditLast, auditCheckpoint, auditCounter *sql.Stmt
	auditInsert, auditMoveHead, auditPutCheckpoint      *sql.Stmt
	lastUsedGet, lastUsedSet, networkHistory            *sql.Stmt // usage.go
	usageMinute, usageHour, usageDay                    *sql.Stmt
	networkMinute, networkDay                           *sql.Stmt
}

func prepare(ctx context.Context, pool *sql.DB) (*stmts, error) {
	st := &stmts{}
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&st.tenant, tenantByID},
		{&st.key, keyByID},
		{&st.keyByHash, keyByHash},
		{&st.auditHead, auditHeadQuery},
		{&st.auditLast, auditLastQuery},
		{&st.auditCheckpoint, auditCheckpointQuery},
		{&st.auditCounter, auditCounterQuery},
		{&st.auditInsert, auditInsertQuery},
		{&st.auditMoveHead, auditMoveHeadQuery},
		{&st.auditPutCheckpoint, auditPutCheckpointQuery},
		{&st.lastUsedGet, lastUsedGetQuery},
		{&st.lastUsedSet, lastUsedSetQuery},
		{&st.networkHistory, networkHistoryQuery},
		{&st.usageMinute, usageUpsert("usage_minutes", "minute", 0)},
		{&st.usageHour, usageUpsert("usage_hours", "hour", 1)},
		{&st.usageDay, usageUpsert("usage_days", "day", 2)},
		{&st.networkMinute, networkUpsert("usage_networks", "minute", 0)},
		{&st.networkDay, networkUpsert("usage_network_days", "day", 1)},
	} {
		var err error
		if *p.stmt, err = pool.PrepareContext(ctx, p.query); err != nil {
			_ = st.close()
			return nil, fmt.Errorf("sqlite: prepare: %w", err)
		}
	}
	return st, nil
}

func (st *stmts) close() error {
	if st == nil {
		return nil
	}
	var errs []error
	for _, s := range []*sql.Stmt{st.tenant, st.key, st.keyByHash, st.auditHead, st.auditLast, st.auditCheckpoint, st.auditCounter,
		st.auditInsert, st.auditMoveHead, st.auditPutCheckpoint, st.lastUsedGet, st.lastUsedSet, st.networkHistory,
		st.usageMinute, st.usageHour, st.usageDay, st.networkMinute, st.networkDay} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	return errors.Join(errs...)
}

// errClosed is what a closed DB answers: during shutdown a request can still
// arrive, and it should get a 503 rather than a 500.
var errClosed = latchkey.Errorf(latchkey.EUnavailable, "the database is closed")
