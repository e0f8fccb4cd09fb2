-- Usage: what the usage recorder flushes, per key per UTC minute. Minutes
-- are unix microseconds, like every other time.
ALTER TABLE keys ADD COLUMN last_used_at INTEGER;

CREATE TABLE usage_minutes (
	key_id    TEXT NOT NULL,
	tenant_id TEXT NOT NULL,
	minute    INTEGER NOT NULL,
	code      TEXT NOT NULL,
	count     INTEGER NOT NULL,
	PRIMARY KEY (key_id, minute, code)
) STRICT;

CREATE INDEX usage_minutes_tenant ON usage_minutes (tenant_id, key_id, minute);
CREATE INDEX usage_minutes_minute ON usage_minutes (minute);

CREATE TABLE usage_networks (
	key_id  TEXT NOT NULL,
	minute  INTEGER NOT NULL,
	network TEXT NOT NULL,
	count   INTEGER NOT NULL,
	PRIMARY KEY (key_id, minute, network)
) STRICT;

CREATE INDEX usage_networks_minute ON usage_networks (minute);
