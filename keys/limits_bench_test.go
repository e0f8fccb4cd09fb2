package keys_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/limit"
)

// BenchmarkVerifyLimits compares a cache-hit verify of a key without limits
// and of one with two rate windows and a quota, through the real in-memory
// limiter. The windows and quota are sized so that no request is denied.
func BenchmarkVerifyLimits(b *testing.B) {
	for _, bc := range []struct {
		name string
		set  keys.Settings
	}{
		{"NoLimits", keys.Settings{}},
		{"TwoWindowsAndQuota", keys.Settings{
			RateLimits: &[]latchkey.RateLimit{
				{Name: "burst", Limit: 1_000_000_000, Window: latchkey.Duration(time.Second)},
				{Name: "daily", Limit: 1_000_000_000, Window: latchkey.Duration(24 * time.Hour)},
			},
			Quota: &latchkey.Quota{Limit: 1 << 50, Period: "30d"},
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var lim *limit.Memory
			f := newFixture(b, func(o *keys.Options) {
				lim = limit.NewMemory(limit.Options{Store: latchkey.Narrow[latchkey.QuotaStore](o.Store), FlushInterval: time.Hour})
				o.Limiter = lim
			})
			b.Cleanup(func() { lim.Close(context.Background()) })
			bc.set.Scopes = &[]string{"data:read"}
			_, key := f.create(b, keys.CreateParams{Settings: bc.set})
			ctx := context.Background()
			req := keys.VerifyRequest{Key: key, Scopes: []string{"data:read"}, IP: netip.MustParseAddr("10.1.2.3")}
			if v, err := f.svc.Verify(ctx, req); err != nil || v.Code != latchkey.CodeValid {
				b.Fatal(v.Code, err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if v, _ := f.svc.Verify(ctx, req); v.Code != latchkey.CodeValid {
					b.Fatal(v.Code)
				}
			}
		})
	}
}
