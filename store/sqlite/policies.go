package sqlite

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/latchkeyhq/latchkey"
	sqlite3 "modernc.org/sqlite/lib"
)

// boundColumns are the columns keyByHash reads after keyColumns: the
// policy the key names and its owner's record, each NULL when not stored
// (body and ratelimits are NOT NULL in their tables, and || makes NULL of
// anything with a NULL in it). Each is one JSON array of its row's
// columns, because the driver pays for every column of a result (two
// strings, its name and type, per column per query): eight columns here
// made the verify path's miss a tenth slower, two cost next to nothing.
const (
	boundColumns = `'[' || ifnull(policies.created_at, 'null') || ',' || ifnull(policies.updated_at, 'null') || ',' ||
		policies.body || ']',
	'[' || ifnull(owners.created_at, 'null') || ',' || ifnull(owners.updated_at, 'null') || ',' ||
		owners.ratelimits || ',' || ifnull(owners.quota, 'null') || ',' || owners.meta || ']'`
	boundColumnCount = 2
)

// boundScan holds the Scan destinations of boundColumns.
type boundScan struct {
	policy, owner []byte
}

// bound makes k's Bound of the scanned columns: nil when neither row was
// there, which is the verify path's common case and decodes nothing.
func (b *boundScan) bound(k *latchkey.Key) (*latchkey.Bound, error) {
	if b.policy == nil && b.owner == nil {
		return nil, nil
	}
	bd := new(latchkey.Bound)
	if b.policy != nil {
		var cols [3]json.RawMessage // created_at, updated_at, body
		if err := json.Unmarshal(b.policy, &cols); err != nil {
			return nil, fmt.Errorf("policy %s: %w", k.Policy, err)
		}
		created, updated, err := jsonMicros(cols[0], cols[1])
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", k.Policy, err)
		}
		if bd.Policy, err = decodePolicy(k.Tenant, k.Policy, cols[2], created, updated); err != nil {
			return nil, err
		}
	}
	if b.owner != nil {
		var cols [5]json.RawMessage // created_at, updated_at, ratelimits, quota, meta
		if err := json.Unmarshal(b.owner, &cols); err != nil {
			return nil, fmt.Errorf("owner %s: %w", k.Owner, err)
		}
		created, updated, err := jsonMicros(cols[0], cols[1])
		if err != nil {
			return nil, fmt.Errorf("owner %s: %w", k.Owner, err)
		}
		var quota sql.NullString
		if string(cols[3]) != "null" {
			quota = sql.NullString{String: string(cols[3]), Valid: true}
		}
		if bd.Owner, err = decodeOwner(k.Tenant, k.Owner, cols[2], quota, cols[4], created, updated); err != nil {
			return nil, err
		}
	}
	return bd, nil
}

// jsonMicros reads two time columns written into a JSON array: integers,
// or null for the zero time.
func jsonMicros(a, b json.RawMessage) (sql.NullInt64, sql.NullInt64, error) {
	var t [2]sql.NullInt64
	for i, raw := range [2]json.RawMessage{a, b} {
		if string(raw) == "null" {
			continue
		}
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return t[0], t[1], err
		}
		t[i] = sql.NullInt64{Int64: n, Valid: true}
	}
	return t[0], t[1], nil
}

// encodePolicy returns the body column of p: its JSON without what the
// columns hold (tenant, name, times), lists never null.
func encodePolicy(p *latchkey.Policy) (string, error) {
	c := *p
	c.Tenant, c.Name, c.CreatedAt, c.UpdatedAt, c.Preset = "", "", time.Time{}, time.Time{}, false
	normalizePolicy(&c)
	b, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("sqlite: policy %s: %w", p.Name, err)
	}
	return string(b), nil
}

// decodePolicy reads a policy row.
func decodePolicy(tenant, name string, body []byte, created, updated sql.NullInt64) (*latchkey.Policy, error) {
	p := new(latchkey.Policy)
	if err := json.Unmarshal(body, p); err != nil {
		return nil, fmt.Errorf("policy %s: %w", name, err)
	}
	p.Tenant, p.Name, p.Preset = tenant, name, false
	p.CreatedAt, p.UpdatedAt = fromMicros(created), fromMicros(updated)
	normalizePolicy(p)
	return p, nil
}

// normalizePolicy makes p's nil lists empty ones, as a key's.
func normalizePolicy(p *latchkey.Policy) {
	if p.Scopes == nil {
		p.Scopes = []string{}
	}
	if p.Resources == nil {
		p.Resources = []string{}
	}
	if p.IPAllow == nil {
		p.IPAllow = []netip.Prefix{}
	}
	if p.Countries == nil {
		p.Countries = []string{}
	}
	if p.TimeWindows == nil {
		p.TimeWindows = []latchkey.TimeWindow{}
	}
	if p.RateLimits == nil {
		p.RateLimits = []latchkey.RateLimit{}
	}
}

// PutPolicy inserts p, or replaces the tenant's policy named p.Name,
// keeping the stored CreatedAt (which it sets in p); ENotFound if the
// tenant does not exist.
func (t *Tx) PutPolicy(p *latchkey.Policy) error {
	body, err := encodePolicy(p)
	if err != nil {
		return err
	}
	var created sql.NullInt64
	err = t.tx.QueryRowContext(t.ctx, `INSERT INTO policies (tenant_id, name, body, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id, name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at
		RETURNING created_at`,
		p.Tenant, p.Name, body, micros(p.CreatedAt), micros(p.UpdatedAt)).Scan(&created)
	if constraint(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", p.Tenant)
	}
	if err != nil {
		return fail(t.ctx, "put policy", err)
	}
	p.CreatedAt = fromMicros(created)
	return nil
}

// Policy returns the tenant's policy with the name; ENotFound if none.
func (t *Tx) Policy(tenant, name string) (*latchkey.Policy, error) {
	p, err := scanPolicy(t.tx.QueryRowContext(t.ctx,
		`SELECT tenant_id, name, body, created_at, updated_at FROM policies WHERE tenant_id = ? AND name = ?`, tenant, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "policy %q not found", name)
	}
	if err != nil {
		return nil, fail(t.ctx, "policy", err)
	}
	return p, nil
}

func scanPolicy(row scanner) (*latchkey.Policy, error) {
	var tenant, name string
	var body []byte
	var created, updated sql.NullInt64
	if err := row.Scan(&tenant, &name, &body, &created, &updated); err != nil {
		return nil, err
	}
	return decodePolicy(tenant, name, body, created, updated)
}

// Policies lists the tenant's policies ordered by name (byte order), those
// after p.After, at most p.Limit.
func (t *Tx) Policies(tenant string, p latchkey.Page) ([]*latchkey.Policy, error) {
	rows, err := t.tx.QueryContext(t.ctx, `SELECT tenant_id, name, body, created_at, updated_at FROM policies
		WHERE tenant_id = ? AND name > ? ORDER BY name LIMIT ?`, tenant, p.After, limit(p))
	if err != nil {
		return nil, fail(t.ctx, "policies", err)
	}
	defer rows.Close()
	list := []*latchkey.Policy{}
	for rows.Next() {
		pol, err := scanPolicy(rows)
		if err != nil {
			return nil, fail(t.ctx, "policies", err)
		}
		list = append(list, pol)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, "policies", err)
	}
	return list, nil
}

// DeletePolicy deletes the tenant's policy with the name; ENotFound if
// there is none, EConflict while a key that is not revoked names it.
func (t *Tx) DeletePolicy(tenant, name string) error {
	var named bool
	if err := t.tx.QueryRowContext(t.ctx, `SELECT EXISTS (SELECT 1 FROM keys
		WHERE tenant_id = ? AND policy = ? AND policy <> '' AND state <> 'revoked')`, tenant, name).Scan(&named); err != nil {
		return fail(t.ctx, "delete policy", err)
	}
	if named {
		// Checked first, so the answer does not depend on whether the
		// policy exists: a key may name a preset, which is not stored.
		if _, err := t.Policy(tenant, name); err != nil {
			return err
		}
		return latchkey.Errorf(latchkey.EConflict, "policy %q is named by keys that are not revoked", name)
	}
	res, err := t.tx.ExecContext(t.ctx, `DELETE FROM policies WHERE tenant_id = ? AND name = ?`, tenant, name)
	if err != nil {
		return fail(t.ctx, "delete policy", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail(t.ctx, "delete policy", err)
	}
	if n == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "policy %q not found", name)
	}
	return nil
}

// encodeOwner returns the JSON columns of o: ratelimits, quota (NULL for
// none) and meta.
func encodeOwner(o *latchkey.Owner) (rates string, quota sql.NullString, meta string, err error) {
	if rates, err = jsonArray(o.RateLimits); err != nil {
		return "", quota, "", fmt.Errorf("sqlite: owner %s: ratelimits: %w", o.ID, err)
	}
	if o.Quota != nil {
		b, err := json.Marshal(o.Quota)
		if err != nil {
			return "", quota, "", fmt.Errorf("sqlite: owner %s: quota: %w", o.ID, err)
		}
		quota = sql.NullString{String: string(b), Valid: true}
	}
	meta = "{}"
	if o.Meta != nil {
		b, err := json.Marshal(o.Meta)
		if err != nil {
			return "", quota, "", fmt.Errorf("sqlite: owner %s: meta: %w", o.ID, err)
		}
		meta = string(b)
	}
	return rates, quota, meta, nil
}

// decodeOwner reads an owner row.
func decodeOwner(tenant, id string, rates []byte, quota sql.NullString, meta []byte, created, updated sql.NullInt64) (*latchkey.Owner, error) {
	o := &latchkey.Owner{Tenant: tenant, ID: id, CreatedAt: fromMicros(created), UpdatedAt: fromMicros(updated)}
	if err := unmarshalNonEmpty(rates, &o.RateLimits); err != nil {
		return nil, fmt.Errorf("owner %s: ratelimits: %w", id, err)
	}
	if err := unmarshalNonEmpty(meta, &o.Meta); err != nil {
		return nil, fmt.Errorf("owner %s: meta: %w", id, err)
	}
	if quota.Valid {
		o.Quota = new(latchkey.Quota)
		if err := json.Unmarshal([]byte(quota.String), o.Quota); err != nil {
			return nil, fmt.Errorf("owner %s: quota: %w", id, err)
		}
	}
	if o.RateLimits == nil {
		o.RateLimits = []latchkey.RateLimit{}
	}
	if o.Meta == nil {
		o.Meta = map[string]any{}
	}
	return o, nil
}

// PutOwner inserts o, or replaces the tenant's record of owner o.ID,
// keeping the stored CreatedAt (which it sets in o); ENotFound if the
// tenant does not exist.
func (t *Tx) PutOwner(o *latchkey.Owner) error {
	rates, quota, meta, err := encodeOwner(o)
	if err != nil {
		return err
	}
	var created sql.NullInt64
	err = t.tx.QueryRowContext(t.ctx, `INSERT INTO owners (tenant_id, id, ratelimits, quota, meta, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id, id) DO UPDATE SET ratelimits = excluded.ratelimits, quota = excluded.quota,
			meta = excluded.meta, updated_at = excluded.updated_at
		RETURNING created_at`,
		o.Tenant, o.ID, rates, quota, meta, micros(o.CreatedAt), micros(o.UpdatedAt)).Scan(&created)
	if constraint(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", o.Tenant)
	}
	if err != nil {
		return fail(t.ctx, "put owner", err)
	}
	o.CreatedAt = fromMicros(created)
	return nil
}

const ownerColumns = `tenant_id, id, ratelimits, quota, meta, created_at, updated_at`

func scanOwner(row scanner) (*latchkey.Owner, error) {
	var tenant, id string
	var rates, meta []byte
	var quota sql.NullString
	var created, updated sql.NullInt64
	if err := row.Scan(&tenant, &id, &rates, &quota, &meta, &created, &updated); err != nil {
		return nil, err
	}
	return decodeOwner(tenant, id, rates, quota, meta, created, updated)
}

// Owner returns the tenant's record of the owner; ENotFound if none.
func (t *Tx) Owner(tenant, id string) (*latchkey.Owner, error) {
	o, err := scanOwner(t.tx.QueryRowContext(t.ctx, `SELECT `+ownerColumns+` FROM owners WHERE tenant_id = ? AND id = ?`, tenant, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "owner %q not found", id)
	}
	if err != nil {
		return nil, fail(t.ctx, "owner", err)
	}
	return o, nil
}

// Owners lists the tenant's owner records ordered by id (byte order),
// those after p.After, at most p.Limit.
func (t *Tx) Owners(tenant string, p latchkey.Page) ([]*latchkey.Owner, error) {
	rows, err := t.tx.QueryContext(t.ctx, `SELECT `+ownerColumns+` FROM owners
		WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?`, tenant, p.After, limit(p))
	if err != nil {
		return nil, fail(t.ctx, "owners", err)
	}
	defer rows.Close()
	list := []*latchkey.Owner{}
	for rows.Next() {
		o, err := scanOwner(rows)
		if err != nil {
			return nil, fail(t.ctx, "owners", err)
		}
		list = append(list, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, "owners", err)
	}
	return list, nil
}

// DeleteOwner deletes the tenant's record of the owner; ENotFound if there
// is none. The owner's keys keep their Owner, and its stored quota
// consumption stays (a record put again later goes on from it).
func (t *Tx) DeleteOwner(tenant, id string) error {
	res, err := t.tx.ExecContext(t.ctx, `DELETE FROM owners WHERE tenant_id = ? AND id = ?`, tenant, id)
	if err != nil {
		return fail(t.ctx, "delete owner", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail(t.ctx, "delete owner", err)
	}
	if n == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "owner %q not found", id)
	}
	return nil
}

// ownerQuotaUsage is QuotaUsage of an OwnerQuotaID.
func (t *Tx) ownerQuotaUsage(id, tenant, owner string) (latchkey.QuotaUsage, error) {
	u := latchkey.QuotaUsage{KeyID: id}
	var start sql.NullInt64
	err := t.tx.QueryRowContext(t.ctx, `SELECT epoch, period_start, used FROM owner_quota_usage WHERE tenant_id = ? AND owner = ?`,
		tenant, owner).Scan(&u.Epoch, &start, &u.Used)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return u, nil
	case err != nil:
		return latchkey.QuotaUsage{}, fail(t.ctx, "owner quota usage", err)
	}
	u.PeriodStart = fromMicros(start)
	return u, nil
}

// saveOwnerQuotaUsage is SaveQuotaUsage of an OwnerQuotaID.
func (t *Tx) saveOwnerQuotaUsage(u latchkey.QuotaUsage, tenant, owner string) (bool, error) {
	res, err := t.tx.ExecContext(t.ctx, `UPDATE owner_quota_usage SET period_start = ?, used = ?
		WHERE tenant_id = ? AND owner = ? AND epoch = ?`, micros(u.PeriodStart), u.Used, tenant, owner, u.Epoch)
	if err != nil {
		return false, fail(t.ctx, "save owner quota usage", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, fail(t.ctx, "save owner quota usage", err)
	} else if n == 1 || u.Epoch != 0 {
		return n == 1, nil
	}
	res, err = t.tx.ExecContext(t.ctx, `INSERT INTO owner_quota_usage (tenant_id, owner, epoch, period_start, used)
		VALUES (?, ?, 0, ?, ?) ON CONFLICT (tenant_id, owner) DO NOTHING`, tenant, owner, micros(u.PeriodStart), u.Used)
	if constraint(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return false, latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", tenant)
	}
	if err != nil {
		return false, fail(t.ctx, "save owner quota usage", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fail(t.ctx, "save owner quota usage", err)
	}
	return n == 1, nil
}

// resetOwnerQuotaUsage is ResetQuotaUsage of an OwnerQuotaID.
func (t *Tx) resetOwnerQuotaUsage(tenant, owner string) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO owner_quota_usage (tenant_id, owner, epoch, period_start, used)
		VALUES (?, ?, 1, NULL, 0)
		ON CONFLICT (tenant_id, owner) DO UPDATE SET epoch = owner_quota_usage.epoch + 1, period_start = NULL, used = 0`,
		tenant, owner)
	if constraint(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", tenant)
	}
	if err != nil {
		return fail(t.ctx, "reset owner quota usage", err)
	}
	return nil
}
