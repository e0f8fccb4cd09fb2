-- Dashboard sessions (package ui, docs/ui.md): one row per signed-in
-- browser. token_hash is the SHA-256 of the random token the cookie holds;
-- the token itself is never stored. A session names the key that signed
-- in, never the key's secret: each request rebuilds the actor from the
-- key, so a revoked key's session stops at once. idle_until moves on with
-- use, up to expires_at (the absolute end). Times are unix microseconds.
CREATE TABLE ui_sessions (
	token_hash BLOB PRIMARY KEY,
	tenant_id  TEXT NOT NULL,
	key_id     TEXT NOT NULL,
	idle_until INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT;

-- Expired sessions are swept by time.
CREATE INDEX ui_sessions_idle ON ui_sessions (idle_until);
