package postgres

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/store"
)

// Tx is one PostgreSQL transaction, the one type that implements every
// service's narrow contract (keys.Tx, secrets.Tx, audit.Tx, webhook.Tx,
// usage.Tx, keyring.Tx, the limiter's latchkey.QuotaStore): a service is
// handed it through latchkey.Narrow, and the conformance suite in
// store/storetest proves each contract. It is used by one goroutine and
// only inside the function given to View or Update.
//
// PostgreSQL refuses every statement of a transaction after one has
// failed, where SQLite goes on; so a write that can meet an expected
// refusal (an id taken, a parent row missing) is written not to fail:
// INSERT … ON CONFLICT DO NOTHING, or INSERT … SELECT from the parent row,
// and a row count of 0 says which refusal it was. The caller can then go on
// in the same transaction, as it can with SQLite.
type Tx struct {
	// ctx is the context View or Update was given: the methods take
	// none, and every statement should stop when the caller gives up.
	ctx context.Context
	tx  pgx.Tx
	// anchor signs audit checkpoints (nil: none, see DB.SetAuditAnchor).
	anchor *auditSigner
	// retry is set once a statement failed in a way that running the whole
	// transaction again may not (a serialization failure, a deadlock).
	retry bool
	// changes are the payloads of the changes to tell the other nodes of
	// when the transaction commits (change.go).
	changes []string
}

// fail is the package's fail, noting a failure that a new attempt may
// cure.
func (t *Tx) fail(op string, err error) error {
	if retryable(err) {
		t.retry = true
	}
	return fail(t.ctx, op, err)
}

func (t *Tx) exec(op, sql string, args ...any) (pgconn.CommandTag, error) {
	tag, err := t.tx.Exec(t.ctx, sql, args...)
	if err != nil {
		return tag, t.fail(op, err)
	}
	return tag, nil
}

// exists reports whether the query, a SELECT EXISTS (…), says so.
func (t *Tx) exists(op, sql string, args ...any) (bool, error) {
	var ok bool
	if err := t.tx.QueryRow(t.ctx, sql, args...).Scan(&ok); err != nil {
		return false, t.fail(op, err)
	}
	return ok, nil
}

// collect runs a query and reads each row with scan; the list is never nil.
func collect[T any](t *Tx, op, sql string, scan func(pgx.Rows) (T, error), args ...any) ([]T, error) {
	rows, err := t.tx.Query(t.ctx, sql, args...)
	if err != nil {
		return nil, t.fail(op, err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, t.fail(op, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, t.fail(op, err)
	}
	return out, nil
}

// CreateTenant inserts tn; EConflict if its id exists.
func (t *Tx) CreateTenant(tn *latchkey.Tenant) error {
	tag, err := t.exec("create tenant", `INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, tn.ID, tn.Name, ts(tn.CreatedAt))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.EConflict, "tenant %q already exists", tn.ID)
	}
	return nil
}

func scanTenant(row scanner) (*latchkey.Tenant, error) {
	var tn latchkey.Tenant
	var created pgtype.Timestamptz
	if err := row.Scan(&tn.ID, &tn.Name, &created); err != nil {
		return nil, err
	}
	tn.CreatedAt = fromTS(created)
	return &tn, nil
}

// Tenant returns the tenant with the id; ENotFound if there is none.
func (t *Tx) Tenant(id string) (*latchkey.Tenant, error) {
	tn, err := scanTenant(t.tx.QueryRow(t.ctx, tenantByID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", id)
	}
	if err != nil {
		return nil, t.fail("tenant", err)
	}
	return tn, nil
}

// Tenants lists tenants ordered by id.
func (t *Tx) Tenants(p latchkey.Page) ([]*latchkey.Tenant, error) {
	return collect(t, "tenants", `SELECT id, name, created_at FROM tenants WHERE id > $1 ORDER BY id LIMIT $2`,
		func(r pgx.Rows) (*latchkey.Tenant, error) { return scanTenant(r) }, p.After, limit(p.Limit))
}

// limit turns a page's limit into PostgreSQL's, where a NULL LIMIT is none.
func limit(n int) any {
	if n <= 0 {
		return nil
	}
	return n
}

// insertKey inserts a key unless its id or hash is taken, and only if its
// tenant exists: the parameters are keyArgs'.
var insertKey = `INSERT INTO keys (` + keyColumns + `) SELECT ` + placeholders(1, keyColumnCount) + `
	FROM tenants WHERE tenants.id = $2 ON CONFLICT DO NOTHING`

// CreateKey inserts k; EConflict if its id or hash exists, ENotFound if its
// tenant does not.
func (t *Tx) CreateKey(k *latchkey.Key) error {
	a, err := keyArgs(k)
	if err != nil {
		return err
	}
	tag, err := t.exec("create key", insertKey, a...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 1 {
		// Nodes may hold "no such key" for its hash.
		t.change(latchkey.Change{Kind: latchkey.ChangeKey, Hash: k.Hash})
		return nil
	}
	if _, err := t.Tenant(k.Tenant); err != nil {
		return err
	}
	return latchkey.Errorf(latchkey.EConflict, "key %q or one with the same secret already exists", k.ID)
}

// Key returns the key with the id in the tenant; ENotFound if there is none
// there.
func (t *Tx) Key(tenant, id string) (*latchkey.Key, error) {
	k, err := scanKey(t.tx.QueryRow(t.ctx, keyByID, tenant, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "key %q not found", id)
	}
	if err != nil {
		return nil, t.fail("key", err)
	}
	return k, nil
}

// KeyByHash returns the key whose SHA-256 is hash, with its Bound;
// ENotFound if none.
func (t *Tx) KeyByHash(hash [32]byte) (*latchkey.Key, error) {
	k, err := scanBoundKey(t.tx.QueryRow(t.ctx, keyByHash, hash[:]))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "key not found")
	}
	if err != nil {
		return nil, t.fail("key by hash", err)
	}
	return k, nil
}

// Keys lists a tenant's keys that match f, ordered by id.
func (t *Tx) Keys(tenant string, f latchkey.KeyFilter) ([]*latchkey.Key, error) {
	var a args
	var q strings.Builder
	q.WriteString(`SELECT ` + keyColumns + ` FROM keys WHERE tenant_id = ` + a.add(tenant) + ` AND id > ` + a.add(f.After))
	for _, c := range []struct{ column, value string }{
		{"owner", f.Owner},
		{"environment", f.Environment},
		{"name", f.Name},
		{"parent_id", f.ParentID},
		{"policy", f.Policy},
	} {
		if c.value != "" {
			q.WriteString(" AND " + c.column + " = " + a.add(c.value))
		}
	}
	if f.Policy != "" {
		// Lets a generic plan use the partial index keys_tenant_policy,
		// which "policy = $n" alone does not imply.
		q.WriteString(" AND policy <> ''")
	}
	if f.State != "" {
		if f.Now.IsZero() {
			return nil, errors.New("postgres: keys: a State filter needs Now")
		}
		now := a.add(f.Now)
		q.WriteString(" AND (" + strings.ReplaceAll(store.StateAtSQL, "@now", now+"::timestamptz") + ") = " + a.add(string(f.State)))
	}
	q.WriteString(" ORDER BY id LIMIT " + a.add(limit(f.Limit)))
	return t.keys("keys", q.String(), a...)
}

// keys runs a query for key rows.
func (t *Tx) keys(op, sql string, args ...any) ([]*latchkey.Key, error) {
	return collect(t, op, sql, func(r pgx.Rows) (*latchkey.Key, error) { return scanKey(r) }, args...)
}

// UpdateKey stores every field of k but ID, Tenant, Hash, Prefix, Start,
// CreatedAt and LastUsedAt over the row (k.Tenant, k.ID); ENotFound if
// there is none. last_used_at belongs to SetLastUsed (usage.go).
func (t *Tx) UpdateKey(k *latchkey.Key) error {
	a, err := keyArgs(k)
	if err != nil {
		return err
	}
	var set []string
	var p args
	for i, c := range keyColumnList {
		switch c {
		case "id", "tenant_id", "hash", "prefix", "start", "created_at", "last_used_at":
			continue
		}
		set = append(set, c+" = "+p.add(a[i]))
	}
	var hash []byte
	err = t.tx.QueryRow(t.ctx, `UPDATE keys SET `+strings.Join(set, ", ")+
		` WHERE tenant_id = `+p.add(k.Tenant)+` AND id = `+p.add(k.ID)+` RETURNING hash`, p...).Scan(&hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return latchkey.Errorf(latchkey.ENotFound, "key %q not found", k.ID)
	}
	if err != nil {
		return t.fail("update key", err)
	}
	// The stored hash, whatever k says: it is what nodes cache the key by.
	c := latchkey.Change{Kind: latchkey.ChangeKey}
	copy(c.Hash[:], hash)
	t.change(c)
	return nil
}

// Children returns the keys whose ParentID is parentID, ordered by id.
func (t *Tx) Children(tenant, parentID string) ([]*latchkey.Key, error) {
	return t.keys("children", `SELECT `+keyColumns+` FROM keys WHERE tenant_id = $1 AND parent_id = $2 ORDER BY id`,
		tenant, parentID)
}

// QuotaUsage returns a key's persisted quota consumption; the zero usage
// (with KeyID set) if none was saved. An OwnerQuotaID names an owner's
// shared quota, kept in owner_quota_usage (policies.go).
func (t *Tx) QuotaUsage(keyID string) (latchkey.QuotaUsage, error) {
	if tenant, owner, ok := latchkey.ParseOwnerQuotaID(keyID); ok {
		return t.ownerQuotaUsage(keyID, tenant, owner)
	}
	u := latchkey.QuotaUsage{KeyID: keyID}
	var start pgtype.Timestamptz
	err := t.tx.QueryRow(t.ctx, `SELECT epoch, period_start, used FROM quota_usage WHERE key_id = $1`, keyID).
		Scan(&u.Epoch, &start, &u.Used)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return u, nil
	case err != nil:
		return latchkey.QuotaUsage{}, t.fail("quota usage", err)
	}
	u.PeriodStart = fromTS(start)
	return u, nil
}

// SaveQuotaUsage stores u if the stored epoch still equals u.Epoch (a key
// never saved counts as epoch 0) and reports whether it did; ENotFound if
// the key does not exist. An OwnerQuotaID's usage goes to
// owner_quota_usage, ENotFound if its tenant does not exist.
func (t *Tx) SaveQuotaUsage(u latchkey.QuotaUsage) (bool, error) {
	if tenant, owner, ok := latchkey.ParseOwnerQuotaID(u.KeyID); ok {
		return t.saveOwnerQuotaUsage(u, tenant, owner)
	}
	tag, err := t.exec("save quota usage", `UPDATE quota_usage SET period_start = $1, used = $2 WHERE key_id = $3 AND epoch = $4`,
		ts(u.PeriodStart), u.Used, u.KeyID, u.Epoch)
	if err != nil {
		return false, err
	}
	if tag.RowsAffected() == 1 || u.Epoch != 0 {
		return tag.RowsAffected() == 1, nil
	}
	tag, err = t.exec("save quota usage", `INSERT INTO quota_usage (key_id, epoch, period_start, used)
		SELECT id, 0, $2, $3 FROM keys WHERE id = $1
		ON CONFLICT (key_id) DO NOTHING`, u.KeyID, ts(u.PeriodStart), u.Used)
	if err != nil {
		return false, err
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	if ok, err := t.exists("save quota usage", `SELECT EXISTS (SELECT 1 FROM keys WHERE id = $1)`, u.KeyID); err != nil {
		return false, err
	} else if !ok {
		return false, latchkey.Errorf(latchkey.ENotFound, "key %q not found", u.KeyID)
	}
	return false, nil
}

// ResetQuotaUsage zeroes a key's consumption, or an OwnerQuotaID's, and
// bumps its epoch; ENotFound if the key (the owner's tenant) does not
// exist.
func (t *Tx) ResetQuotaUsage(keyID string) error {
	if tenant, owner, ok := latchkey.ParseOwnerQuotaID(keyID); ok {
		return t.resetOwnerQuotaUsage(tenant, owner)
	}
	tag, err := t.exec("reset quota usage", `INSERT INTO quota_usage (key_id, epoch, period_start, used)
		SELECT id, 1, NULL, 0 FROM keys WHERE id = $1
		ON CONFLICT (key_id) DO UPDATE SET epoch = quota_usage.epoch + 1, period_start = NULL, used = 0`, keyID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "key %q not found", keyID)
	}
	return nil
}
