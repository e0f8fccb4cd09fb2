package sqlite

import (
	"database/sql"
	"fmt"
	"strings"

	"github.com/latchkeyhq/latchkey"
)

// importKey inserts one key unless its hash (or id) is stored already.
//
// One row per statement, prepared once per call: a statement that writes
// several rows into a STRICT table (its type checks may abort it midway)
// keeps a statement journal, a copy of every page it touches, which cost
// more than the statements it saved (measured with BenchmarkImport in
// keys).
var importKey = "INSERT OR IGNORE INTO keys (" + keyColumns + ") VALUES (" +
	strings.TrimSuffix(strings.Repeat("?,", strings.Count(keyColumns, ",")+1), ",") + ")"

// ImportKeys inserts every key whose hash is not stored yet (in any
// tenant), skips the others (a hash twice in ks is inserted once), and
// returns how many it inserted. ENotFound if the keys' tenant does not
// exist; all keys must belong to one tenant.
func (t *tx) ImportKeys(ks []*latchkey.Key) (int, error) {
	if len(ks) == 0 {
		return 0, nil
	}
	if _, err := t.Tenant(ks[0].Tenant); err != nil {
		return 0, err
	}
	// A batch dirties a page of the hash index per key: let the writer's
	// page cache hold them rather than spill them to the WAL one by one
	// (SQLite allocates cache pages only as they are used).
	if _, err := t.tx.ExecContext(t.ctx, `PRAGMA cache_size = -65536`); err != nil {
		return 0, fail(t.ctx, "import keys", err)
	}
	st, err := t.tx.PrepareContext(t.ctx, importKey)
	if err != nil {
		return 0, fail(t.ctx, "import keys", err)
	}
	defer st.Close()
	created := 0
	var args []any
	for _, k := range ks {
		if k.Tenant != ks[0].Tenant {
			return created, fmt.Errorf("sqlite: import keys: one tenant per call")
		}
		named, err := keyArgs(k)
		if err != nil {
			return created, err
		}
		args = args[:0]
		for _, a := range named {
			args = append(args, a.(sql.NamedArg).Value)
		}
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
