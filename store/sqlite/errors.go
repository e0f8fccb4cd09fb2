package sqlite

import (
	"context"
	"errors"
	"fmt"

	"github.com/latchkeyhq/latchkey"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// fail puts an error from database/sql or SQLite into the store's error
// vocabulary: the context's own error if the context ended (SQLite reports
// an interrupted statement as SQLITE_INTERRUPT, database/sql a rolled-back
// transaction as sql.ErrTxDone, and neither says why), EUnavailable if the
// file cannot be read or written, else the error with op for the log.
// Errors that mean ENotFound or EConflict depend on the statement, so the
// callers handle those first.
func fail(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("sqlite: %s: %w", op, ctxErr)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR,
			sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_FULL, sqlite3.SQLITE_PROTOCOL:
			return unavailable(op, err)
		}
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

// unavailable returns an EUnavailable error that still carries err for the
// log; latchkey.ErrorCode and ErrorMessage find the *latchkey.Error first.
func unavailable(op string, err error) error {
	return fmt.Errorf("sqlite: %s: %w: %w", op,
		latchkey.Errorf(latchkey.EUnavailable, "the database is unavailable"), err)
}

// constraint returns the extended SQLite result code of a constraint
// violation (sqlite3.SQLITE_CONSTRAINT_UNIQUE and the like), or 0 if err is
// not one.
func constraint(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT {
		return se.Code()
	}
	return 0
}

// isDuplicate reports whether err violates a primary key or unique index.
func isDuplicate(err error) bool {
	switch constraint(err) {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return true
	}
	return false
}
