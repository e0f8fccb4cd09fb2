package redisguard_test

import (
	"context"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/guard"
	"github.com/latchkeyhq/latchkey/guard/redisguard"
	"github.com/latchkeyhq/latchkey/internal/testenv"
)

// settle bounds every wait for a block to travel through Redis: the
// tests wait for behaviour, they do not time it.
const settle = 5 * time.Second

func newClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second,
		ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// node is one cluster node's guard: its own local guard.Guard and the
// shared one over the test's Redis.
type node struct {
	local  *guard.Guard
	shared *redisguard.Guard
	blocks atomic.Int32 // OnBlock calls
}

func newNode(t testing.TB, addr, prefix string, o guard.Options) *node {
	t.Helper()
	local, err := guard.New(o)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{local: local}
	n.shared = redisguard.New(local, newClient(t, addr), redisguard.Options{
		Prefix: prefix, Backoff: 100 * time.Millisecond,
		OnBlock: func(netip.Prefix, time.Time) { n.blocks.Add(1) },
	})
	t.Cleanup(n.shared.Close)
	return n
}

// waitBlocked waits until ip is blocked on every node, or fails.
func waitBlocked(t *testing.T, ip netip.Addr, nodes ...*node) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for i, n := range nodes {
		for {
			if _, blocked := n.shared.Blocked(ip, time.Now()); blocked {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d does not block %v", i, ip)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// An attacker who spreads guesses over three nodes is blocked everywhere
// after the threshold in all, though no node saw the threshold alone;
// the block is reported once, by the node whose failure reached it.
func TestFailuresOverNodesBlockEveryNode(t *testing.T) {
	r := testenv.StartRedis(t)
	o := guard.Options{Threshold: 9, Window: time.Minute, Cooloff: 5 * time.Minute}
	nodes := []*node{newNode(t, r.Addr, "a:", o), newNode(t, r.Addr, "a:", o), newNode(t, r.Addr, "a:", o)}
	for i := range 8 {
		// Different addresses of one /24, three failures on each node but
		// the last: 8 in all, one short.
		ip := netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})
		if nodes[i%3].shared.Fail(ip, time.Now()) {
			t.Fatalf("failure %d blocked on its node alone", i+1)
		}
	}
	// Each failure reaches Redis before the next test, so wait for the
	// counter rather than sleeping.
	waitCount(t, r.Addr, "a:guard:{203.0.113.0/24}:f", 8)
	probe := netip.MustParseAddr("203.0.113.200")
	for i, n := range nodes {
		if _, blocked := n.shared.Blocked(probe, time.Now()); blocked {
			t.Fatalf("node %d blocks below the threshold", i)
		}
	}
	if nodes[1].shared.Fail(netip.MustParseAddr("203.0.113.9"), time.Now()) {
		t.Fatal("the ninth failure blocked on its node alone")
	}
	waitBlocked(t, probe, nodes...)
	deadline := time.Now().Add(settle)
	for {
		var reported int32
		for _, n := range nodes {
			reported += n.blocks.Load()
		}
		if reported > 1 {
			t.Fatalf("the block was reported %d times, want once", reported)
		}
		if reported == 1 && nodes[1].blocks.Load() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the block was reported %d times, want once, by node 1", reported)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := nodes[0].shared.SharedStats().Shared; got != 1 {
		t.Errorf("node 0 applied %d shared blocks, want 1", got)
	}
	// Another network is untouched.
	if _, blocked := nodes[2].shared.Blocked(netip.MustParseAddr("198.51.100.1"), time.Now()); blocked {
		t.Error("another network is blocked")
	}
}

// waitCount waits until the Redis counter key holds want.
func waitCount(t *testing.T, addr, key string, want int) {
	t.Helper()
	c := newClient(t, addr)
	deadline := time.Now().Add(settle)
	for {
		got, err := c.Get(context.Background(), key).Int()
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis %s = %d (%v), want %d", key, got, err, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A node that starts (or reconnects) during a block reads it from Redis.
func TestNodeStartedMidBlockKnowsIt(t *testing.T) {
	r := testenv.StartRedis(t)
	o := guard.Options{Threshold: 3, Cooloff: time.Hour}
	a := newNode(t, r.Addr, "b:", o)
	ip := netip.MustParseAddr("2001:db8:1:2::7")
	for range 2 {
		a.shared.Fail(ip, time.Now())
	}
	// The third failure blocks on a's own count too; the cluster count
	// gets there as well and sets the block in Redis.
	a.shared.Fail(ip, time.Now())
	c := newClient(t, r.Addr)
	deadline := time.Now().Add(settle)
	for c.Exists(context.Background(), "b:guard:{2001:db8:1:2::/64}:b").Val() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the block never reached Redis")
		}
		time.Sleep(5 * time.Millisecond)
	}
	late := newNode(t, r.Addr, "b:", o)
	waitBlocked(t, netip.MustParseAddr("2001:db8:1:2::99"), late)
	left, _ := late.shared.Blocked(ip, time.Now())
	if left < 50*time.Minute || left > time.Hour {
		t.Errorf("the late node blocks for %v, want the hour's remainder", left)
	}
}

// Failures from an exempt range, and from a network already blocked, are
// not sent: the cluster count is what the local guard counts.
func TestOnlyCountedFailuresAreSent(t *testing.T) {
	r := testenv.StartRedis(t)
	n := newNode(t, r.Addr, "c:", guard.Options{Threshold: 100, Exempt: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	for range 5 {
		n.shared.Fail(netip.MustParseAddr("192.0.2.1"), time.Now())
		n.shared.Fail(netip.Addr{}, time.Now())
	}
	n.shared.Fail(netip.MustParseAddr("198.51.100.1"), time.Now())
	waitCount(t, r.Addr, "c:guard:{198.51.100.0/24}:f", 1)
	keys, err := newClient(t, r.Addr).Keys(context.Background(), "c:guard:*").Result()
	if err != nil || len(keys) != 1 {
		t.Errorf("Redis holds %q (%v), want the one counted network", keys, err)
	}
}

// With Redis down each node counts alone, and blocks at its own
// threshold; when Redis is back the count is shared again.
func TestRedisDownCountsOnEachNode(t *testing.T) {
	r := testenv.StartRedis(t)
	o := guard.Options{Threshold: 4}
	a, b := newNode(t, r.Addr, "d:", o), newNode(t, r.Addr, "d:", o)
	r.Stop()
	ip := netip.MustParseAddr("203.0.113.1")
	blocked := false
	for range 4 {
		blocked = a.shared.Fail(ip, time.Now()) || blocked
	}
	if !blocked {
		t.Fatal("the local threshold did not block with Redis down")
	}
	deadline := time.Now().Add(settle)
	for a.shared.SharedStats().RedisErrors == 0 || a.shared.SharedStats().Dropped == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want Redis errors and dropped failures", a.shared.SharedStats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, blocked := b.shared.Blocked(ip, time.Now()); blocked {
		t.Error("node b learnt a block while Redis was down")
	}

	r.Restart()
	// Sharing resumes by itself: failures of another network spread over
	// both nodes block it on both. The first failures after the restart
	// may be dropped within the back-off, so keep failing until it holds.
	other := netip.MustParseAddr("198.51.100.1")
	deadline = time.Now().Add(settle)
	for i := 0; ; i++ {
		if _, blocked := b.shared.Blocked(other, time.Now()); blocked {
			if _, alsoA := a.shared.Blocked(other, time.Now()); alsoA {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("sharing did not resume after Redis came back")
		}
		// One failure on each node in turn: neither reaches 4 alone
		// before the cluster does, unless everything is dropped.
		[]*node{a, b}[i%2].shared.Fail(other, time.Now())
		time.Sleep(20 * time.Millisecond)
	}
}

// Close stops both goroutines while Redis is unreachable too.
func TestCloseWithRedisDown(t *testing.T) {
	r := testenv.StartRedis(t)
	n := newNode(t, r.Addr, "e:", guard.Options{})
	r.Stop()
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 100 {
			n.shared.Fail(netip.MustParseAddr("203.0.113.1"), time.Now())
		}
	})
	wg.Wait()
	n.shared.Close()
}

func TestParseBlock(t *testing.T) {
	p, left, err := redisguard.ParseBlock("203.0.113.0/24 300000")
	if err != nil || p != netip.MustParsePrefix("203.0.113.0/24") || left != 5*time.Minute {
		t.Fatalf("ParseBlock = %v, %v, %v", p, left, err)
	}
	for _, bad := range []string{"", "203.0.113.0/24", "203.0.113.0/24 0", "203.0.113.0/24 -5", "203.0.113.1/24 1000",
		"fe80::%eth0/64 1000", "nonsense 1000", "203.0.113.0/24 99999999999999", "203.0.113.0/24 1e3"} {
		if _, _, err := redisguard.ParseBlock(bad); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("ParseBlock(%q) = %v, want EInvalid", bad, err)
		}
	}
}

func FuzzParseBlock(f *testing.F) {
	for _, s := range []string{"203.0.113.0/24 300000", "2001:db8::/64 1", "0.0.0.0/0 604800000", " ", "1.2.3.0/24  5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, left, err := redisguard.ParseBlock(s)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("ParseBlock(%q): %v is not EInvalid", s, err)
			}
			return
		}
		if !p.IsValid() || p != p.Masked() || left <= 0 || left > 7*24*time.Hour {
			t.Fatalf("ParseBlock(%q) = %v, %v", s, p, left)
		}
		// What a node publishes reads back the same.
		again, left2, err := redisguard.ParseBlock(p.String() + " " + strconv.FormatInt(left.Milliseconds(), 10))
		if err != nil || again != p || left2 != left {
			t.Fatalf("round trip of %q: %v, %v, %v", s, again, left2, err)
		}
	})
}
