//go:build unix

package usage_test

import (
	"context"
	"fmt"
	"net/netip"
	"syscall"
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
	r := usage.New(usage.Options{Store: latchkey.Narrow[usage.Tx](db), FlushInterval: time.Hour, MaxPending: 4 * n})
	b.Cleanup(func() { r.Close(context.Background()) })
	addr := netip.AddrFrom4([4]byte{192, 0, 2, 7})
	b.ReportAllocs()
	var cpu time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		at := t0.Add(time.Duration(i) * time.Minute)
		for _, id := range ids {
			r.Record(id, "acme", latchkey.CodeValid, addr, at)
		}
		b.StartTimer()
		c0 := cpuTime()
		if err := r.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - c0
	}
	// CPU time is steadier than wall time on a shared machine.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTick10kSteady measures one background flush while 10,000 keys
// are in steady use in the open minute: it writes nothing (each key's
// minute is written once, when it closes), so it costs a scan of the
// pending buckets.
func BenchmarkTick10kSteady(b *testing.B) {
	const n = 10_000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("key_%06d", i)
	}
	db := open(b, ids...)
	at := t0.Truncate(time.Minute)
	r := usage.New(usage.Options{Store: latchkey.Narrow[usage.Tx](db), FlushInterval: time.Hour, Now: func() time.Time { return at }})
	b.Cleanup(func() { r.Close(context.Background()) })
	addr := netip.AddrFrom4([4]byte{192, 0, 2, 7})
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for _, id := range ids {
			r.Record(id, "acme", latchkey.CodeValid, addr, at)
		}
		b.StartTimer()
		if err := usage.Tick(r, context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
