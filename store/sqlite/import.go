package sqlite

import (
	"database/sql"
	"encoding/hex"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/latchkeyhq/latchkey"
)

// importKey inserts one key unless its hash (or id) is stored already:
// the keys of a JSONL import, and those a run cannot carry (importRun).
//
// Where an import's time goes (CPU profile of a 1,000,000-key plaintext
// import over HTTP, server on one core, 2026-12-06): three quarters in
// SQLite, of which a third B-tree inserts (keys_hash at a random page per
// key; the rows and the indexes on id at their ends, as the ids come in
// order), a tenth committing (writing the WAL, checkpointing), a tenth
// cutting the run strings (substr); the rest parsing and hashing the
// lines, sorting each batch by hash and the Go garbage collector.
// Before runs and ids in order (a statement per row, ids at random
// places), the same import ran at 24,000 keys/s; with them at 58,000.
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
func (t *Tx) ImportKeys(ks []*latchkey.Key) (created int, err error) {
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
	// Statements prepared when first needed: a row at a time (""), and
	// runs by their layout (see runLayout).
	stmts := map[string]*sql.Stmt{}
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	args := make([]any, keyColumnCount+1)
	var (
		prev *latchkey.Key
		j    keyJSON
		buf  []byte
	)
	for i := 0; i < len(ks); {
		k := ks[i]
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
		// A run of keys that differ only in id, hash, prefix, start and
		// owner (a plain, sha256 or env import) goes in by the
		// thousand, through one statement reading them from JSON.
		n := 1
		for n < importRunMax && i+n < len(ks) && sameTemplate(k, ks[i+n]) {
			n++
		}
		layout, a := "", args[:keyColumnCount]
		if n >= importRunMin {
			var lens *[3]int
			if u := sameLengths(ks[i : i+n]); u >= importRunMin {
				n, lens = u, new(runLengths(k))
			}
			buf, n = appendRun(buf[:0], ks[i:i+n], lens)
			layout = runLayout(lens)
		}
		if n >= importRunMin {
			args[keyColumnCount] = string(buf)
			a = args
		} else {
			n, layout = 1, ""
		}
		st := stmts[layout]
		if st == nil {
			q := importKey
			if layout != "" {
				q = importRun(layout)
			}
			if st, err = t.tx.PrepareContext(t.ctx, q); err != nil {
				return created, fail(t.ctx, "import keys", err)
			}
			stmts[layout] = st
		}
		res, err := st.ExecContext(t.ctx, a...)
		if err != nil {
			return created, fail(t.ctx, "import keys", err)
		}
		c, err := res.RowsAffected()
		if err != nil {
			return created, fail(t.ctx, "import keys", err)
		}
		created += int(c)
		i += n
	}
	return created, nil
}

// Runs of keys sharing a template: shorter ones are inserted a row at a
// time, longer ones in parts of importRunMax (a thousand rows a statement
// was the fastest of 250, 1,000 and 5,000 for a million keys).
const (
	importRunMin = 16
	importRunMax = 1000
)

// importRun is the statement that inserts a run of keys in a layout: the
// template's columns are bound as for importKey (the varying ones are
// bound too and not used), and the varying columns come from the last
// parameter, a JSON array with a string per key as appendRun writes it.
// Compared with a statement per row this saves binding 31 arguments and a
// trip through database/sql per key, which is most of what is left once
// the rows go in id and hash order. A string per key cut up with substr
// costs a third of what an array per key read with ->> did (json_each
// turns each inner array back into text and each ->> parses it again),
// and cut at fixed places (when a run's ids, prefixes and starts have the
// same lengths, as in most imports) a third less again.
//
// In layout "v" (lengths vary) a key is an importRow (rows.go); in a
// layout "I.P.S" the lengths of id, prefix and start are the same for the
// whole run, so a key's string is the hash in hex, then id, prefix, start
// and owner, with no lengths.
func importRun(layout string) string {
	var varying map[string]string
	if layout == "v" {
		varying = map[string]string{"hash": "unhex(" + importRow.textSQL(0) + ")"}
		for i, c := range []string{"id", "prefix", "start", "owner"} {
			varying[c] = importRow.textSQL(i + 1)
		}
	} else {
		l := strings.Split(layout, ".")
		id, prefix, start := l[0], l[1], l[2]
		off := "65"
		varying = map[string]string{"hash": "unhex(substr(j.value, 1, 64))"}
		for _, f := range []struct{ col, n string }{{"id", id}, {"prefix", prefix}, {"start", start}} {
			varying[f.col] = "substr(j.value, " + off + ", " + f.n + ")"
			off += " + " + f.n
		}
		varying["owner"] = "substr(j.value, " + off + ")"
	}
	var sel []string
	for i, c := range strings.Split(keyColumns, ",") {
		c = strings.TrimSpace(c)
		if v, ok := varying[c]; ok {
			sel = append(sel, v)
		} else {
			sel = append(sel, "?"+strconv.Itoa(i+1))
		}
	}
	return "INSERT OR IGNORE INTO keys (" + keyColumns + ") SELECT " + strings.Join(sel, ", ") +
		" FROM json_each(?" + strconv.Itoa(keyColumnCount+1) + ") AS j"
}

// importRow is a key of a run in layout "v": the hash in hex, id, prefix,
// start and owner.
var importRow = rowShape{texts: 5}

// runLayout names the layout of a run: "v" without fixed lengths.
func runLayout(lens *[3]int) string {
	if lens == nil {
		return "v"
	}
	return fmt.Sprintf("%d.%d.%d", lens[0], lens[1], lens[2])
}

// runLengths returns the lengths in characters of k's id, prefix and
// start.
func runLengths(k *latchkey.Key) [3]int {
	return [3]int{utf8.RuneCountInString(k.ID), utf8.RuneCountInString(k.Prefix), utf8.RuneCountInString(k.Start)}
}

// sameLengths returns how many keys from the first have the first's id,
// prefix and start lengths (in bytes; appendRun then checks the strings
// are UTF-8, and equal bytes of ASCII or not, the lengths in characters
// are checked there too).
func sameLengths(ks []*latchkey.Key) int {
	f := ks[0]
	n := 1
	for n < len(ks) && len(ks[n].ID) == len(f.ID) && len(ks[n].Prefix) == len(f.Prefix) && len(ks[n].Start) == len(f.Start) {
		n++
	}
	return n
}

// appendRun appends the varying columns of ks as importRun reads them, with
// lens nil in layout "v", else in the fixed layout of lens, and returns
// how many keys it took: all of them, or those before the first that the
// layout cannot carry (a string that is not valid UTF-8, which JSON text
// cannot hold as it is, a length other than lens', or in "v" a field
// over rowTextMax characters); importKey binds those unchanged.
func appendRun(buf []byte, ks []*latchkey.Key, lens *[3]int) ([]byte, int) {
	buf = append(buf, '[')
	n := 0
	for _, k := range ks {
		mark := len(buf)
		if n > 0 {
			buf = append(buf, ',')
		}
		if lens == nil {
			var err error
			if buf, err = importRow.appendRow(buf, []string{hex.EncodeToString(k.Hash[:]), k.ID, k.Prefix, k.Start, k.Owner}, nil); err != nil {
				buf = buf[:mark]
				break
			}
			n++
			continue
		}
		if !utf8.ValidString(k.ID) || !utf8.ValidString(k.Prefix) || !utf8.ValidString(k.Start) || !utf8.ValidString(k.Owner) || runLengths(k) != *lens {
			buf = buf[:mark]
			break
		}
		buf = append(buf, '"')
		buf = hex.AppendEncode(buf, k.Hash[:])
		for _, s := range [...]string{k.ID, k.Prefix, k.Start, k.Owner} {
			buf = appendJSONStringBody(buf, s)
		}
		buf = append(buf, '"')
		n++
	}
	return append(buf, ']'), n
}

// sameTemplate reports whether a and b differ at most in id, hash,
// prefix, start and owner, the columns a run takes per key.
func sameTemplate(a, b *latchkey.Key) bool {
	return a.Tenant == b.Tenant && a.Name == b.Name && a.Environment == b.Environment &&
		sameJSONFields(a, b) && a.ExpiresAt.Equal(b.ExpiresAt) && a.State == b.State &&
		a.StateReason == b.StateReason && a.SuspendedUntil.Equal(b.SuspendedUntil) &&
		a.ParentID == b.ParentID && a.RotatedFrom == b.RotatedFrom && a.RotatedTo == b.RotatedTo &&
		a.GraceUntil.Equal(b.GraceUntil) && a.CreatedAt.Equal(b.CreatedAt) &&
		a.UpdatedAt.Equal(b.UpdatedAt) && a.RevokedAt.Equal(b.RevokedAt) &&
		a.SuspendedBy == b.SuspendedBy && a.MaxConcurrent == b.MaxConcurrent &&
		a.LeaseTTL == b.LeaseTTL && a.LastUsedAt.Equal(b.LastUsedAt) && a.Policy == b.Policy &&
		a.Condition == b.Condition
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
		int64(k.MaxConcurrent), int64(k.LeaseTTL), orNil(micros(k.LastUsedAt)), k.Policy, k.Condition)
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
