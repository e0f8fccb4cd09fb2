// Package latchkey holds the domain of the Latchkey API key service: tokens,
// keys, tenants, scopes, durations and the one error vocabulary that every
// other package speaks. It imports nothing but the standard library and
// wire, the API's vocabulary.
package latchkey

import (
	"errors"
	"fmt"

	"github.com/latchkeyhq/latchkey/wire"
)

// Error codes. Each maps to exactly one HTTP status (see HTTPStatus); they
// are the wire package's, which the Go client and the CLI use too.
const (
	EInvalid         = wire.EInvalid
	EUnauthenticated = wire.EUnauthenticated
	EForbidden       = wire.EForbidden
	ENotFound        = wire.ENotFound
	EConflict        = wire.EConflict
	ERateLimited     = wire.ERateLimited
	ETooLarge        = wire.ETooLarge
	EUnavailable     = wire.EUnavailable
	EInternal        = wire.EInternal
)

// Error is an error whose Code is one of the E* constants and whose Message
// is safe to show to the caller. Anything that is not an *Error is reported
// to callers as EInternal, with the detail kept in the server log.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Is makes errors.Is(err, &Error{Code: c}) match any *Error with code c.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err: "" for nil, the code of the first *Error
// in its chain, else EInternal.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the caller-safe message of err; errors that are not
// *Error get a generic message so that internals never reach a caller.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error; see the server log for this request id"
}

// HTTPStatus returns the HTTP status for an error code (500 for unknown
// codes): wire.HTTPStatus.
func HTTPStatus(code string) int { return wire.HTTPStatus(code) }

// CodeForStatus is the inverse of HTTPStatus, for clients that receive an
// error without a body they can read: wire.CodeForStatus (502 and 504 are
// unavailable, as 503).
func CodeForStatus(status int) string { return wire.CodeForStatus(status) }
