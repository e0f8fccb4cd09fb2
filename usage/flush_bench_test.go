package usage_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/usage"
)

// BenchmarkFlush10k measures one flush of 10,000 active keys' minute (one
// verification each, from one network) into SQLite: the work the recorder
// does once per key and minute.
func BenchmarkFlush10k(b *testing.B) {
	const n = 10_000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("key_%06d", i)
	}
	db := open(b, ids...)
	r := usage.New(usage.Options{Store: db, FlushInterval: time.Hour, MaxPending: 4 * n})
	b.Cleanup(func() { r.Close(context.Background()) })
	addr := netip.AddrFrom4([4]byte{192, 0, 2, 7})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		at := t0.Add(time.Duration(i) * time.Minute)
		for _, id := range ids {
			r.Record(id, "acme", latchkey.CodeValid, addr, at)
		}
		b.StartTimer()
		if err := r.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
