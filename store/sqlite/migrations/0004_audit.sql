-- The audit log: one hash chain per tenant. audit_heads holds each chain's
-- last seq and hash, updated in the same transaction as the append; it
-- serializes appends per tenant and lets a check notice events removed
-- from the end of the log.
CREATE TABLE audit_events (
	tenant_id     TEXT NOT NULL REFERENCES tenants (id),
	seq           INTEGER NOT NULL,
	at            INTEGER NOT NULL, -- unix microseconds
	actor_key_id  TEXT NOT NULL,
	action        TEXT NOT NULL,
	target_key_id TEXT NOT NULL,
	ip            TEXT NOT NULL,
	user_agent    TEXT NOT NULL,
	result        TEXT NOT NULL,
	details       TEXT NOT NULL, -- JSON object of strings
	prev_hash     TEXT NOT NULL,
	hash          TEXT NOT NULL,
	PRIMARY KEY (tenant_id, seq)
) STRICT;

CREATE INDEX audit_events_at ON audit_events (tenant_id, at);

CREATE TABLE audit_heads (
	tenant_id TEXT PRIMARY KEY REFERENCES tenants (id),
	seq       INTEGER NOT NULL,
	hash      TEXT NOT NULL
) STRICT;

-- Append-only: the program never changes or removes an event. (Someone
-- with the file can drop these triggers; the hash chain is what catches
-- that.)
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
