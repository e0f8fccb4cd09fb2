//go:build !race

// The race detector makes allocation counts meaningless, hence the tag.

package geo_test

import (
	"net/netip"
	"testing"

	"github.com/latchkeyhq/latchkey/internal/allocstest"
)

// Country runs on every verification of a key restricted to countries;
// once a record has been decoded it must not allocate.
func TestCountryAllocatesNothing(t *testing.T) {
	db := testDB(t)
	ips := []netip.Addr{
		netip.MustParseAddr("192.0.2.7"),
		netip.MustParseAddr("::ffff:192.0.2.7"),
		netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("203.0.113.5"),
		netip.MustParseAddr("10.0.0.1"),
	}
	for _, ip := range ips {
		db.Country(ip) // decode and cache each record
	}
	allocstest.None(t, "Country", func() {
		for _, ip := range ips {
			db.Country(ip)
		}
	})
}

func BenchmarkCountry(b *testing.B) {
	db := testDB(b)
	for _, bc := range []struct{ name, ip string }{
		{"ipv4", "192.0.2.7"},
		{"ipv4-mapped", "::ffff:192.0.2.7"},
		{"ipv6", "2001:db8::1"},
		{"unknown", "10.0.0.1"},
	} {
		ip := netip.MustParseAddr(bc.ip)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				db.Country(ip)
			}
		})
	}
	b.Run("ipv4-parallel", func(b *testing.B) {
		ip := netip.MustParseAddr("192.0.2.7")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				db.Country(ip)
			}
		})
	})
}
