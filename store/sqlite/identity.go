package sqlite

import (
	"database/sql"
	"errors"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Workload identity (identity.Tx): the tenants' identity providers, kept
// as JSON bodies, and the jtis already exchanged.

// CreateIdentityProvider stores a provider; EConflict if the tenant has
// one of that name.
func (t *Tx) CreateIdentityProvider(tenant, name string, body []byte, createdAt time.Time) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO identity_providers (tenant_id, name, body, created_at) VALUES (?, ?, ?, ?)`,
		tenant, name, string(body), createdAt.UnixMicro())
	if isDuplicate(err) {
		return latchkey.Errorf(latchkey.EConflict, "identity provider %s exists", name)
	}
	if err != nil {
		return fail(t.ctx, "create identity provider", err)
	}
	return nil
}

// IdentityProvider reads a tenant's provider; ENotFound if there is none.
func (t *Tx) IdentityProvider(tenant, name string) ([]byte, time.Time, error) {
	var body string
	var at int64
	err := t.tx.QueryRowContext(t.ctx, `SELECT body, created_at FROM identity_providers WHERE tenant_id = ? AND name = ?`,
		tenant, name).Scan(&body, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, time.Time{}, latchkey.Errorf(latchkey.ENotFound, "no identity provider %s", name)
	}
	if err != nil {
		return nil, time.Time{}, fail(t.ctx, "read identity provider", err)
	}
	return []byte(body), time.UnixMicro(at).UTC(), nil
}

// IdentityProviders calls fn with each of the tenant's providers by name.
func (t *Tx) IdentityProviders(tenant string, fn func(name string, body []byte, createdAt time.Time) error) error {
	rows, err := t.tx.QueryContext(t.ctx, `SELECT name, body, created_at FROM identity_providers WHERE tenant_id = ? ORDER BY name`, tenant)
	if err != nil {
		return fail(t.ctx, "list identity providers", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, body string
		var at int64
		if err := rows.Scan(&name, &body, &at); err != nil {
			return fail(t.ctx, "list identity providers", err)
		}
		if err := fn(name, []byte(body), time.UnixMicro(at).UTC()); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fail(t.ctx, "list identity providers", err)
	}
	return nil
}

// DeleteIdentityProvider removes a tenant's provider; ENotFound if there
// is none.
func (t *Tx) DeleteIdentityProvider(tenant, name string) error {
	res, err := t.tx.ExecContext(t.ctx, `DELETE FROM identity_providers WHERE tenant_id = ? AND name = ?`, tenant, name)
	if err != nil {
		return fail(t.ctx, "delete identity provider", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail(t.ctx, "delete identity provider", err)
	}
	if n == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "no identity provider %s", name)
	}
	return nil
}

// UseIdentityJTI records an exchanged jti; EConflict if it is recorded.
func (t *Tx) UseIdentityJTI(tenant, issuer, jti string, expiresAt time.Time) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO identity_jtis (tenant_id, issuer, jti, expires_at) VALUES (?, ?, ?, ?)`,
		tenant, issuer, jti, expiresAt.UnixMicro())
	if isDuplicate(err) {
		return latchkey.Errorf(latchkey.EConflict, "the jti was already exchanged")
	}
	if err != nil {
		return fail(t.ctx, "record identity jti", err)
	}
	return nil
}

// PruneIdentityJTIs forgets the jtis expired at or before now.
func (t *Tx) PruneIdentityJTIs(now time.Time) (int, error) {
	res, err := t.tx.ExecContext(t.ctx, `DELETE FROM identity_jtis WHERE expires_at <= ?`, now.UnixMicro())
	if err != nil {
		return 0, fail(t.ctx, "prune identity jtis", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fail(t.ctx, "prune identity jtis", err)
	}
	return int(n), nil
}
