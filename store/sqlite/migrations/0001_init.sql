-- Tenants and keys. Times are INTEGER unix microseconds in UTC, NULL for a
-- zero time.Time; lists and maps are JSON text.

CREATE TABLE tenants (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE keys (
	-- Ids are unique across tenants; every lookup by id also names the
	-- tenant, so one tenant never reads another's key.
	id              TEXT PRIMARY KEY,
	tenant_id       TEXT NOT NULL REFERENCES tenants (id),
	name            TEXT NOT NULL,
	owner           TEXT NOT NULL,
	environment     TEXT NOT NULL,
	prefix          TEXT NOT NULL,
	start           TEXT NOT NULL,
	-- SHA-256 of the whole key; the verify path finds a key by it alone.
	hash            BLOB NOT NULL CHECK (length(hash) = 32),
	scopes          TEXT NOT NULL, -- JSON array of strings
	resources       TEXT NOT NULL, -- JSON array of strings
	meta            TEXT NOT NULL, -- JSON object
	ip_allow        TEXT NOT NULL, -- JSON array of CIDR strings
	expires_at      INTEGER,
	-- Only stored states: expired is derived from expires_at.
	state           TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'revoked')),
	state_reason    TEXT NOT NULL,
	suspended_until INTEGER,
	parent_id       TEXT,
	rotated_from    TEXT,
	rotated_to      TEXT,
	grace_until     INTEGER,
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL,
	revoked_at      INTEGER
) STRICT;

CREATE UNIQUE INDEX keys_hash ON keys (hash);
-- Lists are per tenant in id order; derived keys are found by parent.
CREATE INDEX keys_tenant_id ON keys (tenant_id, id);
CREATE INDEX keys_tenant_parent ON keys (tenant_id, parent_id, id);
