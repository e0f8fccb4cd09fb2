package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/latchkeyhq/latchkey"
)

// SQLSTATE codes this package looks for.
const (
	codeSerializationFailure = "40001"
	codeDeadlock             = "40P01"
	codeUniqueViolation      = "23505"
)

// fail puts an error from pgx or PostgreSQL into the store's error
// vocabulary, as store/sqlite's fail does: the context's own error if the
// context ended, EUnavailable if the database cannot be reached or asks to
// be tried again (it is shutting down, out of connections, or failed a
// transaction because of a concurrent one), else the error with op for the
// log. Errors that mean ENotFound or EConflict depend on the statement, so
// the statements that can meet them avoid them (ON CONFLICT DO NOTHING, an
// INSERT … SELECT of the parent row) and say which it was.
func fail(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("postgres: %s: %w", op, ctxErr)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	if isUnavailable(err) {
		return unavailable(op, err)
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// unavailable returns an EUnavailable error that still carries err for the
// log; latchkey.ErrorCode and ErrorMessage find the *latchkey.Error first.
func unavailable(op string, err error) error {
	return fmt.Errorf("postgres: %s: %w: %w", op,
		latchkey.Errorf(latchkey.EUnavailable, "the database is unavailable"), err)
}

// isUnavailable reports whether err says the database could not be reached
// or cannot serve now, rather than that the statement is wrong.
func isUnavailable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case retryable(err),
			strings.HasPrefix(pe.Code, "08"), // connection exception
			strings.HasPrefix(pe.Code, "53"), // insufficient resources (too many connections, disk full)
			strings.HasPrefix(pe.Code, "57"), // operator intervention (shutdown, cancelled by the server)
			strings.HasPrefix(pe.Code, "58"): // system error (I/O)
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		pgconn.Timeout(err) || pgconn.SafeToRetry(err)
}

// retryable reports whether err is PostgreSQL failing a transaction because
// of a concurrent one: the same transaction run again may succeed.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == codeSerializationFailure || pe.Code == codeDeadlock)
}

// sqlState returns the SQLSTATE of a PostgreSQL error, "" for another.
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
