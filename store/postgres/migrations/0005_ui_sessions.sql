-- Dashboard sessions, as store/sqlite's 0016: one row per signed-in
-- browser. token_hash is the SHA-256 of the random token the cookie holds;
-- the token itself is never stored. A session names the key that signed
-- in, never the key's secret: each request rebuilds the actor from the
-- key, so a revoked key's session stops at once, on every node. idle_until
-- moves on with use, up to expires_at (the absolute end).
CREATE TABLE ui_sessions (
	token_hash BYTEA PRIMARY KEY,
	tenant_id  TEXT COLLATE "C" NOT NULL,
	key_id     TEXT COLLATE "C" NOT NULL,
	idle_until TIMESTAMPTZ NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL
);

-- Expired sessions are swept by time.
CREATE INDEX ui_sessions_idle ON ui_sessions (idle_until);
