//go:build !race

// The race detector makes allocation counts meaningless, hence the tag.

package guard_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey/guard"
	"github.com/latchkeyhq/latchkey/internal/allocstest"
)

// Blocked runs before every verification; it must not allocate whether no
// network is blocked (the fast path), the network is blocked, or another
// network is.
func TestBlockedAllocatesNothing(t *testing.T) {
	g := newGuard(t, guard.Options{Threshold: 3})
	free, bad := addr("192.0.2.1"), addr("2001:db8::1")
	check := func(what string) {
		t.Helper()
		allocstest.None(t, what+": Blocked", func() {
			g.Blocked(free, t0)
			g.Blocked(bad, t0)
			g.Blocked(netip.Addr{}, t0)
		})
	}
	check("nothing blocked")
	failN(g, bad, t0, 3)
	check("one network blocked")
	// Counting a failure for a network already tracked does not allocate
	// either; only a new network may (map growth).
	g.Fail(free, t0)
	allocstest.None(t, "Fail for a tracked network", func() { g.Fail(free, t0) })
}

// The exempt check costs no allocation either, for exempt addresses and
// others, while some network is blocked (the only time Blocked makes it).
func TestExemptCheckAllocatesNothing(t *testing.T) {
	g := newGuard(t, guard.Options{Threshold: 1, Exempt: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32"),
	}})
	g.Fail(addr("192.0.2.1"), t0)
	exempt, mapped, other := addr("10.1.2.3"), addr("::ffff:10.1.2.3"), addr("198.51.100.1")
	allocs := testing.AllocsPerRun(1000, func() {
		g.Blocked(exempt, t0)
		g.Blocked(mapped, t0)
		g.Blocked(other, t0)
		g.Fail(exempt, t0)
	})
	if allocs != 0 {
		t.Errorf("the exempt check allocates %.1f times per run, want 0", allocs)
	}
}

func BenchmarkBlocked(b *testing.B) {
	ip := addr("192.0.2.1")
	b.Run("nothing-blocked", func(b *testing.B) {
		g := newGuard(b, guard.Options{})
		b.ReportAllocs()
		for b.Loop() {
			g.Blocked(ip, t0)
		}
	})
	busy := newGuard(b, guard.Options{Threshold: 1})
	for i := range 10_000 {
		busy.Fail(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), t0)
	}
	b.Run("others-blocked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			busy.Blocked(ip, t0)
		}
	})
	b.Run("blocked", func(b *testing.B) {
		b.ReportAllocs()
		bad := addr("10.0.1.1")
		for b.Loop() {
			busy.Blocked(bad, t0)
		}
	})
	b.Run("others-blocked-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				busy.Blocked(ip, t0)
			}
		})
	})
}

func BenchmarkFail(b *testing.B) {
	b.Run("same-network", func(b *testing.B) {
		g := newGuard(b, guard.Options{Threshold: 1 << 30})
		ip := addr("192.0.2.1")
		b.ReportAllocs()
		for b.Loop() {
			g.Fail(ip, t0)
		}
	})
	b.Run("new-networks-at-the-bound", func(b *testing.B) {
		g := newGuard(b, guard.Options{})
		ips := make([]netip.Addr, 1<<18)
		for i := range ips {
			ips[i] = netip.AddrFrom4([4]byte{10 + byte(i>>16), byte(i >> 8), byte(i), 1})
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			g.Fail(ips[i&(len(ips)-1)], t0.Add(time.Duration(i)))
			i++
		}
	})
}
