// Package store holds what the SQL backends of keys.Store share, so that
// SQLite and PostgreSQL answer the same question with the same SQL. The
// conformance suite every backend must pass is in store/storetest.
package store

// StateAtSQL is a SQL expression that yields, for one row of the keys table,
// the state latchkey.Key.StateAt returns: 'revoked', 'suspended', 'expired'
// or 'active', tested in that order. It lets a backend filter a key list by
// state in the database, so that paging by id stays correct.
//
// It reads the columns state, grace_until, suspended_until and expires_at,
// unqualified, with NULL standing for a zero time.Time, so it must be used
// where those names refer to the keys table. The instant is the parameter
// @now, which appears three times and must have the same type as the time
// columns (INTEGER unix microseconds in SQLite, timestamptz in PostgreSQL).
// Bind it by name (sql.Named("now", …) with database/sql, pgx.NamedArgs with
// pgx) or replace "@now" with one numbered placeholder ($3, ?3).
//
// A time column compares with @now as StateAt compares with now: a key is
// past a time once now is not before it, so at exactly ExpiresAt a key is
// expired and at exactly SuspendedUntil it is active again. If StateAt
// changes, this must change with it; storetest checks the two agree.
const StateAtSQL = `CASE
	WHEN state = 'revoked' OR (grace_until IS NOT NULL AND grace_until <= @now) THEN 'revoked'
	WHEN state = 'suspended' AND (suspended_until IS NULL OR @now < suspended_until) THEN 'suspended'
	WHEN expires_at IS NOT NULL AND expires_at <= @now THEN 'expired'
	ELSE 'active'
END`
