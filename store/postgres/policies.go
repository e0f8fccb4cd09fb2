package postgres

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/latchkeyhq/latchkey"
)

// boundColumns are the columns keyByHash reads after keyColumns: the
// policy the key names and its owner's record, all NULL for one not
// stored (body and ratelimits are NOT NULL in their tables, so they say
// whether the row was there).
const (
	boundColumns = `policies.body, policies.created_at, policies.updated_at,
	owners.ratelimits, owners.quota, owners.meta, owners.created_at, owners.updated_at`
	boundColumnCount = 8
)

// boundScan holds the Scan destinations of boundColumns.
type boundScan struct {
	pBody                 []byte
	pCreated, pUpdated    pgtype.Timestamptz
	oRates, oQuota, oMeta []byte
	oCreated, oUpdated    pgtype.Timestamptz
}

// bound makes k's Bound of the scanned columns: nil when neither row was
// there, which is the verify path's common case and decodes nothing.
func (b *boundScan) bound(k *latchkey.Key) (*latchkey.Bound, error) {
	if b.pBody == nil && b.oRates == nil {
		return nil, nil
	}
	bd := new(latchkey.Bound)
	if b.pBody != nil {
		p, err := decodePolicy(k.Tenant, k.Policy, b.pBody, b.pCreated, b.pUpdated)
		if err != nil {
			return nil, err
		}
		bd.Policy = p
	}
	if b.oRates != nil {
		o, err := decodeOwner(k.Tenant, k.Owner, b.oRates, b.oQuota, b.oMeta, b.oCreated, b.oUpdated)
		if err != nil {
			return nil, err
		}
		bd.Owner = o
	}
	return bd, nil
}

// encodePolicy returns the body column of p: its JSON without what the
// columns hold (tenant, name, times), lists never null.
func encodePolicy(p *latchkey.Policy) (string, error) {
	c := *p
	c.Tenant, c.Name, c.CreatedAt, c.UpdatedAt, c.Preset = "", "", time.Time{}, time.Time{}, false
	normalizePolicy(&c)
	b, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("postgres: policy %s: %w", p.Name, err)
	}
	return string(b), nil
}

// decodePolicy reads a policy row.
func decodePolicy(tenant, name string, body []byte, created, updated pgtype.Timestamptz) (*latchkey.Policy, error) {
	p := new(latchkey.Policy)
	if err := json.Unmarshal(body, p); err != nil {
		return nil, fmt.Errorf("policy %s: %w", name, err)
	}
	p.Tenant, p.Name, p.Preset = tenant, name, false
	p.CreatedAt, p.UpdatedAt = fromTS(created), fromTS(updated)
	normalizePolicy(p)
	return p, nil
}

// normalizePolicy makes p's nil lists empty ones, as a key's.
func normalizePolicy(p *latchkey.Policy) {
	p.Scopes, p.Resources, p.Countries = orEmpty(p.Scopes), orEmpty(p.Resources), orEmpty(p.Countries)
	if p.IPAllow == nil {
		p.IPAllow = []netip.Prefix{}
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
// tenant does not exist. It notes ChangePolicy, sent with the commit.
//
// The row is selected from the tenant, so a missing tenant writes nothing
// instead of breaking the foreign key.
func (t *Tx) PutPolicy(p *latchkey.Policy) error {
	body, err := encodePolicy(p)
	if err != nil {
		return err
	}
	var created pgtype.Timestamptz
	err = t.tx.QueryRow(t.ctx, `INSERT INTO policies (tenant_id, name, body, created_at, updated_at)
		SELECT id, $2, $3, $4, $5 FROM tenants WHERE id = $1
		ON CONFLICT (tenant_id, name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at
		RETURNING created_at`,
		p.Tenant, p.Name, body, ts(p.CreatedAt), ts(p.UpdatedAt)).Scan(&created)
	if errors.Is(err, pgx.ErrNoRows) {
		return latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", p.Tenant)
	}
	if err != nil {
		return t.fail("put policy", err)
	}
	p.CreatedAt = fromTS(created)
	t.change(latchkey.Change{Kind: latchkey.ChangePolicy, Tenant: p.Tenant, Name: p.Name})
	return nil
}

const policyColumns = `tenant_id, name, body, created_at, updated_at`

func scanPolicy(row scanner) (*latchkey.Policy, error) {
	var tenant, name string
	var body []byte
	var created, updated pgtype.Timestamptz
	if err := row.Scan(&tenant, &name, &body, &created, &updated); err != nil {
		return nil, err
	}
	return decodePolicy(tenant, name, body, created, updated)
}

// Policy returns the tenant's policy with the name; ENotFound if none.
func (t *Tx) Policy(tenant, name string) (*latchkey.Policy, error) {
	p, err := scanPolicy(t.tx.QueryRow(t.ctx, `SELECT `+policyColumns+` FROM policies WHERE tenant_id = $1 AND name = $2`, tenant, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "policy %q not found", name)
	}
	if err != nil {
		return nil, t.fail("policy", err)
	}
	return p, nil
}

// Policies lists the tenant's policies ordered by name (byte order), those
// after p.After, at most p.Limit.
func (t *Tx) Policies(tenant string, p latchkey.Page) ([]*latchkey.Policy, error) {
	return collect(t, "policies", `SELECT `+policyColumns+` FROM policies
		WHERE tenant_id = $1 AND name > $2 ORDER BY name LIMIT $3`,
		func(r pgx.Rows) (*latchkey.Policy, error) { return scanPolicy(r) }, tenant, p.After, limit(p.Limit))
}

// DeletePolicy deletes the tenant's policy with the name; ENotFound if
// there is none, EConflict while a key that is not revoked names it. It
// notes ChangePolicy, sent with the commit.
func (t *Tx) DeletePolicy(tenant, name string) error {
	named, err := t.exists("delete policy", `SELECT EXISTS (SELECT 1 FROM keys
		WHERE tenant_id = $1 AND policy = $2 AND policy <> '' AND state <> 'revoked')`, tenant, name)
	if err != nil {
		return err
	}
	if named {
		// A key may name a preset, which is not stored: not found then.
		if _, err := t.Policy(tenant, name); err != nil {
			return err
		}
		return latchkey.Errorf(latchkey.EConflict, "policy %q is named by keys that are not revoked", name)
	}
	tag, err := t.exec("delete policy", `DELETE FROM policies WHERE tenant_id = $1 AND name = $2`, tenant, name)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "policy %q not found", name)
	}
	t.change(latchkey.Change{Kind: latchkey.ChangePolicy, Tenant: tenant, Name: name})
	return nil
}

// encodeOwner returns the JSON columns of o: ratelimits, quota (nil for
// none) and meta.
func encodeOwner(o *latchkey.Owner) (rates string, quota any, meta string, err error) {
	if rates, err = jsonArray(o.RateLimits); err != nil {
		return "", nil, "", fmt.Errorf("postgres: owner %s: ratelimits: %w", o.ID, err)
	}
	if o.Quota != nil {
		b, err := json.Marshal(o.Quota)
		if err != nil {
			return "", nil, "", fmt.Errorf("postgres: owner %s: quota: %w", o.ID, err)
		}
		quota = string(b)
	}
	meta = "{}"
	if o.Meta != nil {
		b, err := json.Marshal(o.Meta)
		if err != nil {
			return "", nil, "", fmt.Errorf("postgres: owner %s: meta: %w", o.ID, err)
		}
		meta = string(b)
	}
	return rates, quota, meta, nil
}

// decodeOwner reads an owner row; quota is nil for none.
func decodeOwner(tenant, id string, rates, quota, meta []byte, created, updated pgtype.Timestamptz) (*latchkey.Owner, error) {
	o := &latchkey.Owner{Tenant: tenant, ID: id, CreatedAt: fromTS(created), UpdatedAt: fromTS(updated)}
	if err := unmarshalNonEmpty(rates, &o.RateLimits); err != nil {
		return nil, fmt.Errorf("owner %s: ratelimits: %w", id, err)
	}
	if err := unmarshalNonEmpty(meta, &o.Meta); err != nil {
		return nil, fmt.Errorf("owner %s: meta: %w", id, err)
	}
	if quota != nil {
		o.Quota = new(latchkey.Quota)
		if err := json.Unmarshal(quota, o.Quota); err != nil {
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
// tenant does not exist. It notes ChangeOwner, sent with the commit.
func (t *Tx) PutOwner(o *latchkey.Owner) error {
	rates, quota, meta, err := encodeOwner(o)
	if err != nil {
		return err
	}
	var created pgtype.Timestamptz
	err = t.tx.QueryRow(t.ctx, `INSERT INTO owners (tenant_id, id, ratelimits, quota, meta, created_at, updated_at)
		SELECT id, $2, $3, $4, $5, $6, $7 FROM tenants WHERE id = $1
		ON CONFLICT (tenant_id, id) DO UPDATE SET ratelimits = excluded.ratelimits, quota = excluded.quota,
			meta = excluded.meta, updated_at = excluded.updated_at
		RETURNING created_at`,
		o.Tenant, o.ID, rates, quota, meta, ts(o.CreatedAt), ts(o.UpdatedAt)).Scan(&created)
	if errors.Is(err, pgx.ErrNoRows) {
		return latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", o.Tenant)
	}
	if err != nil {
		return t.fail("put owner", err)
	}
	o.CreatedAt = fromTS(created)
	t.change(latchkey.Change{Kind: latchkey.ChangeOwner, Tenant: o.Tenant, Name: o.ID})
	return nil
}

const ownerColumns = `tenant_id, id, ratelimits, quota, meta, created_at, updated_at`

func scanOwner(row scanner) (*latchkey.Owner, error) {
	var tenant, id string
	var rates, quota, meta []byte
	var created, updated pgtype.Timestamptz
	if err := row.Scan(&tenant, &id, &rates, &quota, &meta, &created, &updated); err != nil {
		return nil, err
	}
	return decodeOwner(tenant, id, rates, quota, meta, created, updated)
}

// Owner returns the tenant's record of the owner; ENotFound if none.
func (t *Tx) Owner(tenant, id string) (*latchkey.Owner, error) {
	o, err := scanOwner(t.tx.QueryRow(t.ctx, `SELECT `+ownerColumns+` FROM owners WHERE tenant_id = $1 AND id = $2`, tenant, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "owner %q not found", id)
	}
	if err != nil {
		return nil, t.fail("owner", err)
	}
	return o, nil
}

// Owners lists the tenant's owner records ordered by id (byte order),
// those after p.After, at most p.Limit.
func (t *Tx) Owners(tenant string, p latchkey.Page) ([]*latchkey.Owner, error) {
	return collect(t, "owners", `SELECT `+ownerColumns+` FROM owners
		WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`,
		func(r pgx.Rows) (*latchkey.Owner, error) { return scanOwner(r) }, tenant, p.After, limit(p.Limit))
}

// DeleteOwner deletes the tenant's record of the owner; ENotFound if there
// is none. The owner's keys keep their Owner, and its stored quota
// consumption stays (a record put again later goes on from it). It notes
// ChangeOwner, sent with the commit.
func (t *Tx) DeleteOwner(tenant, id string) error {
	tag, err := t.exec("delete owner", `DELETE FROM owners WHERE tenant_id = $1 AND id = $2`, tenant, id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "owner %q not found", id)
	}
	t.change(latchkey.Change{Kind: latchkey.ChangeOwner, Tenant: tenant, Name: id})
	return nil
}

// ownerQuotaUsage is QuotaUsage of an OwnerQuotaID.
func (t *Tx) ownerQuotaUsage(id, tenant, owner string) (latchkey.QuotaUsage, error) {
	u := latchkey.QuotaUsage{KeyID: id}
	var start pgtype.Timestamptz
	err := t.tx.QueryRow(t.ctx, `SELECT epoch, period_start, used FROM owner_quota_usage WHERE tenant_id = $1 AND owner = $2`,
		tenant, owner).Scan(&u.Epoch, &start, &u.Used)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return u, nil
	case err != nil:
		return latchkey.QuotaUsage{}, t.fail("owner quota usage", err)
	}
	u.PeriodStart = fromTS(start)
	return u, nil
}

// saveOwnerQuotaUsage is SaveQuotaUsage of an OwnerQuotaID. The first row
// is selected from the tenant, so a missing tenant writes nothing instead
// of breaking the foreign key.
func (t *Tx) saveOwnerQuotaUsage(u latchkey.QuotaUsage, tenant, owner string) (bool, error) {
	tag, err := t.exec("save owner quota usage", `UPDATE owner_quota_usage SET period_start = $1, used = $2
		WHERE tenant_id = $3 AND owner = $4 AND epoch = $5`, ts(u.PeriodStart), u.Used, tenant, owner, u.Epoch)
	if err != nil {
		return false, err
	}
	if tag.RowsAffected() == 1 || u.Epoch != 0 {
		return tag.RowsAffected() == 1, nil
	}
	tag, err = t.exec("save owner quota usage", `INSERT INTO owner_quota_usage (tenant_id, owner, epoch, period_start, used)
		SELECT id, $2, 0, $3, $4 FROM tenants WHERE id = $1
		ON CONFLICT (tenant_id, owner) DO NOTHING`, tenant, owner, ts(u.PeriodStart), u.Used)
	if err != nil {
		return false, err
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	if _, err := t.Tenant(tenant); err != nil {
		return false, err
	}
	return false, nil
}

// resetOwnerQuotaUsage is ResetQuotaUsage of an OwnerQuotaID.
func (t *Tx) resetOwnerQuotaUsage(tenant, owner string) error {
	tag, err := t.exec("reset owner quota usage", `INSERT INTO owner_quota_usage (tenant_id, owner, epoch, period_start, used)
		SELECT id, $2, 1, NULL, 0 FROM tenants WHERE id = $1
		ON CONFLICT (tenant_id, owner) DO UPDATE SET epoch = owner_quota_usage.epoch + 1, period_start = NULL, used = 0`,
		tenant, owner)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", tenant)
	}
	return nil
}
