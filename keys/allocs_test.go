//go:build !race

package keys_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/allocstest"
	"github.com/latchkeyhq/latchkey/keys"
)

// TestVerifyCacheHitAllocatesNothing guards the verify path's budget: an
// allocation sneaking in (an escaping buffer, a closure) fails here, not
// only in a benchmark nobody reads. (The race detector's instrumentation
// changes allocation counts, hence the build tag.)
func TestVerifyCacheHitAllocatesNothing(t *testing.T) {
	f := newFixture(t)
	_, key := f.create(t, keys.CreateParams{Settings: keys.Settings{Scopes: &[]string{"data:read"}, IPAllow: &[]string{"10.0.0.0/8"}}})
	ctx := context.Background()
	req := keys.VerifyRequest{Key: key, Scopes: []string{"data:read"}, Resource: "agent:x", IP: netip.MustParseAddr("10.1.2.3")}
	if v, _ := f.svc.Verify(ctx, req); v.Code != latchkey.CodeValid {
		t.Fatal(v.Code)
	}
	allocstest.None(t, "verify on a cache hit", func() { _, _ = f.svc.Verify(ctx, req) })
}
