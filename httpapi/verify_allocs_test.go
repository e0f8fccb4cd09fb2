//go:build !race

package httpapi_test

import (
	"testing"

	"github.com/latchkeyhq/latchkey/internal/allocstest"
)

// TestVerifyPOSTAllocatesNothing guards POST /v1/keys/verify for a cached,
// allowed key: the body is read into a pooled buffer and decoded by hand
// (the request's strings point into it, the scopes sit on the handler's
// stack), the key's identity fields are encoded once per cache entry, and
// the answer is encoded into the pooled buffer. (With a proxy's
// X-Request-Id, as in TestForwardAuthAllocatesNothing.)
func TestVerifyPOSTAllocatesNothing(t *testing.T) {
	srv, req, body, w := newVerifyBench(t)
	req.Header.Set("X-Request-Id", "proxy-request-1")
	allocstest.None(t, "POST /v1/keys/verify", func() { serveVerify(srv, req, body, w) })
}
