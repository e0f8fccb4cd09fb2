// Package postgres keeps tenants and keys in PostgreSQL (through pgx), for
// deployments where several Latchkey nodes share one database. It keeps
// every promise of keys.Store that store/sqlite keeps; the conformance
// suite in store/storetest runs against both.
//
// # Transactions
//
// SQLite has one writer at a time, so every Update there behaves as if it
// ran alone. Here writers run at once, and each Update is a SERIALIZABLE
// transaction: PostgreSQL commits it only if its outcome is one it could
// have had running alone, and otherwise fails it with a serialization
// failure (SQLSTATE 40001) or a deadlock (40P01). Update answers that by
// running fn again in a new transaction, after a short random pause, up to
// 40 runs in all; only then does the caller get the failure, as
// EUnavailable. Because fn may run more than once, it must leave nothing
// outside the transaction that a second run would not set again.
//
// A View is a READ ONLY REPEATABLE READ transaction: one snapshot, taken at
// its first statement, which never waits for a writer and is never failed
// by one.
//
// The audit log stays one hash chain per tenant under concurrent appends:
// two appends read the same head and both try to store the next seq, and
// the head row and the (tenant_id, seq) key let only one of them commit;
// the other runs again after it.
//
// PostgreSQL refuses every statement of a transaction after one has
// failed, where SQLite goes on. So a write that can meet an expected
// refusal (an id taken, a tenant missing) is written not to fail, and says
// which refusal it was (EConflict, ENotFound); the caller can go on in the
// same transaction, as with SQLite.
//
// # Changes between nodes
//
// Each node caches keys and opened secrets. An Update that creates,
// changes or revokes a key, imports keys, or writes or deletes a secret
// notes a latchkey.Change and sends it with NOTIFY just before it commits;
// PostgreSQL delivers it only if the transaction commits, in commit order.
// DB.Follow (latchkey.ChangeFeed) listens on a connection of its own and
// hands each node the changes of every node, so a revocation reaches every
// cache within milliseconds instead of a cache TTL; after losing its
// connection it says latchkey.ChangeReset, as changes may have been
// missed.
//
// # Errors
//
// As store/sqlite's: ENotFound and EConflict where the contracts (keys.Tx
// and the others) document them,
// EInvalid for a bad argument or connection string, EUnavailable when the
// database cannot be reached, is shutting down, has no connection to give
// or kept failing an Update for concurrent ones, the context's error when
// the context ended; anything else is internal. A database that goes away
// and comes back needs no reopening: the pool drops the broken connections
// and makes new ones.
//
// # Connections
//
// Open takes a connection string in either of PostgreSQL's forms
// (postgres://user:password@host:5432/latchkey?sslmode=verify-full, or
// host=… dbname=… key=value pairs) and keeps a pool of connections
// (Options; pool_max_conns and the other pool_* settings of pgxpool in the
// string work too). Statements are prepared once per connection, and an
// import uses a temporary table of the connection's session: behind a
// connection pooler (PgBouncer) use session pooling, not transaction
// pooling.
//
// # Schema
//
// The schema is this package's own (migrations/), in PostgreSQL's types:
// TIMESTAMPTZ for times, BYTEA for hashes and sealed values, TEXT[] for
// lists of strings, JSONB for maps and structured lists, and JSON for event
// data and webhook payloads, whose text must come back byte for byte. Ids
// and names are COLLATE "C", so lists come back in Go's byte order
// whatever the database's locale. As in SQLite, triggers keep the audit
// log append-only. Open brings the schema up to date in one transaction
// under an advisory lock, so nodes that start together migrate once, and
// refuses a database whose schema is newer than the program.
package postgres
