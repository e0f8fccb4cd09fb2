//go:build !race

package metrics_test

import (
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey/internal/allocstest"
	"github.com/latchkeyhq/latchkey/metrics"
)

// TestForwardAuthWithMetricsAllocatesNothing is httpapi's
// TestForwardAuthAllocatesNothing with metrics on, as the server runs: the
// request carries its proxy's X-Request-Id, as there the server's own ids
// (a chunk per 64 requests) are guarded by httpapi's
// TestRequestIDsAllocateOnlyTheirChunks.
func TestForwardAuthWithMetricsAllocatesNothing(t *testing.T) {
	n := newNode(t, nil)
	_, key := n.create(t)
	req := authRequest(key)
	req.Header.Set("X-Request-Id", "proxy-request-1")
	allocstest.None(t, "forward-auth with metrics", n.authRunnerFor(t, n.srv, req))
}

func TestVerifiedAllocatesNothing(t *testing.T) {
	m := metrics.New(metrics.Options{})
	for _, c := range metrics.Codes() {
		for _, r := range []string{"auth", "verify"} {
			allocstest.None(t, "Verified("+r+", "+c+")", func() { m.Verified(r, c, 3*time.Microsecond) })
		}
	}
}
