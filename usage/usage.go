// Package usage records what keys are used for: per key and per UTC minute,
// how many verifications ended with each verify code and from which client
// networks, and when each key was last used. Recording is in memory and
// allocation-free.
//
// A background flusher looks at what is pending every FlushInterval and
// writes a key's minute (its usage rows, network rows, last_used_at,
// key.denied samples, and the security checks that ride the flush) once:
// when the minute has closed, or earlier once the key has gone a whole
// interval without a verification. A key in steady use thus costs one
// write per minute, not one per interval, and a flush's cost follows what
// changed, not how many keys are active. The writes are split into
// transactions of at most MaxKeysPerTx keys, with a yield between them, so
// one flush never holds the store for long, and paced in time (PauseEvery,
// Pause) so that it never keeps verifications off a busy core for long.
//
// The store stays the truth: reads (GET /v1/keys/{id}/usage, a key's
// last_used_at) merge nothing from memory. They are exact once Flush (which
// writes everything pending, as Close does) has run; otherwise a key still
// in use is at most its current minute plus FlushInterval behind, and a key
// that stopped being used at most two intervals. A crash loses at most
// that much.
package usage

import (
	"context"
	"log/slog"
	"net/netip"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchkeyhq/latchkey"
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
	latchkey.CodeConditionFailed,
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
	case latchkey.CodeConditionFailed:
		return 11
	}
	return -1
}

// MaxNetworks is how many distinct client networks a bucket (one key, one
// minute) tells apart; verifications from further networks are counted
// under the network OtherNetwork.
const MaxNetworks = 16

// OtherNetwork is the network row that counts verifications beyond
// MaxNetworks distinct networks in a minute.
const OtherNetwork = latchkey.OtherNetwork

const shardCount = 64

// Tx is what the recorder needs of a store's transaction: to write usage
// rows and last use, to append key.used and key.denied audit events, and
// what its observer (the security checks) reads and writes.
type Tx interface {
	latchkey.UsageWriter
	latchkey.AuditWriter
	latchkey.FlushTx
}

// Options configures a Recorder. Zero values take the defaults.
type Options struct {
	Store latchkey.Store[Tx]
	// FlushInterval is how often the flusher looks for key minutes to
	// write (default 1s): closed minutes, and those of keys idle since its
	// last look.
	FlushInterval time.Duration
	// MaxPending bounds the buckets (one key, one minute) held between
	// flushes (default 1,000,000: a key in steady use holds its bucket for
	// its whole minute); verifications that would need another are counted
	// by Dropped instead.
	MaxPending int
	// MaxKeysPerTx bounds the keys one flush transaction writes (default
	// 500); a flush of more keys is several transactions.
	MaxKeysPerTx int
	// PauseEvery and Pause pace a flush in time: after each PauseEvery
	// (default 2ms) of writing it sleeps Pause (default 1ms; negative: it
	// never pauses). On a core busy with verifications, those waiting
	// behind the flush then wait about PauseEvery, not the scheduler's
	// 10 ms time slice (a goroutine that only yields is picked again
	// before the network is polled), and a flush that has work still gets
	// two thirds of the core.
	PauseEvery time.Duration
	Pause      time.Duration
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

// Observer, Flushed and LastUse are the root's: the security checks see
// a flush through them without importing this package.
type (
	Observer = latchkey.FlushObserver
	Flushed  = latchkey.UsageFlush
	LastUse  = latchkey.LastUse
)

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
	count uint32
}

// bucket is one key's minute. It is kept small, because every active key
// holds one: the first client network is inline, further networks and
// denied samples (rarer) live in arrays allocated on first need and kept
// with the bucket when it is reused. Counts are 32-bit: a key would need
// over 70 million verifications a second to overflow one in a minute.
type bucket struct {
	tenant     string
	last       int64 // unix nanoseconds of the newest verification
	net0       netCount
	counts     [len(Codes)]uint32
	overflow   uint32
	suppressed uint32 // denied verifications beyond the samples kept
	nnets      uint8
	lastNet    uint8 // index of the last network counted
	ndenied    uint8
	// touched says a verification was counted since the last flush looked.
	touched bool
	more    *[MaxNetworks - 1]netCount
	denied  *[maxDenied]denial
}

// net returns the i-th network of the bucket.
func (b *bucket) net(i int) *netCount {
	if i == 0 {
		return &b.net0
	}
	return &b.more[i-1]
}

// reset empties b for reuse, keeping its arrays.
func (b *bucket) reset() {
	more, denied := b.more, b.denied
	*b = bucket{more: more, denied: denied}
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
// It implements latchkey.UsageRecorder.
type Recorder struct {
	store     latchkey.Store[Tx]
	interval  time.Duration
	perShard  int
	perTx     int
	pace      pacer
	retention [3]time.Duration // minute, hour, day
	now       func() time.Time
	log       *slog.Logger
	perMinute int // key.denied samples per key per minute
	observer  Observer
	shards    [shardCount]shard

	dropped atomic.Uint64
	flushMu sync.Mutex // one flush at a time; guards what follows
	retry   []*chunk   // failed transactions, written first by the next flush
	pruned  time.Time
	// hours sums each tenant's current UTC hour for its key.used events;
	// hourKeys counts the keys summed; sweptHour is the hour whose start
	// the last sweep saw; closing makes the final flush write every hour,
	// finished or not.
	hours     map[string]*tenantHour
	hourKeys  int
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
		o.MaxPending = 1_000_000
	}
	if o.MaxKeysPerTx <= 0 {
		o.MaxKeysPerTx = 500
	}
	if o.PauseEvery <= 0 {
		o.PauseEvery = 2 * time.Millisecond
	}
	if o.Pause == 0 {
		o.Pause = time.Millisecond
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
		perTx:     o.MaxKeysPerTx,
		pace:      pacer{every: o.PauseEvery, pause: o.Pause},
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
	r.hours = map[string]*tenantHour{}
	go r.run()
	return r
}

// Record counts one verification of a key that was found. It takes a shard
// lock briefly and does not allocate, except for the first verification of
// a key in a minute when no spare bucket is left from earlier flushes (and
// the first second network or denial a spare bucket ever holds).
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
			sh.free[n-1] = nil
			sh.free = sh.free[:n-1]
		} else {
			b = new(bucket)
		}
		b.tenant = tenant
		sh.pending[k] = b
	}
	sh.hotKey, sh.hot = k, b
	b.touched = true
	b.counts[ci]++
	if t := now.UnixNano(); t > b.last {
		b.last = t
	}
	if nw != 0 {
		b.addNetwork(nw)
	}
	if ci != 0 {
		if int(b.ndenied) < r.perMinute {
			if b.denied == nil {
				b.denied = new([maxDenied]denial)
			}
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
	if i := int(b.lastNet); i < int(b.nnets) && b.net(i).net == n {
		b.net(i).count++
		return
	}
	for i := range int(b.nnets) {
		if nc := b.net(i); nc.net == n {
			nc.count++
			b.lastNet = uint8(i)
			return
		}
	}
	if b.nnets < MaxNetworks {
		if b.nnets == 1 && b.more == nil {
			b.more = new([MaxNetworks - 1]netCount)
		}
		*b.net(int(b.nnets)) = netCount{net: n, count: 1}
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
			if err := r.flush(ctx, false); err != nil {
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

// chunk is what one flush transaction writes: the minutes of at most
// MaxKeysPerTx keys, or key.used events.
type chunk struct {
	usage   []latchkey.UsageRow
	nets    []latchkey.UsageNetwork
	last    []LastUse // by key id, Before filled in by the write
	tenants map[string]string
	denied  []*latchkey.AuditEvent
	used    []*latchkey.AuditEvent
}

func (c *chunk) rows() int { return len(c.usage) }

// deniedEvents turns a bucket's samples into key.denied audit events; the
// last carries how many more denials the minute had.
func deniedEvents(keyID string, bk *bucket) []*latchkey.AuditEvent {
	out := make([]*latchkey.AuditEvent, 0, bk.ndenied)
	for i := range int(bk.ndenied) {
		d := bk.denied[i]
		e := &latchkey.AuditEvent{
			At: time.Unix(0, d.at).UTC(), Tenant: bk.tenant, Action: "key.denied",
			TargetKeyID: keyID, Result: Codes[d.code],
		}
		if d.ip.IsValid() {
			e.IP = d.ip.String()
		}
		if i == int(bk.ndenied)-1 && bk.suppressed > 0 {
			e.Details = map[string]string{"suppressed": strconv.FormatInt(int64(bk.suppressed), 10)}
		}
		out = append(out, e)
	}
	return out
}

// taken is a bucket a flush took out of its shard.
type taken struct {
	key   bucketKey
	b     *bucket
	shard int
}

// Flush writes every pending count, and each key's newest use, through the
// store, finished minutes or not, in transactions of at most MaxKeysPerTx
// keys. If a write fails its rows are kept and written with the next flush
// (up to a bound; beyond it they are counted by Dropped).
func (r *Recorder) Flush(ctx context.Context) error { return r.flush(ctx, true) }

// take removes from the shards the buckets to write: all of them, or (a
// background flush) those whose minute closed before now's and those not
// touched since the last look, whose touched mark it clears.
func (r *Recorder) take(all bool, now time.Time) []taken {
	cur := minuteOf(now)
	var out []taken
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for k, bk := range sh.pending {
			if !all && k.minute >= cur && bk.touched {
				bk.touched = false
				continue
			}
			out = append(out, taken{key: k, b: bk, shard: i})
			delete(sh.pending, k)
			if sh.hot == bk {
				sh.hotKey, sh.hot = bucketKey{}, nil
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// release returns written buckets to their shards for reuse.
func (r *Recorder) release(ts []taken) {
	for _, t := range ts {
		t.b.reset()
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].shard < ts[j].shard })
	for i := 0; i < len(ts); {
		sh := &r.shards[ts[i].shard]
		sh.mu.Lock()
		for ; i < len(ts) && &r.shards[ts[i].shard] == sh; i++ {
			sh.free = append(sh.free, ts[i].b)
		}
		sh.mu.Unlock()
	}
}

func (r *Recorder) flush(ctx context.Context, all bool) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	now := r.now()
	ts := r.take(all, now)
	// By key, oldest minute first: a chunk holds whole keys, and each
	// tenant's hour is summed in order.
	sort.Slice(ts, func(i, j int) bool {
		if ts[i].key.keyID != ts[j].key.keyID {
			return ts[i].key.keyID < ts[j].key.keyID
		}
		return ts[i].key.minute < ts[j].key.minute
	})
	chunks := r.retry
	r.retry = nil
	var c *chunk
	nkeys := 0
	for i, t := range ts {
		k, bk := t.key, t.b
		newKey := i == 0 || ts[i-1].key.keyID != k.keyID
		if newKey {
			if c == nil || nkeys >= r.perTx {
				c = &chunk{tenants: map[string]string{}}
				chunks = append(chunks, c)
				nkeys = 0
			}
			nkeys++
			c.last = append(c.last, LastUse{KeyID: k.keyID, Tenant: bk.tenant})
		}
		minute := time.Unix(k.minute, 0).UTC()
		for ci, n := range bk.counts {
			if n > 0 {
				c.usage = append(c.usage, latchkey.UsageRow{KeyID: k.keyID, Tenant: bk.tenant, Minute: minute, Code: Codes[ci], Count: int64(n)})
			}
		}
		for j := range int(bk.nnets) {
			nc := bk.net(j)
			c.nets = append(c.nets, latchkey.UsageNetwork{KeyID: k.keyID, Minute: minute, Network: nc.net.String(), Count: int64(nc.count)})
		}
		if bk.overflow > 0 {
			c.nets = append(c.nets, latchkey.UsageNetwork{KeyID: k.keyID, Minute: minute, Network: OtherNetwork, Count: int64(bk.overflow)})
		}
		lu := &c.last[len(c.last)-1]
		if last := time.Unix(0, bk.last).UTC(); last.After(lu.At) {
			lu.At = last
		}
		c.tenants[k.keyID] = bk.tenant
		c.denied = append(c.denied, deniedEvents(k.keyID, bk)...)
	}
	// Hours are summed in minute order across keys.
	order := make([]int, len(ts))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return ts[order[i]].key.minute < ts[order[j]].key.minute })
	var used []*latchkey.AuditEvent
	for _, i := range order {
		used = append(used, r.addHourly(ts[i].key.keyID, ts[i].key.minute, ts[i].b)...)
	}
	used = append(used, r.dueHourly(now, r.closing)...)
	if len(used) > 0 {
		chunks = append(chunks, &chunk{used: used})
	}
	r.release(ts)
	r.pace.start()
	for i, c := range chunks {
		if i > 0 {
			// Let verifications and other writers in between transactions.
			runtime.Gosched()
		}
		if err := r.write(ctx, c); err != nil {
			r.keep(chunks[i:])
			return err
		}
	}
	return nil
}

// keep holds failed chunks for the next flush, unless they hold more rows
// than MaxPending buckets could: those are counted as dropped.
func (r *Recorder) keep(cs []*chunk) {
	limit := r.perShard * shardCount * len(Codes)
	n := 0
	for _, c := range cs {
		n += c.rows()
	}
	if n <= limit {
		r.retry = cs
		return
	}
	var lost int64
	for _, c := range cs {
		for _, u := range c.usage {
			lost += u.Count
		}
	}
	r.dropped.Add(uint64(lost))
}

// write writes one chunk in one transaction.
func (r *Recorder) write(ctx context.Context, c *chunk) error {
	// A stable order keeps concurrent writers (other nodes) from
	// deadlocking on each other's rows and makes tests repeatable.
	sort.Slice(c.usage, func(i, j int) bool {
		x, y := c.usage[i], c.usage[j]
		if x.KeyID != y.KeyID {
			return x.KeyID < y.KeyID
		}
		if !x.Minute.Equal(y.Minute) {
			return x.Minute.Before(y.Minute)
		}
		return x.Code < y.Code
	})
	sort.SliceStable(c.denied, func(i, j int) bool { return c.denied[i].At.Before(c.denied[j].At) })
	observed := false
	err := r.store.Update(ctx, func(tx Tx) error {
		f := &Flushed{Usage: c.usage, Networks: c.nets, Tenants: c.tenants, LastUsed: make([]LastUse, 0, len(c.last))}
		uses := make([]latchkey.LastUsed, len(c.last))
		for i, lu := range c.last {
			uses[i] = latchkey.LastUsed{KeyID: lu.KeyID, At: lu.At}
		}
		for part := uses; len(part) > 0; part = part[min(len(part), paceRows):] {
			r.pace.step()
			if err := tx.SetLastUsed(part[:min(len(part), paceRows)]); err != nil {
				return err
			}
		}
		for i, lu := range c.last {
			lu.Before = uses[i].Before
			f.LastUsed = append(f.LastUsed, lu)
		}
		if r.observer != nil && len(c.last) > 0 {
			r.pace.step()
			observed = true
			if err := r.observer.ObserveFlush(tx, f); err != nil {
				return err
			}
		}
		// In slices, so the pacer gets a say every few rows.
		for rows := c.usage; len(rows) > 0; rows = rows[min(len(rows), paceRows):] {
			r.pace.step()
			if err := tx.AddUsage(rows[:min(len(rows), paceRows)]); err != nil {
				return err
			}
		}
		for rows := c.nets; len(rows) > 0; rows = rows[min(len(rows), paceRows):] {
			r.pace.step()
			if err := tx.AddUsageNetworks(rows[:min(len(rows), paceRows)]); err != nil {
				return err
			}
		}
		for _, e := range c.denied {
			r.pace.step()
			// AppendAudit seals e; a retried flush seals it again.
			if err := tx.AppendAudit(e); err != nil {
				return err
			}
		}
		for _, e := range c.used {
			r.pace.step()
			if err := tx.AppendAudit(e); err != nil {
				return err
			}
		}
		return nil
	})
	if observed {
		// Its notes in memory stand only if the flush committed.
		r.observer.FlushDone(err == nil)
	}
	return err
}

// paceRows is how many usage or network rows (or keys' last use) a flush
// writes in one statement, between two looks at its pacer: a few
// milliseconds of work.
const paceRows = 100

// pacer spreads a flush over time (Options.PauseEvery, Options.Pause). It
// measures the time the flush has run on the wall clock, not the injected
// one: what it paces is the use of the CPU, which no test clock moves.
type pacer struct {
	every, pause time.Duration
	since        time.Time // when the flush last started or paused
}

// start marks the beginning of a flush.
func (p *pacer) start() { p.since = time.Now() }

// step sleeps for pause once every has passed since the start or the last
// pause.
func (p *pacer) step() {
	if p.pause < 0 {
		return
	}
	if now := time.Now(); now.Sub(p.since) >= p.every {
		time.Sleep(p.pause)
		p.since = time.Now()
	}
}

// grains are the row kinds in the order of Recorder.retention.
var grains = [3]latchkey.Grain{latchkey.GrainMinute, latchkey.GrainHour, latchkey.GrainDay}

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
func (r *Recorder) Prune(ctx context.Context, g latchkey.Grain, before time.Time) error {
	return r.store.Update(ctx, func(tx Tx) error {
		_, err := tx.PruneUsage(g, before)
		return err
	})
}
