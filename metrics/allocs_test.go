//go:build !race

package metrics_test

import (
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey/metrics"
)

// TestForwardAuthWithMetricsAllocatesNothing is httpapi's
// TestForwardAuthAllocatesNothing with metrics on, as the server runs.
func TestForwardAuthWithMetricsAllocatesNothing(t *testing.T) {
	_, run := newAuthBench(t)
	if n := testing.AllocsPerRun(1000, run); n != 0 {
		t.Fatalf("forward-auth with metrics allocates %.1f times per request", n)
	}
}

func TestVerifiedAllocatesNothing(t *testing.T) {
	m := metrics.New(metrics.Options{})
	for _, c := range metrics.Codes() {
		for _, r := range []string{"auth", "verify"} {
			if n := testing.AllocsPerRun(100, func() { m.Verified(r, c, 3*time.Microsecond) }); n != 0 {
				t.Fatalf("Verified(%s, %s) allocates %.1f times", r, c, n)
			}
		}
	}
}
