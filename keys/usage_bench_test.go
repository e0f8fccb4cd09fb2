package keys_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/usage"
)

// BenchmarkVerifyRecording compares a cache-hit verify without and with the
// usage recorder (which flushes once an hour here, so only Record is
// measured).
func BenchmarkVerifyRecording(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "Off"
		if on {
			name = "On"
		}
		b.Run(name, func(b *testing.B) {
			f := newFixture(b, func(o *keys.Options) {
				if on {
					rec := usage.New(usage.Options{Store: latchkey.Narrow[usage.Tx](o.Store), FlushInterval: time.Hour})
					b.Cleanup(func() { rec.Close(context.Background()) })
					o.Usage = rec
				}
			})
			_, key := f.create(b, keys.CreateParams{Settings: keys.Settings{Scopes: &[]string{"data:read"}}})
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
