package postgres

import (
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchkeyhq/latchkey"
)

// Workload identity (identity.Tx): the tenants' identity providers, kept
// as JSON bodies, and the jtis already exchanged, shared by every node.

// CreateIdentityProvider stores a provider; EConflict if the tenant has
// one of that name. The name is checked by the insert itself, so a
// duplicate does not fail the transaction.
func (t *Tx) CreateIdentityProvider(tenant, name string, body []byte, createdAt time.Time) error {
	tag, err := t.exec("create identity provider", `INSERT INTO identity_providers (tenant_id, name, body, created_at)
		VALUES ($1, $2, $3::jsonb, $4) ON CONFLICT (tenant_id, name) DO NOTHING`, tenant, name, string(body), createdAt)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.EConflict, "identity provider %s exists", name)
	}
	return nil
}

// IdentityProvider reads a tenant's provider; ENotFound if there is none.
func (t *Tx) IdentityProvider(tenant, name string) ([]byte, time.Time, error) {
	var body string
	var at time.Time
	err := t.tx.QueryRow(t.ctx, `SELECT body::text, created_at FROM identity_providers WHERE tenant_id = $1 AND name = $2`,
		tenant, name).Scan(&body, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, time.Time{}, latchkey.Errorf(latchkey.ENotFound, "no identity provider %s", name)
	}
	if err != nil {
		return nil, time.Time{}, t.fail("read identity provider", err)
	}
	return []byte(body), at.UTC(), nil
}

// IdentityProviders calls fn with each of the tenant's providers by name.
func (t *Tx) IdentityProviders(tenant string, fn func(name string, body []byte, createdAt time.Time) error) error {
	type row struct {
		name, body string
		at         time.Time
	}
	rows, err := collect(t, "list identity providers", `SELECT name, body::text, created_at FROM identity_providers
		WHERE tenant_id = $1 ORDER BY name`, func(r pgx.Rows) (row, error) {
		var v row
		err := r.Scan(&v.name, &v.body, &v.at)
		return v, err
	}, tenant)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if err := fn(r.name, []byte(r.body), r.at.UTC()); err != nil {
			return err
		}
	}
	return nil
}

// DeleteIdentityProvider removes a tenant's provider; ENotFound if there
// is none.
func (t *Tx) DeleteIdentityProvider(tenant, name string) error {
	tag, err := t.exec("delete identity provider", `DELETE FROM identity_providers WHERE tenant_id = $1 AND name = $2`, tenant, name)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "no identity provider %s", name)
	}
	return nil
}

// UseIdentityJTI records an exchanged jti; EConflict if it is recorded.
// A concurrent exchange of the same jti waits for this one and then finds
// the row.
func (t *Tx) UseIdentityJTI(tenant, issuer, jti string, expiresAt time.Time) error {
	tag, err := t.exec("record identity jti", `INSERT INTO identity_jtis (tenant_id, issuer, jti, expires_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, issuer, jti) DO NOTHING`, tenant, issuer, jti, expiresAt)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.EConflict, "the jti was already exchanged")
	}
	return nil
}

// PruneIdentityJTIs forgets the jtis expired at or before now.
func (t *Tx) PruneIdentityJTIs(now time.Time) (int, error) {
	tag, err := t.exec("prune identity jtis", `DELETE FROM identity_jtis WHERE expires_at <= $1`, now)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}
