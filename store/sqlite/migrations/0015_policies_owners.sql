-- Policies and owners (issue 12). A key names the tenant's policy it takes
-- its settings from ('' for none); the verify path reads the policy and the
-- record of the key's owner with the key, in one statement (KeyByHash).
-- Times are unix microseconds, NULL for a zero time; lists and maps are
-- JSON text.
ALTER TABLE keys ADD COLUMN policy TEXT NOT NULL DEFAULT '';
-- Keys naming a policy, per tenant in id order: GET /v1/keys?policy=…, and
-- the check that no live key names a policy being deleted. Most keys name
-- none and stay out of the index.
CREATE INDEX keys_tenant_policy ON keys (tenant_id, policy, id) WHERE policy <> '';

-- body is the JSON object of the latchkey.Policy (its settings: tenant,
-- name and times are the columns), so a setting added later needs no
-- migration.
CREATE TABLE policies (
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	name       TEXT NOT NULL,
	body       TEXT NOT NULL,
	created_at INTEGER,
	updated_at INTEGER,
	PRIMARY KEY (tenant_id, name)
) STRICT;

-- What a tenant records about the owner of keys (keys.owner): limits all
-- of the owner's keys share.
CREATE TABLE owners (
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	id         TEXT NOT NULL,
	ratelimits TEXT NOT NULL, -- JSON array
	quota      TEXT,          -- JSON object, NULL for none
	meta       TEXT NOT NULL, -- JSON object
	created_at INTEGER,
	updated_at INTEGER,
	PRIMARY KEY (tenant_id, id)
) STRICT;

-- The consumption of an owner's shared periodic quota that the limiter
-- flushes (latchkey.OwnerQuotaID), as quota_usage holds a key's. It names
-- the owner, not its record, so that a flush racing a DeleteOwner is not
-- refused; a reset bumps epoch as in quota_usage.
CREATE TABLE owner_quota_usage (
	tenant_id    TEXT NOT NULL REFERENCES tenants (id),
	owner        TEXT NOT NULL,
	epoch        INTEGER NOT NULL,
	period_start INTEGER, -- unix microseconds
	used         INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, owner)
) STRICT;
