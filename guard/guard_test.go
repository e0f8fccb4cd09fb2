package guard_test

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/guard"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
)

var t0 = time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)

func newGuard(t testing.TB, o guard.Options) *guard.Guard {
	t.Helper()
	g, err := guard.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// failN counts n failures from ip at now.
func failN(g *guard.Guard, ip netip.Addr, now time.Time, n int) (blocked bool) {
	for range n {
		blocked = g.Fail(ip, now) || blocked
	}
	return blocked
}

func TestBelowThresholdIsNotBlocked(t *testing.T) {
	g := newGuard(t, guard.Options{})
	ip := addr("203.0.113.7")
	if failN(g, ip, t0, guard.DefaultThreshold-1) {
		t.Fatal("Fail reported a block below the threshold")
	}
	if d, blocked := g.Blocked(ip, t0); blocked {
		t.Fatalf("blocked after threshold-1 failures (retry after %s)", d)
	}
}

func TestThresholdBlocksForCooloff(t *testing.T) {
	clk := fakeclock.New(t0)
	g := newGuard(t, guard.Options{})
	ip := addr("203.0.113.7")
	failN(g, ip, clk.Now(), guard.DefaultThreshold-1)
	if !g.Fail(ip, clk.Now()) {
		t.Fatal("the threshold-th failure did not report a block")
	}
	if d, blocked := g.Blocked(ip, clk.Now()); !blocked || d != guard.DefaultCooloff {
		t.Fatalf("Blocked = %s, %v; want %s, true", d, blocked, guard.DefaultCooloff)
	}
	clk.Advance(2 * time.Minute)
	if d, blocked := g.Blocked(ip, clk.Now()); !blocked || d != 3*time.Minute {
		t.Fatalf("two minutes in: Blocked = %s, %v; want 3m, true", d, blocked)
	}
	clk.Advance(3*time.Minute - time.Nanosecond)
	if d, blocked := g.Blocked(ip, clk.Now()); !blocked || d != time.Nanosecond {
		t.Fatalf("a nanosecond before the end: Blocked = %s, %v; want 1ns, true", d, blocked)
	}
	clk.Advance(time.Nanosecond)
	if d, blocked := g.Blocked(ip, clk.Now()); blocked {
		t.Fatalf("still blocked after the cool-off (retry after %s)", d)
	}
	if st := g.Stats(clk.Now()); st.Blocked != 0 || st.BlocksTotal != 1 {
		t.Fatalf("Stats after the block = %+v, want Blocked 0, BlocksTotal 1", st)
	}
}

func TestCountingRestartsAfterABlock(t *testing.T) {
	clk := fakeclock.New(t0)
	g := newGuard(t, guard.Options{Threshold: 5, Cooloff: time.Minute})
	ip := addr("198.51.100.1")
	failN(g, ip, clk.Now(), 5)
	clk.Advance(time.Minute)
	if failN(g, ip, clk.Now(), 4) {
		t.Fatal("4 failures after the block blocked again: the old count was kept")
	}
	if !g.Fail(ip, clk.Now()) {
		t.Fatal("5 failures after the block did not block")
	}
}

func TestFailuresWhileBlockedDoNotExtendTheBlock(t *testing.T) {
	clk := fakeclock.New(t0)
	g := newGuard(t, guard.Options{Threshold: 3, Cooloff: time.Minute})
	ip := addr("198.51.100.1")
	failN(g, ip, clk.Now(), 3)
	clk.Advance(30 * time.Second)
	if failN(g, ip, clk.Now(), 10) {
		t.Fatal("a failure while blocked reported a new block")
	}
	if d, _ := g.Blocked(ip, clk.Now()); d != 30*time.Second {
		t.Fatalf("retry after %s, want 30s: failures while blocked moved the end", d)
	}
	clk.Advance(30 * time.Second)
	if failN(g, ip, clk.Now(), 2) {
		t.Fatal("failures while blocked were counted towards the next block")
	}
}

// The window is fixed per network: it opens at the network's first failure
// and lasts Window, and a failure after it opens a new one.
func TestWindowOpensAtFirstFailure(t *testing.T) {
	const threshold = 5
	o := guard.Options{Threshold: threshold, Window: time.Minute}
	ip := addr("192.0.2.1")

	t.Run("last failure just inside the window blocks", func(t *testing.T) {
		g := newGuard(t, o)
		failN(g, ip, t0, threshold-1)
		if !g.Fail(ip, t0.Add(time.Minute-time.Nanosecond)) {
			t.Fatal("not blocked")
		}
	})
	t.Run("last failure at the window's end starts a new count", func(t *testing.T) {
		g := newGuard(t, o)
		failN(g, ip, t0, threshold-1)
		if g.Fail(ip, t0.Add(time.Minute)) {
			t.Fatal("blocked by failures from a closed window")
		}
		// The new window opened at t0+1m with one failure; it needs
		// threshold-1 more before t0+2m.
		if failN(g, ip, t0.Add(90*time.Second), threshold-2) {
			t.Fatal("blocked before the threshold in the new window")
		}
		if !g.Fail(ip, t0.Add(2*time.Minute-time.Nanosecond)) {
			t.Fatal("threshold failures in the new window did not block")
		}
	})
	t.Run("window does not slide with later failures", func(t *testing.T) {
		g := newGuard(t, o)
		g.Fail(ip, t0)
		failN(g, ip, t0.Add(50*time.Second), threshold-2)
		// At t0+70s the first window (t0…t0+60s) is closed; the 4
		// failures in it are forgotten even though 3 of them are only 20s
		// old.
		if g.Fail(ip, t0.Add(70*time.Second)) {
			t.Fatal("blocked: the window slid")
		}
	})
	t.Run("failures spread thinner than the threshold never block", func(t *testing.T) {
		g := newGuard(t, o)
		// threshold-1 failures per window, evenly spread, for an hour.
		step := time.Minute / (threshold - 1)
		for now := t0; now.Before(t0.Add(time.Hour)); now = now.Add(step) {
			if g.Fail(ip, now) {
				t.Fatalf("blocked at %s", now.Sub(t0))
			}
		}
	})
	t.Run("the boundary allows up to twice threshold-1 in one window", func(t *testing.T) {
		g := newGuard(t, o)
		g.Fail(ip, t0)
		failN(g, ip, t0.Add(59*time.Second), threshold-2)
		if failN(g, ip, t0.Add(61*time.Second), threshold-1) {
			t.Fatal("blocked: documented boundary behaviour changed")
		}
	})
}

func TestSuccessDoesNotResetFailures(t *testing.T) {
	g := newGuard(t, guard.Options{Threshold: 4})
	ip := addr("192.0.2.1")
	for i := range 3 {
		g.Fail(ip, t0)
		g.Succeed(ip, t0)
		if _, blocked := g.Blocked(ip, t0); blocked {
			t.Fatalf("blocked after %d failures", i+1)
		}
	}
	if !g.Fail(ip, t0) {
		t.Fatal("successes between failures reset the count")
	}
}

func TestNetworksAreGroupedByPrefix(t *testing.T) {
	tests := []struct {
		name         string
		o            guard.Options
		fail         []string // each fails once; together they reach the threshold
		blocked, not []string
	}{
		{
			name:    "addresses in one ipv4 /24 share",
			fail:    []string{"192.0.2.1", "192.0.2.77", "192.0.2.255"},
			blocked: []string{"192.0.2.0", "192.0.2.200", "::ffff:192.0.2.9"},
			not:     []string{"192.0.3.1", "192.0.1.255", "10.0.2.1"},
		},
		{
			name:    "ipv4-mapped ipv6 counts as ipv4",
			fail:    []string{"::ffff:192.0.2.1", "::ffff:192.0.2.2", "192.0.2.3"},
			blocked: []string{"192.0.2.50"},
			not:     []string{"192.0.3.50", "::192.0.2.50"},
		},
		{
			name:    "addresses in one ipv6 /64 share",
			fail:    []string{"2001:db8:0:1::1", "2001:db8:0:1:ffff:ffff:ffff:ffff", "2001:db8:0:1:1234::5%eth0"},
			blocked: []string{"2001:db8:0:1::99"},
			not:     []string{"2001:db8:0:2::1", "2001:db8:0:0:ffff::1", "2001:db9:0:1::1"},
		},
		{
			name:    "ipv4 /32 counts each address",
			o:       guard.Options{IPv4Prefix: 32},
			fail:    []string{"192.0.2.1", "192.0.2.1", "192.0.2.1"},
			blocked: []string{"192.0.2.1"},
			not:     []string{"192.0.2.2"},
		},
		{
			name:    "ipv4 /16",
			o:       guard.Options{IPv4Prefix: 16},
			fail:    []string{"192.0.1.1", "192.0.2.1", "192.0.255.1"},
			blocked: []string{"192.0.77.7"},
			not:     []string{"192.1.0.1"},
		},
		{
			name:    "ipv6 /48",
			o:       guard.Options{IPv6Prefix: 48},
			fail:    []string{"2001:db8:1:1::1", "2001:db8:1:2::1", "2001:db8:1:ffff::1"},
			blocked: []string{"2001:db8:1:abcd::1"},
			not:     []string{"2001:db8:2::1"},
		},
		{
			name:    "ipv6 /128",
			o:       guard.Options{IPv6Prefix: 128},
			fail:    []string{"2001:db8::1", "2001:db8::1", "2001:db8::1"},
			blocked: []string{"2001:db8::1"},
			not:     []string{"2001:db8::2"},
		},
		{
			name:    "ipv6 /72",
			o:       guard.Options{IPv6Prefix: 72},
			fail:    []string{"2001:db8::1", "2001:db8::ff:1", "2001:db8:0:0:00ff::"},
			blocked: []string{"2001:db8::1:0:0:1"},
			not:     []string{"2001:db8:0:0:100::1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Threshold = len(tt.fail)
			g := newGuard(t, tt.o)
			for _, ip := range tt.fail {
				g.Fail(addr(ip), t0)
			}
			for _, ip := range tt.blocked {
				if _, blocked := g.Blocked(addr(ip), t0); !blocked {
					t.Errorf("%s not blocked", ip)
				}
			}
			for _, ip := range tt.not {
				if _, blocked := g.Blocked(addr(ip), t0); blocked {
					t.Errorf("%s blocked", ip)
				}
			}
		})
	}
}

func TestNetwork(t *testing.T) {
	g := newGuard(t, guard.Options{})
	for ip, want := range map[string]string{
		"192.0.2.77":           "192.0.2.0/24",
		"::ffff:192.0.2.77":    "192.0.2.0/24",
		"2001:db8:0:1:2:3:4:5": "2001:db8:0:1::/64",
		"fe80::1%eth0":         "fe80::/64",
	} {
		if got := g.Network(addr(ip)); got.String() != want {
			t.Errorf("Network(%s) = %s, want %s", ip, got, want)
		}
	}
	if got := g.Network(netip.Addr{}); got.IsValid() {
		t.Errorf("Network(zero) = %s", got)
	}
}

func TestZeroAddrIsNeverCountedOrBlocked(t *testing.T) {
	g := newGuard(t, guard.Options{Threshold: 1})
	if g.Fail(netip.Addr{}, t0) {
		t.Fatal("a failure from the zero Addr blocked")
	}
	g.Fail(addr("192.0.2.1"), t0) // some block exists, so Blocked looks up
	if _, blocked := g.Blocked(netip.Addr{}, t0); blocked {
		t.Fatal("the zero Addr is blocked")
	}
	if st := g.Stats(t0); st.Tracked != 1 {
		t.Fatalf("Tracked = %d, want 1 (only 192.0.2.0/24)", st.Tracked)
	}
}

func TestStatsCountsBlockedNetworks(t *testing.T) {
	clk := fakeclock.New(t0)
	g := newGuard(t, guard.Options{Threshold: 2, Cooloff: time.Minute})
	for i := range 10 {
		ip := addr(fmt.Sprintf("10.0.%d.1", i))
		g.Fail(ip, clk.Now())
		if i < 7 {
			g.Fail(ip, clk.Now())
		}
	}
	if st := g.Stats(clk.Now()); st != (guard.Stats{Tracked: 10, Blocked: 7, BlocksTotal: 7}) {
		t.Fatalf("Stats = %+v, want 10 tracked, 7 blocked, 7 blocks", st)
	}
	clk.Advance(time.Minute)
	if st := g.Stats(clk.Now()); st.Blocked != 0 || st.BlocksTotal != 7 {
		t.Fatalf("after the cool-off: Stats = %+v, want 0 blocked, 7 blocks", st)
	}
}

// Entries whose window has closed are swept by later failures, so memory
// follows the networks failing now rather than the peak.
func TestExpiredNetworksAreSwept(t *testing.T) {
	clk := fakeclock.New(t0)
	g := newGuard(t, guard.Options{Threshold: 5, Window: time.Minute})
	for i := range 5000 {
		g.Fail(addr(fmt.Sprintf("10.%d.%d.1", i/256, i%256)), clk.Now())
	}
	if st := g.Stats(clk.Now()); st.Tracked != 5000 {
		t.Fatalf("Tracked = %d, want 5000", st.Tracked)
	}
	clk.Advance(time.Minute)
	for i := range 5000 {
		g.Fail(netip.AddrFrom4([4]byte{172, 16 + byte(i>>8), byte(i), 1}), clk.Now())
	}
	if st := g.Stats(clk.Now()); st.Tracked != 5000 {
		t.Fatalf("Tracked = %d after the first windows closed, want only the 5000 new networks", st.Tracked)
	}
}

func TestMemoryIsBounded(t *testing.T) {
	g := newGuard(t, guard.Options{})
	// Block some networks first: a flood of new networks must evict
	// unblocked ones before these.
	var blocked []netip.Addr
	for i := range 100 {
		ip := addr(fmt.Sprintf("2001:db8:ffff:%x::1", i))
		failN(g, ip, t0, guard.DefaultThreshold)
		blocked = append(blocked, ip)
	}
	now := t0.Add(time.Second)
	for i := range 200_000 {
		g.Fail(netip.AddrFrom4([4]byte{10 + byte(i>>16), byte(i >> 8), byte(i), 1}), now)
	}
	st := g.Stats(now)
	if st.Tracked > guard.DefaultMaxNetworks {
		t.Fatalf("Tracked = %d, above MaxNetworks %d", st.Tracked, guard.DefaultMaxNetworks)
	}
	if st.Tracked < guard.DefaultMaxNetworks/2 {
		t.Errorf("Tracked = %d: eviction threw away far more than needed", st.Tracked)
	}
	for _, ip := range blocked {
		if _, ok := g.Blocked(ip, now); !ok {
			t.Fatalf("%s was unblocked by the flood of new networks", ip)
		}
	}
}

// When every tracked network is blocked, blocked ones are evicted as a last
// resort: memory stays bounded.
func TestMemoryIsBoundedWhenAllAreBlocked(t *testing.T) {
	g := newGuard(t, guard.Options{Threshold: 1, MaxNetworks: 100})
	for i := range 10_000 {
		g.Fail(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), t0)
	}
	if st := g.Stats(t0); st.Tracked > 100 || st.Blocked > 100 || st.BlocksTotal != 10_000 {
		t.Fatalf("Stats = %+v, want at most 100 tracked and 10000 blocks", st)
	}
}

func TestTinyMaxNetworks(t *testing.T) {
	for _, max := range []int{1, 2, 15, 17, 63, 64, 65, 1000} {
		g := newGuard(t, guard.Options{MaxNetworks: max})
		for i := range 3 * max {
			g.Fail(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), t0)
		}
		if st := g.Stats(t0); st.Tracked > max || st.Tracked == 0 {
			t.Errorf("MaxNetworks %d: Tracked = %d", max, st.Tracked)
		}
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	for name, o := range map[string]guard.Options{
		"negative threshold":   {Threshold: -1},
		"huge threshold":       {Threshold: 1<<30 + 1},
		"negative window":      {Window: -time.Second},
		"negative cool-off":    {Cooloff: -time.Second},
		"ipv4 prefix 33":       {IPv4Prefix: 33},
		"negative ipv4 prefix": {IPv4Prefix: -1},
		"ipv6 prefix 129":      {IPv6Prefix: 129},
		"negative ipv6 prefix": {IPv6Prefix: -8},
		"negative max":         {MaxNetworks: -1},
	} {
		if _, err := guard.New(o); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("%s: New = %v, want code %s", name, err, latchkey.EInvalid)
		}
	}
}

// Run under -race: many goroutines failing, checking and reading stats on
// overlapping networks. Exactly-counted networks must end up blocked.
func TestConcurrentUse(t *testing.T) {
	const workers, perWorker = 8, 5
	// MaxNetworks is left at its default, far above the 16 000 networks
	// used, so that eviction cannot drop the target's count.
	g := newGuard(t, guard.Options{Threshold: workers * perWorker})
	target := addr("192.0.2.1")
	var wg sync.WaitGroup
	var blocks sync.Map
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				if g.Fail(addr(fmt.Sprintf("192.0.2.%d", w*perWorker+i)), t0) {
					blocks.Store(w, true)
				}
			}
			for i := range 2000 {
				ip := netip.AddrFrom4([4]byte{10, byte(w*8 + i>>8), byte(i), 1})
				g.Fail(ip, t0)
				g.Succeed(ip, t0)
				g.Blocked(ip, t0)
				g.Blocked(target, t0)
				if i%500 == 0 {
					g.Stats(t0)
				}
			}
		})
	}
	wg.Wait()
	if _, blocked := g.Blocked(target, t0); !blocked {
		t.Fatal("192.0.2.0/24 not blocked after exactly threshold concurrent failures")
	}
	n := 0
	blocks.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Fatalf("%d failures reported the block, want exactly 1", n)
	}
	if st := g.Stats(t0); st.Tracked != workers*2000+1 || st.Blocked != 1 {
		t.Fatalf("Stats = %+v, want %d tracked, 1 blocked", st, workers*2000+1)
	}
}
