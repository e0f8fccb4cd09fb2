package wire_test

import (
	"net/http"
	"testing"

	"github.com/latchkeyhq/latchkey/wire"
)

// Every error code has its own status and comes back from it; statuses a
// proxy answers with on its own map to what a caller should do.
func TestStatusTableRoundTrips(t *testing.T) {
	seen := map[int]string{}
	for _, c := range wire.ErrorCodes {
		s := wire.HTTPStatus(c)
		if other, dup := seen[s]; dup {
			t.Errorf("%s and %s share status %d", c, other, s)
		}
		seen[s] = c
		if got := wire.CodeForStatus(s); got != c {
			t.Errorf("CodeForStatus(HTTPStatus(%s) = %d) = %s", c, s, got)
		}
	}
	for status, want := range map[int]string{
		http.StatusBadGateway:          wire.EUnavailable,
		http.StatusGatewayTimeout:      wire.EUnavailable,
		http.StatusServiceUnavailable:  wire.EUnavailable,
		http.StatusNotImplemented:      wire.EInternal,
		599:                            wire.EInternal,
		http.StatusTeapot:              wire.EInvalid,
		http.StatusMethodNotAllowed:    wire.EInvalid,
		http.StatusUnprocessableEntity: wire.EInvalid,
	} {
		if got := wire.CodeForStatus(status); got != want {
			t.Errorf("CodeForStatus(%d) = %s, want %s", status, got, want)
		}
	}
	if got := wire.HTTPStatus("no_such_code"); got != http.StatusInternalServerError {
		t.Errorf("HTTPStatus of an unknown code = %d", got)
	}
}

// VerifyCodeIndex is the inverse of VerifyCodes, and every verify code
// answers with the status of its class.
func TestVerifyCodes(t *testing.T) {
	want := map[string]int{
		wire.CodeValid: 200, wire.CodeMalformed: 401, wire.CodeNotFound: 401, wire.CodeExpired: 401,
		wire.CodeRevoked: 401, wire.CodeSuspended: 401, wire.CodeIPNotAllowed: 403,
		wire.CodeOutsideTimeWindow: 403, wire.CodeInsufficientScope: 403, wire.CodeResourceNotAllowed: 403,
		wire.CodeConditionFailed: 403,
		wire.CodeRateLimited:     429, wire.CodeQuotaExceeded: 429, wire.CodeConcurrencyExceeded: 429,
	}
	if len(want) != len(wire.VerifyCodes) {
		t.Fatalf("%d codes here, %d in VerifyCodes", len(want), len(wire.VerifyCodes))
	}
	for i, c := range wire.VerifyCodes {
		if got := wire.VerifyCodeIndex(c); got != i {
			t.Errorf("VerifyCodeIndex(%s) = %d, want %d", c, got, i)
		}
		status, code := wire.VerifyStatus(c)
		if status != want[c] {
			t.Errorf("VerifyStatus(%s) = %d, want %d", c, status, want[c])
		}
		if c != wire.CodeValid && (code == "" || wire.HTTPStatus(code) != status) {
			t.Errorf("VerifyStatus(%s): error code %q does not have status %d", c, code, status)
		}
	}
	if wire.VerifyCodeIndex("valid") != -1 {
		t.Error("a code in the wrong case has an index")
	}
	if status, code := wire.VerifyStatus("SOMETHING_NEW"); status != 401 || code != wire.EUnauthenticated {
		t.Errorf("an unknown verify code answers %d %s", status, code)
	}
}
