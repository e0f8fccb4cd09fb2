package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchkeyhq/latchkey"
)

// DB is a store of tenants and keys in a PostgreSQL database, whose
// transactions are *Tx: a service takes it narrowed to its own contract
// (latchkey.Narrow[keys.Tx](db)), and it keeps every rule written on
// keys.Store. It is safe for concurrent use, also by several processes on
// one database.
type DB struct {
	pool    *pgxpool.Pool
	closed  atomic.Bool
	anchor  atomic.Pointer[auditSigner]
	retries atomic.Int64 // Update's runs of fn after the first (Retries)

	closeOnce sync.Once
	done      chan struct{} // closed by Close; stops Follow
}

var (
	_ latchkey.Store[*Tx] = (*DB)(nil)
	_ latchkey.HashReader = (*DB)(nil)
)

// Options tune the connection pool. A zero field takes the value the
// connection string gives (pool_max_conns, pool_min_conns,
// pool_max_conn_lifetime, connect_timeout), else the default below.
type Options struct {
	// MaxConns bounds the connections of this node: at most this many
	// transactions run at once, the others wait for one. Default
	// max(8, 2×GOMAXPROCS). Several nodes share the server's
	// max_connections (100 by default), so keep nodes × MaxConns under it.
	MaxConns int32
	// MinConns are kept open even when idle, so that the verify path's
	// first cache miss after a quiet spell does not pay for a connection
	// (a TCP and authentication round trip or more). Default 2.
	MinConns int32
	// MaxConnLifetime closes a connection after this long (at the next
	// moment it is idle), so that connections spread over a server's
	// replicas behind a load balancer and no server-side memory grows
	// without end. Default 30 minutes.
	MaxConnLifetime time.Duration
	// ConnectTimeout bounds opening one connection. With the database
	// away, a transaction fails with EUnavailable after this long instead
	// of hanging. Default 5 seconds.
	ConnectTimeout time.Duration
}

// Defaults of Options.
const (
	defaultMinConns        = 2
	defaultMaxConnLifetime = 30 * time.Minute
	defaultConnectTimeout  = 5 * time.Second
)

// Open connects to the database the connection string names
// (postgres://user:password@host:port/dbname?sslmode=…, or the key=value
// form), checks that it answers, and brings its schema up to date. The
// string may carry pool_* settings; opts override them.
func Open(ctx context.Context, dsn string, opts Options) (*DB, error) {
	return open(ctx, dsn, opts, migrations())
}

func open(ctx context.Context, dsn string, opts Options, ms []migration) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx writes the string into the error with its password
		// replaced; TestOpenKeepsPasswordOutOfErrors holds it to that.
		return nil, latchkey.Errorf(latchkey.EInvalid, "postgres: %s", err.Error())
	}
	explicit := func(key string) bool { _, ok := cfg.ConnConfig.RuntimeParams[key]; return ok }
	switch {
	case opts.MaxConns > 0:
		cfg.MaxConns = opts.MaxConns
	case !hasParam(dsn, "pool_max_conns"):
		cfg.MaxConns = int32(max(8, 2*runtime.GOMAXPROCS(0)))
	}
	switch {
	case opts.MinConns > 0:
		cfg.MinConns = opts.MinConns
	case !hasParam(dsn, "pool_min_conns"):
		cfg.MinConns = defaultMinConns
	}
	cfg.MinConns = min(cfg.MinConns, cfg.MaxConns)
	switch {
	case opts.MaxConnLifetime > 0:
		cfg.MaxConnLifetime = opts.MaxConnLifetime
	case !hasParam(dsn, "pool_max_conn_lifetime"):
		cfg.MaxConnLifetime = defaultMaxConnLifetime
	}
	switch {
	case opts.ConnectTimeout > 0:
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	case cfg.ConnConfig.ConnectTimeout == 0:
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if !explicit("application_name") {
		cfg.ConnConfig.RuntimeParams["application_name"] = "latchkey"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fail(ctx, "open", err)
	}
	db := &DB{pool: pool, done: make(chan struct{})}
	if err := migrate(ctx, pool, ms); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// hasParam reports whether a connection string sets key, in either form
// (URL query or key=value).
func hasParam(dsn, key string) bool {
	return strings.Contains(dsn, key+"=")
}

// View runs fn in a read-only transaction on one snapshot of the database,
// taken at fn's first statement.
func (db *DB) View(ctx context.Context, fn func(*Tx) error) error {
	_, err := db.once(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
	return err
}

// Update runs fn in a serializable read-write transaction and commits it
// if fn returns nil. When PostgreSQL fails it because a concurrent
// transaction made its outcome impossible alone (a serialization failure
// or a deadlock), Update runs fn again in a new transaction, up to
// maxAttempts times in all, after a short random pause; fn must allow that
// (see the package comment). It returns fn's error unchanged.
func (db *DB) Update(ctx context.Context, fn func(*Tx) error) error {
	opts := pgx.TxOptions{IsoLevel: pgx.Serializable, AccessMode: pgx.ReadWrite}
	for attempt := 1; ; attempt++ {
		retry, err := db.once(ctx, opts, fn)
		if !retry || attempt == maxAttempts {
			return err
		}
		db.retries.Add(1)
		// Full jitter: concurrent losers spread out instead of meeting
		// again at the same moment.
		pause := time.Duration(rand.Int64N(int64(min(retryPauseMax, retryPauseMin<<attempt))))
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres: retry: %w", ctx.Err())
		case <-time.After(pause):
		}
	}
}

// Retries returns how many times, since Open, an Update ran its fn again
// after PostgreSQL failed it for a concurrent transaction: a measure of
// write contention, for metrics.
func (db *DB) Retries() int64 { return db.retries.Load() }

// Retries of an Update: how many runs of fn in all, and the bounds of the
// random pause before each retry (it doubles up to the maximum). Eight
// writers each reading, then inserting into, one page of an index (the
// conformance suite's ConcurrentUpdates, under -race on two busy cores)
// needed up to 15 runs for one Update.
const (
	maxAttempts   = 40
	retryPauseMin = time.Millisecond
	retryPauseMax = 100 * time.Millisecond
)

// once runs fn in one transaction; retry reports whether it failed in a
// way a new transaction may not.
func (db *DB) once(ctx context.Context, opts pgx.TxOptions, fn func(*Tx) error) (retry bool, err error) {
	if db.closed.Load() {
		return false, errClosed
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("postgres: begin: %w", err)
	}
	ptx, err := db.pool.BeginTx(ctx, opts)
	if err != nil {
		return false, fail(ctx, "begin", err)
	}
	t := &Tx{ctx: ctx, tx: ptx, anchor: db.anchor.Load()}
	finished := false
	defer func() {
		// Also when fn panics: the connection goes back to the pool
		// only without a transaction open on it.
		if !finished {
			rollback(ctx, ptx)
		}
	}()
	if err := fn(t); err != nil {
		return t.retry, err
	}
	if err := t.sendChanges(); err != nil {
		return t.retry, err
	}
	finished = true
	if err := ptx.Commit(ctx); err != nil {
		// A serializable transaction can also fail at its commit; and a
		// transaction whose fn went on after a statement failed cannot
		// commit (pgx.ErrTxCommitRollback).
		retry := retryable(err) || t.retry && errors.Is(err, pgx.ErrTxCommitRollback)
		return retry, fail(ctx, "commit", err)
	}
	return false, nil
}

// rollbackTimeout bounds a rollback, which runs even when ctx has ended.
const rollbackTimeout = 5 * time.Second

func rollback(ctx context.Context, ptx pgx.Tx) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	// A failed rollback closes the connection, which ends the
	// transaction on the server as surely.
	_ = ptx.Rollback(rctx)
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

// KeyByHash returns the key whose SHA-256 is hash, with its Bound (the
// stored policy it names and its owner's record); ENotFound if none. It
// is the verify path's cache miss (latchkey.HashReader): one statement on
// a pooled connection, without a transaction around it (a statement reads
// one snapshot), so a miss costs one round trip instead of three.
func (db *DB) KeyByHash(ctx context.Context, hash [32]byte) (*latchkey.Key, error) {
	if db.closed.Load() {
		return nil, errClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("postgres: key by hash: %w", err)
	}
	k, err := scanBoundKey(db.pool.QueryRow(ctx, keyByHash, hash[:]))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "key not found")
	}
	if err != nil {
		return nil, fail(ctx, "key by hash", err)
	}
	return k, nil
}

// Ping reports whether the database answers and holds Latchkey's schema.
func (db *DB) Ping(ctx context.Context) error {
	if db.closed.Load() {
		return errClosed
	}
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		return fail(ctx, "ping", err)
	}
	return nil
}

// Close closes every connection, waiting for the transactions running on
// them to end, and stops Follow; transactions that start later fail with
// EUnavailable. Close may be called more than once.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.closed.Store(true)
		close(db.done)
		db.pool.Close()
	})
	return nil
}

// errClosed is what a closed DB answers: during shutdown a request can still
// arrive, and it should get a 503 rather than a 500.
var errClosed = latchkey.Errorf(latchkey.EUnavailable, "the database is closed")
