package sqlite

import (
	"database/sql"
	"errors"
	"strconv"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// rotationColumns lists the columns of a rotation in the order
// scanRotation reads them.
const rotationColumns = `id, tenant_id, key_id, interval, grace, secret, reader, next_at, created_at, updated_at`

// PutRotation inserts r, or replaces the rotation with r.ID; EConflict if
// another rotation of the tenant has r.KeyID or r.Secret, or if r.ID is a
// rotation of another tenant; ENotFound if the tenant, or the key r.KeyID
// in it, does not exist.
//
// The row is selected from the key, so a key of another tenant (which the
// foreign key alone would let through) is not found either. Times are
// stored as they are, a zero one included, so every column is set.
func (t *Tx) PutRotation(r *latchkey.Rotation) error {
	res, err := t.tx.ExecContext(t.ctx, `INSERT INTO key_rotations (`+rotationColumns+`)
		SELECT ?, tenant_id, id, ?, ?, ?, ?, ?, ?, ? FROM keys WHERE tenant_id = ? AND id = ?
		ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id, interval = excluded.interval,
			grace = excluded.grace, secret = excluded.secret, reader = excluded.reader,
			next_at = excluded.next_at, created_at = excluded.created_at, updated_at = excluded.updated_at
		WHERE key_rotations.tenant_id = excluded.tenant_id`,
		r.ID, int64(r.Interval), int64(r.Grace), r.Secret, r.Reader,
		r.NextAt.UnixMicro(), r.CreatedAt.UnixMicro(), r.UpdatedAt.UnixMicro(),
		r.Tenant, r.KeyID)
	if isDuplicate(err) {
		return latchkey.Errorf(latchkey.EConflict, "the tenant already has a rotation of key %q or of secret %q", r.KeyID, r.Secret)
	}
	if err != nil {
		return fail(t.ctx, "put rotation", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail(t.ctx, "put rotation", err)
	}
	if n > 0 {
		return nil
	}
	// Nothing was written: the key is not in the tenant, or the id is
	// another tenant's.
	if _, err := t.Tenant(r.Tenant); err != nil {
		return err
	}
	if _, err := t.Key(r.Tenant, r.KeyID); err != nil {
		return err
	}
	return latchkey.Errorf(latchkey.EConflict, "rotation %q already exists", r.ID)
}

func scanRotation(s scanner) (*latchkey.Rotation, error) {
	var r latchkey.Rotation
	var interval, grace, next, created, updated int64
	if err := s.Scan(&r.ID, &r.Tenant, &r.KeyID, &interval, &grace, &r.Secret, &r.Reader,
		&next, &created, &updated); err != nil {
		return nil, err
	}
	r.Interval, r.Grace = latchkey.Duration(interval), latchkey.Duration(grace)
	r.NextAt = time.UnixMicro(next).UTC()
	r.CreatedAt = time.UnixMicro(created).UTC()
	r.UpdatedAt = time.UnixMicro(updated).UTC()
	return &r, nil
}

// rotation returns the one rotation the query finds; ENotFound (saying
// what) if none.
func (t *Tx) rotation(op, what, query string, args ...any) (*latchkey.Rotation, error) {
	r, err := scanRotation(t.tx.QueryRowContext(t.ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "%s not found", what)
	}
	if err != nil {
		return nil, fail(t.ctx, op, err)
	}
	return r, nil
}

// Rotation returns the tenant's rotation with the id; ENotFound if there is
// none there.
func (t *Tx) Rotation(tenant, id string) (*latchkey.Rotation, error) {
	return t.rotation("rotation", "rotation "+strconv.Quote(id),
		`SELECT `+rotationColumns+` FROM key_rotations WHERE tenant_id = ? AND id = ?`, tenant, id)
}

// RotationOfKey returns the rotation whose KeyID is keyID in the tenant;
// ENotFound if none.
func (t *Tx) RotationOfKey(tenant, keyID string) (*latchkey.Rotation, error) {
	return t.rotation("rotation of key", "rotation of key "+strconv.Quote(keyID),
		`SELECT `+rotationColumns+` FROM key_rotations WHERE tenant_id = ? AND key_id = ?`, tenant, keyID)
}

// DueRotations returns up to limit rotations of any tenant whose NextAt is
// at or before now, earliest first, then by id (index key_rotations_due);
// a limit of 0 or less is no limit.
func (t *Tx) DueRotations(now time.Time, n int) ([]*latchkey.Rotation, error) {
	rows, err := t.tx.QueryContext(t.ctx, `SELECT `+rotationColumns+` FROM key_rotations
		WHERE next_at <= ? ORDER BY next_at, id LIMIT ?`, now.UnixMicro(), limit(latchkey.Page{Limit: n}))
	if err != nil {
		return nil, fail(t.ctx, "due rotations", err)
	}
	defer rows.Close()
	out := []*latchkey.Rotation{}
	for rows.Next() {
		r, err := scanRotation(rows)
		if err != nil {
			return nil, fail(t.ctx, "due rotations", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, "due rotations", err)
	}
	return out, nil
}

// DeleteRotation deletes the tenant's rotation with the id; ENotFound if
// there is none there.
func (t *Tx) DeleteRotation(tenant, id string) error {
	res, err := t.tx.ExecContext(t.ctx, `DELETE FROM key_rotations WHERE tenant_id = ? AND id = ?`, tenant, id)
	if err != nil {
		return fail(t.ctx, "delete rotation", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail(t.ctx, "delete rotation", err)
	}
	if n == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "rotation %q not found", id)
	}
	return nil
}
