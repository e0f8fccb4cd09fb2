// Package guard slows down key guessing: it counts failed verifications
// per client network and, past a threshold, blocks the network for a
// cooling-off period, during which its requests are answered 429 without
// a store lookup.
//
// # Counting
//
// Clients are grouped by network (IPv4 /24 and IPv6 /64 by default), since
// one attacker usually holds many addresses of one network, and an IPv6
// host can pick a new address in its /64 for every request.
//
// Failures are counted in a fixed window per network that opens at the
// network's first failure and lasts Window: the Threshold-th failure
// before the window closes blocks the network for Cooloff; a failure after
// it closes opens a new window with a count of one. So failures spread
// more thinly than Threshold per Window never block, and a steady attacker
// gets fewer than Threshold tries per Window on average. The price of the
// fixed window is the boundary: up to 2×(Threshold−1) failures can fall
// within one Window if they straddle the end of a window. That is
// harmless against guessing (the key space is astronomically larger) and
// makes the rule exact and cheap: a start time and a count per network, no
// history of individual failures.
//
// A success never resets the count: an attacker who holds one valid key
// could otherwise interleave it with guesses and never be blocked.
// Failures while a network is blocked (requests that checked Blocked just
// before the block began) are not counted and do not extend the block; the
// block ends Cooloff after it began, and counting starts afresh.
//
// # Cost and memory
//
// Blocked runs before every verification: it does not allocate, and while
// no network is blocked it is one atomic load. Otherwise it takes a read
// lock on one of up to 64 shards. The number of networks tracked is
// bounded by MaxNetworks: expired entries are swept, and when a shard is
// full, arbitrary unblocked networks are forgotten first, blocked ones only
// when nothing else is left.
//
// # Exempt networks
//
// Options.Exempt lists ranges the guard leaves alone: their failures are
// not counted and they are never blocked, even when the counting network
// they lie in is (an exempt /32 inside a blocked /24 is still answered).
// The check is a scan of the list, made only when a failure is counted or
// when some network is blocked, so the fast path does not pay for it.
//
// # Who is counted
//
// The guard counts what its caller names. httpapi names the network the
// request came from (the connection, or the client a trusted proxy names)
// and, on POST /v1/keys/verify, the body's ip only when the caller is
// trusted; docs/limits.md describes the model.
//
// The guard never reads the clock; every method takes the caller's now.
package guard

import (
	"math/bits"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/latchkeyhq/latchkey"
)

// Options configure a Guard. Zero fields take the defaults.
type Options struct {
	// Threshold is the number of failures within Window that blocks a
	// network (default 20).
	Threshold int
	// Window is how long a network's failures are counted together,
	// from its first failure (default 1 minute).
	Window time.Duration
	// Cooloff is how long a network stays blocked (default 5 minutes).
	Cooloff time.Duration
	// IPv4Prefix and IPv6Prefix are the prefix lengths that group clients
	// into networks (defaults 24 and 64; 32 or 128 count each address on
	// its own).
	IPv4Prefix int
	IPv6Prefix int
	// MaxNetworks bounds how many networks are tracked at once (default
	// 100 000; each costs about 100 bytes).
	MaxNetworks int
	// Exempt are ranges whose failures are never counted and which are
	// never blocked (--guard-exempt). Each must be a valid, masked prefix,
	// IPv4 ranges in IPv4 form (ParseNetworks gives such).
	Exempt []netip.Prefix
}

// Defaults for Options.
const (
	DefaultThreshold   = 20
	DefaultWindow      = time.Minute
	DefaultCooloff     = 5 * time.Minute
	DefaultIPv4Prefix  = 24
	DefaultIPv6Prefix  = 64
	DefaultMaxNetworks = 100_000
)

const (
	maxShards = 64
	// minPerShard keeps shards large enough for eviction to have a choice
	// when MaxNetworks is small: fewer shards rather than tiny ones.
	minPerShard = 16
)

// Guard tracks failures per network. It is safe for concurrent use.
type Guard struct {
	threshold int32
	window    time.Duration
	cooloff   time.Duration
	v4bits    int
	v6bits    int
	perShard  int
	shardBits int // log2(len(shards))
	shards    []shard
	exempt    []netip.Prefix

	// horizon is the latest end of any block so far (nil before the
	// first). While now is past it nothing is blocked, and Blocked answers
	// without touching a shard. It changes only when a network is blocked.
	horizon atomic.Pointer[time.Time]
	blocks  atomic.Uint64
}

// netKey is a client network: its masked address as 16 bytes, IPv4 in
// its IPv4-mapped form (::ffff:a.b.c.0), so the families cannot collide.
type netKey struct{ hi, lo uint64 }

// entry is what the guard knows about one network.
type entry struct {
	start time.Time // opening of the current counting window
	until time.Time // end of the block; zero or past when not blocked
	fails int32     // failures since start
}

type shardData struct {
	mu sync.RWMutex
	m  map[netKey]entry
	// nextSweep is when Fail next drops the shard's expired entries, so
	// that memory follows the networks currently failing rather than the
	// peak, at the cost of one scan per shard per Window.
	nextSweep time.Time
}

// shard is padded to a multiple of a cache line so that locking one does
// not slow down readers of its neighbours.
type shard struct {
	shardData
	_ [64 - unsafe.Sizeof(shardData{})%64]byte
}

// New returns a Guard. Options out of range (negative durations or
// counts, prefix lengths outside 1–32 and 1–128) are EInvalid.
func New(o Options) (*Guard, error) {
	o = withDefaults(o)
	switch {
	case o.Threshold < 1 || o.Threshold > 1<<30:
		return nil, latchkey.Errorf(latchkey.EInvalid, "guard threshold must be from 1 to 2^30")
	case o.Window <= 0:
		return nil, latchkey.Errorf(latchkey.EInvalid, "guard window must be positive")
	case o.Cooloff <= 0:
		return nil, latchkey.Errorf(latchkey.EInvalid, "guard cool-off must be positive")
	case o.IPv4Prefix < 1 || o.IPv4Prefix > 32:
		return nil, latchkey.Errorf(latchkey.EInvalid, "guard IPv4 prefix length must be from 1 to 32")
	case o.IPv6Prefix < 1 || o.IPv6Prefix > 128:
		return nil, latchkey.Errorf(latchkey.EInvalid, "guard IPv6 prefix length must be from 1 to 128")
	case o.MaxNetworks < 1:
		return nil, latchkey.Errorf(latchkey.EInvalid, "guard max networks must be positive")
	}
	for _, p := range o.Exempt {
		if err := checkExempt(p); err != "" {
			return nil, latchkey.Errorf(latchkey.EInvalid, "guard exempt range %s: %s", p, err)
		}
	}
	n := maxShards
	for n > 1 && o.MaxNetworks/n < minPerShard {
		n /= 2
	}
	g := &Guard{
		threshold: int32(o.Threshold),
		window:    o.Window,
		cooloff:   o.Cooloff,
		v4bits:    o.IPv4Prefix,
		v6bits:    o.IPv6Prefix,
		// Rounded down, so that the shards together never exceed
		// MaxNetworks.
		perShard:  o.MaxNetworks / n,
		shardBits: bits.TrailingZeros(uint(n)),
		shards:    make([]shard, n),
		exempt:    append([]netip.Prefix(nil), o.Exempt...),
	}
	for i := range g.shards {
		g.shards[i].m = make(map[netKey]entry)
	}
	return g, nil
}

func withDefaults(o Options) Options {
	if o.Threshold == 0 {
		o.Threshold = DefaultThreshold
	}
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.Cooloff == 0 {
		o.Cooloff = DefaultCooloff
	}
	if o.IPv4Prefix == 0 {
		o.IPv4Prefix = DefaultIPv4Prefix
	}
	if o.IPv6Prefix == 0 {
		o.IPv6Prefix = DefaultIPv6Prefix
	}
	if o.MaxNetworks == 0 {
		o.MaxNetworks = DefaultMaxNetworks
	}
	return o
}

// key returns the network of ip; false for the zero Addr, which is never
// counted (a caller that does not know the client's address must not
// block everyone who shares that ignorance).
func (g *Guard) key(ip netip.Addr) (netKey, bool) {
	if !ip.IsValid() {
		return netKey{}, false
	}
	// A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; they
	// belong to their IPv4 network.
	ip = ip.Unmap()
	if ip.Is4() {
		a := ip.As4()
		v := uint64(a[0])<<24 | uint64(a[1])<<16 | uint64(a[2])<<8 | uint64(a[3])
		v &= (0xffffffff << (32 - g.v4bits)) & 0xffffffff
		return netKey{lo: 0xffff<<32 | v}, true
	}
	a := ip.As16() // the zone, if any, is dropped
	hi := uint64(a[0])<<56 | uint64(a[1])<<48 | uint64(a[2])<<40 | uint64(a[3])<<32 |
		uint64(a[4])<<24 | uint64(a[5])<<16 | uint64(a[6])<<8 | uint64(a[7])
	lo := uint64(a[8])<<56 | uint64(a[9])<<48 | uint64(a[10])<<40 | uint64(a[11])<<32 |
		uint64(a[12])<<24 | uint64(a[13])<<16 | uint64(a[14])<<8 | uint64(a[15])
	if g.v6bits <= 64 {
		hi &= ^uint64(0) << (64 - g.v6bits)
		lo = 0
	} else {
		lo &= ^uint64(0) << (128 - g.v6bits)
	}
	return netKey{hi, lo}, true
}

// shard picks k's shard by a multiplicative hash, whose top bits depend on
// every bit of the key (IPv4 networks differ only in a few middle bits).
func (g *Guard) shard(k netKey) *shard {
	if g.shardBits == 0 {
		return &g.shards[0]
	}
	h := (k.hi ^ bits.RotateLeft64(k.lo, 32)) * 0x9e3779b97f4a7c15
	return &g.shards[h>>(64-g.shardBits)]
}

// Network returns the network ip is counted in, for log lines; the zero
// Prefix for the zero Addr.
func (g *Guard) Network(ip netip.Addr) netip.Prefix {
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	ip = ip.Unmap().WithZone("")
	bitsLen := g.v6bits
	if ip.Is4() {
		bitsLen = g.v4bits
	}
	p, _ := ip.Prefix(bitsLen)
	return p
}

// Blocked reports whether ip's network is blocked at now, and for how much
// longer (round it up to whole seconds for a Retry-After header). It does
// not allocate. The zero Addr is never blocked.
func (g *Guard) Blocked(ip netip.Addr, now time.Time) (retryAfter time.Duration, blocked bool) {
	h := g.horizon.Load()
	if h == nil || !now.Before(*h) {
		return 0, false
	}
	k, ok := g.key(ip)
	if !ok || g.isExempt(ip) {
		return 0, false
	}
	s := g.shard(k)
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return 0, false
	}
	return e.until.Sub(now), true
}

// Fail counts a failed verification from ip (a malformed, unknown,
// revoked, expired or suspended key) and reports whether this failure
// blocked its network, so that the caller can log the block once. Failures
// from a network that is already blocked, from an exempt range, and from
// the zero Addr, are not counted.
func (g *Guard) Fail(ip netip.Addr, now time.Time) (blockedNow bool) {
	k, ok := g.key(ip)
	if !ok || g.isExempt(ip) {
		return false
	}
	s := g.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !now.Before(s.nextSweep) {
		s.sweep(now, g.window)
		s.nextSweep = now.Add(g.window)
	}
	e, ok := s.m[k]
	if ok && now.Before(e.until) {
		return false
	}
	if !ok || !now.Before(e.start.Add(g.window)) {
		if !ok && len(s.m) >= g.perShard {
			s.makeRoom(now, g.perShard)
		}
		e = entry{start: now}
	}
	e.fails++
	if e.fails >= g.threshold {
		// Counting restarts after the block: the window is closed (zero
		// start) and the count is zero.
		e = entry{until: now.Add(g.cooloff)}
		g.blocks.Add(1)
		g.raiseHorizon(e.until)
		blockedNow = true
	}
	s.m[k] = e
	return blockedNow
}

// Rules returns the threshold, window and cool-off the guard applies, so
// that a counter shared by several nodes (package redisguard) applies the
// same rule.
func (g *Guard) Rules() (threshold int, window, cooloff time.Duration) {
	return int(g.threshold), g.window, g.cooloff
}

// Counted returns the network ip is counted in and whether Fail would
// count a failure from ip at now: not for the zero Addr, an exempt
// address, or a network blocked at now.
func (g *Guard) Counted(ip netip.Addr, now time.Time) (netip.Prefix, bool) {
	k, ok := g.key(ip)
	if !ok || g.isExempt(ip) {
		return netip.Prefix{}, false
	}
	s := g.shard(k)
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	if ok && now.Before(e.until) {
		return netip.Prefix{}, false
	}
	return g.Network(ip), true
}

// Block holds network back until until, as Fail does when the network
// reaches the threshold: the failures were counted elsewhere (by another
// node, in a shared counter). A network already blocked for longer keeps
// its block; an exempt address inside network is still answered. It
// reports whether the block is new or longer than the one held.
func (g *Guard) Block(network netip.Prefix, until, now time.Time) bool {
	k, ok := g.key(network.Addr())
	if !ok || !now.Before(until) {
		return false
	}
	s := g.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[k]
	if ok && !until.After(e.until) {
		return false
	}
	if !ok && len(s.m) >= g.perShard {
		s.makeRoom(now, g.perShard)
	}
	s.m[k] = entry{until: until}
	g.raiseHorizon(until)
	return true
}

// Succeed records a successful verification from ip. It deliberately
// leaves the failure count alone: resetting it would let an attacker who
// holds one valid key interleave it with guesses and never reach the
// threshold. It exists so that callers report both outcomes and the
// policy stays here, in one place; today it changes nothing.
func (g *Guard) Succeed(ip netip.Addr, now time.Time) {}

// isExempt reports whether ip lies in an exempt range. It does not
// allocate.
func (g *Guard) isExempt(ip netip.Addr) bool {
	if len(g.exempt) == 0 {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range g.exempt {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// checkExempt says what is wrong with an exempt range, "" if nothing.
func checkExempt(p netip.Prefix) string {
	switch {
	case !p.IsValid():
		return "not a valid range"
	case p.Addr().Is4In6():
		return "an IPv4-mapped range; give it in IPv4 form"
	case p != p.Masked():
		return "address bits set past the prefix length; did you mean " + p.Masked().String() + "?"
	}
	return ""
}

// ParseNetworks reads a comma-separated list of CIDR ranges and addresses
// (an address is a range of one), as --guard-exempt takes it. Blank input
// is no ranges. Every entry must be a range in canonical form: an empty
// entry, an address with a zone, an IPv4-mapped IPv6 form and a range with
// bits set past its prefix length ("10.0.0.1/8") are refused, not guessed
// at, since an exemption wider or narrower than meant is a silent hole.
func ParseNetworks(list string) ([]netip.Prefix, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	var out []netip.Prefix
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, latchkey.Errorf(latchkey.EInvalid, "empty entry in a list of networks (a comma too many?)")
		}
		var p netip.Prefix
		if strings.Contains(item, "/") {
			var err error
			if p, err = netip.ParsePrefix(item); err != nil {
				return nil, latchkey.Errorf(latchkey.EInvalid, "%q is not a CIDR range such as 10.0.0.0/8 or 2001:db8::/32", clip(item))
			}
		} else {
			a, err := netip.ParseAddr(item)
			if err != nil {
				return nil, latchkey.Errorf(latchkey.EInvalid, "%q is not a CIDR range such as 10.0.0.0/8 or 2001:db8::/32, nor an address", clip(item))
			}
			if a.Zone() != "" {
				return nil, latchkey.Errorf(latchkey.EInvalid, "%q: an address with a zone cannot name a network", clip(item))
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err := checkExempt(p); err != "" {
			return nil, latchkey.Errorf(latchkey.EInvalid, "%q: %s", clip(item), err)
		}
		out = append(out, p)
	}
	return out, nil
}

// clip shortens s for an error message.
func clip(s string) string {
	// 40 bytes: quoted, each may take 4 (\x99), and the message must stay
	// short whatever the input.
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// raiseHorizon moves the horizon to until if that is later.
func (g *Guard) raiseHorizon(until time.Time) {
	for {
		old := g.horizon.Load()
		if old != nil && !until.After(*old) {
			return
		}
		if g.horizon.CompareAndSwap(old, &until) {
			return
		}
	}
}

// expired reports whether e carries nothing worth keeping at now: not
// blocked, and its counting window closed.
func (e *entry) expired(now time.Time, window time.Duration) bool {
	return !now.Before(e.until) && !now.Before(e.start.Add(window))
}

// sweep drops the shard's expired entries. The caller holds s.mu.
func (s *shard) sweep(now time.Time, window time.Duration) {
	for k, e := range s.m {
		if e.expired(now, window) {
			delete(s.m, k)
		}
	}
}

// makeRoom frees space in a full shard by forgetting arbitrary unblocked
// networks (Go's map iteration starts at a random place), expired or not,
// and blocked networks only when nothing else is left. It frees an eighth
// of the shard at once and stops as soon as it has, so that a flood of new
// networks costs about one entry visited per insertion rather than a scan
// of the shard per insertion; expired entries not reached here go at the
// next sweep. The caller holds s.mu.
func (s *shard) makeRoom(now time.Time, perShard int) {
	target := min(perShard-perShard/8, perShard-1)
	for k, e := range s.m {
		if len(s.m) <= target {
			return
		}
		if !now.Before(e.until) {
			delete(s.m, k)
		}
	}
	for k := range s.m {
		if len(s.m) <= target {
			return
		}
		delete(s.m, k)
	}
}

// Stats is latchkey.GuardStats, the guard's figures for metrics.
type Stats = latchkey.GuardStats

// Stats returns the guard's figures at now. It scans every tracked
// network under read locks, so call it for a metrics scrape, not per
// request.
func (g *Guard) Stats(now time.Time) Stats {
	st := Stats{BlocksTotal: g.blocks.Load()}
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.RLock()
		st.Tracked += len(s.m)
		for _, e := range s.m {
			if now.Before(e.until) {
				st.Blocked++
			}
		}
		s.mu.RUnlock()
	}
	return st
}
