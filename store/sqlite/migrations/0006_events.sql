-- Events: what webhooks deliver and security listings read. kind is the
-- anomaly kind of security.anomaly events ('' for others), kept in a
-- column so listings filter without parsing data. dispatched is 0 until
-- the webhook dispatcher has fanned the event out.
CREATE TABLE events (
	id         TEXT PRIMARY KEY,
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	type       TEXT NOT NULL,
	kind       TEXT NOT NULL,
	at         INTEGER NOT NULL, -- unix microseconds
	key_id     TEXT NOT NULL,
	data       TEXT NOT NULL, -- JSON object
	dispatched INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX events_tenant ON events (tenant_id, type, id);
CREATE INDEX events_key ON events (key_id, type, at);
CREATE INDEX events_pending ON events (dispatched, id) WHERE dispatched = 0;
