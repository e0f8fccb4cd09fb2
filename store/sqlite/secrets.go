package sqlite

import (
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/latchkeyhq/latchkey"
	sqlite3 "modernc.org/sqlite/lib"
)

// KeyringTerms returns every keyring term ordered by term.
func (t *Tx) KeyringTerms() ([]latchkey.KeyringTerm, error) {
	rows, err := t.tx.QueryContext(t.ctx, `SELECT term, wrapped, created_at FROM keyring_terms ORDER BY term`)
	if err != nil {
		return nil, fail(t.ctx, "keyring terms", err)
	}
	defer rows.Close()
	out := []latchkey.KeyringTerm{}
	for rows.Next() {
		var kt latchkey.KeyringTerm
		var at int64
		if err := rows.Scan(&kt.Term, &kt.Wrapped, &at); err != nil {
			return nil, fail(t.ctx, "keyring terms", err)
		}
		kt.CreatedAt = time.UnixMicro(at).UTC()
		out = append(out, kt)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, "keyring terms", err)
	}
	return out, nil
}

// AddKeyringTerm stores a new term; EConflict if its number exists.
func (t *Tx) AddKeyringTerm(kt latchkey.KeyringTerm) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO keyring_terms (term, wrapped, created_at) VALUES (?, ?, ?)`,
		kt.Term, kt.Wrapped, kt.CreatedAt.UnixMicro())
	if isDuplicate(err) {
		return latchkey.Errorf(latchkey.EConflict, "keyring term %d already exists", kt.Term)
	}
	if err != nil {
		return fail(t.ctx, "add keyring term", err)
	}
	return nil
}

// RewrapKeyringTerm replaces a term's wrapped data key.
func (t *Tx) RewrapKeyringTerm(term int64, wrapped []byte) error {
	res, err := t.tx.ExecContext(t.ctx, `UPDATE keyring_terms SET wrapped = ? WHERE term = ?`, wrapped, term)
	if err != nil {
		return fail(t.ctx, "rewrap keyring term", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fail(t.ctx, "rewrap keyring term", err)
	} else if n == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "keyring term %d not found", term)
	}
	return nil
}

// KeyringCheck returns the key-check value, nil if none is stored.
func (t *Tx) KeyringCheck() ([]byte, error) {
	var v []byte
	err := t.tx.QueryRowContext(t.ctx, `SELECT check_value FROM keyring_check WHERE id = 1`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fail(t.ctx, "keyring check", err)
	}
	return v, nil
}

// SetKeyringCheck stores the key-check value.
func (t *Tx) SetKeyringCheck(check []byte) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO keyring_check (id, check_value) VALUES (1, ?)
		ON CONFLICT (id) DO UPDATE SET check_value = excluded.check_value`, check)
	if err != nil {
		return fail(t.ctx, "set keyring check", err)
	}
	return nil
}

// NextSecretVersion returns one more than any version the secret ever had.
func (t *Tx) NextSecretVersion(tenant, name string) (int64, error) {
	var last int64
	err := t.tx.QueryRowContext(t.ctx, `SELECT last_version FROM secrets WHERE tenant_id = ? AND name = ?`, tenant, name).Scan(&last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fail(t.ctx, "next secret version", err)
	}
	return last + 1, nil
}

// PutSecret stores v as the newest version of its secret.
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
		return err
	}
	at := v.CreatedAt.UnixMicro()
	_, err = t.tx.ExecContext(t.ctx, `INSERT INTO secrets (tenant_id, name, last_version, live, created_at, updated_at)
		VALUES (?, ?, ?, 1, ?, ?)
		ON CONFLICT (tenant_id, name) DO UPDATE SET last_version = excluded.last_version,
			created_at = CASE WHEN secrets.live = 1 THEN secrets.created_at ELSE excluded.created_at END,
			live = 1, updated_at = excluded.updated_at`,
		v.Tenant, v.Name, v.Version, at, at)
	if constraint(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", v.Tenant)
	}
	if err != nil {
		return fail(t.ctx, "put secret", err)
	}
	_, err = t.tx.ExecContext(t.ctx, `INSERT INTO secret_versions
		(tenant_id, name, version, ciphertext, expires_in, meta, created_at, created_by)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		v.Tenant, v.Name, v.Version, v.Ciphertext, v.ExpiresIn, string(meta), at, v.CreatedBy)
	if isDuplicate(err) {
		return latchkey.Errorf(latchkey.EConflict, "secret %q version %d already exists", v.Name, v.Version)
	}
	if err != nil {
		return fail(t.ctx, "put secret version", err)
	}
	return nil
}

func nonNilMeta(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

const secretVersionColumns = `tenant_id, name, version, ciphertext, expires_in, meta, created_at, created_by`

func scanSecretVersion(s scanner) (*latchkey.SecretVersion, error) {
	var v latchkey.SecretVersion
	var meta string
	var at int64
	if err := s.Scan(&v.Tenant, &v.Name, &v.Version, &v.Ciphertext, &v.ExpiresIn, &meta, &at, &v.CreatedBy); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(meta), &v.Meta); err != nil {
		return nil, err
	}
	v.Meta = nonNilMeta(v.Meta)
	v.CreatedAt = time.UnixMicro(at).UTC()
	return &v, nil
}

// Secret returns a version of a secret, the newest when version is 0.
func (t *Tx) Secret(tenant, name string, version int64) (*latchkey.SecretVersion, error) {
	var row *sql.Row
	if version == 0 {
		row = t.tx.QueryRowContext(t.ctx, `SELECT `+secretVersionColumns+` FROM secret_versions
			WHERE tenant_id = ? AND name = ? ORDER BY version DESC LIMIT 1`, tenant, name)
	} else {
		row = t.tx.QueryRowContext(t.ctx, `SELECT `+secretVersionColumns+` FROM secret_versions
			WHERE tenant_id = ? AND name = ? AND version = ?`, tenant, name, version)
	}
	v, err := scanSecretVersion(row)
	if errors.Is(err, sql.ErrNoRows) {
		if version == 0 {
			return nil, latchkey.Errorf(latchkey.ENotFound, "secret %q not found", name)
		}
		return nil, latchkey.Errorf(latchkey.ENotFound, "secret %q has no version %d", name, version)
	}
	if err != nil {
		return nil, fail(t.ctx, "secret", err)
	}
	return v, nil
}

func (t *Tx) secretVersions(op, query string, args ...any) ([]*latchkey.SecretVersion, error) {
	rows, err := t.tx.QueryContext(t.ctx, query, args...)
	if err != nil {
		return nil, fail(t.ctx, op, err)
	}
	defer rows.Close()
	out := []*latchkey.SecretVersion{}
	for rows.Next() {
		v, err := scanSecretVersion(rows)
		if err != nil {
			return nil, fail(t.ctx, op, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, op, err)
	}
	return out, nil
}

// SecretVersions returns every kept version of a secret, newest first.
func (t *Tx) SecretVersions(tenant, name string) ([]*latchkey.SecretVersion, error) {
	vs, err := t.secretVersions("secret versions", `SELECT `+secretVersionColumns+` FROM secret_versions
		WHERE tenant_id = ? AND name = ? ORDER BY version DESC`, tenant, name)
	if err != nil {
		return nil, err
	}
	if len(vs) == 0 {
		return nil, latchkey.Errorf(latchkey.ENotFound, "secret %q not found", name)
	}
	return vs, nil
}

// LatestSecrets returns the newest version of every live secret.
func (t *Tx) LatestSecrets(tenant string) ([]*latchkey.SecretVersion, error) {
	return t.secretVersions("latest secrets", `SELECT v.tenant_id, v.name, v.version, v.ciphertext, v.expires_in, v.meta, v.created_at, v.created_by
		FROM secrets s JOIN secret_versions v
			ON v.tenant_id = s.tenant_id AND v.name = s.name AND v.version = s.last_version
		WHERE s.tenant_id = ? AND s.live = 1 ORDER BY s.name`, tenant)
}

// Secrets lists a tenant's live secrets ordered by name.
func (t *Tx) Secrets(tenant string, p latchkey.Page) ([]*latchkey.SecretInfo, error) {
	rows, err := t.tx.QueryContext(t.ctx, `SELECT s.name, s.last_version, s.created_at, s.updated_at,
			v.expires_in, v.meta,
			(SELECT count(*) FROM secret_versions c WHERE c.tenant_id = s.tenant_id AND c.name = s.name)
		FROM secrets s JOIN secret_versions v
			ON v.tenant_id = s.tenant_id AND v.name = s.name AND v.version = s.last_version
		WHERE s.tenant_id = ? AND s.live = 1 AND s.name > ? ORDER BY s.name LIMIT ?`, tenant, p.After, limit(p))
	if err != nil {
		return nil, fail(t.ctx, "secrets", err)
	}
	defer rows.Close()
	out := []*latchkey.SecretInfo{}
	for rows.Next() {
		var s latchkey.SecretInfo
		var created, updated int64
		var meta string
		if err := rows.Scan(&s.Name, &s.Version, &created, &updated, &s.ExpiresIn, &meta, &s.Versions); err != nil {
			return nil, fail(t.ctx, "secrets", err)
		}
		if err := json.Unmarshal([]byte(meta), &s.Meta); err != nil {
			return nil, fail(t.ctx, "secrets", err)
		}
		s.Meta = nonNilMeta(s.Meta)
		s.CreatedAt, s.UpdatedAt = time.UnixMicro(created).UTC(), time.UnixMicro(updated).UTC()
		out = append(out, &s)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, "secrets", err)
	}
	return out, nil
}

// DeleteSecret deletes every version of a secret, keeping its numbering.
func (t *Tx) DeleteSecret(tenant, name string) error {
	res, err := t.tx.ExecContext(t.ctx, `UPDATE secrets SET live = 0 WHERE tenant_id = ? AND name = ? AND live = 1`, tenant, name)
	if err != nil {
		return fail(t.ctx, "delete secret", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fail(t.ctx, "delete secret", err)
	} else if n == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "secret %q not found", name)
	}
	if _, err := t.tx.ExecContext(t.ctx, `DELETE FROM secret_versions WHERE tenant_id = ? AND name = ?`, tenant, name); err != nil {
		return fail(t.ctx, "delete secret versions", err)
	}
	return nil
}

// PruneSecretVersions keeps the newest keep versions of a secret.
func (t *Tx) PruneSecretVersions(tenant, name string, keep int) (int64, error) {
	res, err := t.tx.ExecContext(t.ctx, `DELETE FROM secret_versions WHERE tenant_id = ? AND name = ? AND version NOT IN
		(SELECT version FROM secret_versions WHERE tenant_id = ? AND name = ? ORDER BY version DESC LIMIT ?)`,
		tenant, name, tenant, name, max(keep, 1))
	if err != nil {
		return 0, fail(t.ctx, "prune secret versions", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fail(t.ctx, "prune secret versions", err)
	}
	return n, nil
}
