package admin

import (
	"errors"
	"strconv"
	"time"

	"github.com/latchkeyhq/latchkey/wire"
)

// Error is a request the server refused (a non-2xx answer), or a 2xx
// answer this client could not read. Its Message is safe to show and log.
type Error struct {
	// Code is a wire error code (wire.EInvalid, …): the server's own when
	// its answer had the API's error body, else wire.CodeForStatus of the
	// status, so that a proxy's 502, 503 or 504 page is "unavailable".
	Code string
	// Status is the answer's HTTP status. A 2xx Status means the answer
	// came but was not what this client reads (Code is then internal); 0
	// means the request was not sent (New, a request that cannot be
	// built or encoded).
	Status int
	// Message is the server's message, or what this client found.
	Message string
	// RequestID is the server's id for the request (its log has the same),
	// from the error body or the X-Request-Id header; "" if none.
	RequestID string
	// RetryAfter is how long the server asked the caller to wait (429,
	// 503), or 0.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	s := e.Code + ": " + e.Message
	if e.RequestID != "" {
		s += " (request_id " + e.RequestID + ")"
	}
	return s
}

// Is makes errors.Is(err, &Error{Code: c}) match any *Error with code c.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Refused reports whether the server refused the request (a non-2xx
// answer), as opposed to answering in a way this client cannot read.
func (e *Error) Refused() bool { return e.Status != 0 && (e.Status < 200 || e.Status > 299) }

// TransportError is a call that got no complete answer: the server could
// not be reached, did not answer within the client's timeout, or its
// answer broke off. Err is the cause (a *net.OpError, a TLS certificate
// error, …), for errors.Is and errors.As.
type TransportError struct {
	Method string
	// URL is the route's URL without its query.
	URL string
	// Status is the answer's status when its body broke off; 0 when no
	// answer came.
	Status int
	// Timeout says the client's timeout ran out.
	Timeout bool
	Err     error
}

func (e *TransportError) Error() string {
	switch {
	case e.Timeout:
		return e.Method + " " + e.URL + ": no answer in time: " + e.Err.Error()
	case e.Status != 0:
		return e.Method + " " + e.URL + ": the answer (" + strconv.Itoa(e.Status) + ") broke off: " + e.Err.Error()
	}
	return e.Method + " " + e.URL + ": " + e.Err.Error()
}

func (e *TransportError) Unwrap() error { return e.Err }

// ErrorCode is the wire code of err: "" for nil, the Code of an *Error in
// its chain, unavailable for a *TransportError, else internal (a context's
// error included).
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var te *TransportError
	if errors.As(err, &te) {
		return wire.EUnavailable
	}
	return wire.EInternal
}
