// Package redisguard shares the brute-force guard's counts between the
// nodes of a cluster through Redis.
//
// Every node keeps its own guard.Guard, which answers Blocked from memory
// as on one node: the check before each verification stays a local,
// allocation-free lookup. What the cluster shares is the counting and the
// blocks:
//
//   - A failure the local guard counts is also queued (without blocking
//     the request) and added, in batches, to a counter per network in
//     Redis by one atomic script. The counter keeps the local guard's rule
//     (a window that opens at the network's first failure, the threshold,
//     the cool-off), so an attacker who spreads guesses over the nodes is
//     blocked after Threshold failures in all, not Threshold on each.
//   - The script that reaches the threshold sets the network's block in
//     Redis and publishes it; every node blocks the network in its own
//     guard on the message, and a node that (re)subscribes reads the
//     blocks in force first, so one that starts or reconnects mid-block
//     knows them.
//
// While Redis cannot be reached each node goes on counting alone (its
// local guard never stopped), which is the guard's failure mode whatever
// --redis-failure says of limits: blocking every client because Redis is
// down would turn an outage into a lock-out. Failures that could not be
// sent are dropped, not replayed, and counted in Stats.
package redisguard

import (
	"context"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/guard"
)

// Options configure a Guard. Zero fields take the defaults.
type Options struct {
	// Prefix starts every Redis key and the channel (default
	// "latchkey:"); the nodes of one cluster share it.
	Prefix string
	// Queue is how many failures may wait to be sent (default 4096);
	// more are dropped and counted.
	Queue int
	// Backoff is how long after a failed Redis call failures are dropped
	// rather than sent (default 1s), so a dead Redis costs one timeout
	// per Backoff, not one per batch.
	Backoff time.Duration
	// OnBlock, if set, is told of each block this node's failures started
	// in the cluster (the node that reaches the threshold reports it, as
	// a single node does; the others only apply it).
	OnBlock func(network netip.Prefix, at time.Time)
	// OnFailure, if set, is called with every failed Redis call's error.
	// It must not block.
	OnFailure func(err error)
	// Logger receives the switches to and from counting alone (default:
	// discarded). Nothing logged holds a key: networks and Redis errors.
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Stats counts what the shared guard did.
type Stats struct {
	// Shared counts blocks this node applied because the cluster's count
	// reached the threshold (its own or another node's failures).
	Shared uint64
	// Dropped counts failures not sent to Redis: the queue was full or
	// Redis was unreachable. The local guard counted them.
	Dropped uint64
	// RedisErrors counts failed Redis calls.
	RedisErrors uint64
}

// batch bounds the failures sent in one pipeline.
const batch = 512

// Guard is a guard.Guard whose counts and blocks are shared through
// Redis. It implements what httpapi and metrics ask of a guard. Close it
// to stop its goroutines.
type Guard struct {
	local     *guard.Guard
	rdb       redis.UniversalClient
	prefix    string
	channel   string
	threshold int
	window    time.Duration
	cooloff   time.Duration
	backoff   time.Duration
	onBlock   func(netip.Prefix, time.Time)
	onFailure func(error)
	log       *slog.Logger
	now       func() time.Time

	queue   chan netip.Prefix
	ps      *redis.PubSub
	cancel  context.CancelFunc
	done    sync.WaitGroup
	shared  atomic.Uint64
	dropped atomic.Uint64
	errs    atomic.Uint64
	down    atomic.Bool
	// until is when the flusher next tries Redis after a failure
	// (flusher goroutine only).
	until time.Time
}

// New returns a Guard over local and rdb and starts its flusher and its
// subscriber.
func New(local *guard.Guard, rdb redis.UniversalClient, o Options) *Guard {
	if o.Prefix == "" {
		o.Prefix = "latchkey:"
	}
	if o.Queue <= 0 {
		o.Queue = 4096
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	threshold, window, cooloff := local.Rules()
	ctx, cancel := context.WithCancel(context.Background())
	g := &Guard{
		local: local, rdb: rdb, prefix: o.Prefix + "guard:", channel: o.Prefix + "guard:blocks",
		threshold: threshold, window: window, cooloff: cooloff, backoff: o.Backoff,
		onBlock: o.OnBlock, onFailure: o.OnFailure, log: o.Logger, now: o.Now,
		queue: make(chan netip.Prefix, o.Queue), cancel: cancel,
	}
	g.ps = rdb.Subscribe(ctx, g.channel)
	g.done.Add(2)
	go g.flusher(ctx)
	go g.subscriber(ctx)
	return g
}

// Close stops the goroutines; failures still queued are not sent.
func (g *Guard) Close() {
	g.cancel()
	// A Receive waiting for a message does not watch its context;
	// closing the subscription ends it.
	g.ps.Close()
	g.done.Wait()
}

// Blocked is the local guard's: no Redis call on the verify path.
func (g *Guard) Blocked(ip netip.Addr, now time.Time) (time.Duration, bool) {
	return g.local.Blocked(ip, now)
}

// Network is the local guard's.
func (g *Guard) Network(ip netip.Addr) netip.Prefix { return g.local.Network(ip) }

// Stats are the local guard's figures.
func (g *Guard) Stats(now time.Time) latchkey.GuardStats { return g.local.Stats(now) }

// SharedStats counts what the sharing did.
func (g *Guard) SharedStats() Stats {
	return Stats{Shared: g.shared.Load(), Dropped: g.dropped.Load(), RedisErrors: g.errs.Load()}
}

// Fail counts a failure in the local guard, which decides at once on
// this node's count, and queues it for the cluster's count. It does not
// wait for Redis and does not allocate.
func (g *Guard) Fail(ip netip.Addr, now time.Time) bool {
	if network, ok := g.local.Counted(ip, now); ok {
		select {
		case g.queue <- network:
		default:
			g.dropped.Add(1)
		}
	}
	return g.local.Fail(ip, now)
}

// countScript adds ARGV[1] failures to the network's counter (KEYS[1])
// unless it is blocked (KEYS[2]). The counter's window opens with its
// first failure (ARGV[2] ms); at the threshold (ARGV[4]) the counter is
// dropped, the block set for the cool-off (ARGV[3] ms) and published on
// ARGV[5] as "network ms". It returns 1 if it blocked, else 0.
var countScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n < tonumber(ARGV[4]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[5], ARGV[6] .. ' ' .. ARGV[3])
return 1
`)

// keys are a network's counter and block. The hash tag keeps both in one
// slot of a Redis Cluster.
func (g *Guard) keys(network netip.Prefix) []string {
	n := network.String()
	return []string{g.prefix + "{" + n + "}:f", g.prefix + "{" + n + "}:b"}
}

// flusher sends queued failures in batches, summed per network.
func (g *Guard) flusher(ctx context.Context) {
	defer g.done.Done()
	counts := make(map[netip.Prefix]int)
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-g.queue:
			counts[p]++
		}
	drain:
		for range batch - 1 {
			select {
			case p := <-g.queue:
				counts[p]++
			default:
				break drain
			}
		}
		g.send(ctx, counts)
		clear(counts)
	}
}

// send runs the count script for each network of counts in one pipeline.
func (g *Guard) send(ctx context.Context, counts map[netip.Prefix]int) {
	now := g.now()
	if now.Before(g.until) {
		g.drop(counts)
		return
	}
	networks := make([]netip.Prefix, 0, len(counts))
	cmds := make([]*redis.Cmd, 0, len(counts))
	pipe := g.rdb.Pipeline()
	for p, n := range counts {
		networks = append(networks, p)
		cmds = append(cmds, countScript.Eval(ctx, pipe, g.keys(p),
			n, g.window.Milliseconds(), g.cooloff.Milliseconds(), g.threshold, g.channel, p.String()))
	}
	if _, err := pipe.Exec(ctx); err != nil && ctx.Err() == nil {
		g.failed(err, now)
		g.drop(counts)
		return
	}
	if g.down.Swap(false) {
		g.log.Info("Redis answers again; the brute-force guard counts for the whole cluster")
	}
	for i, c := range cmds {
		if blocked, err := c.Int(); err == nil && blocked == 1 {
			// Applied here at once (the published message may have done
			// it already). One script run reaches the threshold per
			// block, so this node alone reports it.
			if g.local.Block(networks[i], now.Add(g.cooloff), now) {
				g.shared.Add(1)
			}
			if g.onBlock != nil {
				g.onBlock(networks[i], now)
			}
		}
	}
}

func (g *Guard) drop(counts map[netip.Prefix]int) {
	for _, n := range counts {
		g.dropped.Add(uint64(n))
	}
}

// failed records a failed Redis call and backs off.
func (g *Guard) failed(err error, now time.Time) {
	g.errs.Add(1)
	g.until = now.Add(g.backoff)
	if g.onFailure != nil {
		g.onFailure(err)
	}
	if !g.down.Swap(true) {
		g.log.Warn("Redis does not answer; the brute-force guard counts on this node alone until it does", "err", err)
	}
}

// subscriber applies the blocks other nodes publish, and reads the blocks
// in force each time the subscription is (re)made.
func (g *Guard) subscriber(ctx context.Context) {
	defer g.done.Done()
	for {
		msg, err := g.ps.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			g.errs.Add(1)
			if g.onFailure != nil {
				g.onFailure(err)
			}
			// The next Receive reconnects and subscribes again.
			select {
			case <-ctx.Done():
				return
			case <-time.After(g.backoff):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				g.resync(ctx)
			}
		case *redis.Message:
			if network, left, err := ParseBlock(m.Payload); err == nil {
				g.apply(network, left)
			}
		}
	}
}

// apply blocks network on this node for left from now.
func (g *Guard) apply(network netip.Prefix, left time.Duration) {
	now := g.now()
	if g.local.Block(network, now.Add(left), now) {
		g.shared.Add(1)
	}
}

// resync applies every block in force in Redis.
func (g *Guard) resync(ctx context.Context) {
	iter := g.rdb.Scan(ctx, 0, g.prefix+"{*}:b", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		network, err := netip.ParsePrefix(strings.TrimSuffix(strings.TrimPrefix(key, g.prefix+"{"), "}:b"))
		if err != nil {
			continue
		}
		left, err := g.rdb.PTTL(ctx, key).Result()
		if err != nil {
			break
		}
		if left > 0 {
			g.apply(network, left)
		}
	}
	if err := iter.Err(); err != nil && ctx.Err() == nil {
		g.errs.Add(1)
		if g.onFailure != nil {
			g.onFailure(err)
		}
	}
}

// maxLeft bounds a published block: a cool-off longer than a week is a
// corrupt or hostile message.
const maxLeft = 7 * 24 * time.Hour

// ParseBlock reads a published block, "network milliseconds". Errors:
// EInvalid.
func ParseBlock(s string) (netip.Prefix, time.Duration, error) {
	net, ms, ok := strings.Cut(s, " ")
	if !ok {
		return netip.Prefix{}, 0, latchkey.Errorf(latchkey.EInvalid, "guard block message: want \"network milliseconds\"")
	}
	p, err := netip.ParsePrefix(net)
	if err != nil || p != p.Masked() {
		return netip.Prefix{}, 0, latchkey.Errorf(latchkey.EInvalid, "guard block message: not a network")
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n <= 0 || n > maxLeft.Milliseconds() {
		return netip.Prefix{}, 0, latchkey.Errorf(latchkey.EInvalid, "guard block message: cool-off out of range")
	}
	return p, time.Duration(n) * time.Millisecond, nil
}
