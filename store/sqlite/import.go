package sqlite

import (
	"database/sql"
	"fmt"
	"reflect"
	"strings"

	"github.com/latchkeyhq/latchkey"
)

// importKey inserts one key unless its hash (or id) is stored already.
//
// One row per statement, prepared once per call: a statement that writes
// several rows into a STRICT table (its type checks may abort it midway)
// keeps a statement journal, a copy of every page it touches, which cost
// more than the statements it saved (measured again with BenchmarkImport
// in keys, 64 rows a statement: 20 % fewer keys/s, twice the system time
// as the journal spills to a temporary file).
//
// Where an import's time goes (CPU profile of a 1,000,000-key import over
// HTTP): about two thirds in SQLite inserting rows (B-tree seeks and
// inserts into the table and its indexes, keys_hash at a random page per
// key, page cache lookups), a tenth binding the 31 arguments, a tenth
// the Go garbage collector, a few percent writing the WAL and
// checkpointing; parsing, hashing and ids about 2 %.
var importKey = "INSERT OR IGNORE INTO keys (" + keyColumns + ") VALUES (" +
	strings.TrimSuffix(strings.Repeat("?,", keyColumnCount), ",") + ")"

var keyColumnCount = strings.Count(keyColumns, ",") + 1

// importCacheKiB is the page cache of the write connection while it
// imports. Each key of a batch dirties a random page of the hash index
// (keys_hash), and a dirty page that does not fit the cache is written to
// the WAL before the commit, maybe more than once; a clean page that does
// not fit is read again by the next batch. This cache holds the whole
// index of a few million keys and a batch's new rows. SQLite allocates
// cache pages only as it uses them; the cache keeps its size from batch to
// batch and returns to normalCacheKiB when the import ends (ImportKeys with
// no keys).
const importCacheKiB = 512 << 10

// normalCacheKiB is the page cache of the write connection otherwise:
// SQLite's default (the connection string sets none).
const normalCacheKiB = 2000

// ImportKeys inserts every key whose hash is not stored yet (in any
// tenant), skips the others (a hash twice in ks is inserted once), and
// returns how many it inserted. ENotFound if the keys' tenant does not
// exist; all keys must belong to one tenant. No keys ends an import: the
// write connection's page cache shrinks back to its normal size.
func (t *tx) ImportKeys(ks []*latchkey.Key) (created int, err error) {
	if len(ks) == 0 {
		// Pages past the normal size are freed now (they are all clean
		// between transactions).
		if _, err := t.tx.ExecContext(t.ctx, fmt.Sprintf(`PRAGMA cache_size = %d`, -normalCacheKiB)); err != nil {
			return 0, fail(t.ctx, "import keys", err)
		}
		return 0, nil
	}
	if _, err := t.Tenant(ks[0].Tenant); err != nil {
		return 0, err
	}
	if _, err := t.tx.ExecContext(t.ctx, fmt.Sprintf(`PRAGMA cache_size = %d`, -importCacheKiB)); err != nil {
		return 0, fail(t.ctx, "import keys", err)
	}
	st, err := t.tx.PrepareContext(t.ctx, importKey)
	if err != nil {
		return 0, fail(t.ctx, "import keys", err)
	}
	defer st.Close()
	args := make([]any, keyColumnCount)
	var (
		prev *latchkey.Key
		j    keyJSON
	)
	for _, k := range ks {
		if k.Tenant != ks[0].Tenant {
			return created, fmt.Errorf("sqlite: import keys: one tenant per call")
		}
		// The keys of a plain, sha256 or env import share one
		// template's lists and maps: encode them once.
		if prev == nil || !sameJSONFields(k, prev) {
			if j, err = encodeKeyJSON(k); err != nil {
				return created, err
			}
		}
		prev = k
		importArgs(args, k, &j)
		res, err := st.ExecContext(t.ctx, args...)
		if err != nil {
			return created, fail(t.ctx, "import keys", err)
		}
		c, err := res.RowsAffected()
		if err != nil {
			return created, fail(t.ctx, "import keys", err)
		}
		created += int(c)
	}
	return created, nil
}

// importArgs fills args with k's columns in keyColumns order, as plain
// values (no driver.Valuer to call) and j for the JSON columns.
func importArgs(args []any, k *latchkey.Key, j *keyJSON) {
	orNil := func(n sql.NullInt64) any {
		if n.Valid {
			return n.Int64
		}
		return nil
	}
	str := func(s sql.NullString) any {
		if s.Valid {
			return s.String
		}
		return nil
	}
	a := args[:0]
	a = append(a, k.ID, k.Tenant, k.Name, k.Owner, k.Environment, k.Prefix, k.Start, k.Hash[:],
		j.scopes, j.resources, j.meta, j.ipAllow,
		orNil(micros(k.ExpiresAt)), string(k.State), k.StateReason, orNil(micros(k.SuspendedUntil)),
		str(nullString(k.ParentID)), str(nullString(k.RotatedFrom)), str(nullString(k.RotatedTo)),
		orNil(micros(k.GraceUntil)), orNil(micros(k.CreatedAt)), orNil(micros(k.UpdatedAt)),
		orNil(micros(k.RevokedAt)), str(nullString(k.SuspendedBy)),
		j.countries, j.windows, j.rates, str(j.quota),
		int64(k.MaxConcurrent), int64(k.LeaseTTL), orNil(micros(k.LastUsedAt)))
	if len(a) != keyColumnCount {
		panic("sqlite: importArgs out of step with keyColumns")
	}
}

// sameJSONFields reports whether a and b hold the very same lists and maps
// (not equal ones: the same memory), so their JSON columns are the same.
func sameJSONFields(a, b *latchkey.Key) bool {
	return sameSlice(a.Scopes, b.Scopes) && sameSlice(a.Resources, b.Resources) &&
		sameSlice(a.IPAllow, b.IPAllow) && sameSlice(a.Countries, b.Countries) &&
		sameSlice(a.TimeWindows, b.TimeWindows) && sameSlice(a.RateLimits, b.RateLimits) &&
		a.Quota == b.Quota &&
		(a.Meta == nil) == (b.Meta == nil) && reflect.ValueOf(a.Meta).UnsafePointer() == reflect.ValueOf(b.Meta).UnsafePointer()
}

func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && (a == nil) == (b == nil) && (len(a) == 0 || &a[0] == &b[0])
}
