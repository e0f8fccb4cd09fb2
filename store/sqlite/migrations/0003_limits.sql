-- Limits and access policies of a key (JSON like the other lists), and the
-- quota consumption the limiter flushes. A reset bumps epoch, so a flush of
-- consumption counted before the reset cannot write it back.
ALTER TABLE keys ADD COLUMN countries TEXT NOT NULL DEFAULT '[]';
ALTER TABLE keys ADD COLUMN time_windows TEXT NOT NULL DEFAULT '[]';
ALTER TABLE keys ADD COLUMN ratelimits TEXT NOT NULL DEFAULT '[]';
ALTER TABLE keys ADD COLUMN quota TEXT; -- JSON object, NULL for none
ALTER TABLE keys ADD COLUMN max_concurrent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE keys ADD COLUMN lease_ttl INTEGER NOT NULL DEFAULT 0; -- nanoseconds

CREATE TABLE quota_usage (
	key_id       TEXT PRIMARY KEY REFERENCES keys (id),
	epoch        INTEGER NOT NULL,
	period_start INTEGER, -- unix microseconds, NULL for credit balances
	used         INTEGER NOT NULL
) STRICT;
