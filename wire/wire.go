// Package wire is the vocabulary of Latchkey's HTTP API, written once and
// used by the server, the Go client and the CLI: the error codes and the
// HTTP status of each, the verify codes in the order of the checks and the
// status a denial answers with, and the error body's shape. It imports
// only the standard library, so the Go client (which promises the same)
// can use it.
package wire

import (
	"net/http"
	"strings"
	"time"
)

// Error codes: every non-2xx answer's error.code, each with one HTTP
// status (HTTPStatus).
const (
	EInvalid         = "invalid"
	EUnauthenticated = "unauthenticated"
	EForbidden       = "forbidden"
	ENotFound        = "not_found"
	EConflict        = "conflict"
	ERateLimited     = "rate_limited"
	ETooLarge        = "too_large"
	EUnavailable     = "unavailable"
	EInternal        = "internal"
)

// ErrorCodes lists every error code.
var ErrorCodes = [...]string{
	EInvalid, EUnauthenticated, EForbidden, ENotFound, EConflict,
	ERateLimited, ETooLarge, EUnavailable, EInternal,
}

// HTTPStatus returns the HTTP status of an error code (500 for a code
// that is not one).
func HTTPStatus(code string) int {
	switch code {
	case EInvalid:
		return http.StatusBadRequest
	case EUnauthenticated:
		return http.StatusUnauthorized
	case EForbidden:
		return http.StatusForbidden
	case ENotFound:
		return http.StatusNotFound
	case EConflict:
		return http.StatusConflict
	case ERateLimited:
		return http.StatusTooManyRequests
	case ETooLarge:
		return http.StatusRequestEntityTooLarge
	case EUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// CodeForStatus is the error code for an answer without a readable error
// body, as a proxy in front of a server may give: the inverse of
// HTTPStatus, where 502 and 504 (the proxy could not reach a server, or
// not in time) are unavailable like 503, any other 5xx internal and any
// other status invalid.
func CodeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return EInvalid
	case http.StatusUnauthorized:
		return EUnauthenticated
	case http.StatusForbidden:
		return EForbidden
	case http.StatusNotFound:
		return ENotFound
	case http.StatusConflict:
		return EConflict
	case http.StatusTooManyRequests:
		return ERateLimited
	case http.StatusRequestEntityTooLarge:
		return ETooLarge
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return EUnavailable
	}
	if status >= 500 {
		return EInternal
	}
	return EInvalid
}

// ErrorBody is the shape of every non-2xx JSON answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is an error answer's code, caller-safe message and the
// request id the server logged it under.
type ErrorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// Verify codes: a verification's code, VALID or why the key was refused.
const (
	CodeValid               = "VALID"
	CodeMalformed           = "MALFORMED"
	CodeNotFound            = "NOT_FOUND"
	CodeExpired             = "EXPIRED"
	CodeRevoked             = "REVOKED"
	CodeSuspended           = "SUSPENDED"
	CodeIPNotAllowed        = "IP_NOT_ALLOWED"
	CodeOutsideTimeWindow   = "OUTSIDE_TIME_WINDOW"
	CodeInsufficientScope   = "INSUFFICIENT_SCOPE"
	CodeResourceNotAllowed  = "RESOURCE_NOT_ALLOWED"
	CodeConditionFailed     = "CONDITION_FAILED"
	CodeRateLimited         = "RATE_LIMITED"
	CodeQuotaExceeded       = "QUOTA_EXCEEDED"
	CodeConcurrencyExceeded = "CONCURRENCY_EXCEEDED"
)

// VerifyCodes lists every verify code in the order of the checks;
// VerifyCodeIndex is its inverse. Packages that count by code index arrays
// with it instead of keeping lists of their own.
var VerifyCodes = [...]string{
	CodeValid, CodeMalformed, CodeNotFound, CodeExpired, CodeRevoked, CodeSuspended,
	CodeIPNotAllowed, CodeOutsideTimeWindow, CodeInsufficientScope, CodeResourceNotAllowed,
	CodeConditionFailed,
	CodeRateLimited, CodeQuotaExceeded, CodeConcurrencyExceeded,
}

// VerifyCodeIndex returns code's index in VerifyCodes, or -1. It is a
// switch, not a map, because it runs on the verify path.
func VerifyCodeIndex(code string) int {
	switch code {
	case CodeValid:
		return 0
	case CodeMalformed:
		return 1
	case CodeNotFound:
		return 2
	case CodeExpired:
		return 3
	case CodeRevoked:
		return 4
	case CodeSuspended:
		return 5
	case CodeIPNotAllowed:
		return 6
	case CodeOutsideTimeWindow:
		return 7
	case CodeInsufficientScope:
		return 8
	case CodeResourceNotAllowed:
		return 9
	case CodeConditionFailed:
		return 10
	case CodeRateLimited:
		return 11
	case CodeQuotaExceeded:
		return 12
	case CodeConcurrencyExceeded:
		return 13
	}
	return -1
}

// VerifyStatus is how a verification with code answers where an answer's
// status speaks for it (forward-auth, a route that authenticates a key,
// the Go client's middleware): 200 for VALID; 401 unauthenticated when
// the key is not one that works (malformed, unknown, expired, revoked,
// suspended, or a code that is not one); 403 forbidden when it works but
// not here (network, time, scope, resource, condition); 429 rate_limited when it
// works but not now (rate, quota, concurrency).
func VerifyStatus(code string) (status int, errCode string) {
	switch code {
	case CodeValid:
		return http.StatusOK, ""
	case CodeIPNotAllowed, CodeOutsideTimeWindow, CodeInsufficientScope, CodeResourceNotAllowed, CodeConditionFailed:
		return http.StatusForbidden, EForbidden
	case CodeRateLimited, CodeQuotaExceeded, CodeConcurrencyExceeded:
		return http.StatusTooManyRequests, ERateLimited
	}
	return http.StatusUnauthorized, EUnauthenticated
}

// Limit is one limit's state in a verify answer (its ratelimit and quota).
type Limit struct {
	Limit     int64 `json:"limit"`
	Remaining int64 `json:"remaining"`
	// ResetAt is left out for a credit balance, which never refills.
	ResetAt time.Time `json:"reset_at,omitzero"`
}

// KnownCode reports whether c is one of ErrorCodes: a code a client may
// trust from an error body (an unknown one takes the status's code).
func KnownCode(c string) bool {
	for _, k := range ErrorCodes {
		if c == k {
			return true
		}
	}
	return false
}

// ParseRetryAfter reads a Retry-After header in seconds, as the server
// writes it; an HTTP date, junk or more than nine digits read as 0.
func ParseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 9 {
		return 0
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return time.Duration(n) * time.Second
}
