package postgres

import (
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchkeyhq/latchkey"
)

// The dashboard's sessions (ui.SessionTx): a row per signed-in browser,
// found by the SHA-256 of its cookie's token, shared by every node.

// CreateSession stores a session; EConflict if its hash exists. The
// hash is checked first, so a duplicate does not fail the transaction.
func (t *Tx) CreateSession(hash [32]byte, tenant, keyID string, idleUntil, expiresAt time.Time) error {
	tag, err := t.exec("create session", `INSERT INTO ui_sessions (token_hash, tenant_id, key_id, idle_until, expires_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token_hash) DO NOTHING`, hash[:], tenant, keyID, idleUntil, expiresAt)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.EConflict, "the session exists")
	}
	return nil
}

// Session reads the session with the hash, expired or not (the caller
// compares the times); ENotFound if there is none.
func (t *Tx) Session(hash [32]byte) (tenant, keyID string, idleUntil, expiresAt time.Time, err error) {
	err = t.tx.QueryRow(t.ctx, `SELECT tenant_id, key_id, idle_until, expires_at FROM ui_sessions WHERE token_hash = $1`,
		hash[:]).Scan(&tenant, &keyID, &idleUntil, &expiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", time.Time{}, time.Time{}, latchkey.Errorf(latchkey.ENotFound, "no such session")
	}
	if err != nil {
		return "", "", time.Time{}, time.Time{}, t.fail("read session", err)
	}
	return tenant, keyID, idleUntil.UTC(), expiresAt.UTC(), nil
}

// TouchSession moves the session's idle end to idleUntil; ENotFound if
// there is no such session.
func (t *Tx) TouchSession(hash [32]byte, idleUntil time.Time) error {
	tag, err := t.exec("touch session", `UPDATE ui_sessions SET idle_until = $1 WHERE token_hash = $2`, idleUntil, hash[:])
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "no such session")
	}
	return nil
}

// DeleteSession removes the session; deleting one that is gone is not an
// error (signing out twice ends the same session).
func (t *Tx) DeleteSession(hash [32]byte) error {
	_, err := t.exec("delete session", `DELETE FROM ui_sessions WHERE token_hash = $1`, hash[:])
	return err
}

// DeleteExpiredSessions removes the sessions whose idle or absolute end is
// at or before now and returns how many.
func (t *Tx) DeleteExpiredSessions(now time.Time) (int, error) {
	tag, err := t.exec("delete expired sessions", `DELETE FROM ui_sessions WHERE idle_until <= $1 OR expires_at <= $1`, now)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}
