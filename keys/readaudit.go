package keys

import (
	"context"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// readAudits queues the secret.read audit events of secret reads and
// writes them in batches: one store transaction per flush appends every
// queued event to its tenant's hash chain, in the order the reads
// happened. A read is answered only once its event is queued; when the
// queue is full (the store has not taken the events for a while) reads
// fail with EUnavailable instead of going unaudited. A crash loses at most
// the events queued since the last flush (docs/secrets.md).
//
// The queue holds compact records, not audit events, so that queueing a
// read allocates nothing: the strings are the actor's and the name's own.
type readAudits struct {
	svc      *Service
	interval time.Duration
	limit    int

	mu      sync.Mutex
	pending []readRecord
	// inflight is the size of the batch a flush is writing: it still
	// counts against the limit, since a failed flush puts it back.
	inflight int
	spare    []readRecord // the buffer of the last flush, reused
	closed   bool

	flushMu sync.Mutex // one flush at a time
	start   sync.Once
	stopped sync.Once
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// readRecord is one queued secret.read event.
type readRecord struct {
	at        time.Time
	tenant    string
	actor     string
	ip        netip.Addr
	userAgent string
	name      string
	version   int64 // 0 for a denied read
	denied    bool
}

func newReadAudits(svc *Service, limit int, interval time.Duration) *readAudits {
	return &readAudits{
		svc: svc, limit: limit, interval: interval,
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
	if q.inflight+len(q.pending)+len(rs) > q.limit {
		q.mu.Unlock()
		q.nudge()
		return latchkey.Errorf(latchkey.EUnavailable, "the audit log is not taking events; secret reads are refused until it does")
	}
	if q.pending == nil {
		q.pending = q.spare[:0]
		q.spare = nil
	}
	before := len(q.pending)
	q.pending = append(q.pending, rs...)
	half := q.inflight+before < q.limit/2 && q.inflight+len(q.pending) >= q.limit/2
	q.mu.Unlock()
	if half {
		q.nudge() // flush early rather than let the queue fill
	}
	return nil
}

func (q *readAudits) nudge() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *readAudits) run() {
	defer close(q.done)
	t := time.NewTicker(q.interval)
	defer t.Stop()
	for {
		select {
		case <-q.stop:
			return
		case <-t.C:
		case <-q.wake:
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(q.interval, 10*time.Second))
		if err := q.flush(ctx); err != nil {
			q.svc.log.Warn("writing secret read audit events failed; retrying at the next flush", "err", err)
		}
		cancel()
	}
}

// flush writes every queued event in one transaction. If the transaction
// fails the events stay queued, ahead of newer ones, for the next flush.
func (q *readAudits) flush(ctx context.Context) error {
	q.flushMu.Lock()
	defer q.flushMu.Unlock()
	q.mu.Lock()
	batch := q.pending
	q.pending = nil
	q.inflight = len(batch)
	q.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := q.svc.store.Update(ctx, func(tx Tx) error {
		for i := range batch {
			if err := q.svc.record(tx, batch[i].event()); err != nil {
				return err
			}
		}
		return nil
	})
	q.mu.Lock()
	defer q.mu.Unlock()
	q.inflight = 0
	if err != nil {
		// Put the batch back in front of what was queued meanwhile; the
		// queue may then hold more than its limit, and refuses reads
		// until a flush succeeds.
		q.pending = append(batch, q.pending...)
		return err
	}
	clear(batch) // drop the references to names and agents
	if q.spare == nil {
		q.spare = batch[:0]
	}
	return nil
}

func (r *readRecord) event() *latchkey.AuditEvent {
	e := &latchkey.AuditEvent{At: r.at, Tenant: r.tenant, Action: "secret.read", Result: latchkey.ResultSuccess,
		ActorKeyID: r.actor, UserAgent: r.userAgent}
	if r.ip.IsValid() {
		e.IP = r.ip.String()
	}
	if r.denied {
		e.Result = resultDenied
		e.Details = map[string]string{"secret": r.name}
	} else {
		e.Details = map[string]string{"secret": r.name, "version": strconv.FormatInt(r.version, 10)}
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
