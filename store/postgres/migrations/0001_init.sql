-- Latchkey's schema on PostgreSQL: the same tables, columns, constraints
-- and guards as store/sqlite's after its migration 0012, in PostgreSQL's
-- own types. Times are TIMESTAMPTZ (microseconds, NULL for a zero
-- time.Time); hashes, ciphertexts and wrapped keys BYTEA; lists of strings
-- TEXT[]; maps and structured lists JSONB; event data and webhook payloads
-- JSON, which keeps their text byte for byte (a payload is signed as sent).
-- Every id, name and other text that is compared or ordered is
-- COLLATE "C": lists are in Go's byte order whatever the database's
-- locale.

CREATE TABLE tenants (
	id         TEXT COLLATE "C" PRIMARY KEY,
	name       TEXT NOT NULL,
	created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE keys (
	-- Ids are unique across tenants; every lookup by id also names the
	-- tenant, so one tenant never reads another's key.
	id              TEXT COLLATE "C" PRIMARY KEY,
	tenant_id       TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	name            TEXT COLLATE "C" NOT NULL,
	owner           TEXT COLLATE "C" NOT NULL,
	environment     TEXT COLLATE "C" NOT NULL,
	prefix          TEXT NOT NULL,
	start           TEXT NOT NULL,
	-- SHA-256 of the whole key; the verify path finds a key by it alone.
	hash            BYTEA NOT NULL CHECK (length(hash) = 32),
	scopes          TEXT[] NOT NULL,
	resources       TEXT[] NOT NULL,
	meta            JSONB NOT NULL,
	ip_allow        TEXT[] NOT NULL, -- CIDR prefixes as written
	expires_at      TIMESTAMPTZ,
	-- Only stored states: expired is derived from expires_at.
	state           TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'revoked')),
	state_reason    TEXT NOT NULL,
	suspended_until TIMESTAMPTZ,
	parent_id       TEXT COLLATE "C",
	rotated_from    TEXT COLLATE "C",
	rotated_to      TEXT COLLATE "C",
	grace_until     TIMESTAMPTZ,
	created_at      TIMESTAMPTZ NOT NULL,
	updated_at      TIMESTAMPTZ NOT NULL,
	revoked_at      TIMESTAMPTZ,
	-- The ancestor whose suspension cascaded to a key (NULL: suspended in
	-- its own right, or not suspended).
	suspended_by    TEXT COLLATE "C",
	-- Limits and access policies.
	countries       TEXT[] NOT NULL DEFAULT '{}',
	time_windows    JSONB NOT NULL DEFAULT '[]',
	ratelimits      JSONB NOT NULL DEFAULT '[]',
	quota           JSONB, -- NULL for none
	max_concurrent  INTEGER NOT NULL DEFAULT 0,
	lease_ttl       BIGINT NOT NULL DEFAULT 0, -- nanoseconds
	last_used_at    TIMESTAMPTZ
);

CREATE UNIQUE INDEX keys_hash ON keys (hash);
-- Lists are per tenant in id order; derived keys are found by parent (the
-- index holds only keys that have one).
CREATE INDEX keys_tenant_id ON keys (tenant_id, id);
CREATE INDEX keys_tenant_parent ON keys (tenant_id, parent_id, id) WHERE parent_id IS NOT NULL;
-- key.expiring scans look for keys by expiry across tenants.
CREATE INDEX keys_expires ON keys (expires_at) WHERE expires_at IS NOT NULL;

-- The quota consumption the limiter flushes. A reset bumps epoch, so a
-- flush of consumption counted before the reset cannot write it back.
CREATE TABLE quota_usage (
	key_id       TEXT COLLATE "C" PRIMARY KEY REFERENCES keys (id),
	epoch        BIGINT NOT NULL,
	period_start TIMESTAMPTZ, -- NULL for credit balances
	used         BIGINT NOT NULL
);

-- The audit log: one hash chain per tenant. audit_heads holds each chain's
-- last seq and hash, updated in the same transaction as the append; its row
-- serializes appends per tenant and lets a check notice events removed
-- from the end of the log.
CREATE TABLE audit_events (
	tenant_id     TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	seq           BIGINT NOT NULL,
	at            TIMESTAMPTZ NOT NULL,
	actor_key_id  TEXT COLLATE "C" NOT NULL,
	action        TEXT COLLATE "C" NOT NULL,
	target_key_id TEXT COLLATE "C" NOT NULL,
	ip            TEXT NOT NULL,
	user_agent    TEXT NOT NULL,
	result        TEXT COLLATE "C" NOT NULL,
	details       JSONB NOT NULL, -- object of strings
	prev_hash     TEXT NOT NULL,
	hash          TEXT NOT NULL,
	PRIMARY KEY (tenant_id, seq)
);

CREATE INDEX audit_events_at ON audit_events (tenant_id, at);

CREATE TABLE audit_heads (
	tenant_id TEXT COLLATE "C" PRIMARY KEY REFERENCES tenants (id),
	seq       BIGINT NOT NULL,
	hash      TEXT NOT NULL
);

-- Audit checkpoints: each tenant's chain head signed (HMAC-SHA256) with a
-- key the database does not hold. counter grows with every checkpoint of
-- any tenant. See docs/security.md.
CREATE TABLE audit_checkpoints (
	tenant_id   TEXT COLLATE "C" PRIMARY KEY REFERENCES tenants (id),
	seq         BIGINT NOT NULL,
	hash        TEXT NOT NULL,
	counter     BIGINT NOT NULL,
	tamper_kind TEXT NOT NULL,
	tamper_seq  BIGINT NOT NULL,
	at          TIMESTAMPTZ NOT NULL,
	mac         TEXT NOT NULL -- hex HMAC-SHA256 of latchkey.AuditCheckpoint.Message
);

CREATE INDEX audit_checkpoints_counter ON audit_checkpoints (counter);

-- The database refuses what the program never does to the audit log. An
-- event is never changed or removed, and must extend its tenant's head
-- (seq one past it, prev_hash its hash; seq 1 after the genesis hash); the
-- head only moves forward onto a stored event and is never removed; a
-- checkpoint only moves forward (a rewrap signs it again in place) and is
-- never removed. (Someone who owns the tables can drop these triggers; the
-- hash chain and the signed checkpoint are what catch that.)
CREATE FUNCTION latchkey_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION latchkey_refuse('audit events are append-only');
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
FOR EACH STATEMENT EXECUTE FUNCTION latchkey_refuse('audit events are append-only');

CREATE FUNCTION audit_events_extend_head() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	head_seq  BIGINT;
	head_hash TEXT;
BEGIN
	SELECT seq, hash INTO head_seq, head_hash FROM audit_heads WHERE tenant_id = NEW.tenant_id;
	IF NEW.seq IS DISTINCT FROM coalesce(head_seq, 0) + 1
		OR NEW.prev_hash IS DISTINCT FROM coalesce(head_hash, repeat('0', 64)) THEN
		RAISE EXCEPTION 'audit events are append-only: an event must extend its tenant''s head'
			USING ERRCODE = 'integrity_constraint_violation';
	END IF;
	RETURN NEW;
END $$;

CREATE TRIGGER audit_events_extend_head BEFORE INSERT ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_extend_head();

CREATE FUNCTION audit_heads_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.seq <= OLD.seq OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id
		OR NEW.hash IS DISTINCT FROM (SELECT hash FROM audit_events WHERE tenant_id = NEW.tenant_id AND seq = NEW.seq) THEN
		RAISE EXCEPTION 'the audit head only moves forward, onto a stored event'
			USING ERRCODE = 'integrity_constraint_violation';
	END IF;
	RETURN NEW;
END $$;

CREATE TRIGGER audit_heads_forward BEFORE UPDATE ON audit_heads
FOR EACH ROW EXECUTE FUNCTION audit_heads_forward();
CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
FOR EACH ROW EXECUTE FUNCTION latchkey_refuse('audit heads are never removed');
CREATE TRIGGER audit_heads_no_truncate BEFORE TRUNCATE ON audit_heads
FOR EACH STATEMENT EXECUTE FUNCTION latchkey_refuse('audit heads are never removed');

CREATE FUNCTION audit_checkpoints_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.counter < OLD.counter OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
		RAISE EXCEPTION 'audit checkpoints only move forward' USING ERRCODE = 'integrity_constraint_violation';
	END IF;
	RETURN NEW;
END $$;

CREATE TRIGGER audit_checkpoints_forward BEFORE UPDATE ON audit_checkpoints
FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_forward();
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
FOR EACH ROW EXECUTE FUNCTION latchkey_refuse('audit checkpoints are never removed');
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
FOR EACH STATEMENT EXECUTE FUNCTION latchkey_refuse('audit checkpoints are never removed');

-- Usage: what the usage recorder flushes, per key per UTC minute, and its
-- roll-ups per UTC hour and day (networks per day only), kept longer.
CREATE TABLE usage_minutes (
	key_id    TEXT COLLATE "C" NOT NULL,
	tenant_id TEXT COLLATE "C" NOT NULL,
	minute    TIMESTAMPTZ NOT NULL,
	code      TEXT COLLATE "C" NOT NULL,
	count     BIGINT NOT NULL,
	PRIMARY KEY (key_id, minute, code)
);

CREATE INDEX usage_minutes_minute ON usage_minutes (minute);

CREATE TABLE usage_hours (
	key_id    TEXT COLLATE "C" NOT NULL,
	tenant_id TEXT COLLATE "C" NOT NULL,
	hour      TIMESTAMPTZ NOT NULL,
	code      TEXT COLLATE "C" NOT NULL,
	count     BIGINT NOT NULL,
	PRIMARY KEY (key_id, hour, code)
);

CREATE INDEX usage_hours_hour ON usage_hours (hour);

CREATE TABLE usage_days (
	key_id    TEXT COLLATE "C" NOT NULL,
	tenant_id TEXT COLLATE "C" NOT NULL,
	day       TIMESTAMPTZ NOT NULL,
	code      TEXT COLLATE "C" NOT NULL,
	count     BIGINT NOT NULL,
	PRIMARY KEY (key_id, day, code)
);

CREATE INDEX usage_days_day ON usage_days (day);

CREATE TABLE usage_networks (
	key_id  TEXT COLLATE "C" NOT NULL,
	minute  TIMESTAMPTZ NOT NULL,
	network TEXT COLLATE "C" NOT NULL,
	count   BIGINT NOT NULL,
	PRIMARY KEY (key_id, minute, network)
);

CREATE INDEX usage_networks_minute ON usage_networks (minute);

CREATE TABLE usage_network_days (
	key_id  TEXT COLLATE "C" NOT NULL,
	day     TIMESTAMPTZ NOT NULL,
	network TEXT COLLATE "C" NOT NULL,
	count   BIGINT NOT NULL,
	PRIMARY KEY (key_id, day, network)
);

CREATE INDEX usage_network_days_day ON usage_network_days (day);

-- Events: what webhooks deliver and security listings read. kind is the
-- anomaly kind of security.anomaly events ('' for others).
CREATE TABLE events (
	id         TEXT COLLATE "C" PRIMARY KEY,
	tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	type       TEXT COLLATE "C" NOT NULL,
	kind       TEXT COLLATE "C" NOT NULL,
	at         TIMESTAMPTZ NOT NULL,
	key_id     TEXT COLLATE "C" NOT NULL,
	data       JSON NOT NULL,
	dispatched BOOLEAN NOT NULL DEFAULT false
);

CREATE INDEX events_tenant ON events (tenant_id, type, id);
CREATE INDEX events_key ON events (key_id, type, at);
CREATE INDEX events_pending ON events (id) WHERE NOT dispatched;

-- Webhook endpoints and the outbox of deliveries to them. A webhook's
-- signing secret is stored sealed by the keyring, never in plaintext.
-- events lists event types ({} means every type).
CREATE TABLE webhooks (
	id         TEXT COLLATE "C" PRIMARY KEY,
	tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	url        TEXT NOT NULL,
	events     TEXT[] NOT NULL,
	secret     BYTEA NOT NULL, -- sealed with aad "webhook:<tenant>:<id>"
	created_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX webhooks_tenant ON webhooks (tenant_id, id);

-- One row per (webhook, event): the durable outbox. lease_until is when a
-- node's claim on a row lapses (NULL: unclaimed).
CREATE TABLE deliveries (
	id               TEXT COLLATE "C" PRIMARY KEY,
	webhook_id       TEXT COLLATE "C" NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
	tenant_id        TEXT COLLATE "C" NOT NULL,
	event_id         TEXT COLLATE "C" NOT NULL,
	event_type       TEXT NOT NULL,
	payload          JSON NOT NULL,
	status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
	attempts         INTEGER NOT NULL,
	next_attempt_at  TIMESTAMPTZ,
	lease_until      TIMESTAMPTZ,
	last_status_code INTEGER NOT NULL DEFAULT 0,
	last_error       TEXT NOT NULL DEFAULT '',
	created_at       TIMESTAMPTZ NOT NULL,
	delivered_at     TIMESTAMPTZ,
	UNIQUE (webhook_id, event_id)
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_webhook ON deliveries (tenant_id, webhook_id, id);
CREATE INDEX deliveries_created ON deliveries (created_at) WHERE status <> 'pending';

-- The keyring and the brokered secrets (docs/secrets.md): data keys
-- wrapped by the master key (never stored), one value sealed by the master
-- key to check it at start, and secret versions sealed by a data key.
CREATE TABLE keyring_terms (
	term       BIGINT PRIMARY KEY,
	wrapped    BYTEA NOT NULL,
	created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE keyring_check (
	id          INTEGER PRIMARY KEY CHECK (id = 1),
	check_value BYTEA NOT NULL
);

-- One row per secret name ever written in a tenant: last_version survives
-- a delete (live = false), so a version number is never reused.
CREATE TABLE secrets (
	tenant_id    TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	name         TEXT COLLATE "C" NOT NULL,
	last_version BIGINT NOT NULL,
	live         BOOLEAN NOT NULL,
	created_at   TIMESTAMPTZ NOT NULL,
	updated_at   TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, name)
);

CREATE TABLE secret_versions (
	tenant_id  TEXT COLLATE "C" NOT NULL,
	name       TEXT COLLATE "C" NOT NULL,
	version    BIGINT NOT NULL,
	ciphertext BYTEA NOT NULL,
	expires_in BIGINT NOT NULL,
	meta       JSONB NOT NULL, -- object of strings
	created_at TIMESTAMPTZ NOT NULL,
	created_by TEXT NOT NULL,
	PRIMARY KEY (tenant_id, name, version),
	FOREIGN KEY (tenant_id, name) REFERENCES secrets (tenant_id, name)
);
