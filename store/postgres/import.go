package postgres

import (
	"fmt"
	"reflect"

	"github.com/jackc/pgx/v5"

	"github.com/latchkeyhq/latchkey"
)

// An import copies its keys into a temporary table with COPY (pgx's binary
// CopyFrom: no statement per row, no parameter limit) and inserts them from
// there in one statement that skips every key whose id or hash is taken.
// The table belongs to the connection's session; ON COMMIT DELETE ROWS
// empties it at the end of each transaction, and ImportKeys empties it
// after each call.
const (
	importTable       = "latchkey_import"
	createImportTable = `CREATE TEMP TABLE IF NOT EXISTS ` + importTable + ` (ord BIGINT NOT NULL, LIKE keys) ON COMMIT DELETE ROWS`
	importInsert      = `INSERT INTO keys (` + keyColumns + `) SELECT ` + keyColumns + ` FROM ` + importTable + `
		ORDER BY ord ON CONFLICT DO NOTHING`
)

// ImportKeys inserts every key whose hash is not stored yet (in any
// tenant), skips the others (of a hash twice in ks, the first), and
// returns how many it inserted. All keys must belong to one tenant;
// ENotFound if it does not exist. No keys ends an import; nothing is kept
// from one call to the next, so there is nothing to let go of.
func (t *Tx) ImportKeys(ks []*latchkey.Key) (int, error) {
	if len(ks) == 0 {
		return 0, nil
	}
	if _, err := t.Tenant(ks[0].Tenant); err != nil {
		return 0, err
	}
	rows := make([][]any, len(ks))
	var (
		prev *latchkey.Key
		enc  keyEncoded
		err  error
	)
	for i, k := range ks {
		if k.Tenant != ks[0].Tenant {
			return 0, fmt.Errorf("postgres: import keys: one tenant per call")
		}
		// The keys of a plain, sha256 or env import share one template's
		// lists and maps: encode them once.
		if prev == nil || !sameEncodedFields(k, prev) {
			if enc, err = encodeKey(k); err != nil {
				return 0, err
			}
		}
		prev = k
		rows[i] = append([]any{int64(i)}, keyValues(k, enc)...)
	}
	if _, err := t.exec("import keys", createImportTable); err != nil {
		return 0, err
	}
	if _, err := t.tx.CopyFrom(t.ctx, pgx.Identifier{importTable}, append([]string{"ord"}, keyColumnList...), pgx.CopyFromRows(rows)); err != nil {
		return 0, t.fail("import keys", err)
	}
	tag, err := t.exec("import keys", importInsert)
	if err != nil {
		return 0, err
	}
	if _, err := t.exec("import keys", `TRUNCATE `+importTable); err != nil {
		return 0, err
	}
	if tag.RowsAffected() > 0 {
		// Nodes may hold "no such key" for any of the new hashes.
		t.change(latchkey.Change{Kind: latchkey.ChangeNewKeys})
	}
	return int(tag.RowsAffected()), nil
}

// keyValues is keyArgs with the list and map columns already encoded.
func keyValues(k *latchkey.Key, e keyEncoded) []any {
	v := []any{k.ID, k.Tenant, k.Name, k.Owner, k.Environment, k.Prefix, k.Start, k.Hash[:],
		e.scopes, e.resources, e.meta, e.ipAllow, ts(k.ExpiresAt), string(k.State), k.StateReason,
		ts(k.SuspendedUntil), nullString(k.ParentID), nullString(k.RotatedFrom), nullString(k.RotatedTo), ts(k.GraceUntil),
		ts(k.CreatedAt), ts(k.UpdatedAt), ts(k.RevokedAt), nullString(k.SuspendedBy),
		e.countries, e.windows, e.rates, e.quota, int32(k.MaxConcurrent), int64(k.LeaseTTL),
		ts(k.LastUsedAt), k.Policy, k.Condition}
	if len(v) != keyColumnCount {
		panic("postgres: keyValues out of step with keyColumns")
	}
	return v
}

// sameEncodedFields reports whether a and b hold the very same lists and
// maps (not equal ones: the same memory), so they encode the same.
func sameEncodedFields(a, b *latchkey.Key) bool {
	return sameSlice(a.Scopes, b.Scopes) && sameSlice(a.Resources, b.Resources) &&
		sameSlice(a.IPAllow, b.IPAllow) && sameSlice(a.Countries, b.Countries) &&
		sameSlice(a.TimeWindows, b.TimeWindows) && sameSlice(a.RateLimits, b.RateLimits) &&
		a.Quota == b.Quota &&
		(a.Meta == nil) == (b.Meta == nil) && reflect.ValueOf(a.Meta).UnsafePointer() == reflect.ValueOf(b.Meta).UnsafePointer()
}

func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && (a == nil) == (b == nil) && (len(a) == 0 || &a[0] == &b[0])
}
