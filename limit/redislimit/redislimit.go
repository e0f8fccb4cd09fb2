package redislimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/redis/go-redis/v9"
)

// Failure modes for Options.Failure.
const (
	// FailureLocal admits through Options.Local, with every limit of the
	// key divided by Options.Nodes, while Redis is unreachable.
	FailureLocal = "local"
	// FailureDeny answers EUnavailable while Redis is unreachable.
	FailureDeny = "deny"
)

// DefaultPrefix starts the name of every Redis key the limiter writes.
const DefaultPrefix = "latchkey:"

// Options configures a Limiter. Zero values take the documented defaults.
type Options struct {
	// Prefix starts every Redis key (default DefaultPrefix). Nodes that
	// share limits share the prefix; two services on one Redis need two.
	Prefix string
	// FlushInterval is how often periodic quota consumption counted in
	// Redis is written to the store, and how long a credit balance must
	// be idle on this node before its unspent reservation is given back
	// (default 1s).
	FlushInterval time.Duration
	// Failure is what happens while Redis is unreachable: FailureLocal
	// (the default) or FailureDeny.
	Failure string
	// Nodes is how many nodes share the limits (default 1). Under
	// FailureLocal each node enforces every limit divided by Nodes,
	// rounded down and at least 1, so that the cluster as a whole stays
	// near the key's limits while each node counts alone.
	Nodes int
	// Local is the limiter that decides while Redis is unreachable under
	// FailureLocal (package limit's Memory; cmd/latchkey wires one). Without
	// one, FailureLocal behaves as FailureDeny.
	Local latchkey.Limiter
	// Backoff is how long after a failed Redis call every call goes
	// straight to the fallback before Redis is tried again (default 1s), so
	// that a dead Redis does not add its timeout to every request.
	Backoff time.Duration
	// OnFailure, if set, is called with every failed Redis call's error
	// (for metrics). It must not block.
	OnFailure func(err error)
	// Logger receives the switches to and from the fallback and failed
	// background flushes (default: discarded). Nothing logged holds a key
	// or a secret: key ids and Redis errors only.
	Logger *slog.Logger
}

// Stats counts what the limiter did because Redis failed.
type Stats struct {
	// RedisErrors counts failed Redis calls.
	RedisErrors uint64
	// Fallbacks counts requests decided by Options.Local.
	Fallbacks uint64
	// Unavailable counts requests answered EUnavailable because Redis
	// was unreachable (FailureDeny, or no Local).
	Unavailable uint64
	// Down is true while calls go to the fallback (within Backoff of the
	// last failure).
	Down bool
	// Remembered counts requests answered RATE_LIMITED on this node
	// without a Redis call: an earlier answer said no request could pass
	// before then.
	Remembered uint64
}

// Bounds and sizes.
const (
	// slack is added to every Redis TTL: state outlives the instant it
	// stops mattering by this much, which covers nodes whose clocks differ
	// a little and flushes that run late.
	slack = time.Minute
	// quotaIdleTTL bounds how long an idle quota counter stays in Redis.
	// The store has it by then (flushes run every FlushInterval), and the
	// next request reads it back.
	quotaIdleTTL = time.Hour
	// lockFor bounds a reservation's hold on a key's reservation lock, so
	// that a node that dies while reserving blocks others no longer.
	lockFor = 10 * time.Second
	// storeTimeout bounds one store write of a reservation or a flush.
	storeTimeout = 5 * time.Second
	// decideBudget bounds how long one Admit may wait for reservations of
	// other requests before it answers EUnavailable.
	decideBudget = 10 * time.Second
	// flushBatch bounds the counters written in one store transaction.
	flushBatch = 256
	// maxFlushRounds bounds one Flush: flushBatch·maxFlushRounds counters.
	maxFlushRounds = 1 << 14
	// Reservations are sized as limit.Memory sizes them: the first is
	// what the request needs, each next doubles while the last lasted
	// less than reserveSpan and halves when it lasted more than four
	// times that, capped at maxChunk and at the balance.
	reserveSpan = 100 // ms
	maxChunk    = 1 << 16
)

// Limiter is a latchkey.Limiter and latchkey.QuotaReader whose state lives in
// Redis, so that every node using the same Redis and prefix enforces the
// same limits exactly. It is safe for concurrent use. Close it to stop the
// background flusher and write the last consumption.
type Limiter struct {
	rdb       redis.UniversalClient
	store     latchkey.Store[latchkey.QuotaStore]
	prefix    string
	dirty     string
	interval  time.Duration
	deny      bool
	nodes     int64
	local     latchkey.Limiter
	backoff   time.Duration
	onFailure func(error)
	log       *slog.Logger
	node      string // random, names this limiter's reservation locks
	seq       atomic.Uint64

	downUntil   atomic.Int64 // unix ns (wall clock) until which Redis is not tried
	down        atomic.Bool
	redisErrors atomic.Uint64
	fallbacks   atomic.Uint64
	unavailable atomic.Uint64
	shortcuts   atomic.Uint64
	// denied answers a rate-limited key without Redis until its windows
	// can admit again (denials).
	denied *denials
	// clock is the now of a recent call (unix ns), for the lock times of
	// Flush, which has no now of its own: locks are compared with callers'
	// clocks.
	clock atomic.Int64

	mu       sync.Mutex
	inflight map[string]chan struct{} // reservations this node is making
	forgets  map[string]struct{}      // Forgets not yet applied in Redis
	nForgets atomic.Int32
	// balances are the credit balances this node spent from, each with a
	// flag set by every request and cleared by every sweep: a balance
	// untouched for a whole interval gives back its reservation.
	balances sync.Map // key id → *atomic.Bool

	flushMu   sync.Mutex
	loopCtx   context.Context
	cancel    context.CancelFunc
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

var (
	_ latchkey.Limiter     = (*Limiter)(nil)
	_ latchkey.QuotaReader = (*Limiter)(nil)
)

// New returns a limiter over client and starts its background flusher.
// store keeps quota consumption; without one, quotas live in Redis only
// (and credits are spent there without reservations: for tools and tests).
// The client should not retry commands by itself (MaxRetries -1): a script
// retried after a lost reply would count a request twice.
func New(client redis.UniversalClient, store latchkey.Store[latchkey.QuotaStore], o Options) *Limiter {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.Nodes < 1 {
		o.Nodes = 1
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var r [8]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails on supported platforms
	l := &Limiter{
		rdb:       client,
		store:     latchkey.OrNil(store),
		prefix:    o.Prefix,
		dirty:     o.Prefix + "dirty",
		interval:  o.FlushInterval,
		deny:      o.Failure == FailureDeny,
		nodes:     int64(o.Nodes),
		local:     latchkey.OrNil(o.Local),
		backoff:   o.Backoff,
		onFailure: o.OnFailure,
		log:       o.Logger,
		node:      hex.EncodeToString(r[:]),
		inflight:  make(map[string]chan struct{}),
		denied:    newDenials(),
		forgets:   make(map[string]struct{}),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	l.loopCtx, l.cancel = context.WithCancel(context.Background())
	go l.run()
	return l
}

// ValidFailure reports whether s names a failure mode (for flag parsing).
func ValidFailure(s string) bool { return s == FailureLocal || s == FailureDeny }

// Stats returns what the limiter did because Redis failed, for metrics.
func (l *Limiter) Stats() Stats {
	return Stats{
		RedisErrors: l.redisErrors.Load(),
		Fallbacks:   l.fallbacks.Load(),
		Unavailable: l.unavailable.Load(),
		Down:        l.isDown(),
		Remembered:  l.shortcuts.Load(),
	}
}

func (l *Limiter) stateKey(id string) string { return l.prefix + "k:" + id }
func (l *Limiter) leaseKey(id string) string { return l.prefix + "L:" + id }

// Admit checks the key's rate windows, quota and concurrency limit, and
// those of the key's owner (k.Bound.Owner, shared by every key of the
// owner on every node), in one Redis script and, only if all of them
// allow the request, consumes from every window that counts it (one
// request, or a named cost for an ApplyOnRequest window), cost units from
// the key's quota and the owner's, and one slot. Errors: EInvalid for a
// negative cost, invalid named costs (more than latchkey.MaxNamedCosts, a
// negative one, a name given twice, one above its window's limit) or a
// limit that could not have passed validation; the store's error when a
// quota usage or a credit reservation cannot be read or written (nothing
// is admitted); EUnavailable when Redis is unreachable and the failure
// mode is "deny" (or there is no local fallback), or when the
// reservations of other requests for the key take too long.
func (l *Limiter) Admit(ctx context.Context, k *latchkey.Key, cost int64, named []latchkey.NamedCost, now time.Time) (latchkey.Admission, error) {
	if cost < 0 {
		return latchkey.Admission{}, latchkey.Errorf(latchkey.EInvalid, "cost must not be negative")
	}
	if err := validNamed(named); err != nil {
		return latchkey.Admission{}, err
	}
	o := ownerLimits(k)
	if len(k.RateLimits) == 0 && k.Quota == nil && k.MaxConcurrent <= 0 && o == nil {
		return latchkey.Admission{}, nil
	}
	if err := validWindows(k.RateLimits, "key", k.ID); err != nil {
		return latchkey.Admission{}, err
	}
	if o != nil {
		if err := validWindows(o.RateLimits, "owner", o.ID); err != nil {
			return latchkey.Admission{}, err
		}
	}
	if err := namedWithinLimits(k, o, named); err != nil {
		return latchkey.Admission{}, err
	}
	l.observe(now)
	if l.isDown() {
		return l.fallback(ctx, k, cost, named, now)
	}
	// Remembered denials are exact only for what they were learnt from:
	// requests that charge the key's own windows, one each. A request
	// with named costs or owner limits always asks Redis.
	remember := len(k.RateLimits) > 0 && len(named) == 0 && o == nil
	var sig uint64
	if remember {
		sig = windowsSig(k.RateLimits)
		if adm, ok := l.denied.get(k.ID, sig, now); ok {
			l.shortcuts.Add(1)
			return adm, nil
		}
	}
	if l.nForgets.Load() > 0 {
		l.applyForgets(ctx)
	}
	var c call
	if err := c.build(l, k, o, cost, named, now, "a"); err != nil {
		return latchkey.Admission{}, err
	}
	if k.Quota != nil && k.Quota.IsCredit() {
		l.touchBalance(k.ID)
	}
	res, err := l.decide(ctx, k, &c)
	if err != nil {
		if errors.Is(err, errRedis) {
			return l.fallback(ctx, k, cost, named, now)
		}
		return latchkey.Admission{}, err
	}
	adm := c.admission(k, res)
	if remember && adm.Code == latchkey.CodeRateLimited && adm.RetryAfter > 0 {
		l.denied.put(k.ID, sig, adm, now)
	}
	return adm, nil
}

// validWindows refuses rate windows that could not have passed
// validation (a limit or window below 1).
func validWindows(rls []latchkey.RateLimit, kind, id string) error {
	for i := range rls {
		if rl := &rls[i]; rl.Limit < 1 || rl.Window <= 0 {
			return latchkey.Errorf(latchkey.EInvalid, "%s %s: rate window %q needs a positive limit and window", kind, id, rl.Name)
		}
	}
	return nil
}

// ownerLimits returns the key's owner record if it has limits to enforce
// (rate windows, or a periodic quota: a credit balance is refused when an
// owner is written, and ignored here), else nil. (As package limit.)
func ownerLimits(k *latchkey.Key) *latchkey.Owner {
	if k.Bound == nil || k.Bound.Owner == nil {
		return nil
	}
	o := k.Bound.Owner
	if len(o.RateLimits) == 0 && (o.Quota == nil || o.Quota.IsCredit()) {
		return nil
	}
	return o
}

// validNamed checks a request's named costs by themselves: at most
// latchkey.MaxNamedCosts of them, none negative, no name twice.
func validNamed(named []latchkey.NamedCost) error {
	if len(named) > latchkey.MaxNamedCosts {
		return latchkey.Errorf(latchkey.EInvalid, "at most %d named costs per request", latchkey.MaxNamedCosts)
	}
	for i := range named {
		if named[i].Cost < 0 {
			return latchkey.Errorf(latchkey.EInvalid, "named cost %q must not be negative", named[i].Name)
		}
		for j := range i {
			if named[j].Name == named[i].Name {
				return latchkey.Errorf(latchkey.EInvalid, "named cost %q given twice", named[i].Name)
			}
		}
	}
	return nil
}

// namedWithinLimits refuses a named cost above the limit of a window it
// is charged to (the key's or the owner's; o may be nil): no wait could
// ever admit it.
func namedWithinLimits(k *latchkey.Key, o *latchkey.Owner, named []latchkey.NamedCost) error {
	if len(named) == 0 {
		return nil
	}
	sets := [2][]latchkey.RateLimit{k.RateLimits}
	if o != nil {
		sets[1] = o.RateLimits
	}
	for _, rls := range sets {
		for i := range rls {
			rl := &rls[i]
			if c, ok := costOf(rl, named); ok && c > rl.Limit {
				return latchkey.Errorf(latchkey.EInvalid, "named cost %q of %d exceeds the window's limit of %d", rl.Name, c, rl.Limit)
			}
		}
	}
	return nil
}

// costOf returns what a request spends of a rate window and whether it
// counts there at all: one for an ApplyAlways window; the named cost for
// an ApplyOnRequest window the request names with a positive cost (a cost
// of 0 passes and spends nothing, as a request that does not name it).
func costOf(rl *latchkey.RateLimit, named []latchkey.NamedCost) (int64, bool) {
	if rl.Apply != latchkey.ApplyOnRequest {
		return 1, true
	}
	for i := range named {
		if named[i].Name == rl.Name {
			return named[i].Cost, named[i].Cost > 0
		}
	}
	return 0, false
}

// errRedis marks a failed Redis call, after which the fallback decides.
var errRedis = errors.New("redis unreachable")

// decide runs the admit script until it decides: reading the stored usage
// when the counter is missing, reserving credits, or waiting for another
// request's reservation in between.
func (l *Limiter) decide(ctx context.Context, k *latchkey.Key, c *call) ([]any, error) {
	deadline := time.Now().Add(decideBudget)
	pause := 500 * time.Microsecond
	for {
		res, err := admitScript.Run(ctx, l.rdb, c.keys[:], c.args...).Slice()
		if err != nil {
			return nil, l.failed(ctx, err)
		}
		l.recovered()
		switch status, _ := res[0].(int64); status {
		case 0:
			return res, nil
		case 1:
			sec := &c.key
			if which, _ := res[1].(string); which == "o" {
				sec = &c.owner
			}
			u, err := l.readUsage(ctx, sec.id)
			if err != nil {
				return nil, err
			}
			c.setLoad(sec, u)
		case 2:
			if err := l.reserve(ctx, k, c, res); err != nil {
				return nil, err
			}
		case 3:
			l.mu.Lock()
			ch := l.inflight[k.ID]
			l.mu.Unlock()
			if ch == nil {
				// Another node's reservation: poll, a little slower
				// each time.
				ch2 := time.After(pause)
				pause = min(2*pause, 20*time.Millisecond)
				select {
				case <-ch2:
				case <-ctx.Done():
					return nil, latchkey.Errorf(latchkey.EUnavailable, "waiting for a credit reservation: %v", ctx.Err())
				}
			} else {
				select {
				case <-ch:
				case <-ctx.Done():
					return nil, latchkey.Errorf(latchkey.EUnavailable, "waiting for a credit reservation: %v", ctx.Err())
				}
			}
		default:
			return nil, l.failed(ctx, fmt.Errorf("redislimit: unexpected script reply %v", res))
		}
		if time.Now().After(deadline) {
			return nil, latchkey.Errorf(latchkey.EUnavailable, "the credit reservations of key %s took longer than %v", k.ID, decideBudget)
		}
	}
}

// call is the arguments of one admit script run.
type call struct {
	keys [6]string
	args []any
	// What the reply is read against.
	ns, nowMs int64
	now       time.Time
	cost      int64
	key       section
	owner     section
	leaseAt   int // index of the lease id in args
	token     string
}

// section is what a call holds of one set of limits: the key's own, or
// its owner's.
type section struct {
	id      string // the key id, or the owner's latchkey.OwnerQuotaID
	wins    []winParams
	quota   *latchkey.Quota // nil: none (an owner's credit balance is none)
	anchor  time.Time       // where the quota's periods are counted from
	quotaAt int             // index of the quota arguments in args
	curPS   string
	end     time.Time // end of the current period
}

// winParams is one window as this call charges it: inc + incRem/limit ns
// is what the request moves its TAT by (cost × period/limit; 0 for an
// ApplyOnRequest window the request does not name).
type winParams struct {
	limit, period, inc, incRem int64
}

// Argument layout (1-based, as the script sees it): mode, now s, now ns,
// cost, slack ms; then two sections, the key's and the owner's, each:
// active flag, number of windows, per window id, limit, period s, period
// ns, increment s, increment ns, increment remainder; quota kind,
// definition, current period start (µs), limit or balance, quota TTL ms,
// load flag, stored epoch, stored period start, stored used, reserve
// flag; the section's id (key id or owner quota id); then max concurrent,
// lease id, lease expiry s, lease expiry ns, lease TTL ms, lock token,
// lock ms.
func (c *call) build(l *Limiter, k *latchkey.Key, o *latchkey.Owner, cost int64, named []latchkey.NamedCost, now time.Time, mode string) error {
	ns := now.UnixNano()
	s, n := split(ns)
	c.ns, c.now, c.cost = ns, now, cost
	c.nowMs = s*1000 + n/1e6
	// Costs beyond 2^53 cannot be exact in the script, and need not be:
	// no limit is that large (latchkey.ValidateQuota).
	scost := min(cost, 1<<54)
	var krl, orl []latchkey.RateLimit
	if mode == "a" {
		krl = k.RateLimits
		if o != nil {
			orl = o.RateLimits
		}
	}
	c.args = make([]any, 0, 5+2*(13+7*len(krl))+7)
	c.args = append(c.args, mode, s, n, scost, slack.Milliseconds())
	if c.token == "" && k.Quota != nil && k.Quota.IsCredit() && l.store != nil {
		c.token = l.node + ":" + strconv.FormatUint(l.seq.Add(1), 10)
	}
	c.key = section{id: k.ID, quota: k.Quota, anchor: k.CreatedAt}
	if err := c.section(l, &c.key, true, krl, named, true); err != nil {
		return err
	}
	c.owner = section{}
	if o != nil {
		c.owner = section{id: latchkey.OwnerQuotaID(o.Tenant, o.ID), anchor: o.CreatedAt}
		if o.Quota != nil && !o.Quota.IsCredit() {
			c.owner.quota = o.Quota
		}
	}
	if err := c.section(l, &c.owner, o != nil, orl, named, false); err != nil {
		return err
	}
	leaseID, es, en, lttl := "", int64(0), int64(0), int64(0)
	maxc := 0
	if mode == "a" && k.MaxConcurrent > 0 {
		maxc = k.MaxConcurrent
		d := time.Duration(k.LeaseTTL)
		if d <= 0 {
			d = latchkey.DefaultLeaseTTL
		}
		leaseID = latchkey.NewLeaseID()
		es, en = split(ns + int64(d))
		lttl = ceilMs(d)
	}
	c.leaseAt = len(c.args) + 1
	c.args = append(c.args, maxc, leaseID, es, en, lttl, c.token, lockFor.Milliseconds())
	c.keys = [6]string{l.stateKey(k.ID), l.prefix + "c:" + k.ID, l.prefix + "x:" + k.ID, l.stateKey(k.ID), l.dirty, l.stateKey(k.ID)}
	if leaseID != "" {
		c.keys[3] = l.leaseKey(leaseID)
	}
	if o != nil {
		c.keys[5] = l.stateKey(c.owner.id)
	}
	return nil
}

// section appends one section's arguments (see build).
func (c *call) section(l *Limiter, sec *section, active bool, rls []latchkey.RateLimit, named []latchkey.NamedCost, isKey bool) error {
	flag := "0"
	if active {
		flag = "1"
	}
	c.args = append(c.args, flag, len(rls))
	sec.wins = make([]winParams, len(rls))
	for i := range rls {
		rl := &rls[i]
		p := int64(rl.Window)
		w := winParams{limit: rl.Limit, period: p}
		if cost, counts := costOf(rl, named); counts {
			w.inc, w.incRem = weighted(p, rl.Limit, cost)
		}
		sec.wins[i] = w
		ps, pn := split(p)
		is, in := split(w.inc)
		c.args = append(c.args, strconv.FormatInt(w.limit, 10)+"/"+strconv.FormatInt(p, 10), w.limit, ps, pn, is, in, w.incRem)
	}
	sec.quotaAt = len(c.args)
	kind, def, curPS, qlimit, ttl := "", "", "", int64(0), int64(0)
	reserve := "0"
	if q := sec.quota; q != nil {
		if q.IsCredit() {
			kind, def, qlimit, ttl = "b", "b", *q.Remaining, quotaIdleTTL.Milliseconds()
			if isKey && l.store != nil {
				reserve = "1"
			}
		} else {
			start, err := latchkey.QuotaPeriodStart(q.Period, sec.anchor, c.now)
			if err != nil {
				return err
			}
			sec.end = latchkey.QuotaPeriodEnd(q.Period, start).UTC()
			curPS = strconv.FormatInt(start.UTC().Truncate(time.Microsecond).UnixMicro(), 10)
			kind, def, qlimit = "p", "p:"+q.Period+":"+strconv.FormatInt(sec.anchor.UnixNano(), 10), q.Limit
			ttl = ceilMs(min(sec.end.Sub(c.now), quotaIdleTTL))
		}
	}
	sec.curPS = curPS
	c.args = append(c.args, kind, def, curPS, qlimit, ttl, "0", "", "", int64(0), reserve, sec.id)
	return nil
}

// weighted returns cost emission intervals of a window of limit per
// period, as nanoseconds and a remainder in units of 1/limit ns:
// cost·period/limit exactly. cost is at most limit (larger named costs
// are refused), so the result is at most the period.
func weighted(period, limit, cost int64) (int64, int64) {
	step, stepRem := period/limit, period%limit
	hi, lo := bits.Mul64(uint64(cost), uint64(stepRem))
	q, r := bits.Div64(hi, lo, uint64(limit))
	return cost*step + int64(q), int64(r)
}

// setLoad puts a stored usage row into the call's section sec, brought
// to its quota at now as limit.Memory brings it.
func (c *call) setLoad(sec *section, u latchkey.QuotaUsage) {
	ps, used := u.PeriodStart, u.Used
	if q := sec.quota; q.IsCredit() {
		if !ps.IsZero() {
			// Usage counted for a periodic quota the key had before.
			ps, used = time.Time{}, 0
		}
	} else {
		cur, _ := strconv.ParseInt(sec.curPS, 10, 64)
		key := time.UnixMicro(cur).UTC()
		switch {
		case ps.Equal(key):
		case key.After(ps) || !latchkey.QuotaPeriodAligned(q.Period, sec.anchor, ps):
			ps, used = key, 0
		}
	}
	a := c.args[sec.quotaAt:]
	a[5], a[6], a[8] = "1", strconv.FormatInt(u.Epoch, 10), used
	if ps.IsZero() {
		a[7] = ""
	} else {
		a[7] = strconv.FormatInt(ps.UnixMicro(), 10)
	}
}

// windows reads a section's TATs from a decided reply starting at res[at]
// and folds them into the tightest window (best) and, for a rate
// denial, the wait until every window of the section would admit the
// request. It returns the wait, whether a window of the section denied,
// and the index after the section's TATs.
func (c *call) windows(sec *section, res []any, at int, code int64, best *tightest) (wait int64, denied bool, next int) {
	ns := c.ns
	for i, w := range sec.wins {
		b := at + 3*i
		ts, tn, tr := asInt(res[b]), asInt(res[b+1]), asInt(res[b+2])
		tat := ts*1e9 + tn
		x, xr := tat, tr
		if tat < ns {
			x, xr = ns, 0
		}
		if code == 1 && (w.inc > 0 || w.incRem > 0) {
			next, nextRem := x+w.inc, xr+w.incRem
			if nextRem >= w.limit {
				nextRem -= w.limit
				next++
			}
			if d := next - ns; d > w.period || d == w.period && nextRem > 0 {
				denied = true
				wt := d - w.period
				if nextRem > 0 {
					wt++
				}
				wait = max(wait, wt)
			}
		}
		rem, reset := remaining(w, x, xr, ns), x
		if xr > 0 {
			reset++
		}
		if !best.any || rem < best.rem || rem == best.rem && reset < best.reset {
			best.any, best.rem, best.reset, best.limit = true, rem, reset, w.limit
		}
	}
	return wait, denied, at + 3*len(sec.wins)
}

// tightest is the window with the fewest requests remaining, then the one
// full again soonest.
type tightest struct {
	any               bool
	rem, reset, limit int64
}

// quotaFigures reads a section's quota from the reply's used and period
// start: its LimitState, whether it denies the request, and how long
// until it could admit it (0: waiting cannot help).
func (c *call) quotaFigures(sec *section, used int64, ps string) (latchkey.LimitState, bool, time.Duration) {
	q := sec.quota
	limit, end := q.Limit, time.Time{}
	if q.IsCredit() {
		limit = *q.Remaining
	} else {
		end = sec.end
		if ps != sec.curPS {
			// A caller whose clock lags counts in the later period
			// the counter is already in.
			if us, err := strconv.ParseInt(ps, 10, 64); err == nil {
				end = latchkey.QuotaPeriodEnd(q.Period, time.UnixMicro(us)).UTC()
			}
		}
	}
	st := latchkey.LimitState{Limit: limit, Remaining: max(limit-used, 0), ResetAt: end}
	var wait time.Duration
	if !end.IsZero() && c.cost <= limit {
		wait = end.Sub(c.now)
	}
	return st, c.cost > limit-used, wait
}

// admission reads a decided reply (see admitScript).
func (c *call) admission(k *latchkey.Key, res []any) latchkey.Admission {
	var adm latchkey.Admission
	code := asInt(res[1])
	var best tightest
	keyWait, keyRateDenied, at := c.windows(&c.key, res, 7, code, &best)
	var ownerWait int64
	ownerRateDenied := false
	var ownerUsed int64
	var ownerPS string
	if at+2 < len(res) {
		ownerUsed = asInt(res[at])
		ownerPS, _ = res[at+1].(string)
		ownerWait, ownerRateDenied, _ = c.windows(&c.owner, res, at+3, code, &best)
	}
	if best.any {
		adm.RateLimit = latchkey.LimitState{Limit: best.limit, Remaining: best.rem, ResetAt: time.Unix(0, best.reset).UTC()}
	}
	keyQuotaOK, ownerQuotaOK := true, true
	var keyQuotaWait, ownerQuotaWait time.Duration
	if c.key.quota != nil {
		ps, _ := res[3].(string)
		var denies bool
		adm.Quota, denies, keyQuotaWait = c.quotaFigures(&c.key, asInt(res[2]), ps)
		keyQuotaOK = code != 2 || !denies
	}
	if c.owner.quota != nil {
		st, denies, wait := c.quotaFigures(&c.owner, ownerUsed, ownerPS)
		if c.key.quota == nil {
			adm.Quota = st
		}
		ownerQuotaOK, ownerQuotaWait = code != 2 || !denies, wait
	}
	switch code {
	case 0:
		if k.MaxConcurrent > 0 {
			adm.LeaseID, _ = c.args[c.leaseAt].(string)
		}
	case 1:
		adm.Code, adm.RetryAfter = latchkey.CodeRateLimited, time.Duration(max(keyWait, ownerWait))
		adm.Owner = ownerRateDenied && !keyRateDenied
	case 2:
		adm.Code, adm.RetryAfter = latchkey.CodeQuotaExceeded, quotaRetry(keyQuotaOK, keyQuotaWait, ownerQuotaOK, ownerQuotaWait)
		adm.Owner = keyQuotaOK
	case 3:
		first := asInt(res[4])*1e9 + asInt(res[5])
		adm.Code, adm.RetryAfter = latchkey.CodeConcurrencyExceeded, time.Duration(first-c.ns)
	}
	return adm
}

// quotaRetry is RetryAfter of QUOTA_EXCEEDED when the key's quota, the
// owner's or both deny: how long until both could admit, or 0 when
// waiting cannot help one that denies (as limit.Memory reports it).
func quotaRetry(keyOK bool, keyWait time.Duration, ownerOK bool, ownerWait time.Duration) time.Duration {
	switch {
	case !keyOK && keyWait == 0, !ownerOK && ownerWait == 0:
		return 0
	case keyOK:
		return ownerWait
	case ownerOK:
		return keyWait
	}
	return max(keyWait, ownerWait)
}

// remaining returns how many requests the window admits at now when its
// TAT is x + xr/limit (x ≥ now): ⌊(now + period − TAT) / (period/limit)⌋,
// as limit.Memory computes it.
func remaining(w winParams, x, xr, now int64) int64 {
	d := now + w.period - x
	if d <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(d), uint64(w.limit))
	lo, borrow := bits.Sub64(lo, uint64(xr), 0)
	hi -= borrow
	q, _ := bits.Div64(hi, lo, uint64(w.period))
	return min(int64(q), w.limit)
}

// reserve writes a larger reservation of the key's balance to the store
// and then raises the counter's reservation in Redis. The caller holds the
// key's reservation lock (the script's reply {2, …} gave it).
func (l *Limiter) reserve(ctx context.Context, k *latchkey.Key, c *call, res []any) error {
	need, rv, chunk, rat := asInt(res[1]), asInt(res[3]), asInt(res[5]), asInt(res[6])
	epochStr, _ := res[2].(string)
	epoch, _ := strconv.ParseInt(epochStr, 10, 64)
	done := make(chan struct{})
	l.mu.Lock()
	l.inflight[k.ID] = done
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.inflight, k.ID)
		l.mu.Unlock()
		close(done)
	}()

	next := nextChunk(chunk, rat, c.nowMs)
	balance := *k.Quota.Remaining
	var raise, size int64
	stale := false
	// Bounded by its own timeout rather than the request's context: the
	// lock must be released whatever happens to the request.
	sctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	err := l.store.Update(sctx, func(tx latchkey.QuotaStore) error {
		raise, size, stale = 0, 0, false
		row, err := tx.QuotaUsage(k.ID)
		if err != nil {
			return err
		}
		if row.Epoch != epoch {
			stale = true
			return nil
		}
		// The store may hold more than Redis knows (a reservation by a
		// node whose raise was lost, credits spent while Redis was
		// down): build on the larger.
		base := max(row.Used, rv)
		to := min(base+max(next, need), balance)
		raise, size = max(to, row.Used), to-base
		if to > row.Used {
			ok, err := tx.SaveQuotaUsage(latchkey.QuotaUsage{KeyID: k.ID, Epoch: epoch, Used: to})
			if err != nil {
				return err
			}
			if !ok {
				raise, stale = 0, true
			}
		}
		return nil
	})
	cancel()
	if err != nil {
		raise, stale = 0, false
	}
	mark := ""
	if stale {
		// The balance was set anew since the counter was loaded: what it
		// counted belongs to the old one. The next call reads it again.
		mark = "stale"
	}
	rerr := raiseScript.Run(ctx, l.rdb, []string{c.keys[0]}, epochStr, raise, mark, c.token, size, c.nowMs).Err()
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return latchkey.Errorf(latchkey.EUnavailable, "the credit reservation of %s could not be written in time", k.ID)
		}
		return fmt.Errorf("redislimit: reserving credits of %s: %w", k.ID, err)
	}
	if rerr != nil {
		return l.failed(ctx, rerr)
	}
	return nil
}

// nextChunk sizes the next reservation at nowMs from the last one's size
// and time.
func nextChunk(chunk, ratMs, nowMs int64) int64 {
	c := chunk
	switch lasted := nowMs - ratMs; {
	case c == 0:
		return 1
	case lasted < reserveSpan:
		c *= 2
	case lasted > 4*reserveSpan:
		c /= 2
	}
	return min(max(c, 1), maxChunk)
}

func (l *Limiter) touchBalance(id string) {
	v, ok := l.balances.Load(id)
	if !ok {
		v, _ = l.balances.LoadOrStore(id, new(atomic.Bool))
	}
	if b := v.(*atomic.Bool); !b.Load() {
		b.Store(true)
	}
}

// readUsage reads the key's stored usage row (the zero row without a
// store).
func (l *Limiter) readUsage(ctx context.Context, id string) (latchkey.QuotaUsage, error) {
	if l.store == nil {
		return latchkey.QuotaUsage{KeyID: id}, nil
	}
	var u latchkey.QuotaUsage
	err := l.store.View(ctx, func(tx latchkey.QuotaStore) error {
		var err error
		u, err = tx.QuotaUsage(id)
		return err
	})
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return latchkey.QuotaUsage{}, latchkey.Errorf(latchkey.EUnavailable, "the quota usage of %s could not be read in time", id)
		}
		return latchkey.QuotaUsage{}, fmt.Errorf("redislimit: reading the quota usage of %s: %w", id, err)
	}
	u.KeyID = id
	return u, nil
}

// Quota reports the key's quota as a request at now would find it, with
// the consumption of every node, and consumes nothing. While Redis is
// unreachable it reports what the store holds.
func (l *Limiter) Quota(ctx context.Context, k *latchkey.Key, now time.Time) (latchkey.LimitState, error) {
	if k.Quota == nil {
		return latchkey.LimitState{}, nil
	}
	if !l.isDown() {
		var c call
		if err := c.build(l, k, nil, 0, nil, now, "q"); err != nil {
			return latchkey.LimitState{}, err
		}
		res, err := l.decide(ctx, k, &c)
		if err == nil {
			return c.admission(k, res).Quota, nil
		}
		if !errors.Is(err, errRedis) {
			return latchkey.LimitState{}, err
		}
	}
	u, err := l.readUsage(ctx, k.ID)
	if err != nil {
		return latchkey.LimitState{}, err
	}
	var c call
	if err := c.build(l, k, nil, 0, nil, now, "q"); err != nil {
		return latchkey.LimitState{}, err
	}
	c.setLoad(&c.key, u)
	used := c.args[c.key.quotaAt+8].(int64)
	limit, end := k.Quota.Limit, c.key.end
	if k.Quota.IsCredit() {
		limit, end = *k.Quota.Remaining, time.Time{}
	}
	return latchkey.LimitState{Limit: limit, Remaining: max(limit-used, 0), ResetAt: end}, nil
}

// LeaseKey returns the id of the key that holds the lease, if the lease is
// live at now, whichever node handed it out.
func (l *Limiter) LeaseKey(leaseID string, now time.Time) (string, bool) {
	if !l.isDown() {
		v, err := l.rdb.Get(context.Background(), l.leaseKey(leaseID)).Result()
		switch {
		case err == nil:
			id, exp, ok := parseLease(v)
			if ok && now.UnixNano() < exp {
				return id, true
			}
			return "", false
		case errors.Is(err, redis.Nil):
		default:
			_ = l.failed(context.Background(), err)
		}
	}
	if l.local != nil {
		return l.local.LeaseKey(leaseID, now)
	}
	return "", false
}

// Release ends a lease and frees its slot, whichever node handed it out.
// It reports false if the lease is unknown, already released or expired
// at now.
func (l *Limiter) Release(leaseID string, now time.Time) bool {
	if !l.isDown() {
		v, err := releaseScript.Run(context.Background(), l.rdb, []string{l.leaseKey(leaseID)}, l.prefix, leaseID).Text()
		switch {
		case err == nil && v != "":
			_, exp, ok := parseLease(v)
			return ok && now.UnixNano() < exp
		case err == nil, errors.Is(err, redis.Nil):
		default:
			_ = l.failed(context.Background(), err)
		}
	}
	if l.local != nil {
		return l.local.Release(leaseID, now)
	}
	return false
}

// parseLease reads "key-id s ns".
func parseLease(v string) (id string, exp int64, ok bool) {
	i := strings.LastIndexByte(v, ' ')
	if i < 0 {
		return "", 0, false
	}
	j := strings.LastIndexByte(v[:i], ' ')
	if j < 0 {
		return "", 0, false
	}
	s, err1 := strconv.ParseInt(v[j+1:i], 10, 64)
	n, err2 := strconv.ParseInt(v[i+1:], 10, 64)
	if err1 != nil || err2 != nil {
		return "", 0, false
	}
	return v[:j], s*1e9 + n, true
}

// Forget makes the next Admit of the key, on any node, read its stored
// quota usage again, so that a reset (ResetQuotaUsage) or a new balance
// takes effect; consumption counted but not flushed is kept unless the
// usage was reset meanwhile. Rate windows follow the key's settings by
// themselves (a changed window starts full); leases stay. A Forget that
// cannot reach Redis is kept and applied when Redis answers again. Given
// an OwnerQuotaID it does the same for the owner's shared quota.
func (l *Limiter) Forget(keyID string) {
	l.denied.forget(keyID)
	if l.local != nil {
		l.local.Forget(keyID)
	}
	if !l.isDown() {
		err := staleScript.Run(context.Background(), l.rdb, []string{l.stateKey(keyID)}, "").Err()
		if err == nil {
			return
		}
		_ = l.failed(context.Background(), err)
	}
	l.mu.Lock()
	l.forgets[keyID] = struct{}{}
	l.nForgets.Store(int32(len(l.forgets)))
	l.mu.Unlock()
}

// applyForgets applies the Forgets that could not reach Redis.
func (l *Limiter) applyForgets(ctx context.Context) {
	l.mu.Lock()
	ids := make([]string, 0, len(l.forgets))
	for id := range l.forgets {
		ids = append(ids, id)
	}
	l.mu.Unlock()
	for _, id := range ids {
		if err := staleScript.Run(ctx, l.rdb, []string{l.stateKey(id)}, "").Err(); err != nil {
			_ = l.failed(ctx, err)
			return
		}
		l.mu.Lock()
		delete(l.forgets, id)
		l.nForgets.Store(int32(len(l.forgets)))
		l.mu.Unlock()
	}
}

// Flush writes the periodic quota consumption counted in Redis (by any
// node) and not yet in the store, and gives back the unspent reservations
// of the credit balances this node spent from, so that the store then
// holds exactly what was spent. A counter the store refuses because its
// usage was reset since it was loaded is marked stale (the next Admit
// reads the row again). It flushes Options.Local too. Errors: the store's,
// or EUnavailable when Redis is unreachable.
func (l *Limiter) Flush(ctx context.Context) error {
	return l.flush(ctx, true)
}

func (l *Limiter) flush(ctx context.Context, all bool) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	var first error
	if l.local != nil {
		first = l.local.Flush(ctx)
	}
	if l.store == nil {
		return first
	}
	if l.isDown() {
		if first == nil {
			first = latchkey.Errorf(latchkey.EUnavailable, "the shared limiter (Redis) is unreachable; quota consumption stays there until it is back")
		}
		return first
	}
	if err := l.flushDirty(ctx); err != nil && first == nil {
		first = err
	}
	if err := l.giveBackAll(ctx, all); err != nil && first == nil {
		first = err
	}
	return first
}

// pendingSave is one counter to write.
type pendingSave struct {
	epochStr string
	usage    latchkey.QuotaUsage
}

// flushDirty writes the counters in the dirty set. Ids are taken out of
// the set before their counter is read: consumption counted after the
// read puts the id back.
func (l *Limiter) flushDirty(ctx context.Context) error {
	for range maxFlushRounds {
		ids, err := l.rdb.SPopN(ctx, l.dirty, flushBatch).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return l.failed(ctx, err)
		}
		if len(ids) == 0 {
			return nil
		}
		pipe := l.rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, len(ids))
		for i, id := range ids {
			cmds[i] = pipe.HMGet(ctx, l.stateKey(id), "d", "e", "ps", "u")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			l.putBack(ids)
			return l.failed(ctx, err)
		}
		batch := make([]pendingSave, 0, len(ids))
		for i, id := range ids {
			v := cmds[i].Val()
			d, _ := v[0].(string)
			e, _ := v[1].(string)
			ps, _ := v[2].(string)
			u, _ := v[3].(string)
			if !strings.HasPrefix(d, "p:") || e == "" || ps == "" {
				continue // gone (expired, or a balance now): nothing to write
			}
			epoch, err1 := strconv.ParseInt(e, 10, 64)
			us, err2 := strconv.ParseInt(ps, 10, 64)
			used, err3 := strconv.ParseInt(u, 10, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				continue
			}
			batch = append(batch, pendingSave{epochStr: e, usage: latchkey.QuotaUsage{
				KeyID: id, Epoch: epoch, PeriodStart: time.UnixMicro(us).UTC(), Used: used,
			}})
		}
		if err := l.save(ctx, batch); err != nil {
			l.putBack(ids)
			return err
		}
		if len(ids) < flushBatch {
			return nil
		}
	}
	return nil
}

// putBack returns ids to the dirty set after a failed flush.
func (l *Limiter) putBack(ids []string) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	members := make([]any, len(ids))
	for i, id := range ids {
		members[i] = id
	}
	if err := l.rdb.SAdd(ctx, l.dirty, members...).Err(); err != nil {
		_ = l.failed(ctx, err)
	}
}

// save writes a batch of counters in one transaction, never lowering what
// the store holds for the same epoch and period (another node may have
// written a later figure). If the transaction fails for a reason other
// than an unreachable store, the rows are written one by one, so that one
// bad row (a deleted key) cannot hold back the others.
func (l *Limiter) save(ctx context.Context, batch []pendingSave) error {
	if len(batch) == 0 {
		return nil
	}
	refused := make([]bool, len(batch))
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	err := l.store.Update(sctx, func(tx latchkey.QuotaStore) error {
		for i := range batch {
			u := batch[i].usage
			refused[i] = false
			row, err := tx.QuotaUsage(u.KeyID)
			if err != nil {
				return err
			}
			if row.Epoch == u.Epoch && (row.PeriodStart.After(u.PeriodStart) || row.PeriodStart.Equal(u.PeriodStart) && row.Used >= u.Used) {
				continue
			}
			ok, err := tx.SaveQuotaUsage(u)
			if err != nil {
				return err
			}
			refused[i] = !ok
		}
		return nil
	})
	cancel()
	if err != nil {
		if len(batch) == 1 && latchkey.ErrorCode(err) == latchkey.ENotFound {
			// The key is gone: its usage can never be saved.
			l.log.Debug("quota usage of a deleted key dropped", "key_id", batch[0].usage.KeyID)
			return nil
		}
		if len(batch) == 1 || ctx.Err() != nil || latchkey.ErrorCode(err) == latchkey.EUnavailable {
			return fmt.Errorf("redislimit: saving quota usage: %w", err)
		}
		var first error
		for i := range batch {
			if err := l.save(ctx, batch[i:i+1]); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	for i, p := range batch {
		if refused[i] {
			// The usage was reset after the counter was loaded: what it
			// counted belongs to before the reset.
			if err := staleScript.Run(ctx, l.rdb, []string{l.stateKey(p.usage.KeyID)}, p.epochStr).Err(); err != nil {
				return l.failed(ctx, err)
			}
		}
	}
	return nil
}

// giveBackAll gives back the unspent reservations of the balances this
// node spent from: all of them, or (the background flusher) those idle
// since the last sweep.
func (l *Limiter) giveBackAll(ctx context.Context, all bool) error {
	var ids []string
	l.balances.Range(func(k, v any) bool {
		if busy := v.(*atomic.Bool).Swap(false); all || !busy {
			ids = append(ids, k.(string))
		}
		return true
	})
	var first error
	for _, id := range ids {
		if err := l.giveBack(ctx, id); err != nil {
			if first == nil {
				first = err
			}
			if errors.Is(err, errRedis) {
				return first
			}
			continue
		}
		l.balances.Delete(id)
	}
	return first
}

// giveBack writes a balance's spent count over its reservation.
func (l *Limiter) giveBack(ctx context.Context, id string) error {
	h := l.stateKey(id)
	nowMs := l.clock.Load() / 1e6
	if nowMs == 0 {
		nowMs = time.Now().UnixMilli()
	}
	token := l.node + ":" + strconv.FormatUint(l.seq.Add(1), 10)
	res, err := giveBackScript.Run(ctx, l.rdb, []string{h}, token, nowMs+lockFor.Milliseconds(), nowMs).Slice()
	if err != nil {
		return l.failed(ctx, err)
	}
	if len(res) < 3 {
		return nil
	}
	epochStr, _ := res[0].(string)
	epoch, _ := strconv.ParseInt(epochStr, 10, 64)
	used, old := asInt(res[1]), asInt(res[2])
	sctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	err = l.store.Update(sctx, func(tx latchkey.QuotaStore) error {
		row, err := tx.QuotaUsage(id)
		if err != nil {
			return err
		}
		// Only over the very reservation taken back: a figure that
		// changed meanwhile holds a reservation this one knows nothing of.
		if row.Epoch != epoch || row.Used != old {
			return nil
		}
		_, err = tx.SaveQuotaUsage(latchkey.QuotaUsage{KeyID: id, Epoch: epoch, Used: used})
		return err
	})
	cancel()
	if rerr := raiseScript.Run(ctx, l.rdb, []string{h}, epochStr, 0, "", token, 0, nowMs).Err(); rerr != nil {
		return l.failed(ctx, rerr)
	}
	if err != nil && latchkey.ErrorCode(err) != latchkey.ENotFound {
		return fmt.Errorf("redislimit: returning the unspent credit reservation of %s: %w", id, err)
	}
	return nil
}

// Close stops the background flusher and writes all pending consumption.
// Admit keeps working afterwards, but only Flush persists what it counts.
// Close waits for the flusher at most until ctx ends. It does not close
// the Redis client or Options.Local: they are the caller's.
func (l *Limiter) Close(ctx context.Context) error {
	l.closeOnce.Do(func() {
		l.cancel()
		close(l.stop)
	})
	select {
	case <-l.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return l.Flush(ctx)
}

// run flushes every interval until Close.
func (l *Limiter) run() {
	defer close(l.done)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.denied.sweep(l.clock.Load())
		if l.isDown() {
			continue
		}
		ctx, cancel := context.WithTimeout(l.loopCtx, 2*storeTimeout)
		if l.nForgets.Load() > 0 {
			l.applyForgets(ctx)
		}
		if err := l.flush(ctx, false); err != nil && l.loopCtx.Err() == nil && !errors.Is(err, errRedis) {
			l.log.Warn("flushing quota usage from Redis failed; retrying next interval", "err", err)
		}
		cancel()
	}
}

// failed records a failed Redis call and returns errRedis, or, when the
// caller's context ended (not Redis's fault), EUnavailable.
func (l *Limiter) failed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return latchkey.Errorf(latchkey.EUnavailable, "the limiter did not answer in time: %v", ctx.Err())
	}
	l.redisErrors.Add(1)
	l.downUntil.Store(time.Now().Add(l.backoff).UnixNano())
	if l.down.CompareAndSwap(false, true) {
		mode := FailureLocal
		if l.deny || l.local == nil {
			mode = FailureDeny
		}
		l.log.Warn("Redis is unreachable; limits are decided by the fallback", "failure", mode, "nodes", l.nodes, "err", err)
	}
	if l.onFailure != nil {
		l.onFailure(err)
	}
	return fmt.Errorf("%w: %v", errRedis, err)
}

// recovered notes a successful Redis call.
func (l *Limiter) recovered() {
	if l.down.Load() && l.down.CompareAndSwap(true, false) {
		l.log.Info("Redis answers again; limits are shared again")
	}
}

func (l *Limiter) isDown() bool {
	d := l.downUntil.Load()
	return d != 0 && time.Now().UnixNano() < d
}

// observe keeps a recent caller's now, written only when it is a
// millisecond off so that parallel requests do not fight over it.
func (l *Limiter) observe(now time.Time) {
	ns := now.UnixNano()
	if d := ns - l.clock.Load(); d > int64(time.Millisecond) || d < -int64(time.Millisecond) {
		l.clock.Store(ns)
	}
}

// fallback decides without Redis: EUnavailable under FailureDeny, else
// Options.Local with the key's limits divided by the node count. A credit
// balance is spent in the store itself, one transaction per request, so
// that no credit is spent twice whichever nodes lose Redis.
func (l *Limiter) fallback(ctx context.Context, k *latchkey.Key, cost int64, named []latchkey.NamedCost, now time.Time) (latchkey.Admission, error) {
	if l.deny || l.local == nil {
		l.unavailable.Add(1)
		return latchkey.Admission{}, latchkey.Errorf(latchkey.EUnavailable, "the shared limiter (Redis) is unreachable")
	}
	credit := k.Quota != nil && k.Quota.IsCredit()
	if credit && l.store == nil {
		l.unavailable.Add(1)
		return latchkey.Admission{}, latchkey.Errorf(latchkey.EUnavailable, "the shared limiter (Redis) is unreachable and credits have no store to be spent from")
	}
	l.fallbacks.Add(1)
	sk := l.scaled(k)
	adm, err := l.local.Admit(ctx, sk, cost, l.scaledNamed(sk, named), now)
	if err != nil || adm.Code != "" || !credit {
		return adm, err
	}
	q, ok, err := l.spendStored(ctx, k, cost)
	if err != nil || !ok {
		if adm.LeaseID != "" {
			l.local.Release(adm.LeaseID, now)
		}
		if err != nil {
			return latchkey.Admission{}, err
		}
		adm.Code, adm.LeaseID, adm.RetryAfter = latchkey.CodeQuotaExceeded, "", 0
	}
	adm.Quota = q
	return adm, nil
}

// scaled returns the key as one of Nodes nodes enforces it alone: every
// rate window, the concurrency limit and a periodic quota divided by the
// node count (rounded down, at least 1), the owner's windows and quota
// likewise, and no credit balance (spent in the store instead).
func (l *Limiter) scaled(k *latchkey.Key) *latchkey.Key {
	credit := k.Quota != nil && k.Quota.IsCredit()
	if l.nodes == 1 && !credit {
		return k
	}
	c := *k
	div := func(n int64) int64 { return max(n/l.nodes, 1) }
	c.RateLimits = l.scaledWindows(k.RateLimits)
	if k.MaxConcurrent > 0 {
		c.MaxConcurrent = int(div(int64(k.MaxConcurrent)))
	}
	switch {
	case credit:
		c.Quota = nil
	case k.Quota != nil:
		q := *k.Quota
		q.Limit = div(q.Limit)
		c.Quota = &q
	}
	if o := ownerLimits(k); o != nil && l.nodes > 1 {
		so := *o
		so.RateLimits = l.scaledWindows(o.RateLimits)
		if o.Quota != nil && !o.Quota.IsCredit() {
			q := *o.Quota
			q.Limit = div(q.Limit)
			so.Quota = &q
		}
		b := *k.Bound
		b.Owner = &so
		c.Bound = &b
	}
	return &c
}

func (l *Limiter) scaledWindows(rls []latchkey.RateLimit) []latchkey.RateLimit {
	if len(rls) == 0 || l.nodes == 1 {
		return rls
	}
	out := make([]latchkey.RateLimit, len(rls))
	for i, rl := range rls {
		rl.Limit = max(rl.Limit/l.nodes, 1)
		out[i] = rl
	}
	return out
}

// scaledNamed returns named with every cost brought down to the limit of
// the scaled windows it is charged to (k is the scaled key): a cost the
// whole cluster's window admits must not become EInvalid because one node
// enforces a share of it while Redis is down. It then takes that node's
// whole window.
func (l *Limiter) scaledNamed(k *latchkey.Key, named []latchkey.NamedCost) []latchkey.NamedCost {
	if len(named) == 0 || l.nodes == 1 {
		return named
	}
	var out []latchkey.NamedCost
	sets := [2][]latchkey.RateLimit{k.RateLimits}
	if o := ownerLimits(k); o != nil {
		sets[1] = o.RateLimits
	}
	for _, rls := range sets {
		for i := range rls {
			rl := &rls[i]
			c, ok := costOf(rl, named)
			if !ok || c <= rl.Limit {
				continue
			}
			if out == nil {
				out = append([]latchkey.NamedCost(nil), named...)
			}
			for j := range out {
				if out[j].Name == rl.Name {
					out[j].Cost = min(out[j].Cost, rl.Limit)
				}
			}
		}
	}
	if out == nil {
		return named
	}
	return out
}

// spendStored spends cost credits of the key's balance in the store: read,
// check and write in one transaction. The stored figure includes every
// reservation made through Redis, so nothing spent from those can be
// spent again.
func (l *Limiter) spendStored(ctx context.Context, k *latchkey.Key, cost int64) (latchkey.LimitState, bool, error) {
	balance := *k.Quota.Remaining
	var left int64
	var ok bool
	err := l.store.Update(ctx, func(tx latchkey.QuotaStore) error {
		row, err := tx.QuotaUsage(k.ID)
		if err != nil {
			return err
		}
		left, ok = balance-row.Used, false
		if cost > left {
			return nil
		}
		if cost == 0 {
			ok = true
			return nil
		}
		saved, err := tx.SaveQuotaUsage(latchkey.QuotaUsage{KeyID: k.ID, Epoch: row.Epoch, Used: row.Used + cost})
		if err != nil {
			return err
		}
		if !saved {
			return latchkey.Errorf(latchkey.EUnavailable, "the balance of %s changed while it was spent; try again", k.ID)
		}
		left, ok = left-cost, true
		return nil
	})
	if err != nil {
		return latchkey.LimitState{}, false, err
	}
	return latchkey.LimitState{Limit: balance, Remaining: max(left, 0)}, ok, nil
}

// split returns ns as whole seconds and nanoseconds 0 ≤ n < 10^9 (floor
// division, so instants before 1970 split the same way).
func split(ns int64) (s, n int64) {
	s, n = ns/1e9, ns%1e9
	if n < 0 {
		s, n = s-1, n+1e9
	}
	return s, n
}

// ceilMs is d in whole milliseconds, rounded up, and never negative.
func ceilMs(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}
