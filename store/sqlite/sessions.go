package sqlite

import (
	"database/sql"
	"errors"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// The dashboard's sessions (ui.SessionTx): a row per signed-in browser,
// found by the SHA-256 of its cookie's token.

// CreateSession stores a session; EConflict if its hash exists.
func (t *Tx) CreateSession(hash [32]byte, tenant, keyID string, idleUntil, expiresAt time.Time) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO ui_sessions (token_hash, tenant_id, key_id, idle_until, expires_at)
		VALUES (?, ?, ?, ?, ?)`, hash[:], tenant, keyID, idleUntil.UnixMicro(), expiresAt.UnixMicro())
	if isDuplicate(err) {
		return latchkey.Errorf(latchkey.EConflict, "the session exists")
	}
	if err != nil {
		return fail(t.ctx, "create session", err)
	}
	return nil
}

// Session reads the session with the hash, expired or not (the caller
// compares the times); ENotFound if there is none.
func (t *Tx) Session(hash [32]byte) (tenant, keyID string, idleUntil, expiresAt time.Time, err error) {
	var idle, exp int64
	err = t.tx.QueryRowContext(t.ctx, `SELECT tenant_id, key_id, idle_until, expires_at FROM ui_sessions WHERE token_hash = ?`,
		hash[:]).Scan(&tenant, &keyID, &idle, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", time.Time{}, time.Time{}, latchkey.Errorf(latchkey.ENotFound, "no such session")
	}
	if err != nil {
		return "", "", time.Time{}, time.Time{}, fail(t.ctx, "read session", err)
	}
	return tenant, keyID, time.UnixMicro(idle).UTC(), time.UnixMicro(exp).UTC(), nil
}

// TouchSession moves the session's idle end to idleUntil; ENotFound if
// there is no such session.
func (t *Tx) TouchSession(hash [32]byte, idleUntil time.Time) error {
	res, err := t.tx.ExecContext(t.ctx, `UPDATE ui_sessions SET idle_until = ? WHERE token_hash = ?`, idleUntil.UnixMicro(), hash[:])
	if err != nil {
		return fail(t.ctx, "touch session", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail(t.ctx, "touch session", err)
	}
	if n == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "no such session")
	}
	return nil
}

// DeleteSession removes the session; deleting one that is gone is not an
// error (signing out twice ends the same session).
func (t *Tx) DeleteSession(hash [32]byte) error {
	if _, err := t.tx.ExecContext(t.ctx, `DELETE FROM ui_sessions WHERE token_hash = ?`, hash[:]); err != nil {
		return fail(t.ctx, "delete session", err)
	}
	return nil
}

// DeleteExpiredSessions removes the sessions whose idle or absolute end is
// at or before now and returns how many.
func (t *Tx) DeleteExpiredSessions(now time.Time) (int, error) {
	res, err := t.tx.ExecContext(t.ctx, `DELETE FROM ui_sessions WHERE idle_until <= ? OR expires_at <= ?`, now.UnixMicro(), now.UnixMicro())
	if err != nil {
		return 0, fail(t.ctx, "delete expired sessions", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fail(t.ctx, "delete expired sessions", err)
	}
	return int(n), nil
}
