package secrets

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// readAudits queues the secret.read audit events of secret reads and
// writes them in batches: one store transaction per flush appends every
// queued event to its tenant's hash chain, in the order the reads
// happened. A read is answered only once it is queued; when the queue is
// full (the store has not taken the events for a while) reads fail with
// EUnavailable instead of going unaudited. A crash loses at most the
// events queued since the last flush (docs/secrets.md).
//
// Reads that are the same in everything but their time (tenant, key,
// address, user agent, secret, version, result) and fall in one flush are
// written as one event that counts them (details "count", with the first
// read's time as the event's and the last's as "last_at"): a client
// polling a secret a thousand times a second adds one event a second to
// the log, not a thousand, and the flush costs what the distinct readers
// cost. The queue's limit counts such distinct reads.
//
// Queueing a read allocates nothing in the steady state: the map keeps
// its buckets across flushes, and the strings are the actor's and the
// secret's own.
type readAudits struct {
	svc      *Service
	interval time.Duration
	limit    int

	mu      sync.Mutex
	pending map[readKey]readCount
	spare   map[readKey]readCount // the map of the last flush, cleared and reused
	seq     uint64                // orders distinct reads by their first arrival
	// inflight is the size of the batch a flush is writing: it still
	// counts against the limit, since a failed flush puts it back.
	inflight int
	closed   bool
	failing  bool // the last flush failed; reads are refused until one succeeds

	flushMu sync.Mutex // one flush at a time
	start   sync.Once
	stopped sync.Once
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// readRecord is one secret read to audit.
type readRecord struct {
	at time.Time
	readKey
}

// readKey is what a secret.read event says, but its time.
type readKey struct {
	tenant    string
	actor     string
	ip        netip.Addr
	userAgent string
	name      string
	version   int64 // 0 for a denied read
	denied    bool
	source    string // the kind of source the value was read from, "" for a stored value
}

// readCount is how many reads of one readKey a flush holds and when.
type readCount struct {
	first, last time.Time
	n           int64
	seq         uint64
}

func newReadAudits(svc *Service, limit int, interval time.Duration) *readAudits {
	return &readAudits{
		svc: svc, limit: limit, interval: interval,
		pending: make(map[readKey]readCount), spare: make(map[readKey]readCount),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// add queues rs, all or none; EUnavailable if the queue is full or
// closed.
func (q *readAudits) add(rs ...readRecord) error {
	if len(rs) == 0 {
		return nil
	}
	q.start.Do(func() { go q.run() })
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return latchkey.Errorf(latchkey.EUnavailable, "the server is shutting down; secret reads are refused")
	}
	if q.failing {
		// The last flush failed: answering more reads would widen what a
		// crash now loses beyond one interval. The flusher retries soon.
		q.mu.Unlock()
		return latchkey.Errorf(latchkey.EUnavailable, "the audit log is not taking events; secret reads are refused until it does")
	}
	before := q.inflight + len(q.pending)
	if before+len(rs) > q.limit {
		// No nudge: a flush is running or was just asked for.
		q.mu.Unlock()
		return latchkey.Errorf(latchkey.EUnavailable, "too many secret reads wait for the audit log; secret reads are refused until they are written")
	}
	for i := range rs {
		q.count(rs[i].readKey, readCount{first: rs[i].at, last: rs[i].at, n: 1})
	}
	after := q.inflight + len(q.pending)
	q.mu.Unlock()
	if before < q.limit/2 && after >= q.limit/2 {
		q.nudge() // flush early rather than let the queue fill
	}
	return nil
}

// count adds c to the pending reads of k; q.mu is held.
func (q *readAudits) count(k readKey, c readCount) {
	p, ok := q.pending[k]
	if !ok {
		if c.seq == 0 { // a new read; a failed flush's reads keep their place
			q.seq++
			c.seq = q.seq
		}
		q.pending[k] = c
		return
	}
	p.n += c.n
	if c.first.Before(p.first) {
		p.first = c.first
	}
	if c.last.After(p.last) {
		p.last = c.last
	}
	if c.seq != 0 && c.seq < p.seq {
		p.seq = c.seq
	}
	q.pending[k] = p
}

func (q *readAudits) nudge() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *readAudits) run() {
	defer close(q.done)
	// After a failed flush the next comes sooner than the interval: reads
	// are refused meanwhile.
	retry := max(q.interval/10, 10*time.Millisecond)
	t := time.NewTimer(q.interval)
	defer t.Stop()
	failing := false // logged once per outage, not at every retry
	for {
		select {
		case <-q.stop:
			return
		case <-t.C:
		case <-q.wake:
			t.Stop()
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(q.interval, 10*time.Second))
		err := q.flush(ctx)
		cancel()
		next := q.interval
		switch {
		case err != nil && !failing:
			q.svc.log.Error("writing secret read audit events failed; secret reads are refused until it succeeds", "err", err)
		case err == nil && failing:
			q.svc.log.Info("secret read audit events are written again; secret reads are answered")
		}
		if failing = err != nil; failing {
			next = retry
		}
		t.Reset(next)
	}
}

// flush writes every queued event in one transaction, ordered by the
// time of each one's first read. If the transaction fails the events stay
// queued for the next flush.
func (q *readAudits) flush(ctx context.Context) error {
	q.flushMu.Lock()
	defer q.flushMu.Unlock()
	q.mu.Lock()
	batch := q.pending
	if len(batch) == 0 {
		q.mu.Unlock()
		return nil
	}
	q.pending = q.spare
	q.spare = nil
	q.inflight = len(batch)
	q.mu.Unlock()

	type entry struct {
		k readKey
		c readCount
	}
	list := make([]entry, 0, len(batch))
	for k, c := range batch {
		list = append(list, entry{k, c})
	}
	slices.SortFunc(list, func(a, b entry) int {
		if c := a.c.first.Compare(b.c.first); c != 0 {
			return c
		}
		return cmp.Compare(a.c.seq, b.c.seq)
	})
	err := q.svc.store.Update(ctx, func(tx Tx) error {
		for i := range list {
			if err := tx.AppendAudit(list[i].k.event(list[i].c)); err != nil {
				return err
			}
		}
		return nil
	})
	q.mu.Lock()
	defer q.mu.Unlock()
	q.inflight = 0
	q.failing = err != nil
	if err != nil {
		// Merge the batch back into what was queued meanwhile, for the
		// next flush.
		for k, c := range batch {
			q.count(k, c)
		}
	}
	clear(batch)
	if q.spare == nil {
		q.spare = batch
	}
	return err
}

func (k *readKey) event(c readCount) *latchkey.AuditEvent {
	e := &latchkey.AuditEvent{At: c.first, Tenant: k.tenant, Action: "secret.read", Result: latchkey.ResultSuccess,
		ActorKeyID: k.actor, UserAgent: k.userAgent}
	if k.ip.IsValid() {
		e.IP = k.ip.String()
	}
	e.Details = make(map[string]string, 4)
	e.Details["secret"] = k.name
	if k.denied {
		e.Result = resultDenied
	} else {
		e.Details["version"] = strconv.FormatInt(k.version, 10)
	}
	if k.source != "" {
		e.Details["source"] = k.source
	}
	if c.n > 1 {
		e.Details["count"] = strconv.FormatInt(c.n, 10)
		e.Details["last_at"] = c.last.UTC().Format(time.RFC3339Nano)
	}
	return e
}

// close refuses further reads, stops the flusher and writes what is
// queued.
func (q *readAudits) close(ctx context.Context) error {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.start.Do(func() { close(q.done) }) // never started: nothing to stop
	q.stopped.Do(func() { close(q.stop) })
	<-q.done
	return q.flush(ctx)
}

// queued returns how many events wait for a flush.
func (q *readAudits) queued() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.inflight + len(q.pending)
}
