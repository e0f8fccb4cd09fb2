package sqlite

import (
	"database/sql"
	"fmt"
	"strings"

	"github.com/latchkeyhq/latchkey"
	sqlite3 "modernc.org/sqlite/lib"
)

// importRows is how many keys one INSERT carries: 31 columns each, under
// SQLite's limit of 32,766 bound values per statement.
const importRows = 500

// keyColumnCount is the number of columns in keyColumns.
var keyColumnCount = strings.Count(keyColumns, ",") + 1

// importStatement is INSERT OR IGNORE … VALUES (…),(…) … for n keys: a
// key whose hash (or id) is stored already is skipped.
func importStatement(n int) string {
	row := "(" + strings.Repeat("?,", keyColumnCount-1) + "?)"
	var b strings.Builder
	b.Grow(64 + len(keyColumns) + n*(len(row)+1))
	b.WriteString("INSERT OR IGNORE INTO keys (" + keyColumns + ") VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	return b.String()
}

// ImportKeys inserts every key whose hash is not stored yet (in any
// tenant), skips the others (a hash twice in ks is inserted once), and
// returns how many it inserted. ENotFound if a key's tenant does not exist.
func (t *tx) ImportKeys(ks []*latchkey.Key) (int, error) {
	// A batch dirties a page of the hash index per key: let the writer's
	// page cache hold them rather than spill them to the WAL one by one
	// (SQLite allocates cache pages only as they are used).
	// A multi-row INSERT that may abort midway keeps a statement journal
	// (a copy of every page it touches, to undo itself alone). OR IGNORE
	// and foreign keys deferred to the commit mean it cannot abort, so it
	// needs none; the tenant is checked here instead.
	if len(ks) > 0 {
		if _, err := t.Tenant(ks[0].Tenant); err != nil {
			return 0, err
		}
	}
	for _, k := range ks {
		if k.Tenant != ks[0].Tenant {
			return 0, fmt.Errorf("sqlite: import keys: one tenant per call")
		}
	}
	for _, p := range []string{`PRAGMA cache_size = -65536`, `PRAGMA defer_foreign_keys = ON`} {
		if _, err := t.tx.ExecContext(t.ctx, p); err != nil {
			return 0, fail(t.ctx, "import keys", err)
		}
	}
	created := 0
	var full *sql.Stmt
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	args := make([]any, 0, importRows*keyColumnCount)
	for len(ks) > 0 {
		n := min(len(ks), importRows)
		args = args[:0]
		for _, k := range ks[:n] {
			named, err := keyArgs(k)
			if err != nil {
				return created, err
			}
			for _, a := range named {
				args = append(args, a.(sql.NamedArg).Value)
			}
		}
		var res sql.Result
		var err error
		if n == importRows {
			if full == nil {
				if full, err = t.tx.PrepareContext(t.ctx, importStatement(importRows)); err != nil {
					return created, fail(t.ctx, "import keys", err)
				}
			}
			res, err = full.ExecContext(t.ctx, args...)
		} else {
			res, err = t.tx.ExecContext(t.ctx, importStatement(n), args...)
		}
		switch {
		case constraint(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return created, latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", ks[0].Tenant)
		case err != nil:
			return created, fail(t.ctx, "import keys", err)
		}
		c, err := res.RowsAffected()
		if err != nil {
			return created, fail(t.ctx, "import keys", err)
		}
		created += int(c)
		ks = ks[n:]
	}
	return created, nil
}
