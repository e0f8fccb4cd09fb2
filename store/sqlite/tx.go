package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/store"
	sqlite3 "modernc.org/sqlite/lib"
)

// Tx is one SQLite transaction, the one type that implements every
// service's narrow contract (keys.Tx, secrets.Tx, audit.Tx, webhook.Tx,
// usage.Tx, keyring.Tx, the limiter's latchkey.QuotaStore): a service is
// handed it through latchkey.Narrow, and the conformance suite in
// store/storetest proves each contract. It is used by one goroutine and
// only inside the function given to View or Update.
type Tx struct {
	// ctx is the context View or Update was given: the methods take
	// none, and every statement should stop when the caller gives up.
	ctx   context.Context
	tx    *sql.Tx
	stmts *stmts // prepared for the pool tx belongs to
	// anchor signs audit checkpoints (nil: none, see DB.SetAuditAnchor).
	anchor *auditSigner
}

// CreateTenant inserts t; EConflict if its id exists.
func (t *Tx) CreateTenant(tn *latchkey.Tenant) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)`,
		tn.ID, tn.Name, micros(tn.CreatedAt))
	if isDuplicate(err) {
		return latchkey.Errorf(latchkey.EConflict, "tenant %q already exists", tn.ID)
	}
	if err != nil {
		return fail(t.ctx, "create tenant", err)
	}
	return nil
}

// Tenant returns the tenant with the id; ENotFound if there is none.
func (t *Tx) Tenant(id string) (*latchkey.Tenant, error) {
	tn, err := scanTenant(t.tx.StmtContext(t.ctx, t.stmts.tenant).QueryRowContext(t.ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", id)
	}
	if err != nil {
		return nil, fail(t.ctx, "tenant", err)
	}
	return tn, nil
}

// Tenants lists tenants ordered by id.
func (t *Tx) Tenants(p latchkey.Page) ([]*latchkey.Tenant, error) {
	rows, err := t.tx.QueryContext(t.ctx, `SELECT id, name, created_at FROM tenants WHERE id > ? ORDER BY id LIMIT ?`,
		p.After, limit(p))
	if err != nil {
		return nil, fail(t.ctx, "tenants", err)
	}
	defer rows.Close()
	list := []*latchkey.Tenant{}
	for rows.Next() {
		tn, err := scanTenant(rows)
		if err != nil {
			return nil, fail(t.ctx, "tenants", err)
		}
		list = append(list, tn)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, "tenants", err)
	}
	return list, nil
}

// keyColumns lists the columns of a key in the order scanKey reads them.
const keyColumns = `id, tenant_id, name, owner, environment, prefix, start, hash,
	scopes, resources, meta, ip_allow, expires_at, state, state_reason,
	suspended_until, parent_id, rotated_from, rotated_to, grace_until,
	created_at, updated_at, revoked_at, suspended_by,
	countries, time_windows, ratelimits, quota, max_concurrent, lease_ttl,
	last_used_at, policy, condition`

// Queries prepared once per pool (see stmts).
const (
	tenantByID = `SELECT id, name, created_at FROM tenants WHERE id = ?`
	keyByID    = `SELECT ` + keyColumns + ` FROM keys WHERE tenant_id = ? AND id = ?`
)

// keyByHash reads a key with its Bound (boundColumns): the policy it names
// and its owner's record, each NULL when not stored. Both joins are
// lookups by primary key, so a key with neither costs two index probes
// that find nothing.
var keyByHash = `SELECT ` + qualified("keys", keyColumns) + `, ` + boundColumns + ` FROM keys
	LEFT JOIN policies ON policies.tenant_id = keys.tenant_id AND policies.name = keys.policy
	LEFT JOIN owners ON owners.tenant_id = keys.tenant_id AND owners.id = keys.owner
	WHERE keys.hash = ?`

// qualified prefixes each column of a list with table and a dot.
func qualified(table, columns string) string {
	cols := strings.Split(columns, ",")
	for i, c := range cols {
		cols[i] = table + "." + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

// CreateKey inserts k; EConflict if its id or hash exists, ENotFound if its
// tenant does not.
func (t *Tx) CreateKey(k *latchkey.Key) error {
	args, err := keyArgs(k)
	if err != nil {
		return err
	}
	_, err = t.tx.ExecContext(t.ctx, `INSERT INTO keys (`+keyColumns+`) VALUES (
		@id, @tenant_id, @name, @owner, @environment, @prefix, @start, @hash,
		@scopes, @resources, @meta, @ip_allow, @expires_at, @state, @state_reason,
		@suspended_until, @parent_id, @rotated_from, @rotated_to, @grace_until,
		@created_at, @updated_at, @revoked_at, @suspended_by,
		@countries, @time_windows, @ratelimits, @quota, @max_concurrent, @lease_ttl,
		@last_used_at, @policy, @condition)`, args...)
	switch {
	case isDuplicate(err):
		return latchkey.Errorf(latchkey.EConflict, "key %q or one with the same secret already exists", k.ID)
	case constraint(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", k.Tenant)
	case err != nil:
		return fail(t.ctx, "create key", err)
	}
	return nil
}

// Key returns the key with the id in the tenant; ENotFound if there is none
// there.
func (t *Tx) Key(tenant, id string) (*latchkey.Key, error) {
	k, err := scanKey(t.tx.StmtContext(t.ctx, t.stmts.key).QueryRowContext(t.ctx, tenant, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "key %q not found", id)
	}
	if err != nil {
		return nil, fail(t.ctx, "key", err)
	}
	return k, nil
}

// KeyByHash returns the key whose SHA-256 is hash, with its Bound;
// ENotFound if none.
func (t *Tx) KeyByHash(hash [32]byte) (*latchkey.Key, error) {
	k, err := scanBoundKey(t.tx.StmtContext(t.ctx, t.stmts.keyByHash).QueryRowContext(t.ctx, hash[:]))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "key not found")
	}
	if err != nil {
		return nil, fail(t.ctx, "key by hash", err)
	}
	return k, nil
}

// unmarshalNonEmpty decodes a JSON column, leaving v as it is for an empty
// array or object (the caller then makes an empty collection).
func unmarshalNonEmpty(b []byte, v any) error {
	if s := string(b); s == "[]" || s == "{}" {
		return nil
	}
	return json.Unmarshal(b, v)
}

// scanStrings decodes a JSON array of strings. The arrays this package
// writes hold plain strings (scopes, resources, country codes), which it
// decodes without encoding/json; anything else (an escape, odd spacing)
// goes to json.Unmarshal.
func scanStrings(b []byte, v *[]string) error {
	if len(b) < 2 || b[0] != '[' || b[len(b)-1] != ']' {
		return json.Unmarshal(b, v)
	}
	body := b[1 : len(b)-1]
	if len(body) == 0 {
		return nil
	}
	n := 1
	for _, c := range body {
		if c == ',' {
			n++
		}
	}
	out := make([]string, 0, n)
	for len(body) > 0 {
		if len(body) < 2 || body[0] != '"' {
			return json.Unmarshal(b, v)
		}
		end := 1
		for end < len(body) && body[end] != '"' {
			c := body[end]
			if c == '\\' || c < 0x20 || c >= 0x80 {
				return json.Unmarshal(b, v)
			}
			end++
		}
		if end == len(body) {
			return json.Unmarshal(b, v)
		}
		out = append(out, string(body[1:end]))
		body = body[end+1:]
		if len(body) > 0 {
			if body[0] != ',' || len(body) == 1 {
				return json.Unmarshal(b, v)
			}
			body = body[1:]
		}
	}
	*v = out
	return nil
}

// KeyByHash returns the key whose SHA-256 is hash, with its Bound (the
// stored policy it names and its owner's record); ENotFound if none. It
// is the verify path's cache miss (latchkey.HashReader): one prepared
// statement on the read pool, without a transaction around it (a single
// statement reads one snapshot), so a miss costs no BEGIN and COMMIT.
func (db *DB) KeyByHash(ctx context.Context, hash [32]byte) (*latchkey.Key, error) {
	if db.closed.Load() {
		return nil, errClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fail(ctx, "key by hash", err)
	}
	// One indexed lookup (tens of µs): not worth the goroutine the driver
	// starts per statement to interrupt it should ctx end (see quietCtx).
	// ctx is checked before, and bounds nothing else here.
	k, err := scanBoundKey(db.readStmts.keyByHash.QueryRowContext(quietCtx{ctx}, hash[:]))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "key not found")
	}
	if err != nil {
		return nil, fail(ctx, "key by hash", err)
	}
	return k, nil
}

// Keys lists a tenant's keys that match f, ordered by id.
func (t *Tx) Keys(tenant string, f latchkey.KeyFilter) ([]*latchkey.Key, error) {
	var q strings.Builder
	q.WriteString(`SELECT ` + keyColumns + ` FROM keys WHERE tenant_id = @tenant AND id > @after`)
	args := []any{sql.Named("tenant", tenant), sql.Named("after", f.After)}
	for _, c := range []struct{ column, value string }{
		{"owner", f.Owner},
		{"environment", f.Environment},
		{"name", f.Name},
		{"parent_id", f.ParentID},
		{"policy", f.Policy},
	} {
		if c.value != "" {
			q.WriteString(" AND " + c.column + " = @" + c.column)
			args = append(args, sql.Named(c.column, c.value))
		}
	}
	if f.Policy != "" {
		// Lets SQLite use the partial index keys_tenant_policy, which
		// it cannot tell from "policy = @policy" alone.
		q.WriteString(" AND policy <> ''")
	}
	if f.State != "" {
		if f.Now.IsZero() {
			return nil, errors.New("sqlite: keys: a State filter needs Now")
		}
		q.WriteString(" AND (" + store.StateAtSQL + ") = @state")
		args = append(args, sql.Named("state", string(f.State)), sql.Named("now", micros(f.Now)))
	}
	q.WriteString(" ORDER BY id LIMIT @limit")
	args = append(args, sql.Named("limit", limit(f.Page)))
	return t.keys("keys", q.String(), args...)
}

// UpdateKey stores every field of k but ID, Tenant, Hash, Prefix, Start,
// CreatedAt and LastUsedAt over the row (k.Tenant, k.ID); ENotFound if
// there is none. last_used_at belongs to SetLastUsed (usage.go).
func (t *Tx) UpdateKey(k *latchkey.Key) error {
	args, err := keyArgs(k)
	if err != nil {
		return err
	}
	res, err := t.tx.ExecContext(t.ctx, `UPDATE keys SET
		name = @name, owner = @owner, environment = @environment,
		scopes = @scopes, resources = @resources, meta = @meta, ip_allow = @ip_allow,
		expires_at = @expires_at, state = @state, state_reason = @state_reason,
		suspended_until = @suspended_until, parent_id = @parent_id,
		rotated_from = @rotated_from, rotated_to = @rotated_to, grace_until = @grace_until,
		updated_at = @updated_at, revoked_at = @revoked_at, suspended_by = @suspended_by,
		countries = @countries, time_windows = @time_windows, ratelimits = @ratelimits,
		quota = @quota, max_concurrent = @max_concurrent, lease_ttl = @lease_ttl,
		policy = @policy, condition = @condition
		WHERE tenant_id = @tenant_id AND id = @id`, args...)
	if err != nil {
		return fail(t.ctx, "update key", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail(t.ctx, "update key", err)
	}
	if n == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "key %q not found", k.ID)
	}
	return nil
}

// Children returns the keys whose ParentID is parentID, ordered by id.
func (t *Tx) Children(tenant, parentID string) ([]*latchkey.Key, error) {
	return t.keys("children", `SELECT `+keyColumns+` FROM keys WHERE tenant_id = ? AND parent_id = ? ORDER BY id`,
		tenant, parentID)
}

// keys runs a query for key rows.
func (t *Tx) keys(op, query string, args ...any) ([]*latchkey.Key, error) {
	rows, err := t.tx.QueryContext(t.ctx, query, args...)
	if err != nil {
		return nil, fail(t.ctx, op, err)
	}
	defer rows.Close()
	list := []*latchkey.Key{}
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fail(t.ctx, op, err)
		}
		list = append(list, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, op, err)
	}
	return list, nil
}

// limit turns a page's limit into SQLite's, where a negative LIMIT is none.
func limit(p latchkey.Page) int {
	if p.Limit <= 0 {
		return -1
	}
	return p.Limit
}

// keyScan holds the Scan destinations of a key row (see scanKey).
type keyScan struct {
	k                                       latchkey.Key
	hash, scopes, resources, meta, ipAllow  []byte
	state                                   string
	parentID, rotatedFrom, rotatedTo        sql.NullString
	suspendedBy, quota                      sql.NullString
	countries, windows, rates               []byte
	leaseTTL                                int64
	expires, suspendedUntil, grace, revoked sql.NullInt64
	created, updated, lastUsed              sql.NullInt64
	// The Bound's columns (boundColumns), read by KeyByHash only.
	b    boundScan
	dest [33 + boundColumnCount]any
}

// dests returns the destinations in keyColumns' order.
func (sc *keyScan) dests() []any {
	k := &sc.k
	sc.dest = [33 + boundColumnCount]any{&k.ID, &k.Tenant, &k.Name, &k.Owner, &k.Environment, &k.Prefix, &k.Start, &sc.hash,
		&sc.scopes, &sc.resources, &sc.meta, &sc.ipAllow, &sc.expires, &sc.state, &k.StateReason,
		&sc.suspendedUntil, &sc.parentID, &sc.rotatedFrom, &sc.rotatedTo, &sc.grace,
		&sc.created, &sc.updated, &sc.revoked, &sc.suspendedBy,
		&sc.countries, &sc.windows, &sc.rates, &sc.quota, &k.MaxConcurrent, &sc.leaseTTL,
		&sc.lastUsed, &k.Policy, &k.Condition,
		&sc.b.policy, &sc.b.owner}
	return sc.dest[:33]
}

// boundDests returns the destinations in keyColumns' then boundColumns'
// order.
func (sc *keyScan) boundDests() []any {
	sc.dests()
	return sc.dest[:]
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

func scanTenant(row scanner) (*latchkey.Tenant, error) {
	var tn latchkey.Tenant
	var created sql.NullInt64
	if err := row.Scan(&tn.ID, &tn.Name, &created); err != nil {
		return nil, err
	}
	tn.CreatedAt = fromMicros(created)
	return &tn, nil
}

// keyArgs returns the named arguments for every column of k.
func keyArgs(k *latchkey.Key) ([]any, error) {
	j, err := encodeKeyJSON(k)
	if err != nil {
		return nil, err
	}
	return []any{
		sql.Named("id", k.ID),
		sql.Named("tenant_id", k.Tenant),
		sql.Named("name", k.Name),
		sql.Named("owner", k.Owner),
		sql.Named("environment", k.Environment),
		sql.Named("prefix", k.Prefix),
		sql.Named("start", k.Start),
		sql.Named("hash", k.Hash[:]),
		sql.Named("scopes", j.scopes),
		sql.Named("resources", j.resources),
		sql.Named("meta", j.meta),
		sql.Named("ip_allow", j.ipAllow),
		sql.Named("expires_at", micros(k.ExpiresAt)),
		sql.Named("state", string(k.State)),
		sql.Named("state_reason", k.StateReason),
		sql.Named("suspended_until", micros(k.SuspendedUntil)),
		sql.Named("parent_id", nullString(k.ParentID)),
		sql.Named("rotated_from", nullString(k.RotatedFrom)),
		sql.Named("rotated_to", nullString(k.RotatedTo)),
		sql.Named("grace_until", micros(k.GraceUntil)),
		sql.Named("created_at", micros(k.CreatedAt)),
		sql.Named("updated_at", micros(k.UpdatedAt)),
		sql.Named("revoked_at", micros(k.RevokedAt)),
		sql.Named("suspended_by", nullString(k.SuspendedBy)),
		sql.Named("countries", j.countries),
		sql.Named("time_windows", j.windows),
		sql.Named("ratelimits", j.rates),
		sql.Named("quota", j.quota),
		sql.Named("max_concurrent", k.MaxConcurrent),
		sql.Named("lease_ttl", int64(k.LeaseTTL)),
		sql.Named("last_used_at", micros(k.LastUsedAt)),
		sql.Named("policy", k.Policy),
		sql.Named("condition", k.Condition),
	}, nil
}

// keyJSON is the JSON text of a key's list and map columns.
type keyJSON struct {
	scopes, resources, meta, ipAllow string
	countries, windows, rates        string
	quota                            sql.NullString
}

func encodeKeyJSON(k *latchkey.Key) (keyJSON, error) {
	var j keyJSON
	var err error
	if j.scopes, err = jsonArray(k.Scopes); err != nil {
		return j, fmt.Errorf("sqlite: key %s: scopes: %w", k.ID, err)
	}
	if j.resources, err = jsonArray(k.Resources); err != nil {
		return j, fmt.Errorf("sqlite: key %s: resources: %w", k.ID, err)
	}
	if j.ipAllow, err = jsonArray(k.IPAllow); err != nil {
		return j, fmt.Errorf("sqlite: key %s: ip_allow: %w", k.ID, err)
	}
	if j.countries, err = jsonArray(k.Countries); err != nil {
		return j, fmt.Errorf("sqlite: key %s: countries: %w", k.ID, err)
	}
	if j.windows, err = jsonArray(k.TimeWindows); err != nil {
		return j, fmt.Errorf("sqlite: key %s: time_windows: %w", k.ID, err)
	}
	if j.rates, err = jsonArray(k.RateLimits); err != nil {
		return j, fmt.Errorf("sqlite: key %s: ratelimits: %w", k.ID, err)
	}
	if k.Quota != nil {
		b, err := json.Marshal(k.Quota)
		if err != nil {
			return j, fmt.Errorf("sqlite: key %s: quota: %w", k.ID, err)
		}
		j.quota = sql.NullString{String: string(b), Valid: true}
	}
	j.meta = "{}"
	if k.Meta != nil {
		b, err := json.Marshal(k.Meta)
		if err != nil {
			return j, fmt.Errorf("sqlite: key %s: meta: %w", k.ID, err)
		}
		j.meta = string(b)
	}
	return j, nil
}

func scanKey(row scanner) (*latchkey.Key, error) {
	// Every column lands in one keyScan: handed to Scan one by one, each
	// variable would be an allocation of its own. The key is copied out,
	// so what is cached does not keep the scan's buffers alive.
	sc := new(keyScan)
	if err := row.Scan(sc.dests()...); err != nil {
		return nil, err
	}
	return sc.key()
}

// scanBoundKey reads a row of keyByHash: a key and its Bound.
func scanBoundKey(row scanner) (*latchkey.Key, error) {
	sc := new(keyScan)
	if err := row.Scan(sc.boundDests()...); err != nil {
		return nil, err
	}
	k, err := sc.key()
	if err != nil {
		return nil, err
	}
	if k.Bound, err = sc.b.bound(k); err != nil {
		return nil, err
	}
	return k, nil
}

// key makes the key of a scanned row.
func (sc *keyScan) key() (*latchkey.Key, error) {
	k := new(latchkey.Key)
	*k = sc.k
	var (
		hash, scopes, resources, meta, ipAllow  = sc.hash, sc.scopes, sc.resources, sc.meta, sc.ipAllow
		state                                   = sc.state
		parentID, rotatedFrom, rotatedTo        = sc.parentID, sc.rotatedFrom, sc.rotatedTo
		suspendedBy, quota                      = sc.suspendedBy, sc.quota
		countries, windows, rates               = sc.countries, sc.windows, sc.rates
		leaseTTL                                = sc.leaseTTL
		expires, suspendedUntil, grace, revoked = sc.expires, sc.suspendedUntil, sc.grace, sc.revoked
		created, updated, lastUsed              = sc.created, sc.updated, sc.lastUsed
	)
	if len(hash) != len(k.Hash) {
		return nil, fmt.Errorf("key %s: hash has %d bytes", k.ID, len(hash))
	}
	copy(k.Hash[:], hash)
	// Decoding into a nil slice or map leaves it nil for JSON null, which
	// this package never writes; the checks below keep the promise of
	// non-nil collections even for a row written by hand.
	// Most of these columns hold an empty collection ("[]" or "{}"),
	// which the checks below make without decoding: a verify cache miss
	// spends less than half its allocations here then.
	if err := scanStrings(scopes, &k.Scopes); err != nil {
		return nil, fmt.Errorf("key %s: scopes: %w", k.ID, err)
	}
	if err := scanStrings(resources, &k.Resources); err != nil {
		return nil, fmt.Errorf("key %s: resources: %w", k.ID, err)
	}
	if err := unmarshalNonEmpty(meta, &k.Meta); err != nil {
		return nil, fmt.Errorf("key %s: meta: %w", k.ID, err)
	}
	if err := unmarshalNonEmpty(ipAllow, &k.IPAllow); err != nil {
		return nil, fmt.Errorf("key %s: ip_allow: %w", k.ID, err)
	}
	if err := scanStrings(countries, &k.Countries); err != nil {
		return nil, fmt.Errorf("key %s: countries: %w", k.ID, err)
	}
	if err := unmarshalNonEmpty(windows, &k.TimeWindows); err != nil {
		return nil, fmt.Errorf("key %s: time_windows: %w", k.ID, err)
	}
	if err := unmarshalNonEmpty(rates, &k.RateLimits); err != nil {
		return nil, fmt.Errorf("key %s: ratelimits: %w", k.ID, err)
	}
	if quota.Valid {
		k.Quota = new(latchkey.Quota)
		if err := json.Unmarshal([]byte(quota.String), k.Quota); err != nil {
			return nil, fmt.Errorf("key %s: quota: %w", k.ID, err)
		}
	}
	k.LeaseTTL = latchkey.Duration(leaseTTL)
	if k.Countries == nil {
		k.Countries = []string{}
	}
	if k.TimeWindows == nil {
		k.TimeWindows = []latchkey.TimeWindow{}
	}
	if k.RateLimits == nil {
		k.RateLimits = []latchkey.RateLimit{}
	}
	if k.Scopes == nil {
		k.Scopes = []string{}
	}
	if k.Resources == nil {
		k.Resources = []string{}
	}
	if k.Meta == nil {
		k.Meta = map[string]any{}
	}
	if k.IPAllow == nil {
		k.IPAllow = []netip.Prefix{}
	}
	k.State = latchkey.State(state)
	k.ParentID, k.RotatedFrom, k.RotatedTo = parentID.String, rotatedFrom.String, rotatedTo.String
	k.SuspendedBy = suspendedBy.String
	k.ExpiresAt = fromMicros(expires)
	k.SuspendedUntil = fromMicros(suspendedUntil)
	k.GraceUntil = fromMicros(grace)
	k.CreatedAt = fromMicros(created)
	k.UpdatedAt = fromMicros(updated)
	k.RevokedAt = fromMicros(revoked)
	k.LastUsedAt = fromMicros(lastUsed)
	return k, nil
}

// jsonArray encodes a list, nil as [] so the column never holds null.
func jsonArray[T any](v []T) (string, error) {
	if v == nil {
		return "[]", nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// micros stores a time as unix microseconds, the zero time as NULL.
// UnixMicro rounds down, also before 1970, so an instant with nanoseconds
// compares with a stored (whole-microsecond) time as it would in Go.
func micros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromMicros(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.UnixMicro(n.Int64).UTC()
}

// nullString stores an empty id as NULL, so a key with no parent is in no
// parent's list.
func nullString(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}

// QuotaUsage returns a key's persisted quota consumption; the zero usage
// (with KeyID set) if none was saved. An OwnerQuotaID names an owner's
// shared quota, kept in owner_quota_usage (policies.go).
func (t *Tx) QuotaUsage(keyID string) (latchkey.QuotaUsage, error) {
	if tenant, owner, ok := latchkey.ParseOwnerQuotaID(keyID); ok {
		return t.ownerQuotaUsage(keyID, tenant, owner)
	}
	u := latchkey.QuotaUsage{KeyID: keyID}
	var start sql.NullInt64
	err := t.tx.QueryRowContext(t.ctx, `SELECT epoch, period_start, used FROM quota_usage WHERE key_id = ?`, keyID).
		Scan(&u.Epoch, &start, &u.Used)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return u, nil
	case err != nil:
		return latchkey.QuotaUsage{}, fail(t.ctx, "quota usage", err)
	}
	u.PeriodStart = fromMicros(start)
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
	res, err := t.tx.ExecContext(t.ctx, `UPDATE quota_usage SET period_start = ?, used = ? WHERE key_id = ? AND epoch = ?`,
		micros(u.PeriodStart), u.Used, u.KeyID, u.Epoch)
	if err != nil {
		return false, fail(t.ctx, "save quota usage", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, fail(t.ctx, "save quota usage", err)
	} else if n == 1 || u.Epoch != 0 {
		return n == 1, nil
	}
	res, err = t.tx.ExecContext(t.ctx, `INSERT INTO quota_usage (key_id, epoch, period_start, used) VALUES (?, 0, ?, ?)
		ON CONFLICT (key_id) DO NOTHING`, u.KeyID, micros(u.PeriodStart), u.Used)
	if constraint(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return false, latchkey.Errorf(latchkey.ENotFound, "key %q not found", u.KeyID)
	}
	if err != nil {
		return false, fail(t.ctx, "save quota usage", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fail(t.ctx, "save quota usage", err)
	}
	return n == 1, nil
}

// ResetQuotaUsage zeroes a key's consumption, or an OwnerQuotaID's, and
// bumps its epoch; ENotFound if the key (the owner's tenant) does not
// exist.
func (t *Tx) ResetQuotaUsage(keyID string) error {
	if tenant, owner, ok := latchkey.ParseOwnerQuotaID(keyID); ok {
		return t.resetOwnerQuotaUsage(tenant, owner)
	}
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO quota_usage (key_id, epoch, period_start, used) VALUES (?, 1, NULL, 0)
		ON CONFLICT (key_id) DO UPDATE SET epoch = quota_usage.epoch + 1, period_start = NULL, used = 0`, keyID)
	if constraint(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return latchkey.Errorf(latchkey.ENotFound, "key %q not found", keyID)
	}
	if err != nil {
		return fail(t.ctx, "reset quota usage", err)
	}
	return nil
}
