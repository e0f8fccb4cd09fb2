package postgres

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/latchkeyhq/latchkey"
)

// keyColumns lists the columns of a key in the order scanKey reads them and
// keyArgs gives them.
const keyColumns = `id, tenant_id, name, owner, environment, prefix, start, hash,
	scopes, resources, meta, ip_allow, expires_at, state, state_reason,
	suspended_until, parent_id, rotated_from, rotated_to, grace_until,
	created_at, updated_at, revoked_at, suspended_by,
	countries, time_windows, ratelimits, quota, max_concurrent, lease_ttl,
	last_used_at, policy, condition`

// keyColumnCount is the number of keyColumns.
var keyColumnCount = strings.Count(keyColumns, ",") + 1

// keyColumnList is keyColumns one name a string.
var keyColumnList = func() []string {
	cols := strings.Split(keyColumns, ",")
	for i, c := range cols {
		cols[i] = strings.TrimSpace(c)
	}
	return cols
}()

// Queries of one key.
const (
	tenantByID = `SELECT id, name, created_at FROM tenants WHERE id = $1`
	keyByID    = `SELECT ` + keyColumns + ` FROM keys WHERE tenant_id = $1 AND id = $2`
)

// keyByHash reads a key with its Bound (boundColumns): the policy it names
// and its owner's record, each NULL when not stored. Both joins are
// lookups by primary key, so a key with neither costs two index probes
// that find nothing, in the same round trip.
var keyByHash = `SELECT ` + qualified("keys", keyColumns) + `, ` + boundColumns + ` FROM keys
	LEFT JOIN policies ON policies.tenant_id = keys.tenant_id AND policies.name = keys.policy
	LEFT JOIN owners ON owners.tenant_id = keys.tenant_id AND owners.id = keys.owner
	WHERE keys.hash = $1`

// qualified prefixes each column of a list with table and a dot.
func qualified(table, columns string) string {
	cols := strings.Split(columns, ",")
	for i, c := range cols {
		cols[i] = table + "." + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

// placeholders returns "$from, $from+1, …" for n parameters.
func placeholders(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(from+i))
	}
	return b.String()
}

// args collects the positional parameters of a query built piece by piece.
type args []any

// add appends v and returns its placeholder.
func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// scanner is a pgx.Row or pgx.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// keyScan holds the Scan destinations of a key row (see scanKey): one
// allocation for all of them.
type keyScan struct {
	k                                       latchkey.Key
	hash, meta, windows, rates, quota       []byte
	scopes, resources, ipAllow, countries   []string
	state                                   string
	parentID, rotatedFrom, rotatedTo        pgtype.Text
	suspendedBy                             pgtype.Text
	maxConcurrent                           int32
	leaseTTL                                int64
	expires, suspendedUntil, grace, revoked pgtype.Timestamptz
	created, updated, lastUsed              pgtype.Timestamptz
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
		&sc.countries, &sc.windows, &sc.rates, &sc.quota, &sc.maxConcurrent, &sc.leaseTTL,
		&sc.lastUsed, &k.Policy, &k.Condition,
		&sc.b.pBody, &sc.b.pCreated, &sc.b.pUpdated,
		&sc.b.oRates, &sc.b.oQuota, &sc.b.oMeta, &sc.b.oCreated, &sc.b.oUpdated}
	return sc.dest[:33]
}

// boundDests returns the destinations in keyColumns' then boundColumns'
// order.
func (sc *keyScan) boundDests() []any {
	sc.dests()
	return sc.dest[:]
}

// scanKey reads a key row in keyColumns' order. Lists and maps come back
// non-nil, times in UTC.
func scanKey(row scanner) (*latchkey.Key, error) {
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
	if len(sc.hash) != len(k.Hash) {
		return nil, fmt.Errorf("key %s: hash has %d bytes", k.ID, len(sc.hash))
	}
	copy(k.Hash[:], sc.hash)
	k.Scopes, k.Resources, k.Countries = orEmpty(sc.scopes), orEmpty(sc.resources), orEmpty(sc.countries)
	k.IPAllow = make([]netip.Prefix, len(sc.ipAllow))
	for i, s := range sc.ipAllow {
		// As encoding/json reads what store/sqlite writes.
		if err := k.IPAllow[i].UnmarshalText([]byte(s)); err != nil {
			return nil, fmt.Errorf("key %s: ip_allow: %w", k.ID, err)
		}
	}
	if err := unmarshalNonEmpty(sc.meta, &k.Meta); err != nil {
		return nil, fmt.Errorf("key %s: meta: %w", k.ID, err)
	}
	if err := unmarshalNonEmpty(sc.windows, &k.TimeWindows); err != nil {
		return nil, fmt.Errorf("key %s: time_windows: %w", k.ID, err)
	}
	if err := unmarshalNonEmpty(sc.rates, &k.RateLimits); err != nil {
		return nil, fmt.Errorf("key %s: ratelimits: %w", k.ID, err)
	}
	if sc.quota != nil {
		k.Quota = new(latchkey.Quota)
		if err := json.Unmarshal(sc.quota, k.Quota); err != nil {
			return nil, fmt.Errorf("key %s: quota: %w", k.ID, err)
		}
	}
	if k.Meta == nil {
		k.Meta = map[string]any{}
	}
	if k.TimeWindows == nil {
		k.TimeWindows = []latchkey.TimeWindow{}
	}
	if k.RateLimits == nil {
		k.RateLimits = []latchkey.RateLimit{}
	}
	k.MaxConcurrent = int(sc.maxConcurrent)
	k.LeaseTTL = latchkey.Duration(sc.leaseTTL)
	k.State = latchkey.State(sc.state)
	k.ParentID, k.RotatedFrom, k.RotatedTo = sc.parentID.String, sc.rotatedFrom.String, sc.rotatedTo.String
	k.SuspendedBy = sc.suspendedBy.String
	k.ExpiresAt = fromTS(sc.expires)
	k.SuspendedUntil = fromTS(sc.suspendedUntil)
	k.GraceUntil = fromTS(sc.grace)
	k.CreatedAt = fromTS(sc.created)
	k.UpdatedAt = fromTS(sc.updated)
	k.RevokedAt = fromTS(sc.revoked)
	k.LastUsedAt = fromTS(sc.lastUsed)
	return k, nil
}

// unmarshalNonEmpty decodes a JSON column, leaving v as it is for an empty
// array or object (the caller then makes an empty collection).
func unmarshalNonEmpty(b []byte, v any) error {
	if s := string(b); s == "[]" || s == "{}" || s == "" {
		return nil
	}
	return json.Unmarshal(b, v)
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// keyEncoded is what a key's list and map columns are given as.
type keyEncoded struct {
	scopes, resources, ipAllow, countries []string
	meta, windows, rates                  string
	quota                                 any // nil or a JSON string
}

func encodeKey(k *latchkey.Key) (keyEncoded, error) {
	e := keyEncoded{scopes: orEmpty(k.Scopes), resources: orEmpty(k.Resources), countries: orEmpty(k.Countries)}
	e.ipAllow = make([]string, len(k.IPAllow))
	for i, p := range k.IPAllow {
		b, err := p.MarshalText()
		if err != nil {
			return e, fmt.Errorf("postgres: key %s: ip_allow: %w", k.ID, err)
		}
		e.ipAllow[i] = string(b)
	}
	var err error
	if e.windows, err = jsonArray(k.TimeWindows); err != nil {
		return e, fmt.Errorf("postgres: key %s: time_windows: %w", k.ID, err)
	}
	if e.rates, err = jsonArray(k.RateLimits); err != nil {
		return e, fmt.Errorf("postgres: key %s: ratelimits: %w", k.ID, err)
	}
	e.meta = "{}"
	if k.Meta != nil {
		b, err := json.Marshal(k.Meta)
		if err != nil {
			return e, fmt.Errorf("postgres: key %s: meta: %w", k.ID, err)
		}
		e.meta = string(b)
	}
	if k.Quota != nil {
		b, err := json.Marshal(k.Quota)
		if err != nil {
			return e, fmt.Errorf("postgres: key %s: quota: %w", k.ID, err)
		}
		e.quota = string(b)
	}
	return e, nil
}

// keyArgs returns k's columns in keyColumns' order.
func keyArgs(k *latchkey.Key) ([]any, error) {
	e, err := encodeKey(k)
	if err != nil {
		return nil, err
	}
	return keyValues(k, e), nil
}

// jsonArray encodes a list, nil as [] so the column never holds null.
func jsonArray[T any](v []T) (string, error) {
	if v == nil {
		return "[]", nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// ts is a time parameter: NULL for the zero time. PostgreSQL keeps
// microseconds; pgx drops the nanoseconds below them (rounding down, also
// before 1970), as store/sqlite's UnixMicro does.
func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// fromTS reads a time column: the zero time for NULL, else the instant in
// UTC.
func fromTS(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// nullString stores an empty id as NULL, so a key with no parent is in no
// parent's list.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
