//go:build !race

package httpapi_test

import (
	"testing"

	"github.com/latchkeyhq/latchkey/internal/allocstest"
)

// TestForwardAuthAllocatesNothing guards the hot path: an allowed
// forward-auth request for a cached key costs the handler no allocation
// (the header map is net/http's, reused here). The request carries its
// proxy's X-Request-Id; the ids the server makes itself cost one chunk per
// 64 requests, which TestRequestIDsAllocateOnlyTheirChunks bounds exactly.
func TestForwardAuthAllocatesNothing(t *testing.T) {
	srv, req, w, _ := newAuthBench(t)
	req.Header.Set("X-Request-Id", "proxy-request-1")
	allocstest.None(t, "forward-auth", func() { clear(w.h); srv.ServeHTTP(w, req) })
}

// TestSeedKeyAllocatesNothing guards GET /keys/{provider} for a cached
// value: the actor stays on the handler's stack, the value comes from the
// secret cache, the audit event is queued into a reused map and the answer
// is encoded into a pooled buffer. (With a proxy's X-Request-Id, as in
// TestForwardAuthAllocatesNothing.)
func TestSeedKeyAllocatesNothing(t *testing.T) {
	srv, req, w := newSeedBench(t)
	req.Header.Set("X-Request-Id", "proxy-request-1")
	allocstest.None(t, "GET /keys/{provider}", func() { clear(w.h); srv.ServeHTTP(w, req) })
}

// TestSeedKeyWithLimiterAllocatesNothing: asking the limiter about a key
// without limits of its own, as every route that takes a key does, costs
// GET /keys/{provider} no allocation either.
func TestSeedKeyWithLimiterAllocatesNothing(t *testing.T) {
	srv, req, w := newSeedBenchWith(t, true)
	if n := testing.AllocsPerRun(1000, func() { clear(w.h); srv.ServeHTTP(w, req) }); n != 0 {
		t.Fatalf("GET /keys/{provider} with a limiter allocates %.1f times per request", n)
	}
}
