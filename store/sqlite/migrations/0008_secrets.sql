-- The keyring and the brokered secrets (docs/secrets.md).
--
-- keyring_terms holds the data keys, each wrapped (AES-256-GCM) by the
-- master key, which is never stored here. keyring_check holds one value
-- sealed by the master key, so that a node started with the wrong master
-- key says so instead of failing on the first secret it reads.
CREATE TABLE keyring_terms (
	term       INTEGER PRIMARY KEY,
	wrapped    BLOB NOT NULL,
	created_at INTEGER NOT NULL -- unix microseconds
) STRICT;

CREATE TABLE keyring_check (
	id    INTEGER PRIMARY KEY CHECK (id = 1),
	check_value BLOB NOT NULL
) STRICT;

-- secrets is one row per secret name ever written in a tenant: last_version
-- survives a delete (live = 0) so that a version number is never reused
-- and an old ciphertext cannot be replayed into a new row.
CREATE TABLE secrets (
	tenant_id    TEXT NOT NULL REFERENCES tenants (id),
	name         TEXT NOT NULL,
	last_version INTEGER NOT NULL,
	live         INTEGER NOT NULL,
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, name)
) STRICT;

-- secret_versions holds the values, sealed by a keyring term with tenant,
-- name and version as associated data.
CREATE TABLE secret_versions (
	tenant_id  TEXT NOT NULL,
	name       TEXT NOT NULL,
	version    INTEGER NOT NULL,
	ciphertext BLOB NOT NULL,
	expires_in INTEGER NOT NULL,
	meta       TEXT NOT NULL, -- JSON object of strings
	created_at INTEGER NOT NULL,
	created_by TEXT NOT NULL,
	PRIMARY KEY (tenant_id, name, version),
	FOREIGN KEY (tenant_id, name) REFERENCES secrets (tenant_id, name)
) STRICT;
