-- Automatic key rotation (docs: issue 12): one row per rotation schedule.
-- key_id is the key the next rotation rotates (its successor then takes
-- its place), so it moves on with every rotation while id stays. Each
-- successor's plaintext is sealed as the tenant's secret named secret, for
-- the key reader ('' for none) to fetch through the broker. interval and
-- grace are nanoseconds; times are unix microseconds.
CREATE TABLE key_rotations (
	id         TEXT PRIMARY KEY,
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	key_id     TEXT NOT NULL REFERENCES keys (id),
	interval   INTEGER NOT NULL,
	grace      INTEGER NOT NULL,
	secret     TEXT NOT NULL,
	reader     TEXT NOT NULL,
	next_at    INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	-- One rotation per key, and per secret name, in a tenant.
	UNIQUE (tenant_id, key_id),
	UNIQUE (tenant_id, secret)
) STRICT;

-- The scheduler reads only the due rows, earliest first.
CREATE INDEX key_rotations_due ON key_rotations (next_at, id);
