//go:build !race

package keys_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/allocstest"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/usage"
)

// TestVerifyRecordingAllocatesNothing: recording a verification (the
// recorder's bucket for the minute exists) adds no allocation to a cache
// hit, and the request still does not escape.
func TestVerifyRecordingAllocatesNothing(t *testing.T) {
	f := newFixture(t, func(o *keys.Options) {
		rec := usage.New(usage.Options{Store: latchkey.Narrow[usage.Tx](o.Store), FlushInterval: time.Hour})
		t.Cleanup(func() { rec.Close(context.Background()) })
		o.Usage = rec
	})
	_, key := f.create(t, keys.CreateParams{Settings: keys.Settings{Scopes: &[]string{"data:read"}}})
	ctx := context.Background()
	req := keys.VerifyRequest{Key: key, Scopes: []string{"data:read"}, IP: netip.MustParseAddr("2001:db8::1")}
	if v, _ := f.svc.Verify(ctx, req); v.Code != latchkey.CodeValid {
		t.Fatal(v.Code)
	}
	allocstest.None(t, "verify with recording", func() { _, _ = f.svc.Verify(ctx, req) })
}
