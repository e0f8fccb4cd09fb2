package client

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/latchkeyhq/latchkey/wire"
)

// Error codes, the same vocabulary (and the same strings) the Latchkey
// server answers with, so a program can switch on them whether an error came
// from the server or from this package.
const (
	CodeInvalid         = wire.EInvalid
	CodeUnauthenticated = wire.EUnauthenticated
	CodeForbidden       = wire.EForbidden
	CodeNotFound        = wire.ENotFound
	CodeConflict        = wire.EConflict
	CodeRateLimited     = wire.ERateLimited
	CodeTooLarge        = wire.ETooLarge
	CodeUnavailable     = wire.EUnavailable
	CodeInternal        = wire.EInternal
)

// Error is every error this package returns. Code is one of the Code*
// constants; Message is safe to show and log: it never holds a key or a
// secret value.
type Error struct {
	Code    string
	Message string
	// RequestID is the server's id for the request, when it answered; the
	// server's log has the same id.
	RequestID string
	// RetryAfter is how long the server asked the caller to wait (429), or 0.
	RetryAfter time.Duration
	// Attempts lists, for a secret that no source could give, what each
	// source answered, in the order they were tried.
	Attempts []Attempt
}

func (e *Error) Error() string {
	if e.RequestID != "" {
		return e.Code + ": " + e.Message + " (request_id " + e.RequestID + ")"
	}
	return e.Code + ": " + e.Message
}

// Is makes errors.Is(err, &Error{Code: c}) match any *Error with code c.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Attempt is one source a secret was looked for in, and why it could not
// give it.
type Attempt struct {
	Source  string // "broker", "cache", "config", "env"
	Where   string // the URL, file or variable looked at
	Problem string // what went wrong
	Fix     string // what the user can do about it
}

func (a Attempt) String() string {
	s := a.Source
	if a.Where != "" {
		s += " (" + a.Where + ")"
	}
	s += ": " + a.Problem
	if a.Fix != "" {
		s += " — " + a.Fix
	}
	return s
}

// ErrorCode returns the code of err: "" for nil, the code of the first
// *Error in its chain, else CodeInternal.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

func errorf(code, msg string) *Error { return &Error{Code: code, Message: msg} }

// statusCode maps an HTTP status to the API's code for answers without a
// readable error body (a proxy in between may answer with HTML): the
// server's own table.
func statusCode(status int) string { return wire.CodeForStatus(status) }

// codeStatus is the inverse, for the middleware's answers.
func codeStatus(code string) int { return wire.HTTPStatus(code) }

// errorBody is the API's error shape:
// {"error": {"code", "message", "request_id"}}.
type errorBody = wire.ErrorBody

type errorDetail = wire.ErrorDetail

// responseError turns a non-2xx answer into an *Error: the server's code
// and message when the body is the API's error shape, else the code for
// the status. The message is clipped, so an unexpected body cannot flood a
// log.
func responseError(res *http.Response, raw []byte) *Error {
	e := &Error{RequestID: res.Header.Get("X-Request-Id"), RetryAfter: wire.ParseRetryAfter(res.Header.Get("Retry-After"))}
	var body errorBody
	if json.Unmarshal(raw, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message = body.Error.Code, clip(body.Error.Message, 300)
		if body.Error.RequestID != "" {
			e.RequestID = body.Error.RequestID
		}
		if !wire.KnownCode(e.Code) {
			e.Code = statusCode(res.StatusCode)
		}
		return e
	}
	e.Code = statusCode(res.StatusCode)
	e.Message = "the server answered " + res.Status
	return e
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
