package guard_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/guard"
)

func TestExemptNetworksAreNeverCountedOrBlocked(t *testing.T) {
	g := newGuard(t, guard.Options{Threshold: 3, Exempt: []netip.Prefix{
		netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("2001:db8:1::/48"),
	}})
	exempt := []string{"10.20.0.1", "10.20.255.254", "::ffff:10.20.3.4", "2001:db8:1:2::9", "2001:db8:1:ffff::1%eth0"}
	for _, s := range exempt {
		if failN(g, addr(s), t0, 10) {
			t.Errorf("failures from exempt %s blocked it", s)
		}
	}
	// Something is blocked, so Blocked looks beyond its fast path.
	other := addr("10.21.0.1") // outside 10.20.0.0/16
	if !failN(g, other, t0, 3) {
		t.Fatal("a network outside the exempt ranges was not blocked")
	}
	for _, s := range exempt {
		if _, blocked := g.Blocked(addr(s), t0); blocked {
			t.Errorf("exempt %s is blocked", s)
		}
	}
	if st := g.Stats(t0); st.Tracked != 1 {
		t.Errorf("Tracked = %d, want 1: exempt networks take no memory", st.Tracked)
	}
}

// An exempt range narrower than the counting network exempts only its own
// addresses: the rest of the /24 is counted and blocked as before, and the
// exempt host is answered even while its /24 is blocked.
func TestExemptRangeNarrowerThanTheNetwork(t *testing.T) {
	g := newGuard(t, guard.Options{Threshold: 3, Exempt: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")}})
	failN(g, addr("192.0.2.10"), t0, 5)
	if _, blocked := g.Blocked(addr("192.0.2.11"), t0); blocked {
		t.Fatal("an exempt host's failures counted against its /24")
	}
	failN(g, addr("192.0.2.11"), t0, 3)
	if _, blocked := g.Blocked(addr("192.0.2.12"), t0); !blocked {
		t.Fatal("the /24 was not blocked by its non-exempt hosts")
	}
	if _, blocked := g.Blocked(addr("192.0.2.10"), t0); blocked {
		t.Fatal("the exempt host is blocked with its /24")
	}
}

func TestNewRefusesBadExemptRanges(t *testing.T) {
	for name, p := range map[string]netip.Prefix{
		"zero":        {},
		"host bits":   netip.PrefixFrom(addr("10.0.0.1"), 8),
		"ipv4-mapped": netip.MustParsePrefix("::ffff:10.0.0.0/104"),
	} {
		if _, err := guard.New(guard.Options{Exempt: []netip.Prefix{p}}); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("%s: New = %v, want code %s", name, err, latchkey.EInvalid)
		}
	}
}

func TestParseNetworks(t *testing.T) {
	got, err := guard.ParseNetworks(" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,2001:db8:ff::1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "2001:db8:ff::1/128"}
	if len(got) != len(want) {
		t.Fatalf("ParseNetworks = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("ParseNetworks[%d] = %s, want %s", i, got[i], want[i])
		}
	}
	if ps, err := guard.ParseNetworks("  "); err != nil || ps != nil {
		t.Errorf("ParseNetworks(blank) = %v, %v; want none", ps, err)
	}
	for _, bad := range []string{
		"10.0.0.0/33", "nonsense", "10.0.0.1/8", "fe80::1%eth0", "fe80::/10%eth0", "10.0.0.0/8,,",
		",10.0.0.0/8", "::ffff:10.0.0.0/104", "::ffff:10.0.0.1", "10.0.0.0/-1", "10.0.0.0 /8", "010.0.0.0/8",
	} {
		if ps, err := guard.ParseNetworks(bad); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("ParseNetworks(%q) = %v, %v; want code %s", bad, ps, err, latchkey.EInvalid)
		}
	}
}

func FuzzParseNetworks(f *testing.F) {
	for _, s := range []string{"", "10.0.0.0/8", "192.0.2.7,2001:db8::/32", "10.0.0.1/8", "fe80::1%eth0", "::ffff:1.2.3.4/128", ",,", strings.Repeat("1", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := guard.ParseNetworks(s)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("error %v is not %s", err, latchkey.EInvalid)
			}
			if msg := latchkey.ErrorMessage(err); len(msg) > 300 {
				t.Fatalf("error message of %d bytes quotes too much of its input", len(msg))
			}
			return
		}
		strs := make([]string, len(ps))
		for i, p := range ps {
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("ParseNetworks(%q) gave %v", s, p)
			}
			strs[i] = p.String()
		}
		// Whatever it accepts, a guard accepts, and its own output parses
		// back to the same ranges.
		if _, err := guard.New(guard.Options{Exempt: ps}); err != nil {
			t.Fatalf("New refuses what ParseNetworks gave: %v", err)
		}
		again, err := guard.ParseNetworks(strings.Join(strs, ","))
		if err != nil || len(again) != len(ps) {
			t.Fatalf("round trip of %v: %v, %v", ps, again, err)
		}
		for i := range ps {
			if again[i] != ps[i] {
				t.Fatalf("round trip of %v: %v", ps, again)
			}
		}
	})
}
