//go:build !race

package keys_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/allocstest"
	"github.com/latchkeyhq/latchkey/keys"
)

// TestVerifyCacheHitAllocatesNothing guards the verify path's budget: an
// allocation sneaking in (an escaping buffer, a closure) fails here, not
// only in a benchmark nobody reads. (The race detector's instrumentation
// changes allocation counts, hence the build tag.)
func TestVerifyForeignKeyCacheHitAllocatesNothing(t *testing.T) {
	f := newFixture(t)
	// An imported key not in Latchkey's format, longest allowed: it is
	// hashed from a stack buffer like ours.
	key := strings.Repeat("x-Y_z", latchkey.MaxForeignKeyLen/5) + "0"
	if _, err := f.svc.ImportKeys(context.Background(), f.admin, strings.NewReader(key), keys.ImportParams{Format: keys.ImportPlain, Settings: keys.Settings{Scopes: &[]string{"data:read"}}}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req := keys.VerifyRequest{Key: key, Scopes: []string{"data:read"}, IP: netip.MustParseAddr("10.1.2.3")}
	if v, _ := f.svc.Verify(ctx, req); v.Code != latchkey.CodeValid {
		t.Fatal(v.Code)
	}
	allocstest.None(t, "verify of a foreign key on a cache hit", func() { _, _ = f.svc.Verify(ctx, req) })
	garbage := keys.VerifyRequest{Key: "not-a-key-but-long-enough"}
	if v, _ := f.svc.Verify(ctx, garbage); v.Code != latchkey.CodeNotFound {
		t.Fatal(v.Code)
	}
	allocstest.None(t, "verify of garbage on a negative cache hit", func() { _, _ = f.svc.Verify(ctx, garbage) })
}

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
