// Package usage records what keys are used for: per key and per UTC minute,
// how many verifications ended with each verify code and from which client
// networks, and when each key was last used. Recording is in memory and
// allocation-free; a background flusher writes what is pending through the
// store every FlushInterval, in one transaction.
//
// The store stays the truth: reads (GET /v1/keys/{id}/usage, a key's
// last_used_at) merge nothing from memory, so they are exact once a flush
// has run and at most FlushInterval (plus the time a flush takes) behind.
// A crash loses at most that much.
package usage

import (
	"context"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// Codes lists the verify codes the recorder counts, in the order of a
// bucket's counters: every code but MALFORMED and NOT_FOUND, which found
// no key.
var Codes = [...]string{
	latchkey.CodeValid,
	latchkey.CodeExpired,
	latchkey.CodeRevoked,
	latchkey.CodeSuspended,
	latchkey.CodeIPNotAllowed,
	latchkey.CodeOutsideTimeWindow,
	latchkey.CodeInsufficientScope,
	latchkey.CodeResourceNotAllowed,
	latchkey.CodeRateLimited,
	latchkey.CodeQuotaExceeded,
	latchkey.CodeConcurrencyExceeded,
}

func codeIndex(code string) int {
	switch code {
	case latchkey.CodeValid:
		return 0
	case latchkey.CodeExpired:
		return 1
	case latchkey.CodeRevoked:
		return 2
	case latchkey.CodeSuspended:
		return 3
	case latchkey.CodeIPNotAllowed:
		return 4
	case latchkey.CodeOutsideTimeWindow:
		return 5
	case latchkey.CodeInsufficientScope:
		return 6
	case latchkey.CodeResourceNotAllowed:
		return 7
	case latchkey.CodeRateLimited:
		return 8
	case latchkey.CodeQuotaExceeded:
		return 9
	case latchkey.CodeConcurrencyExceeded:
		return 10
	}
	return -1
}

// MaxNetworks is how many distinct client networks a bucket (one key, one
// minute) tells apart; verifications from further networks are counted
// under the network OtherNetwork.
const MaxNetworks = 16

// OtherNetwork is the network row that counts verifications beyond
// MaxNetworks distinct networks in a minute.
const OtherNetwork = "other"

const shardCount = 64

// Options configures a Recorder. Zero values take the defaults.
type Options struct {
	Store keys.Store
	// FlushInterval is how often pending counts are written (default 1s).
	FlushInterval time.Duration
	// MaxPending bounds the buckets (one key, one minute) held between
	// flushes (default 100,000); verifications that would need another are
	// counted by Dropped instead.
	MaxPending int
	// Retention is how long minute rows are kept (default 30 days),
	// HourRetention hour roll-ups (default 90 days) and DayRetention day
	// roll-ups (default 3 years); negative keeps them forever. Rows
	// older are deleted once an hour. Negative keeps them forever.
	Retention     time.Duration
	HourRetention time.Duration
	DayRetention  time.Duration
	// Now is the clock for retention (default time.Now).
	Now func() time.Time
	// DeniedPerMinute bounds the denied verifications of one key in one
	// minute that are written to its tenant's audit log as key.denied
	// events (default 10; negative: none). Beyond it they are only
	// counted, in the usage rows and in the last event's "suppressed".
	DeniedPerMinute int
	// Observer, when set, sees each flush inside its transaction (the
	// security checks).
	Observer Observer
	Logger   *slog.Logger
}

// Observer is told what each flush writes, inside the flush's transaction
// and before the usage rows are added (so the store still holds what came
// before them). An error fails the flush, which is retried with the next.
type Observer interface {
	ObserveFlush(tx keys.Tx, f *Flushed) error
}

// Flushed is what one flush writes.
type Flushed struct {
	Usage    []keys.UsageRow
	Networks []keys.UsageNetwork
	// LastUsed holds, per key, its newest use in the flush and when it was
	// used before (its creation time if never), in key id order.
	LastUsed []LastUse
	// Tenants maps each key id of the flush to its tenant.
	Tenants map[string]string
}

// LastUse is a key's newest use in a flush and its use before that.
type LastUse struct {
	KeyID, Tenant string
	At, Before    time.Time
}

// maxDenied is the most key.denied samples a bucket holds (the cap on
// Options.DeniedPerMinute).
const maxDenied = 16

// denial is one denied verification kept for the audit log.
type denial struct {
	code int8
	ip   netip.Addr
	at   int64 // unix nanoseconds
}

type bucketKey struct {
	keyID  string
	minute int64 // unix seconds of the minute's start
}

// network is a client network packed into an integer: an IPv4 /24 as
// v4Flag|its three bytes, an IPv6 /48 as its first six bytes.
type network uint64

const v4Flag network = 1 << 63

type netCount struct {
	net   network
	count int64
}

type bucket struct {
	tenant   string
	counts   [len(Codes)]int64
	nets     [MaxNetworks]netCount
	nnets    int
	lastNet  int // index in nets of the last network counted
	overflow int64
	last     int64 // unix nanoseconds of the newest verification
	denied   [maxDenied]denial
	ndenied  int
	// suppressed counts denied verifications beyond the samples kept.
	suppressed int64
}

type shard struct {
	mu      sync.Mutex
	pending map[bucketKey]*bucket
	free    []*bucket
	// hot is the bucket used last, which the next Record most often wants:
	// comparing its key is cheaper than hashing it into pending.
	hotKey bucketKey
	hot    *bucket
	_      [56]byte // keep shards' locks on separate cache lines
}

// Recorder counts verifications in memory and flushes them to the store.
// It implements keys.UsageRecorder.
type Recorder struct {
	store     keys.Store
	interval  time.Duration
	perShard  int
	retention [3]time.Duration // minute, hour, day
	now       func() time.Time
	log       *slog.Logger
	perMinute int // key.denied samples per key per minute
	observer  Observer
	shards    [shardCount]shard

	dropped atomic.Uint64
	flushMu sync.Mutex // one flush at a time; guards what follows
	retry   batch      // a failed flush's rows, written with the next
	pruned  time.Time
	// hours sums each key's current UTC hour for its key.used event;
	// sweptHour is the hour whose start the last sweep saw; closing makes
	// the final flush write every hour, finished or not.
	hours     map[string]*hourUse
	sweptHour int64
	closing   bool

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// New returns a Recorder and starts its flusher; Close stops it.
func New(o Options) *Recorder {
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 100_000
	}
	if o.Retention == 0 {
		o.Retention = 30 * 24 * time.Hour
	}
	if o.HourRetention == 0 {
		o.HourRetention = 90 * 24 * time.Hour
	}
	if o.DayRetention == 0 {
		o.DayRetention = 3 * 366 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.DeniedPerMinute == 0:
		o.DeniedPerMinute = 10
	case o.DeniedPerMinute < 0:
		o.DeniedPerMinute = 0
	}
	r := &Recorder{
		store:     o.Store,
		interval:  o.FlushInterval,
		perShard:  max(1, o.MaxPending/shardCount),
		retention: [3]time.Duration{o.Retention, o.HourRetention, o.DayRetention},
		now:       o.Now,
		log:       o.Logger,
		perMinute: min(o.DeniedPerMinute, maxDenied),
		observer:  o.Observer,
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	for i := range r.shards {
		r.shards[i].pending = make(map[bucketKey]*bucket)
	}
	r.hours = map[string]*hourUse{}
	go r.run()
	return r
}

// Record counts one verification of a key that was found. It takes a shard
// lock briefly and does not allocate, except for the first verification of
// a key in a minute when no spare bucket is left from earlier flushes.
func (r *Recorder) Record(keyID, tenant, code string, ip netip.Addr, now time.Time) {
	ci := codeIndex(code)
	if ci < 0 {
		return
	}
	k := bucketKey{keyID: keyID, minute: minuteOf(now)}
	var nw network
	if ip.IsValid() {
		nw = networkOf(ip)
	}
	sh := &r.shards[shardOf(keyID)]
	sh.mu.Lock()
	b := sh.hot
	if b == nil || sh.hotKey != k {
		b = sh.pending[k]
	}
	if b == nil {
		if len(sh.pending) >= r.perShard {
			sh.mu.Unlock()
			r.dropped.Add(1)
			return
		}
		if n := len(sh.free); n > 0 {
			b = sh.free[n-1]
			sh.free = sh.free[:n-1]
		} else {
			b = new(bucket)
		}
		b.tenant = tenant
		sh.pending[k] = b
	}
	sh.hotKey, sh.hot = k, b
	b.counts[ci]++
	if t := now.UnixNano(); t > b.last {
		b.last = t
	}
	if nw != 0 {
		b.addNetwork(nw)
	}
	if ci != 0 {
		if b.ndenied < r.perMinute {
			b.denied[b.ndenied] = denial{code: int8(ci), ip: ip, at: now.UnixNano()}
			b.ndenied++
		} else {
			b.suppressed++
		}
	}
	sh.mu.Unlock()
}

func (b *bucket) addNetwork(n network) {
	// Most verifications of a key in a minute come from the network of the
	// one before.
	if i := b.lastNet; i < b.nnets && b.nets[i].net == n {
		b.nets[i].count++
		return
	}
	for i := range b.nnets {
		if b.nets[i].net == n {
			b.nets[i].count++
			b.lastNet = i
			return
		}
	}
	if b.nnets < MaxNetworks {
		b.nets[b.nnets] = netCount{net: n, count: 1}
		b.lastNet = b.nnets
		b.nnets++
		return
	}
	b.overflow++
}

// networkOf returns the client network of ip: its IPv4 /24 or IPv6 /48.
func networkOf(ip netip.Addr) network {
	if ip.Is4() {
		a := ip.As4()
		return v4Flag | network(a[0])<<16 | network(a[1])<<8 | network(a[2])
	}
	a := ip.As16()
	if ip.Is4In6() {
		return v4Flag | network(a[12])<<16 | network(a[13])<<8 | network(a[14])
	}
	return network(a[0])<<40 | network(a[1])<<32 | network(a[2])<<24 | network(a[3])<<16 | network(a[4])<<8 | network(a[5])
}

// String returns the network in CIDR notation.
func (n network) String() string {
	if n&v4Flag != 0 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(n >> 16), byte(n >> 8), byte(n)}), 24).String()
	}
	var a [16]byte
	for i := range 6 {
		a[i] = byte(n >> (40 - 8*i))
	}
	return netip.PrefixFrom(netip.AddrFrom16(a), 48).String()
}

// minuteOf returns the unix seconds of the start of now's minute.
func minuteOf(now time.Time) int64 {
	s := now.Unix()
	m := s % 60
	if m < 0 {
		m += 60
	}
	return s - m
}

// shardOf hashes a key id's last bytes (FNV-1a, by hand so nothing
// escapes): ids end in random characters, and the map hashes the whole id
// again anyway.
func shardOf(id string) int {
	h := uint32(2166136261)
	for i := max(0, len(id)-8); i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return int(h % shardCount)
}

// Dropped returns how many verifications were not recorded because
// MaxPending buckets were pending.
func (r *Recorder) Dropped() uint64 { return r.dropped.Load() }

func (r *Recorder) run() {
	defer close(r.done)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), max(r.interval, 10*time.Second))
			if err := r.Flush(ctx); err != nil {
				r.log.Warn("writing key usage failed; retrying at the next flush", "err", err)
			}
			r.maybePrune(ctx)
			cancel()
		}
	}
}

// Close stops the flusher and writes what is pending (the final flush).
func (r *Recorder) Close(ctx context.Context) error {
	r.once.Do(func() { close(r.stop) })
	<-r.done
	r.flushMu.Lock()
	r.closing = true
	r.flushMu.Unlock()
	return r.Flush(ctx)
}

// batch is what one flush writes.
type batch struct {
	usage   []keys.UsageRow
	nets    []keys.UsageNetwork
	last    map[string]time.Time
	tenants map[string]string
	denied  []*latchkey.AuditEvent
	used    []*latchkey.AuditEvent // key.used: one per key and hour
}

func (b *batch) empty() bool {
	return len(b.usage) == 0 && len(b.nets) == 0 && len(b.last) == 0 && len(b.denied) == 0 && len(b.used) == 0
}

// deniedEvents turns a bucket's samples into key.denied audit events; the
// last carries how many more denials the minute had.
func deniedEvents(keyID string, bk *bucket) []*latchkey.AuditEvent {
	out := make([]*latchkey.AuditEvent, 0, bk.ndenied)
	for i, d := range bk.denied[:bk.ndenied] {
		e := &latchkey.AuditEvent{
			At: time.Unix(0, d.at).UTC(), Tenant: bk.tenant, Action: "key.denied",
			TargetKeyID: keyID, Result: Codes[d.code],
		}
		if d.ip.IsValid() {
			e.IP = d.ip.String()
		}
		if i == bk.ndenied-1 && bk.suppressed > 0 {
			e.Details = map[string]string{"suppressed": strconv.FormatInt(bk.suppressed, 10)}
		}
		out = append(out, e)
	}
	return out
}

// Flush writes every pending count, and each key's newest use, in one
// store transaction. If the write fails the rows are kept and written
// with the next flush (up to a bound; beyond it they are counted by
// Dropped).
func (r *Recorder) Flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	b := r.retry
	r.retry = batch{}
	if b.last == nil {
		b.last = map[string]time.Time{}
		b.tenants = map[string]string{}
	}
	var taken []*bucket
	var takenKeys []bucketKey
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for k, bk := range sh.pending {
			takenKeys = append(takenKeys, k)
			c := *bk
			taken = append(taken, &c)
			*bk = bucket{}
			sh.free = append(sh.free, bk)
		}
		clear(sh.pending)
		sh.hotKey, sh.hot = bucketKey{}, nil
		sh.mu.Unlock()
	}
	// Oldest minutes first, so each key's hours are summed in order.
	order := make([]int, len(taken))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(i, j int) bool { return takenKeys[order[i]].minute < takenKeys[order[j]].minute })
	for _, i := range order {
		bk, k := taken[i], takenKeys[i]
		minute := time.Unix(k.minute, 0).UTC()
		for ci, n := range bk.counts {
			if n > 0 {
				b.usage = append(b.usage, keys.UsageRow{KeyID: k.keyID, Tenant: bk.tenant, Minute: minute, Code: Codes[ci], Count: n})
			}
		}
		for _, nc := range bk.nets[:bk.nnets] {
			b.nets = append(b.nets, keys.UsageNetwork{KeyID: k.keyID, Minute: minute, Network: nc.net.String(), Count: nc.count})
		}
		if bk.overflow > 0 {
			b.nets = append(b.nets, keys.UsageNetwork{KeyID: k.keyID, Minute: minute, Network: OtherNetwork, Count: bk.overflow})
		}
		if last := time.Unix(0, bk.last).UTC(); last.After(b.last[k.keyID]) {
			b.last[k.keyID] = last
		}
		b.tenants[k.keyID] = bk.tenant
		b.denied = append(b.denied, deniedEvents(k.keyID, bk)...)
		if e := r.addHourly(k.keyID, k.minute, bk); e != nil {
			b.used = append(b.used, e)
		}
	}
	b.used = append(b.used, r.dueHourly(r.now(), r.closing)...)
	if b.empty() {
		return nil
	}
	// A stable order keeps concurrent writers (other nodes) from
	// deadlocking on each other's rows and makes tests repeatable.
	sort.Slice(b.usage, func(i, j int) bool {
		x, y := b.usage[i], b.usage[j]
		if x.KeyID != y.KeyID {
			return x.KeyID < y.KeyID
		}
		if !x.Minute.Equal(y.Minute) {
			return x.Minute.Before(y.Minute)
		}
		return x.Code < y.Code
	})
	ids := make([]string, 0, len(b.last))
	for id := range b.last {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	sort.SliceStable(b.denied, func(i, j int) bool { return b.denied[i].At.Before(b.denied[j].At) })
	err := r.store.Update(ctx, func(tx keys.Tx) error {
		f := &Flushed{Usage: b.usage, Networks: b.nets, Tenants: b.tenants, LastUsed: make([]LastUse, 0, len(ids))}
		for _, id := range ids {
			before, err := tx.SetLastUsed(id, b.last[id])
			if err != nil {
				return err
			}
			f.LastUsed = append(f.LastUsed, LastUse{KeyID: id, Tenant: b.tenants[id], At: b.last[id], Before: before})
		}
		if r.observer != nil {
			if err := r.observer.ObserveFlush(tx, f); err != nil {
				return err
			}
		}
		if err := tx.AddUsage(b.usage); err != nil {
			return err
		}
		if err := tx.AddUsageNetworks(b.nets); err != nil {
			return err
		}
		for _, e := range append(b.denied, b.used...) {
			// AppendAudit seals e; a retried flush seals it again.
			if err := tx.AppendAudit(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if len(b.usage) > r.perShard*shardCount*len(Codes) {
			var lost int64
			for _, u := range b.usage {
				lost += u.Count
			}
			r.dropped.Add(uint64(lost))
		} else {
			r.retry = b
		}
		return err
	}
	return nil
}

// grains are the row kinds in the order of Recorder.retention.
var grains = [3]keys.Grain{keys.GrainMinute, keys.GrainHour, keys.GrainDay}

// maybePrune deletes rows older than their retention, at most once an hour.
func (r *Recorder) maybePrune(ctx context.Context) {
	now := r.now()
	if !r.pruned.IsZero() && now.Sub(r.pruned) < time.Hour {
		return
	}
	r.pruned = now
	for i, g := range grains {
		if r.retention[i] < 0 {
			continue
		}
		if err := r.Prune(ctx, g, now.Add(-r.retention[i])); err != nil {
			r.log.Warn("pruning old key usage failed", "grain", g, "err", err)
		}
	}
}

// Prune deletes usage rows of grain g that start before before.
func (r *Recorder) Prune(ctx context.Context, g keys.Grain, before time.Time) error {
	return r.store.Update(ctx, func(tx keys.Tx) error {
		_, err := tx.PruneUsage(g, before)
		return err
	})
}
