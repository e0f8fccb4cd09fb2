-- Usage roll-ups: the minute counts summed per UTC hour and per UTC day,
-- written in the same statement batch as the minute rows, and kept longer
-- than them. Networks roll up per day only.
CREATE TABLE usage_hours (
	key_id    TEXT NOT NULL,
	tenant_id TEXT NOT NULL,
	hour      INTEGER NOT NULL, -- unix microseconds of the hour's start
	code      TEXT NOT NULL,
	count     INTEGER NOT NULL,
	PRIMARY KEY (key_id, hour, code)
) STRICT;

CREATE INDEX usage_hours_hour ON usage_hours (hour);

CREATE TABLE usage_days (
	key_id    TEXT NOT NULL,
	tenant_id TEXT NOT NULL,
	day       INTEGER NOT NULL, -- unix microseconds of the UTC day's start
	code      TEXT NOT NULL,
	count     INTEGER NOT NULL,
	PRIMARY KEY (key_id, day, code)
) STRICT;

CREATE INDEX usage_days_day ON usage_days (day);

CREATE TABLE usage_network_days (
	key_id  TEXT NOT NULL,
	day     INTEGER NOT NULL,
	network TEXT NOT NULL,
	count   INTEGER NOT NULL,
	PRIMARY KEY (key_id, day, network)
) STRICT;

CREATE INDEX usage_network_days_day ON usage_network_days (day);
