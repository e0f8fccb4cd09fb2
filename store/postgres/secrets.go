package postgres

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/latchkeyhq/latchkey"
)

// KeyringTerms returns every keyring term ordered by term.
func (t *Tx) KeyringTerms() ([]latchkey.KeyringTerm, error) {
	return collect(t, "keyring terms", `SELECT term, wrapped, created_at FROM keyring_terms ORDER BY term`,
		func(r pgx.Rows) (latchkey.KeyringTerm, error) {
			var kt latchkey.KeyringTerm
			var at pgtype.Timestamptz
			err := r.Scan(&kt.Term, &kt.Wrapped, &at)
			kt.CreatedAt = fromTS(at)
			return kt, err
		})
}

// AddKeyringTerm stores a new term; EConflict if its number exists.
func (t *Tx) AddKeyringTerm(kt latchkey.KeyringTerm) error {
	tag, err := t.exec("add keyring term", `INSERT INTO keyring_terms (term, wrapped, created_at) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, kt.Term, kt.Wrapped, kt.CreatedAt)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.EConflict, "keyring term %d already exists", kt.Term)
	}
	return nil
}

// RewrapKeyringTerm replaces a term's wrapped data key; ENotFound if the
// term does not exist.
func (t *Tx) RewrapKeyringTerm(term int64, wrapped []byte) error {
	tag, err := t.exec("rewrap keyring term", `UPDATE keyring_terms SET wrapped = $1 WHERE term = $2`, wrapped, term)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "keyring term %d not found", term)
	}
	return nil
}

// KeyringCheck returns the key-check value, nil if none is stored.
func (t *Tx) KeyringCheck() ([]byte, error) {
	var v []byte
	err := t.tx.QueryRow(t.ctx, `SELECT check_value FROM keyring_check WHERE id = 1`).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, t.fail("keyring check", err)
	}
	return v, nil
}

// SetKeyringCheck stores the key-check value.
func (t *Tx) SetKeyringCheck(check []byte) error {
	_, err := t.exec("set keyring check", `INSERT INTO keyring_check (id, check_value) VALUES (1, $1)
		ON CONFLICT (id) DO UPDATE SET check_value = excluded.check_value`, check)
	return err
}

// NextSecretVersion returns one more than any version the secret ever had.
func (t *Tx) NextSecretVersion(tenant, name string) (int64, error) {
	var last int64
	err := t.tx.QueryRow(t.ctx, `SELECT last_version FROM secrets WHERE tenant_id = $1 AND name = $2`, tenant, name).Scan(&last)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, t.fail("next secret version", err)
	}
	return last + 1, nil
}

// PutSecret stores v as the newest version of its secret; EConflict if
// v.Version is not the next one, ENotFound if the tenant does not exist.
func (t *Tx) PutSecret(v *latchkey.SecretVersion) error {
	next, err := t.NextSecretVersion(v.Tenant, v.Name)
	if err != nil {
		return err
	}
	if v.Version != next {
		return latchkey.Errorf(latchkey.EConflict, "secret %q: version %d is not the next one (%d)", v.Name, v.Version, next)
	}
	meta, err := json.Marshal(nonNilMeta(v.Meta))
	if err != nil {
		return fmt.Errorf("postgres: secret meta: %w", err)
	}
	tag, err := t.exec("put secret", `INSERT INTO secrets (tenant_id, name, last_version, live, created_at, updated_at)
		SELECT id, $2, $3, true, $4, $4 FROM tenants WHERE id = $1
		ON CONFLICT (tenant_id, name) DO UPDATE SET last_version = excluded.last_version,
			created_at = CASE WHEN secrets.live THEN secrets.created_at ELSE excluded.created_at END,
			live = true, updated_at = excluded.updated_at`,
		v.Tenant, v.Name, v.Version, v.CreatedAt)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", v.Tenant)
	}
	tag, err = t.exec("put secret version", `INSERT INTO secret_versions
		(tenant_id, name, version, ciphertext, expires_in, meta, created_at, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
		v.Tenant, v.Name, v.Version, v.Ciphertext, v.ExpiresIn, string(meta), v.CreatedAt, v.CreatedBy)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.EConflict, "secret %q version %d already exists", v.Name, v.Version)
	}
	t.change(latchkey.Change{Kind: latchkey.ChangeSecret, Tenant: v.Tenant, Name: v.Name})
	return nil
}

func nonNilMeta(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

const secretVersionColumns = `v.tenant_id, v.name, v.version, v.ciphertext, v.expires_in, v.meta, v.created_at, v.created_by`

func scanSecretVersion(s scanner) (*latchkey.SecretVersion, error) {
	var v latchkey.SecretVersion
	var meta []byte
	var at pgtype.Timestamptz
	if err := s.Scan(&v.Tenant, &v.Name, &v.Version, &v.Ciphertext, &v.ExpiresIn, &meta, &at, &v.CreatedBy); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(meta, &v.Meta); err != nil {
		return nil, err
	}
	v.Meta = nonNilMeta(v.Meta)
	v.CreatedAt = fromTS(at)
	return &v, nil
}

// Secret returns a version of a secret, the newest when version is 0;
// ENotFound if the secret or the version does not exist.
func (t *Tx) Secret(tenant, name string, version int64) (*latchkey.SecretVersion, error) {
	var row pgx.Row
	if version == 0 {
		row = t.tx.QueryRow(t.ctx, `SELECT `+secretVersionColumns+` FROM secret_versions v
			WHERE tenant_id = $1 AND name = $2 ORDER BY version DESC LIMIT 1`, tenant, name)
	} else {
		row = t.tx.QueryRow(t.ctx, `SELECT `+secretVersionColumns+` FROM secret_versions v
			WHERE tenant_id = $1 AND name = $2 AND version = $3`, tenant, name, version)
	}
	v, err := scanSecretVersion(row)
	if errors.Is(err, pgx.ErrNoRows) {
		if version == 0 {
			return nil, latchkey.Errorf(latchkey.ENotFound, "secret %q not found", name)
		}
		return nil, latchkey.Errorf(latchkey.ENotFound, "secret %q has no version %d", name, version)
	}
	if err != nil {
		return nil, t.fail("secret", err)
	}
	return v, nil
}

func (t *Tx) secretVersions(op, sql string, args ...any) ([]*latchkey.SecretVersion, error) {
	return collect(t, op, sql, func(r pgx.Rows) (*latchkey.SecretVersion, error) { return scanSecretVersion(r) }, args...)
}

// SecretVersions returns every kept version of a secret, newest first;
// ENotFound if the secret does not exist.
func (t *Tx) SecretVersions(tenant, name string) ([]*latchkey.SecretVersion, error) {
	vs, err := t.secretVersions("secret versions", `SELECT `+secretVersionColumns+` FROM secret_versions v
		WHERE tenant_id = $1 AND name = $2 ORDER BY version DESC`, tenant, name)
	if err != nil {
		return nil, err
	}
	if len(vs) == 0 {
		return nil, latchkey.Errorf(latchkey.ENotFound, "secret %q not found", name)
	}
	return vs, nil
}

// LatestSecrets returns the newest version of every live secret of the
// tenant, ordered by name.
func (t *Tx) LatestSecrets(tenant string) ([]*latchkey.SecretVersion, error) {
	return t.secretVersions("latest secrets", `SELECT `+secretVersionColumns+`
		FROM secrets s JOIN secret_versions v
			ON v.tenant_id = s.tenant_id AND v.name = s.name AND v.version = s.last_version
		WHERE s.tenant_id = $1 AND s.live ORDER BY s.name`, tenant)
}

// Secrets lists a tenant's live secrets ordered by name.
func (t *Tx) Secrets(tenant string, p latchkey.Page) ([]*latchkey.SecretInfo, error) {
	return collect(t, "secrets", `SELECT s.name, s.last_version, s.created_at, s.updated_at, v.expires_in, v.meta,
			(SELECT count(*) FROM secret_versions c WHERE c.tenant_id = s.tenant_id AND c.name = s.name)
		FROM secrets s JOIN secret_versions v
			ON v.tenant_id = s.tenant_id AND v.name = s.name AND v.version = s.last_version
		WHERE s.tenant_id = $1 AND s.live AND s.name > $2 ORDER BY s.name LIMIT $3`,
		func(r pgx.Rows) (*latchkey.SecretInfo, error) {
			var s latchkey.SecretInfo
			var created, updated pgtype.Timestamptz
			var meta []byte
			if err := r.Scan(&s.Name, &s.Version, &created, &updated, &s.ExpiresIn, &meta, &s.Versions); err != nil {
				return nil, err
			}
			if err := json.Unmarshal(meta, &s.Meta); err != nil {
				return nil, err
			}
			s.Meta = nonNilMeta(s.Meta)
			s.CreatedAt, s.UpdatedAt = fromTS(created), fromTS(updated)
			return &s, nil
		}, tenant, p.After, limit(p.Limit))
}

// DeleteSecret deletes every version of a secret, keeping its numbering;
// ENotFound if it does not exist.
func (t *Tx) DeleteSecret(tenant, name string) error {
	tag, err := t.exec("delete secret", `UPDATE secrets SET live = false WHERE tenant_id = $1 AND name = $2 AND live`, tenant, name)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "secret %q not found", name)
	}
	if _, err = t.exec("delete secret versions", `DELETE FROM secret_versions WHERE tenant_id = $1 AND name = $2`, tenant, name); err != nil {
		return err
	}
	t.change(latchkey.Change{Kind: latchkey.ChangeSecret, Tenant: tenant, Name: name})
	return nil
}

// PruneSecretVersions keeps the newest keep versions of a secret (at least
// one) and returns how many it deleted.
func (t *Tx) PruneSecretVersions(tenant, name string, keep int) (int64, error) {
	tag, err := t.exec("prune secret versions", `DELETE FROM secret_versions WHERE tenant_id = $1 AND name = $2 AND version NOT IN
		(SELECT version FROM secret_versions WHERE tenant_id = $1 AND name = $2 ORDER BY version DESC LIMIT $3)`,
		tenant, name, max(keep, 1))
	if err != nil {
		return 0, err
	}
	if tag.RowsAffected() > 0 {
		t.change(latchkey.Change{Kind: latchkey.ChangeSecret, Tenant: tenant, Name: name})
	}
	return tag.RowsAffected(), nil
}
