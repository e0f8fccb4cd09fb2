-- Automatic key rotation, as store/sqlite's 0014: one row per rotation
-- schedule. key_id is the key the next rotation rotates (its successor then
-- takes its place), so it moves on with every rotation while id stays. Each
-- successor's plaintext is sealed as the tenant's secret named secret, for
-- the key reader ('' for none) to fetch through the broker. interval and
-- grace are nanoseconds.
CREATE TABLE key_rotations (
	id         TEXT COLLATE "C" PRIMARY KEY,
	tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	key_id     TEXT COLLATE "C" NOT NULL REFERENCES keys (id),
	"interval" BIGINT NOT NULL,
	grace      BIGINT NOT NULL,
	secret     TEXT COLLATE "C" NOT NULL,
	reader     TEXT COLLATE "C" NOT NULL,
	next_at    TIMESTAMPTZ NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL,
	-- One rotation per key, and per secret name, in a tenant.
	UNIQUE (tenant_id, key_id),
	UNIQUE (tenant_id, secret)
);

-- The scheduler reads only the due rows, earliest first.
CREATE INDEX key_rotations_due ON key_rotations (next_at, id);
