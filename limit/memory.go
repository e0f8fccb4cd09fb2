// Package limit enforces a key's rate windows, quota and concurrency limit,
// and the limits its owner shares with the owner's other keys, in the
// memory of one node. Memory implements latchkey.Limiter; every Limiter
// passes the conformance suite in limit/limittest.
//
// # Rate windows: GCRA
//
// Each rate window of L requests per window W is enforced with the generic
// cell rate algorithm (GCRA). A window is a bucket that holds L requests and
// refills continuously at L/W, one request every emission interval T = W/L.
// The state of a window is one instant, the theoretical arrival time (TAT):
// when the bucket will be full again. A request at now is admitted if
//
//	max(TAT, now) + T − now ≤ W
//
// and then TAT becomes max(TAT, now) + T. So "limit per window" means:
//
//   - a full bucket admits a burst of at most L requests at one instant;
//   - after that, one request every T: a sustained rate of L per W;
//   - over any stretch of time t, at most L + t·L/W requests: "1000 per
//     hour" never admits 2000 around the edge of an hour, as fixed windows
//     do.
//
// T need not be a whole number of nanoseconds (1s/3 is not); the TAT is kept
// as nanoseconds plus a remainder in units of 1/L ns, so the arithmetic is
// exact for every limit and window and the L-th request of a burst is never
// lost or gained to rounding.
//
// A rate window counts requests, not cost: a verification with cost 500 is
// one request to every window (cost is quota units). A verification with
// cost 0 is still a request.
//
// # Named costs: windows that apply on request
//
// A window whose Apply is latchkey.ApplyOnRequest ("tokens": 10,000 an
// hour) counts only the requests that name it in Admit's named costs, each
// by its cost c: the same GCRA with the TAT moved by c·T instead of T
// (exactly, c·W in units of 1/L ns), admitted while max(TAT, now) + c·T −
// now ≤ W. So 10,000 tokens an hour admits 8 requests of 1,200 at once and
// then 400 more, and refills by one token every 0.36 s. A request that does
// not name the window neither spends from it nor is denied by it; a cost of
// 0 passes and spends nothing; a name no such window has is ignored. What
// no wait could admit is EInvalid: a named cost above its window's limit,
// a negative one, a name given twice, more than latchkey.MaxNamedCosts.
// Remaining and ResetAt of such a window are in its units (tokens).
//
// # Owner limits
//
// A key whose Bound.Owner has rate windows or a periodic quota (an owner's
// credit balance is ignored: the service refuses one) shares them with
// every key of that owner: the state is kept once per owner, under
// latchkey.OwnerQuotaID(tenant, owner id), not per key and not per copy of
// the owner's record. Each request is decided against the key's limits and
// the owner's together: it is admitted only if both allow it, and a request
// denied by either consumes from neither. The owner's state is locked
// before the key's, always, so requests of keys of one owner cannot
// deadlock; the owner's lock is not held over a store read or a credit
// reservation of a key. Admission.Owner is true when the owner's limits,
// not the key's own, denied the request. The owner's quota is loaded,
// flushed, reset (ResetQuotaUsage of the OwnerQuotaID) and forgotten
// (Forget of the OwnerQuotaID) exactly as a key's, through the same store
// under that id; its periods count from the owner's CreatedAt. The
// owner's windows follow its record as a key's follow the key: a window
// whose limit or duration changed starts full.
//
// Remaining is the number of further requests the window would admit at
// now; ResetAt is the TAT, when Remaining is back to Limit. RetryAfter of a
// denial is how long until this same request would be admitted by every
// window.
//
// # Order of checks and exactness
//
// Admit checks every limit first, rate windows, then quota, then
// concurrency, and changes nothing unless all of them allow the request:
// then it commits all of them. A denied request consumes from none, so a
// client that keeps hammering while limited gets its next request exactly
// when the bucket allows (a limiter that counts rejected requests locks such
// a client out for good). The denial reported is the first in the order
// RATE_LIMITED, QUOTA_EXCEEDED, CONCURRENCY_EXCEEDED.
//
// State lives per key id in a sharded map; each key's state has its own
// mutex, held for the check and the commit together, so concurrent requests
// for one key are counted exactly (10,000 concurrent requests against a
// quota of 1,000 admit exactly 1,000) while different keys do not contend.
// A key with no limits, and no owner with limits, takes a path that
// touches no shared state at all.
// Time is the now passed to each call, never the wall clock, so that tests
// can move it by hand; times must lie between the years 1678 and 2262
// (int64 nanoseconds since 1970).
//
// # What Admit reports
//
// Admission.RateLimit is the tightest window after the decision, over the
// key's windows and its owner's: the one with the fewest requests (or
// units) remaining, and of those the one full again soonest.
// Admission.Quota is the key's quota, or the owner's when the key has
// none: Limit (the periodic limit, or the balance set), Remaining after
// the decision, and ResetAt, the end of the current period (zero for a
// credit balance). RetryAfter is set on a denial: RATE_LIMITED, how long
// until this request would pass every window it counts in; QUOTA_EXCEEDED,
// the time to the end of the period of every quota that denies, or 0 when
// waiting cannot help (a credit balance, a cost above the limit);
// CONCURRENCY_EXCEEDED, the time until the first live lease expires.
//
// Cost is quota units: the quota admits a request when used + cost ≤ limit
// (or ≤ the balance), and cost 0 consumes nothing but is still checked.
//
// # Quotas and the loss bound
//
// A quota is counted in memory and persisted through the store's
// QuotaUsage rows. The first Admit of a key with a quota reads its row (one
// store View; concurrent first requests wait for that one read); after that
// the quota is checked and consumed in memory.
//
// A periodic quota's consumption is written by a background flusher every
// FlushInterval (default 1s) with SaveQuotaUsage. On a crash (SIGKILL,
// power loss) at most the consumption admitted in the last FlushInterval
// is lost, and may be admitted again after the restart; a graceful
// shutdown through Close, or a call to Flush, loses nothing. Precisely, a
// crash loses what was admitted since the last successful flush took its
// snapshot: one FlushInterval plus the duration of a flush (milliseconds),
// as long as flushes succeed. A failed flush is logged and retried every
// interval, and the window grows until one succeeds. A period's units come
// back at its end anyway; a credit balance's would not, so it is kept
// differently.
//
// A credit balance is spent only from a reservation: before a request may
// take the balance's count past what the store already holds, the limiter
// writes a larger figure (the reservation) to the usage row and waits for
// it to commit. The stored figure is therefore never below what was
// spent, and a process that crashes can only leave credits reserved but
// unspent: they count as spent after the restart (under-admission), and
// no credit is ever admitted twice. Reservations follow demand: the
// first is what the request needs (a single-use key reserves exactly its
// one use), each next one doubles while the last lasted less than 100 ms
// and halves when it lasted more than 400 ms, capped at 65,536 and at the
// balance left. A busy key so writes a few reservations a second, and a
// crash forfeits at most the unspent part of the last one, which at a
// steady demand is 0.1 to 0.4 s of the key's requests. The write happens outside the
// key's lock, one per key at a time; requests that fit into the current
// reservation go on meanwhile, the others wait for it. Reservations of
// different keys are group-committed: those that come while one
// transaction is being written share the next. Flush (and with it
// Close) writes every balance's spent count over its reservation, so a
// graceful shutdown forfeits nothing; the background flusher does the same
// for a key left idle for a whole interval, before its state is dropped.
//
// Every saved row carries the epoch it was read at. ResetQuotaUsage bumps
// the stored epoch, so a flush of consumption counted before a reset is
// refused instead of resurrecting it; on a refusal the limiter drops its
// count for that key and the next Admit reads the row again.
//
// Periodic quotas roll over at the period boundary (latchkey.QuotaPeriodStart:
// a duration counted from the key's creation, or a calendar day or month in
// UTC): the first request of a new period starts from zero. A credit balance
// never refills: remaining is the balance set on the key minus what was used
// since it was set (the service resets the usage whenever it sets a balance).
//
// # Forget
//
// The service calls Forget(keyID) after it changes a key or resets its quota
// usage, and Forget(latchkey.OwnerQuotaID(tenant, owner)) after it changes
// an owner or resets the owner's usage. The next Admit then reads the key's usage row again: if its epoch
// changed (a reset), the stored usage replaces what this node counted,
// including consumption not yet flushed, which belonged to before the reset;
// if not, this node's count, which includes its unflushed consumption, is
// kept, so changing a key loses nothing. Rate windows are matched against the
// key's settings on every Admit: a window whose limit or duration changed
// starts full, one that did not keeps its state (renaming a key is no way
// to refill a bucket). Leases are kept: they are requests still in flight.
//
// # Concurrency leases
//
// A key with MaxConcurrent N has N slots. An admitted request takes one and
// gets a lease id ("lease_" and 32 hex digits, 128 bits from crypto/rand);
// the slot is held until Release, or until the lease's TTL passes
// (Key.LeaseTTL, default latchkey.DefaultLeaseTTL, 30s), so callers that
// never release (reverse proxies) still free their slots. Leases live in this
// node's memory only; a restart frees every slot.
//
// # Memory
//
// The flusher also drops the state of keys that have been idle for a whole
// FlushInterval once nothing is left in it: every window is full again, the
// quota count is flushed and no lease is live. The next request of such a
// key starts from a full bucket, which it would have anyway, and reads its
// usage row again.
package limit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Options configures a Memory limiter. Zero values take the documented
// defaults.
type Options struct {
	// Store holds quota usage. Without one, quotas are counted in memory
	// only and start from zero after a restart (for tools and tests).
	Store latchkey.Store[latchkey.QuotaStore]
	// FlushInterval is how often changed periodic quota usage is written
	// to the store (default 1s): the most consumption a crash can lose.
	// Credit balances are reserved in the store before they are spent.
	FlushInterval time.Duration
	// Logger receives failed background flushes (default: discarded).
	Logger *slog.Logger
}

// numShards spreads keys over independently locked maps, so that requests
// for different keys rarely meet on a lock.
const numShards = 64

// flushBatch bounds the rows saved in one store transaction, so a flush of
// many keys does not hold the store's one writer for long.
const flushBatch = 256

// flushTimeout bounds one background flush, so a store that hangs cannot
// stall the flusher (and with it the sweep of idle state) for good.
const flushTimeout = 10 * time.Second

// Memory is a latchkey.Limiter that keeps its counters in memory. It is safe for
// concurrent use. Close it to stop the background flusher and write the last
// consumption.
type Memory struct {
	store    latchkey.Store[latchkey.QuotaStore]
	interval time.Duration
	log      *slog.Logger

	shards [numShards]shard
	leases [numShards]leaseShard

	// clock is the now of a recent Admit (unix ns), for the sweep, which has
	// no now of its own. It is written only when it is a millisecond off, so
	// parallel requests do not fight over its cache line; it follows the
	// callers' clock back as well as forward, so one odd timestamp cannot
	// make the sweep think every window has long refilled.
	clock atomic.Int64

	// Reservations waiting for a store write, and whether a writer is
	// taking them: writes of many keys share one transaction (and one
	// fsync), so their number follows the store's speed, not the keys'.
	resvMu      sync.Mutex
	resvPending []*resvWrite
	resvBusy    bool

	flushMu   sync.Mutex // one flush at a time
	cancel    context.CancelFunc
	loopCtx   context.Context
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

var _ latchkey.Limiter = (*Memory)(nil)

type shard struct {
	mu sync.RWMutex
	m  map[string]*keyState
	_  [24]byte // a cache line per shard: no false sharing between shards
}

type leaseShard struct {
	mu sync.RWMutex
	m  map[string]leaseRef
	_  [24]byte
}

// leaseRef finds a lease's key state from its id alone (LeaseKey, Release).
type leaseRef struct {
	st  *keyState
	exp int64 // unix ns; the lease is live while now < exp
}

// keyState is everything the limiter holds for one key. Every field is
// guarded by mu.
type keyState struct {
	mu sync.Mutex
	id string
	// dropped is set when the sweep removed the state from its shard; a
	// request that found it just before must look the key up again.
	dropped bool
	// touched is set by every Admit and cleared by every sweep: only state
	// untouched for a whole interval is dropped.
	touched bool
	// gen changes whenever the quota count is invalidated (Forget, a reset
	// seen by the flusher), so that a load or a flush that started before
	// does not install or settle stale figures.
	gen     uint64
	loading chan struct{} // closed when the usage read in flight ends
	// writing is closed when the reservation (or its return) in flight
	// ends: one store write per key at a time, made outside mu.
	writing chan struct{}

	windows []window
	quota   quotaState

	leases map[string]int64 // live (or not yet purged) lease id → expiry
	expiry []leaseExp       // min-heap of expiries; released ones linger
}

// window is the GCRA state of one rate window. Instants are unix
// nanoseconds plus a remainder in units of 1/limit ns.
type window struct {
	limit, period int64 // the settings this state was built for
	step, stepRem int64 // emission interval period/limit
	tat, tatRem   int64 // theoretical arrival time
	next, nextRem int64 // scratch: the TAT if this request is admitted
}

type quotaState struct {
	loaded bool
	// stale is set by Forget: the usage row must be read again before the
	// next request, to learn whether it was reset.
	stale bool
	usage latchkey.QuotaUsage
	// version counts consumption of a periodic quota; saved is the
	// version last written.
	version, saved uint64

	// A credit balance is spent only from a reservation already written
	// to the store: usage.Used may grow up to reserved, which is never
	// more than stored, the figure the store holds (as far as this node
	// knows). stored > usage.Used is an unspent reservation, returned when
	// the key goes idle and at Close.
	balance          bool
	reserved, stored int64
	// chunk is the size of the last reservation and reservedAt (unix ns)
	// when it was made; the next one grows or shrinks with how long it
	// lasted.
	chunk, reservedAt int64

	// The period that contains the last request's now (periodic quotas),
	// kept so that a request inside it needs no calendar arithmetic.
	period           string
	anchor           time.Time
	startNs, endNs   int64
	startKey, endsAt time.Time
}

type leaseExp struct {
	exp int64
	id  string
}

// NewMemory returns a limiter and starts its background flusher.
func NewMemory(o Options) *Memory {
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Memory{
		store:    o.Store,
		interval: o.FlushInterval,
		log:      o.Logger,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	m.loopCtx, m.cancel = context.WithCancel(context.Background())
	for i := range m.shards {
		m.shards[i].m = make(map[string]*keyState)
		m.leases[i].m = make(map[string]leaseRef)
	}
	go m.run()
	return m
}

// Admit checks the key's rate windows, quota and concurrency limit, and
// those of the key's owner (k.Bound.Owner), and, only if all of them allow
// the request, consumes from every window that counts it (one request, or
// a named cost for an ApplyOnRequest window), cost units from the key's
// quota and the owner's, and one concurrency slot. Errors: EInvalid for a
// negative cost, invalid named costs (more than latchkey.MaxNamedCosts, a
// negative one, a name given twice, one above its window's limit) or a
// limit that could not have passed validation; the store's error
// (EUnavailable, internal) when a quota usage cannot be read, in which
// case nothing is admitted — the caller decides what to do without the
// limiter.
func (m *Memory) Admit(ctx context.Context, k *latchkey.Key, cost int64, named []latchkey.NamedCost, now time.Time) (latchkey.Admission, error) {
	if cost < 0 {
		return latchkey.Admission{}, latchkey.Errorf(latchkey.EInvalid, "cost must not be negative")
	}
	if len(k.RateLimits) == 0 && k.Quota == nil && k.MaxConcurrent <= 0 && (k.Bound == nil || k.Bound.Owner == nil) && len(named) == 0 {
		// The verify path of most keys: nothing to count, nothing
		// touched.
		return latchkey.Admission{}, nil
	}
	return m.admitLimited(ctx, k, cost, named, now)
}

// admitLimited is Admit of a key with limits, an owner or named costs.
func (m *Memory) admitLimited(ctx context.Context, k *latchkey.Key, cost int64, named []latchkey.NamedCost, now time.Time) (latchkey.Admission, error) {
	if err := validNamed(named); err != nil {
		return latchkey.Admission{}, err
	}
	o := ownerLimits(k)
	own := len(k.RateLimits) > 0 || k.Quota != nil || k.MaxConcurrent > 0
	if !own && o == nil {
		return latchkey.Admission{}, nil
	}
	if err := namedWithinLimits(k, o, named); err != nil {
		return latchkey.Admission{}, err
	}
	ns := now.UnixNano()
	if d := ns - m.clock.Load(); d > int64(time.Millisecond) || d < -int64(time.Millisecond) {
		m.clock.Store(ns)
	}
	for {
		// Locks are taken owner first, then key, always: two requests of
		// keys of one owner cannot deadlock.
		var ost *keyState
		if o != nil {
			ost = m.ownerState(o)
			ost.mu.Lock()
			if ost.dropped {
				ost.mu.Unlock()
				continue
			}
			if periodic(o.Quota) && (!ost.quota.loaded || ost.quota.stale) {
				// Returns with ost unlocked; either way, look again.
				if err := m.loadQuota(ctx, ost); err != nil {
					return latchkey.Admission{}, err
				}
				continue
			}
		}
		var st *keyState
		if own {
			st = m.state(k.ID)
			st.mu.Lock()
			if st.dropped {
				st.mu.Unlock()
				unlock(ost)
				continue
			}
			if k.Quota != nil && (!st.quota.loaded || st.quota.stale) {
				// The owner's state is not held over a store read.
				unlock(ost)
				if err := m.loadQuota(ctx, st); err != nil {
					return latchkey.Admission{}, err
				}
				continue
			}
		}
		adm, need, err := m.admit(st, ost, k, o, cost, named, now, ns)
		if need > 0 {
			unlock(ost)
			// Returns with st unlocked; then decide again.
			if err := m.reserve(ctx, st, need, *k.Quota.Remaining, ns); err != nil {
				return latchkey.Admission{}, err
			}
			continue
		}
		if st != nil {
			st.mu.Unlock()
		}
		unlock(ost)
		return adm, err
	}
}

func unlock(st *keyState) {
	if st != nil {
		st.mu.Unlock()
	}
}

// ownerLimits returns the key's owner record if it has limits to enforce
// (rate windows, or a periodic quota: a credit balance is refused when an
// owner is written, and ignored here), else nil.
func ownerLimits(k *latchkey.Key) *latchkey.Owner {
	if k.Bound == nil || k.Bound.Owner == nil {
		return nil
	}
	o := k.Bound.Owner
	if len(o.RateLimits) == 0 && !periodic(o.Quota) {
		return nil
	}
	return o
}

// periodic reports whether q is a periodic quota (not nil, not a credit
// balance).
func periodic(q *latchkey.Quota) bool { return q != nil && q.Remaining == nil }

// validNamed checks a request's named costs by themselves: at most
// latchkey.MaxNamedCosts of them, none negative, no name twice. It does
// not allocate unless it fails.
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
// is charged to (the key's or the owner's, o may be nil): no wait could
// ever admit it.
func namedWithinLimits(k *latchkey.Key, o *latchkey.Owner, named []latchkey.NamedCost) error {
	if len(named) == 0 {
		return nil
	}
	if err := namedWithin(k.RateLimits, named); err != nil {
		return err
	}
	if o != nil {
		return namedWithin(o.RateLimits, named)
	}
	return nil
}

func namedWithin(rls []latchkey.RateLimit, named []latchkey.NamedCost) error {
	for i := range rls {
		rl := &rls[i]
		if c, ok := costOf(rl, named); ok && c > rl.Limit {
			return latchkey.Errorf(latchkey.EInvalid, "named cost %q of %d exceeds the window's limit of %d", rl.Name, c, rl.Limit)
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

// Quota reports the key's quota as a request at now would find it, live
// (with what this node has admitted and not yet flushed), and consumes
// nothing: Limit, Remaining and, for a periodic quota, ResetAt. A key
// without a quota has the zero LimitState.
func (m *Memory) Quota(ctx context.Context, k *latchkey.Key, now time.Time) (latchkey.LimitState, error) {
	if k.Quota == nil {
		return latchkey.LimitState{}, nil
	}
	for {
		st := m.state(k.ID)
		st.mu.Lock()
		if st.dropped {
			st.mu.Unlock()
			continue
		}
		if !st.quota.loaded || st.quota.stale {
			if err := m.loadQuota(ctx, st); err != nil {
				return latchkey.LimitState{}, err
			}
			continue
		}
		// Touched, so that a state read just now is not swept at once.
		st.touched = true
		limit, avail, end, err := st.quota.figures(k.Quota, k.CreatedAt, now, now.UnixNano())
		st.mu.Unlock()
		return latchkey.LimitState{Limit: limit, Remaining: max(avail, 0), ResetAt: end}, err
	}
}

// Reservations of a credit balance are sized to the key's demand: the
// first is what the request needs (a single-use key reserves exactly 1);
// each next one doubles while the last lasted less than reserveSpan and
// halves when it lasted more than four times that, so a busy key writes a
// few times a second at most and an idle one reserves little. A
// reservation is never more than maxChunk, nor more than the balance left.
const (
	reserveSpan = int64(100 * time.Millisecond)
	maxChunk    = 1 << 16
)

// nextChunk sizes the next reservation at now.
func (qs *quotaState) nextChunk(now int64) int64 {
	c := qs.chunk
	switch lasted := now - qs.reservedAt; {
	case c == 0:
		return 1
	case lasted < reserveSpan:
		c *= 2
	case lasted > 4*reserveSpan:
		c /= 2
	}
	return min(max(c, 1), maxChunk)
}

// reserve writes a larger reservation of the key's balance to the store,
// at least need credits more, at most up to balance. It is called with
// st.mu held and returns with it released. The write happens outside the
// lock: requests that fit into the current reservation go on meanwhile,
// and those that need more wait for the one write in flight.
func (m *Memory) reserve(ctx context.Context, st *keyState, need, balance, ns int64) error {
	if ch := st.writing; ch != nil {
		st.mu.Unlock()
		return await(ctx, ch, "a credit reservation")
	}
	q := &st.quota
	from := q.reserved
	to := min(from+max(q.nextChunk(ns), need), balance)
	u := q.usage
	u.Used = to
	ch := make(chan struct{})
	st.writing = ch
	st.mu.Unlock()

	ok, err := m.saveOne(ctx, u)

	st.mu.Lock()
	st.writing = nil
	close(ch)
	if q.loaded && q.usage.Epoch == u.Epoch && q.reserved == from {
		switch {
		case err != nil:
		case ok:
			q.reserved, q.stored = to, to
			q.chunk, q.reservedAt = to-from, ns
		default:
			// The balance was set anew since this node read it: what it
			// counted belongs to the old one.
			st.gen++
			st.quota = quotaState{}
		}
	}
	st.mu.Unlock()
	return err
}

// resvWrite is one reservation to write and, once done is closed, its
// outcome.
type resvWrite struct {
	u    latchkey.QuotaUsage
	ok   bool
	err  error
	done chan struct{}
}

// saveOne writes one reservation and waits for the outcome. Writes are
// group-committed: the first caller with no writer at work writes
// everything queued in one transaction; callers that come meanwhile queue
// for the next one, which a new writer takes. A write is bounded by
// flushTimeout rather than by a request's context, so that every queued
// write gets its answer.
func (m *Memory) saveOne(_ context.Context, u latchkey.QuotaUsage) (bool, error) {
	w := &resvWrite{u: u, done: make(chan struct{})}
	m.resvMu.Lock()
	m.resvPending = append(m.resvPending, w)
	lead := !m.resvBusy
	m.resvBusy = true
	m.resvMu.Unlock()
	if lead {
		m.writeReservations()
	}
	<-w.done
	return w.ok, w.err
}

// writeReservations writes the queued reservations in one transaction,
// and leaves what queued meanwhile to a writer of its own, so no caller
// keeps writing for others for long.
func (m *Memory) writeReservations() {
	m.resvMu.Lock()
	batch := m.resvPending
	m.resvPending = nil
	m.resvMu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	m.saveReservations(ctx, batch)
	cancel()
	for _, w := range batch {
		close(w.done)
	}

	m.resvMu.Lock()
	more := len(m.resvPending) > 0
	m.resvBusy = more
	m.resvMu.Unlock()
	if more {
		go m.writeReservations()
	}
}

// saveReservations writes a batch in one transaction; if that fails for a
// reason other than an unreachable store, row by row, so that one bad row
// cannot fail the others.
func (m *Memory) saveReservations(ctx context.Context, batch []*resvWrite) {
	ok := make([]bool, len(batch))
	err := m.store.Update(ctx, func(tx latchkey.QuotaStore) error {
		for i, w := range batch {
			var err error
			if ok[i], err = tx.SaveQuotaUsage(w.u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && len(batch) > 1 && ctx.Err() == nil && latchkey.ErrorCode(err) != latchkey.EUnavailable {
		for i := range batch {
			m.saveReservations(ctx, batch[i:i+1])
		}
		return
	}
	for i, w := range batch {
		w.ok, w.err = ok[i], err
		if err == nil {
			continue
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			w.err = latchkey.Errorf(latchkey.EUnavailable, "the credit reservation of %s could not be written in time", w.u.KeyID)
		} else {
			w.err = fmt.Errorf("limit: reserving credits of %s: %w", w.u.KeyID, err)
		}
	}
}

// state returns the key's state, creating it on the first request.
func (m *Memory) state(id string) *keyState {
	sh := &m.shards[shardOf(id)]
	sh.mu.RLock()
	st := sh.m[id]
	sh.mu.RUnlock()
	if st != nil {
		return st
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if st = sh.m[id]; st == nil {
		st = &keyState{id: id}
		sh.m[id] = st
	}
	return st
}

// ownerState returns the state an owner's keys share, creating it on the
// first request. It is kept with the keys' states, under the owner's
// latchkey.OwnerQuotaID (which is also the id its quota usage is stored
// under), and found without allocating: the id is built on the stack.
func (m *Memory) ownerState(o *latchkey.Owner) *keyState {
	var buf [128]byte
	b := append(buf[:0], "owner:"...)
	b = append(b, o.Tenant...)
	b = append(b, ':')
	b = append(b, o.ID...)
	sh := &m.shards[shardOfBytes(b)]
	sh.mu.RLock()
	st := sh.m[string(b)]
	sh.mu.RUnlock()
	if st != nil {
		return st
	}
	id := string(b) // latchkey.OwnerQuotaID(o.Tenant, o.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if st = sh.m[id]; st == nil {
		st = &keyState{id: id}
		sh.m[id] = st
	}
	return st
}

// await waits, without the key's lock, for the one store call in flight
// for it (a read or a reservation) to end; the caller then looks again.
func await(ctx context.Context, ch <-chan struct{}, what string) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return latchkey.Errorf(latchkey.EUnavailable, "waiting for %s: %v", what, ctx.Err())
	}
}

// loadQuota reads the key's usage row. It is called with st.mu held and
// returns with it released: the read happens outside the lock, and
// concurrent first requests wait for the one read in flight instead of
// each reading the store.
func (m *Memory) loadQuota(ctx context.Context, st *keyState) error {
	if ch := st.loading; ch != nil {
		st.mu.Unlock()
		return await(ctx, ch, "the quota usage to be read")
	}
	ch := make(chan struct{})
	st.loading = ch
	gen := st.gen
	st.mu.Unlock()

	u, err := m.readUsage(ctx, st.id)

	st.mu.Lock()
	st.loading = nil
	close(ch)
	// A Forget or a refused flush since the read began means the row may
	// have changed after it was read; leave the state unloaded and let the
	// caller read again.
	if err == nil && st.gen == gen {
		q := &st.quota
		if q.loaded && q.usage.Epoch == u.Epoch {
			// No reset since this node read the row: what it counted,
			// including consumption not yet flushed, is still right.
			q.stale = false
		} else {
			// What the store holds may include a reservation a crashed
			// process never spent: it counts as spent.
			*q = quotaState{loaded: true, usage: u, reserved: u.Used, stored: u.Used}
		}
	}
	st.mu.Unlock()
	return err
}

func (m *Memory) readUsage(ctx context.Context, id string) (latchkey.QuotaUsage, error) {
	if m.store == nil {
		return latchkey.QuotaUsage{KeyID: id}, nil
	}
	var u latchkey.QuotaUsage
	err := m.store.View(ctx, func(tx latchkey.QuotaStore) error {
		var err error
		u, err = tx.QuotaUsage(id)
		return err
	})
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return latchkey.QuotaUsage{}, latchkey.Errorf(latchkey.EUnavailable, "the quota usage of %s could not be read in time", id)
		}
		return latchkey.QuotaUsage{}, fmt.Errorf("limit: reading the quota usage of %s: %w", id, err)
	}
	u.KeyID = id
	return u, nil
}

// admit decides with st.mu and ost.mu held (either may be nil: a key
// without limits of its own, a key without an owner's): every check
// first, then every commit or none. It allocates nothing unless it hands
// out a lease. A request that passes every check but would spend credits
// beyond the balance's reservation commits nothing and returns how many
// more must be reserved first.
func (m *Memory) admit(st, ost *keyState, k *latchkey.Key, o *latchkey.Owner, cost int64, named []latchkey.NamedCost, now time.Time, ns int64) (latchkey.Admission, int64, error) {
	var adm latchkey.Admission

	keyRateOK, ownerRateOK := true, true
	var keyWait, ownerWait int64
	if st != nil {
		st.touched = true
		var err error
		if keyRateOK, keyWait, err = st.checkWindows(k.RateLimits, named, ns, "key", k.ID); err != nil {
			return latchkey.Admission{}, 0, err
		}
	}
	if ost != nil {
		ost.touched = true
		var err error
		if ownerRateOK, ownerWait, err = ost.checkWindows(o.RateLimits, named, ns, "owner", o.ID); err != nil {
			return latchkey.Admission{}, 0, err
		}
	}

	keyQuotaOK := true
	var keyQuotaWait time.Duration
	if k.Quota != nil {
		limit, avail, end, err := st.quota.figures(k.Quota, k.CreatedAt, now, ns)
		if err != nil {
			return latchkey.Admission{}, 0, err
		}
		if cost > avail {
			keyQuotaOK = false
			// Waiting helps only a periodic quota, and only a request
			// that fits into a whole period.
			if !end.IsZero() && cost <= limit {
				keyQuotaWait = end.Sub(now)
			}
		}
		adm.Quota = latchkey.LimitState{Limit: limit, Remaining: max(avail, 0), ResetAt: end}
	}
	ownerQuota := ost != nil && periodic(o.Quota)
	ownerQuotaOK := true
	var ownerQuotaWait time.Duration
	if ownerQuota {
		limit, avail, end, err := ost.quota.figures(o.Quota, o.CreatedAt, now, ns)
		if err != nil {
			return latchkey.Admission{}, 0, err
		}
		if cost > avail {
			ownerQuotaOK = false
			if cost <= limit {
				ownerQuotaWait = end.Sub(now)
			}
		}
		if k.Quota == nil {
			adm.Quota = latchkey.LimitState{Limit: limit, Remaining: max(avail, 0), ResetAt: end}
		}
	}

	concOK := true
	if k.MaxConcurrent > 0 {
		st.purgeLeases(ns)
		concOK = len(st.leases) < k.MaxConcurrent
	}

	switch {
	case !keyRateOK || !ownerRateOK:
		adm.Code, adm.RetryAfter = latchkey.CodeRateLimited, time.Duration(max(keyWait, ownerWait))
		adm.Owner = keyRateOK
	case !keyQuotaOK || !ownerQuotaOK:
		adm.Code, adm.RetryAfter = latchkey.CodeQuotaExceeded, quotaRetry(keyQuotaOK, keyQuotaWait, ownerQuotaOK, ownerQuotaWait)
		adm.Owner = keyQuotaOK
	case !concOK:
		// purgeLeases left a live lease at the top of the heap.
		adm.Code, adm.RetryAfter = latchkey.CodeConcurrencyExceeded, time.Duration(st.expiry[0].exp-ns)
	default:
		if k.Quota != nil && st.quota.balance && m.store != nil && st.quota.usage.Used+cost > st.quota.reserved {
			return adm, st.quota.usage.Used + cost - st.quota.reserved, nil
		}
		if st != nil {
			st.commitWindows()
		}
		if ost != nil {
			ost.commitWindows()
		}
		if cost > 0 {
			if k.Quota != nil {
				st.quota.consume(cost)
			}
			if ownerQuota {
				ost.quota.consume(cost)
			}
			if k.Quota != nil || ownerQuota {
				adm.Quota.Remaining = max(adm.Quota.Remaining-cost, 0)
			}
		}
		if k.MaxConcurrent > 0 {
			adm.LeaseID = m.lease(st, k, ns)
		}
	}

	// The tightest window after the decision, over the key's and the
	// owner's: fewest remaining, then the soonest full again.
	var best tightest
	if st != nil {
		best.over(st.windows, ns)
	}
	if ost != nil {
		best.over(ost.windows, ns)
	}
	// Built once, for the window reported: constructing a time.Time per
	// window showed in profiles.
	if best.any {
		adm.RateLimit = latchkey.LimitState{Limit: best.limit, Remaining: best.rem, ResetAt: time.Unix(0, best.reset).UTC()}
	}
	return adm, 0, nil
}

// quotaRetry is RetryAfter of QUOTA_EXCEEDED when the key's quota, the
// owner's or both deny: how long until both could admit, or 0 when
// waiting cannot help one that denies.
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

// consume counts cost units of an admitted request.
func (qs *quotaState) consume(cost int64) {
	qs.usage.Used += cost
	if !qs.balance {
		qs.version++
	}
}

// tightest finds the window with the fewest requests remaining, then the
// one full again soonest.
type tightest struct {
	any               bool
	rem, reset, limit int64
}

func (b *tightest) over(ws []window, ns int64) {
	for i := range ws {
		w := &ws[i]
		x, xr := w.start(ns)
		rem, reset := w.remaining(x, xr, ns), x
		if xr > 0 {
			reset++
		}
		if !b.any || rem < b.rem || rem == b.rem && reset < b.reset {
			b.any, b.rem, b.reset, b.limit = true, rem, reset, w.limit
		}
	}
}

// checkWindows matches the state's windows to rls and works out, for each
// window that counts this request, its TAT if the request is admitted
// (next). It reports whether every window allows the request and, if
// not, how long until all of them would (rounded up to a nanosecond). A
// window the request does not count in (ApplyOnRequest, not named) keeps
// its TAT.
func (st *keyState) checkWindows(rls []latchkey.RateLimit, named []latchkey.NamedCost, ns int64, kind, id string) (bool, int64, error) {
	if len(rls) == 0 {
		st.windows = nil // the windows were removed
		return true, 0, nil
	}
	if err := st.syncWindows(rls, kind, id); err != nil {
		return false, 0, err
	}
	ok := true
	var wait int64
	for i := range st.windows {
		w := &st.windows[i]
		c, counts := costOf(&rls[i], named)
		if !counts {
			w.next, w.nextRem = w.tat, w.tatRem
			continue
		}
		x, xr := w.start(ns)
		w.next, w.nextRem = w.advance(x, xr, c)
		if d := w.next - ns; d > w.period || d == w.period && w.nextRem > 0 {
			ok = false
			// Admitted once next − period ≤ now, rounded up to a
			// whole nanosecond.
			wt := d - w.period
			if w.nextRem > 0 {
				wt++
			}
			wait = max(wait, wt)
		}
	}
	return ok, wait, nil
}

// commitWindows makes every window's next TAT its TAT.
func (st *keyState) commitWindows() {
	for i := range st.windows {
		w := &st.windows[i]
		w.tat, w.tatRem = w.next, w.nextRem
	}
}

// advance returns x + xr/limit moved on by c emission intervals: c·period
// in units of 1/limit ns, exactly. c is at most the limit (larger named
// costs are refused), so c·step stays within the period.
func (w *window) advance(x, xr, c int64) (int64, int64) {
	n, r := x+w.step, xr+w.stepRem
	if c != 1 {
		// c·stepRem < limit² may overflow 64 bits; the quotient by
		// limit is below c, so Div64 cannot.
		hi, lo := bits.Mul64(uint64(c), uint64(w.stepRem))
		q, rem := bits.Div64(hi, lo, uint64(w.limit))
		n, r = x+c*w.step+int64(q), xr+int64(rem)
	}
	if r >= w.limit {
		r -= w.limit
		n++
	}
	return n, r
}

// figures brings the quota state to the key's quota at now and returns
// its limit (the balance set, for a credit balance), what is available
// and, for a periodic quota, when the period ends.
func (qs *quotaState) figures(q *latchkey.Quota, anchor, now time.Time, ns int64) (limit, avail int64, end time.Time, err error) {
	if q.Remaining != nil {
		qs.balance = true
		if !qs.usage.PeriodStart.IsZero() {
			// Usage counted for a periodic quota the key had before; a
			// balance counts from when it was set, and its first
			// reservation replaces the stored row.
			qs.usage.PeriodStart, qs.usage.Used = time.Time{}, 0
			qs.reserved, qs.stored, qs.chunk = 0, 0, 0
			qs.saved = qs.version
		}
		limit = *q.Remaining
	} else {
		qs.balance = false
		if end, err = qs.roll(q.Period, anchor, now, ns); err != nil {
			return 0, 0, time.Time{}, err
		}
		limit = q.Limit
	}
	return limit, limit - qs.usage.Used, end, nil
}

// syncWindows matches the state's windows to rls (the key's or the
// owner's): a window whose limit or duration differs from what its state
// was built for starts full.
func (st *keyState) syncWindows(rls []latchkey.RateLimit, kind, id string) error {
	if len(st.windows) != len(rls) {
		st.windows = make([]window, len(rls))
	}
	for i := range rls {
		rl := &rls[i]
		w := &st.windows[i]
		if w.limit == rl.Limit && w.period == int64(rl.Window) {
			continue
		}
		if rl.Limit < 1 || rl.Window <= 0 {
			return latchkey.Errorf(latchkey.EInvalid, "%s %s: rate window %q needs a positive limit and window", kind, id, rl.Name)
		}
		p := int64(rl.Window)
		*w = window{limit: rl.Limit, period: p, step: p / rl.Limit, stepRem: p % rl.Limit}
	}
	return nil
}

// start returns max(TAT, now): an empty bucket cannot save up past full.
func (w *window) start(now int64) (int64, int64) {
	if w.tat < now {
		return now, 0
	}
	return w.tat, w.tatRem
}

// remaining returns how many requests the window admits at now when its
// TAT is x + xr/limit (x ≥ now): ⌊(now + period − TAT) / (period/limit)⌋.
func (w *window) remaining(x, xr, now int64) int64 {
	d := now + w.period - x
	if d <= 0 {
		return 0
	}
	// d·limit − xr in 128 bits: d ≤ period ≤ 100 years in ns and limit up
	// to 10⁹ overflow 64. The quotient is at most limit, so Div64 cannot
	// overflow.
	hi, lo := bits.Mul64(uint64(d), uint64(w.limit))
	lo, borrow := bits.Sub64(lo, uint64(xr), 0)
	hi -= borrow
	q, _ := bits.Div64(hi, lo, uint64(w.period))
	return min(int64(q), w.limit)
}

// roll brings a periodic quota's usage to the period that contains now and
// returns when that period ends. A request in a new period starts its
// usage from zero.
func (qs *quotaState) roll(period string, anchor, now time.Time, ns int64) (time.Time, error) {
	u := &qs.usage
	if ns >= qs.startNs && ns < qs.endNs && period == qs.period && anchor.Equal(qs.anchor) && u.PeriodStart.Equal(qs.startKey) {
		return qs.endsAt, nil
	}
	ps, err := latchkey.QuotaPeriodStart(period, anchor, now)
	if err != nil {
		return time.Time{}, err
	}
	end := latchkey.QuotaPeriodEnd(period, ps)
	// The store keeps microseconds; compare and save what it keeps, so a
	// count read back after a restart belongs to the same period.
	key := ps.UTC().Truncate(time.Microsecond)
	switch {
	case u.PeriodStart.Equal(key):
	case key.After(u.PeriodStart) || !latchkey.QuotaPeriodAligned(period, anchor, u.PeriodStart):
		// A new period, or one of a quota the key had before.
		u.PeriodStart, u.Used = key, 0
	default:
		// now lies before the period the usage already counts in: a
		// caller whose clock is a little behind another's at a period
		// boundary. Count it in the later period rather than start that
		// period over.
		return latchkey.QuotaPeriodEnd(period, u.PeriodStart).UTC(), nil
	}
	qs.period, qs.anchor = period, anchor
	qs.startNs, qs.endNs = ps.UnixNano(), end.UnixNano()
	qs.startKey, qs.endsAt = key, end.UTC()
	return qs.endsAt, nil
}

// lease takes a concurrency slot for an admitted request.
func (m *Memory) lease(st *keyState, k *latchkey.Key, ns int64) string {
	ttl := time.Duration(k.LeaseTTL)
	if ttl <= 0 {
		ttl = latchkey.DefaultLeaseTTL
	}
	id := latchkey.NewLeaseID()
	exp := ns + int64(ttl)
	if st.leases == nil {
		st.leases = make(map[string]int64)
	}
	st.leases[id] = exp
	// Released leases stay in the heap until they reach its top; rebuild
	// it when they outnumber the live ones, so it stays bounded.
	if len(st.expiry) > 2*len(st.leases)+64 {
		st.expiry = st.expiry[:0]
		for lid, e := range st.leases {
			st.expiry = append(st.expiry, leaseExp{e, lid})
		}
		for i := len(st.expiry)/2 - 1; i >= 0; i-- {
			siftDown(st.expiry, i)
		}
	} else {
		pushLease(&st.expiry, leaseExp{exp, id})
	}
	ls := &m.leases[shardOf(id)]
	ls.mu.Lock()
	ls.m[id] = leaseRef{st: st, exp: exp}
	ls.mu.Unlock()
	return id
}

// purgeLeases forgets the key's expired leases and leaves a live one, if
// any, at the top of the heap.
func (st *keyState) purgeLeases(now int64) {
	for len(st.expiry) > 0 {
		top := st.expiry[0]
		exp, ok := st.leases[top.id]
		if ok && exp == top.exp && top.exp > now {
			return
		}
		if ok && exp == top.exp {
			delete(st.leases, top.id)
		}
		popLease(&st.expiry)
	}
}

func pushLease(h *[]leaseExp, e leaseExp) {
	*h = append(*h, e)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p].exp <= s[i].exp {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func popLease(h *[]leaseExp) {
	s := *h
	n := len(s) - 1
	s[0] = s[n]
	s[n] = leaseExp{}
	*h = s[:n]
	siftDown(*h, 0)
}

func siftDown(s []leaseExp, i int) {
	for {
		l, small := 2*i+1, i
		if l < len(s) && s[l].exp < s[small].exp {
			small = l
		}
		if r := l + 1; r < len(s) && s[r].exp < s[small].exp {
			small = r
		}
		if small == i {
			return
		}
		s[i], s[small] = s[small], s[i]
		i = small
	}
}

// LeaseKey returns the id of the key that holds the lease, if the lease is
// live at now.
func (m *Memory) LeaseKey(leaseID string, now time.Time) (string, bool) {
	ls := &m.leases[shardOf(leaseID)]
	ls.mu.RLock()
	ref, ok := ls.m[leaseID]
	ls.mu.RUnlock()
	if !ok || now.UnixNano() >= ref.exp {
		return "", false
	}
	return ref.st.id, true
}

// Release ends a lease and frees its slot. It reports false if the lease is
// unknown, already released or expired at now.
func (m *Memory) Release(leaseID string, now time.Time) bool {
	ls := &m.leases[shardOf(leaseID)]
	ls.mu.Lock()
	ref, ok := ls.m[leaseID]
	if ok {
		delete(ls.m, leaseID)
	}
	ls.mu.Unlock()
	if !ok {
		return false
	}
	// The lease shard's lock is released before the key's is taken:
	// Admit takes them the other way round.
	ref.st.mu.Lock()
	delete(ref.st.leases, leaseID)
	ref.st.mu.Unlock()
	return now.UnixNano() < ref.exp
}

// Forget makes the next Admit of the key read its quota usage again, so
// that a reset (ResetQuotaUsage) or a new balance takes effect. Given an
// OwnerQuotaID it does the same for the owner's shared quota. Consumption
// this node counted but has not flushed is kept unless the usage was reset
// meanwhile. Rate windows follow the key's settings by themselves; leases
// stay. The service calls Forget after every change of a key.
func (m *Memory) Forget(keyID string) {
	sh := &m.shards[shardOf(keyID)]
	sh.mu.RLock()
	st := sh.m[keyID]
	sh.mu.RUnlock()
	if st == nil {
		return
	}
	st.mu.Lock()
	st.gen++
	if st.quota.loaded {
		st.quota.stale = true
	}
	st.mu.Unlock()
}

// pendingSave is one usage row to write, with what it takes to settle the
// state afterwards.
type pendingSave struct {
	st           *keyState
	gen, version uint64
	usage        latchkey.QuotaUsage
}

// Flush writes every changed periodic quota usage to the store and
// returns every credit balance's unspent reservation, so that the store
// then holds exactly what was spent. A row the store refuses because its
// usage was reset since this node read it is dropped from memory (the
// next Admit reads it again), as is the usage of a key the store does not
// have (ENotFound, reported once). On any other error the unwritten rows
// stay pending for the next Flush; the first error is returned.
func (m *Memory) Flush(ctx context.Context) error {
	return m.flush(ctx, true)
}

// flush is Flush; the background flusher returns only the reservations of
// keys idle since the last sweep (all false), so a busy key keeps its own.
func (m *Memory) flush(ctx context.Context, all bool) error {
	if m.store == nil {
		return nil
	}
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	var todo, returns []pendingSave
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		for _, st := range sh.m {
			st.mu.Lock()
			q := &st.quota
			switch {
			case !q.loaded:
			case q.balance:
				if q.stored > q.usage.Used && st.writing == nil && (all || !st.touched) {
					// Spend no further from the reservation: from now on
					// every request reserves anew, after this write.
					q.reserved = q.usage.Used
					st.writing = make(chan struct{})
					returns = append(returns, pendingSave{st: st, gen: st.gen, usage: q.usage})
				}
			case q.version != q.saved:
				todo = append(todo, pendingSave{st: st, gen: st.gen, version: q.version, usage: q.usage})
			}
			st.mu.Unlock()
		}
		sh.mu.RUnlock()
	}
	var first error
	for len(returns) > 0 {
		batch := returns[:min(len(returns), flushBatch)]
		returns = returns[len(batch):]
		if err := m.giveBack(ctx, batch); err != nil && first == nil {
			first = err
		}
	}
	for len(todo) > 0 {
		batch := todo[:min(len(todo), flushBatch)]
		todo = todo[len(batch):]
		if err := m.save(ctx, batch); err != nil {
			return err
		}
	}
	return first
}

// saveAll writes a batch's usage rows in one transaction; ok[i] says
// whether row i was written (see Tx.SaveQuotaUsage).
func (m *Memory) saveAll(ctx context.Context, batch []pendingSave) ([]bool, error) {
	ok := make([]bool, len(batch))
	err := m.store.Update(ctx, func(tx latchkey.QuotaStore) error {
		for i := range batch {
			var err error
			if ok[i], err = tx.SaveQuotaUsage(batch[i].usage); err != nil {
				return err
			}
		}
		return nil
	})
	return ok, err
}

// giveBack writes a batch of balances' spent credits over their
// reservations in one transaction, and ends their writes in flight.
func (m *Memory) giveBack(ctx context.Context, batch []pendingSave) error {
	ok, err := m.saveAll(ctx, batch)
	for i, p := range batch {
		st, q := p.st, &p.st.quota
		st.mu.Lock()
		close(st.writing)
		st.writing = nil
		if err == nil && q.loaded && q.usage.Epoch == p.usage.Epoch {
			if ok[i] {
				// No reservation could be made meanwhile: the write
				// was the key's one in flight.
				q.stored = p.usage.Used
			} else {
				st.gen++
				st.quota = quotaState{}
			}
		}
		st.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("limit: returning unspent credit reservations: %w", err)
	}
	return nil
}

// save writes a batch in one transaction. If the transaction fails for a
// reason other than an unreachable store, the rows are tried one by one,
// so that one bad row cannot hold back every other key's consumption.
func (m *Memory) save(ctx context.Context, batch []pendingSave) error {
	ok, err := m.saveAll(ctx, batch)
	if err == nil {
		m.settle(batch, ok)
		return nil
	}
	if len(batch) == 1 && latchkey.ErrorCode(err) == latchkey.ENotFound {
		// The key is not in the store: its usage can never be saved, and
		// keeping it pending would fail every flush from now on.
		m.settle(batch, ok)
		return fmt.Errorf("limit: saving quota usage: %w", err)
	}
	if len(batch) == 1 || ctx.Err() != nil || latchkey.ErrorCode(err) == latchkey.EUnavailable {
		return fmt.Errorf("limit: saving quota usage: %w", err)
	}
	var first error
	for i := range batch {
		if err := m.save(ctx, batch[i:i+1]); err != nil {
			m.log.Warn("saving quota usage failed", "key_id", batch[i].usage.KeyID, "err", err)
			if first == nil {
				first = err
			}
			if ctx.Err() != nil || latchkey.ErrorCode(err) == latchkey.EUnavailable {
				return first
			}
		}
	}
	return first
}

// settle records what a save achieved, unless the state was invalidated
// while it ran.
func (m *Memory) settle(batch []pendingSave, ok []bool) {
	for i, p := range batch {
		st := p.st
		st.mu.Lock()
		if st.gen == p.gen {
			if ok[i] {
				st.quota.saved = max(st.quota.saved, p.version)
			} else {
				// The stored epoch moved on: the usage was reset after
				// this node read it, and what it counted since belongs
				// to before the reset.
				m.log.Debug("quota usage was not saved (reset since read, or no such key); dropping the in-memory count", "key_id", st.id)
				st.gen++
				st.quota = quotaState{}
			}
		}
		st.mu.Unlock()
	}
}

// Close stops the background flusher and writes all pending consumption.
// Admit keeps working afterwards, but only Flush persists what it counts.
// Close waits for the flusher at most until ctx ends.
func (m *Memory) Close(ctx context.Context) error {
	m.closeOnce.Do(func() {
		m.cancel()
		close(m.stop)
	})
	select {
	case <-m.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return m.Flush(ctx)
}

// run flushes and sweeps every interval until Close.
func (m *Memory) run() {
	defer close(m.done)
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(m.loopCtx, flushTimeout)
		if err := m.flush(ctx, false); err != nil && m.loopCtx.Err() == nil {
			m.log.Warn("flushing quota usage failed; retrying next interval", "err", err)
		}
		cancel()
		m.sweep()
	}
}

// sweep drops the state of keys idle for a whole interval and expired
// leases, so that memory follows the keys in use, not every key ever seen.
func (m *Memory) sweep() {
	now := m.clock.Load()
	var idle []*keyState
	for i := range m.shards {
		sh := &m.shards[i]
		idle = idle[:0]
		sh.mu.RLock()
		for _, st := range sh.m {
			st.mu.Lock()
			if st.idle(now) {
				idle = append(idle, st)
			}
			st.touched = false
			st.mu.Unlock()
		}
		sh.mu.RUnlock()
		if len(idle) == 0 {
			continue
		}
		// Checked again under the shard's write lock: a request may have
		// come in between.
		sh.mu.Lock()
		for _, st := range idle {
			st.mu.Lock()
			if st.idle(now) {
				st.dropped = true
				delete(sh.m, st.id)
			}
			st.mu.Unlock()
		}
		sh.mu.Unlock()
		clear(idle)
	}
	for i := range m.leases {
		ls := &m.leases[i]
		ls.mu.Lock()
		for id, ref := range ls.m {
			if ref.exp <= now {
				delete(ls.m, id)
			}
		}
		ls.mu.Unlock()
	}
}

// idle reports whether dropping the state would change nothing a request
// can see: untouched since the last sweep, every window full, the quota
// flushed, no lease live and no read in flight.
func (st *keyState) idle(now int64) bool {
	q := &st.quota
	if st.touched || st.loading != nil || st.writing != nil || q.loaded && (q.version != q.saved || q.balance && q.stored > q.usage.Used) {
		return false
	}
	for i := range st.windows {
		if st.windows[i].tat >= now {
			return false
		}
	}
	// Only looked at: expired leases are purged by the key's own requests,
	// whose now is authoritative.
	for _, exp := range st.leases {
		if exp > now {
			return false
		}
	}
	return true
}

// shardOf picks a shard for a key or lease id from its last two bytes:
// both kinds of id end in random characters (latchkey.NewID, lease ids), so
// this spreads them as well as hashing the whole id would, at no cost on
// the verify path.
func shardOf(id string) int {
	if len(id) < 2 {
		return 0
	}
	return int((uint32(id[len(id)-1]) | uint32(id[len(id)-2])<<8) % numShards)
}

// shardOfBytes is shardOf of string(b).
func shardOfBytes(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	return int((uint32(b[len(b)-1]) | uint32(b[len(b)-2])<<8) % numShards)
}
