package postgres

import (
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/latchkeyhq/latchkey"
)

// rotationColumns lists the columns of a rotation in the order
// scanRotation reads them ("interval" is a keyword, so quoted).
const rotationColumns = `id, tenant_id, key_id, "interval", grace, secret, reader, next_at, created_at, updated_at`

// PutRotation inserts r, or replaces the rotation with r.ID; EConflict if
// another rotation of the tenant has r.KeyID or r.Secret, or if r.ID is a
// rotation of another tenant; ENotFound if the tenant, or the key r.KeyID
// in it, does not exist.
//
// Like the other writes here it does not fail on an expected refusal: the
// unique (tenant, key) and (tenant, secret) are checked first (in a
// serializable transaction, so a concurrent insert of the same ends in a
// serialization failure, not a duplicate), and the row is selected from
// the key, so a missing key or tenant writes nothing instead of breaking a
// foreign key. Times are stored as they are, a zero one included, so every
// column is set.
func (t *Tx) PutRotation(r *latchkey.Rotation) error {
	taken, err := t.exists("put rotation", `SELECT EXISTS (SELECT 1 FROM key_rotations
		WHERE tenant_id = $1 AND id <> $2 AND (key_id = $3 OR secret = $4))`,
		r.Tenant, r.ID, r.KeyID, r.Secret)
	if err != nil {
		return err
	}
	if taken {
		return latchkey.Errorf(latchkey.EConflict, "the tenant already has a rotation of key %q or of secret %q", r.KeyID, r.Secret)
	}
	tag, err := t.exec("put rotation", `INSERT INTO key_rotations (`+rotationColumns+`)
		SELECT $1, tenant_id, id, $2, $3, $4, $5, $6, $7, $8 FROM keys WHERE tenant_id = $9 AND id = $10
		ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id, "interval" = excluded."interval",
			grace = excluded.grace, secret = excluded.secret, reader = excluded.reader,
			next_at = excluded.next_at, created_at = excluded.created_at, updated_at = excluded.updated_at
		WHERE key_rotations.tenant_id = excluded.tenant_id`,
		r.ID, int64(r.Interval), int64(r.Grace), r.Secret, r.Reader,
		r.NextAt, r.CreatedAt, r.UpdatedAt, r.Tenant, r.KeyID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() > 0 {
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

func scanRotation(row scanner) (*latchkey.Rotation, error) {
	var r latchkey.Rotation
	var interval, grace int64
	var next, created, updated pgtype.Timestamptz
	if err := row.Scan(&r.ID, &r.Tenant, &r.KeyID, &interval, &grace, &r.Secret, &r.Reader,
		&next, &created, &updated); err != nil {
		return nil, err
	}
	r.Interval, r.Grace = latchkey.Duration(interval), latchkey.Duration(grace)
	r.NextAt, r.CreatedAt, r.UpdatedAt = fromTS(next), fromTS(created), fromTS(updated)
	return &r, nil
}

// rotation returns the one rotation the query finds; ENotFound (saying
// what) if none.
func (t *Tx) rotation(op, what, sql string, args ...any) (*latchkey.Rotation, error) {
	r, err := scanRotation(t.tx.QueryRow(t.ctx, sql, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "%s not found", what)
	}
	if err != nil {
		return nil, t.fail(op, err)
	}
	return r, nil
}

// Rotation returns the tenant's rotation with the id; ENotFound if there is
// none there.
func (t *Tx) Rotation(tenant, id string) (*latchkey.Rotation, error) {
	return t.rotation("rotation", "rotation "+strconv.Quote(id),
		`SELECT `+rotationColumns+` FROM key_rotations WHERE tenant_id = $1 AND id = $2`, tenant, id)
}

// RotationOfKey returns the rotation whose KeyID is keyID in the tenant;
// ENotFound if none.
func (t *Tx) RotationOfKey(tenant, keyID string) (*latchkey.Rotation, error) {
	return t.rotation("rotation of key", "rotation of key "+strconv.Quote(keyID),
		`SELECT `+rotationColumns+` FROM key_rotations WHERE tenant_id = $1 AND key_id = $2`, tenant, keyID)
}

// DueRotations returns up to n rotations of any tenant whose NextAt is at
// or before now, earliest first, then by id (index key_rotations_due); an
// n of 0 or less is no limit.
func (t *Tx) DueRotations(now time.Time, n int) ([]*latchkey.Rotation, error) {
	return collect(t, "due rotations", `SELECT `+rotationColumns+` FROM key_rotations
		WHERE next_at <= $1 ORDER BY next_at, id LIMIT $2`,
		func(r pgx.Rows) (*latchkey.Rotation, error) { return scanRotation(r) }, now, limit(n))
}

// DeleteRotation deletes the tenant's rotation with the id; ENotFound if
// there is none there.
func (t *Tx) DeleteRotation(tenant, id string) error {
	tag, err := t.exec("delete rotation", `DELETE FROM key_rotations WHERE tenant_id = $1 AND id = $2`, tenant, id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "rotation %q not found", id)
	}
	return nil
}
