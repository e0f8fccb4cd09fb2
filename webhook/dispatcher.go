package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Tx is what the dispatcher needs of a store's transaction: webhooks and
// their deliveries, pending events to fan out, and events to read and
// write (key.expiring).
type Tx interface {
	latchkey.WebhookStore
	latchkey.EventDispatch
	latchkey.EventWriter
	latchkey.EventReader
	// The audit events of the Service's changes.
	latchkey.AuditWriter
}

// Options configure a Dispatcher. Zero values take the documented
// defaults.
type Options struct {
	Store latchkey.Store[Tx]
	// Sealer opens the webhooks' sealed signing secrets.
	Sealer latchkey.Sealer
	// Now is the clock (default time.Now): it stamps attempts, schedules
	// retries and decides when to give up.
	Now func() time.Time
	// Targets decides which addresses a delivery may connect to: public
	// ones, and those in Targets.AllowPrivate (--webhook-allow-private).
	// It is applied to each address as the connection is made, after the
	// host name is resolved, so a name that resolves (or is rebound) to an
	// address inside the network is refused. Requests go through no proxy
	// (which would connect past the check) and follow no redirects (a 3xx
	// answer is a failed attempt).
	Targets latchkey.WebhookTargets
	// Resolve looks up a URL's host name (default:
	// net.DefaultResolver.LookupNetIP); tests answer with addresses of
	// their choosing, which are then checked like any other.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// Dialing, when set, is told each address a connection is about to be
	// made to, after the check and before any packet is sent, and whether
	// Targets allowed it; an error it returns stops that connection
	// (tests record, and refuse, what they are asked to reach).
	Dialing func(addr netip.AddrPort, allowed bool) error
	// Timeout bounds one attempt (default 10s).
	Timeout time.Duration
	// Backoff is the wait after the first failed attempt (default 5s); it
	// doubles with each further failure up to BackoffMax (default 1h).
	Backoff    time.Duration
	BackoffMax time.Duration
	// Jitter turns a nominal wait into the one used (default: a uniformly
	// random wait between half of it and all of it, so that retries of
	// many deliveries spread out).
	Jitter func(time.Duration) time.Duration
	// GiveUp is how old a delivery may grow before a failed attempt marks
	// it failed for good (default 24h).
	GiveUp time.Duration
	// Concurrency bounds the requests in flight (default 8).
	Concurrency int
	// Poll is how often the outbox is looked at when nothing wakes the
	// dispatcher (default 1s).
	Poll time.Duration
	// ExpiringDays: keys that expire within this many days raise a
	// key.expiring event (default 7; negative: never).
	ExpiringDays int
	// ExpiringEvery is how often keys are scanned for key.expiring
	// (default 1m).
	ExpiringEvery time.Duration
	// Retention is how long delivered and failed deliveries stay in the
	// delivery log (default 30 days).
	Retention time.Duration
	// EventRetention is how long dispatched events stay in the events
	// table, where security listings and reports read them (default 400
	// days; negative: forever). Pending events are never pruned.
	EventRetention time.Duration
	// UserAgent of the requests (default "Latchkey-Webhooks/1").
	UserAgent string
	Logger    *slog.Logger
}

// Dispatcher moves events into the outbox and delivers them. All its state
// is in the store: a new Dispatcher on the same store (a restarted server,
// another node) resumes where another left off, and claims with a lease
// keep two of them from sending one delivery at once.
type Dispatcher struct {
	o      Options
	client *http.Client
	log    *slog.Logger
	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once

	delivered, retried, failed atomic.Uint64

	mu        sync.Mutex // guards the schedule of the periodic jobs
	lastScan  time.Time
	lastPrune time.Time
	roundMu   sync.Mutex // one round of work at a time per dispatcher
	started   atomic.Bool
}

// Stats is latchkey.WebhookStats: delivery attempts by outcome.
type Stats = latchkey.WebhookStats

// New returns a Dispatcher; Start runs it.
func New(o Options) *Dispatcher {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Backoff <= 0 {
		o.Backoff = 5 * time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = time.Hour
	}
	if o.BackoffMax < o.Backoff {
		o.BackoffMax = o.Backoff
	}
	if o.Jitter == nil {
		o.Jitter = equalJitter
	}
	if o.GiveUp <= 0 {
		o.GiveUp = 24 * time.Hour
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.ExpiringDays == 0 {
		o.ExpiringDays = 7
	}
	if o.ExpiringEvery <= 0 {
		o.ExpiringEvery = time.Minute
	}
	if o.EventRetention == 0 {
		o.EventRetention = 400 * 24 * time.Hour
	}
	if o.Retention <= 0 {
		o.Retention = 30 * 24 * time.Hour
	}
	if o.UserAgent == "" {
		o.UserAgent = "Latchkey-Webhooks/1"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Resolve == nil {
		o.Resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	d := &Dispatcher{
		o:    o,
		log:  o.Logger,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	d.client = d.newClient()
	return d
}

// equalJitter waits between d/2 and d.
func equalJitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d-d/2+1)
}

// backoff is the nominal wait after the n-th failed attempt: initial,
// doubled n-1 times, at most max.
func backoff(n int, initial, max time.Duration) time.Duration {
	d := initial
	for i := 1; i < n; i++ {
		if d >= max/2 {
			return max
		}
		d *= 2
	}
	return min(d, max)
}

// Start runs the dispatcher until Close: every Poll, or when woken, it
// fans pending events out, sends due deliveries, and scans for expiring
// keys when that is due.
func (d *Dispatcher) Start() {
	if d.started.CompareAndSwap(false, true) {
		go d.run()
	}
}

// Wake asks the dispatcher to look at the outbox now, for example after
// events were appended. It never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Close stops the dispatcher and waits for the attempts in flight.
func (d *Dispatcher) Close() {
	d.once.Do(func() { close(d.stop) })
	if d.started.Load() {
		<-d.done
	}
	d.client.CloseIdleConnections()
}

// Stats returns the attempt outcomes counted so far.
func (d *Dispatcher) Stats() Stats {
	return Stats{Delivered: d.delivered.Load(), Retried: d.retried.Load(), Failed: d.failed.Load()}
}

// OutboxDepth counts the pending deliveries of every tenant.
func (d *Dispatcher) OutboxDepth(ctx context.Context) (int64, error) {
	var n int64
	err := d.o.Store.View(ctx, func(tx Tx) error {
		var err error
		n, err = tx.CountPendingDeliveries()
		return err
	})
	return n, err
}

func (d *Dispatcher) run() {
	defer close(d.done)
	t := time.NewTicker(d.o.Poll)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		d.Round(ctx)
		select {
		case <-d.stop:
			return
		case <-t.C:
		case <-d.wake:
		}
	}
}

// maxRounds bounds the batches one Round takes of each kind, so that a
// large backlog does not keep the periodic jobs waiting.
const maxRounds = 50

// Round does one pass of work: fans pending events out, sends the due
// deliveries (Concurrency at a time), and runs the key.expiring scan and
// the pruning of old deliveries when they are due. Errors are logged;
// the next round tries again.
func (d *Dispatcher) Round(ctx context.Context) {
	d.roundMu.Lock()
	defer d.roundMu.Unlock()
	if d.o.ExpiringDays > 0 && d.due(&d.lastScan, d.o.ExpiringEvery) {
		if n, err := d.ScanExpiring(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("scanning for expiring keys failed", "err", err)
		} else if n > 0 {
			d.log.Info("keys expiring soon", "events", n, "days", d.o.ExpiringDays)
		}
	}
	for range maxRounds {
		n, err := d.FanOut(ctx)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("fanning events out to webhooks failed", "err", err)
			}
			break
		}
		if n < fanOutBatch {
			break
		}
	}
	for range maxRounds {
		n, err := d.DeliverDue(ctx)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("claiming webhook deliveries failed", "err", err)
			}
			break
		}
		if n < d.o.Concurrency || ctx.Err() != nil {
			break
		}
	}
	if ctx.Err() == nil && d.due(&d.lastPrune, time.Hour) {
		err := d.o.Store.Update(ctx, func(tx Tx) error {
			if _, err := tx.PruneDeliveries(d.o.Now().Add(-d.o.Retention)); err != nil {
				return err
			}
			if d.o.EventRetention < 0 {
				return nil
			}
			_, err := tx.PruneEvents(d.o.Now().Add(-d.o.EventRetention))
			return err
		})
		if err != nil {
			d.log.Warn("pruning old webhook deliveries and events failed", "err", err)
		}
	}
}

// due reports whether a job last run at *last is due again, and if so
// marks it run now.
func (d *Dispatcher) due(last *time.Time, every time.Duration) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.o.Now()
	if !last.IsZero() && now.Sub(*last) < every && !now.Before(*last) {
		return false
	}
	*last = now
	return true
}

// fanOutBatch is how many events one fan-out transaction takes.
const fanOutBatch = 100

// FanOut takes up to a batch of pending events and, in one transaction,
// creates a delivery for each webhook of the event's tenant that is
// subscribed to its type and existed when it happened, then marks the
// events dispatched. It returns how many events it took.
func (d *Dispatcher) FanOut(ctx context.Context) (int, error) {
	n, created := 0, 0
	err := d.o.Store.Update(ctx, func(tx Tx) error {
		n, created = 0, 0
		evs, err := tx.PendingEvents(fanOutBatch)
		if err != nil {
			return err
		}
		now := d.now()
		ids := make([]string, 0, len(evs))
		for _, e := range evs {
			ws, err := tx.WebhooksFor(e.Tenant, e.Type, e.At)
			if err != nil {
				return err
			}
			if len(ws) > 0 {
				body, err := Payload(e)
				if err != nil {
					return err
				}
				for _, w := range ws {
					dl := &latchkey.Delivery{
						ID: latchkey.NewID("dlv", now), WebhookID: w.ID, EventID: e.ID, Tenant: e.Tenant,
						EventType: e.Type, Status: latchkey.DeliveryPending, NextAttemptAt: now,
						CreatedAt: now, Payload: body,
					}
					if err := tx.CreateDelivery(dl); err != nil {
						return err
					}
					created++
				}
			}
			ids = append(ids, e.ID)
		}
		n = len(evs)
		if len(ids) == 0 {
			return nil
		}
		return tx.MarkEventsDispatched(ids)
	})
	if err != nil {
		return 0, err
	}
	if created > 0 {
		d.Wake()
	}
	return n, nil
}

func (d *Dispatcher) now() time.Time { return d.o.Now().UTC().Truncate(time.Microsecond) }

// Payload is the body delivered for an event:
//
//	{"type": "key.revoked", "timestamp": "<the event's time, RFC 3339>",
//	 "data": {"id": "evt_…", "tenant": "…", "key_id": "key_…", "at": "…", …}}
//
// where data holds the event's own data with its id, tenant, key and time
// added.
func Payload(e *latchkey.Event) ([]byte, error) {
	data := map[string]json.RawMessage{}
	if len(e.Data) > 0 && string(e.Data) != "null" {
		if err := json.Unmarshal(e.Data, &data); err != nil {
			return nil, fmt.Errorf("webhook: event %s: data is not a JSON object: %w", e.ID, err)
		}
	}
	at := e.At.UTC().Format(time.RFC3339Nano)
	str := func(s string) json.RawMessage { b, _ := json.Marshal(s); return b }
	data["id"] = str(e.ID)
	data["tenant"] = str(e.Tenant)
	data["at"] = str(at)
	if e.KeyID != "" {
		data["key_id"] = str(e.KeyID)
	}
	return json.Marshal(struct {
		Type      string                     `json:"type"`
		Timestamp string                     `json:"timestamp"`
		Data      map[string]json.RawMessage `json:"data"`
	}{e.Type, at, data})
}

// job is a claimed delivery and where it goes.
type job struct {
	d      *latchkey.Delivery
	url    string
	sealed []byte
}

// DeliverDue claims up to Concurrency due deliveries, sends them in
// parallel, records each outcome, and returns how many it claimed.
func (d *Dispatcher) DeliverDue(ctx context.Context) (int, error) {
	var jobs []job
	now := d.now()
	// The lease outlasts the attempt and the writing of its outcome; a
	// node that dies mid-attempt leaves the delivery to be claimed again
	// once it lapses.
	lease := now.Add(d.o.Timeout + time.Minute)
	err := d.o.Store.Update(ctx, func(tx Tx) error {
		jobs = jobs[:0]
		ds, err := tx.ClaimDeliveries(now, lease, d.o.Concurrency)
		if err != nil {
			return err
		}
		for _, dl := range ds {
			w, err := tx.Webhook(dl.Tenant, dl.WebhookID)
			if err != nil {
				return err
			}
			jobs = append(jobs, job{d: dl, url: w.URL, sealed: w.SealedSecret})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() { d.attempt(ctx, j) })
	}
	wg.Wait()
	return len(jobs), nil
}

// attempt sends one delivery once and records the outcome.
func (d *Dispatcher) attempt(ctx context.Context, j job) {
	dl := j.d
	status, class, detail := d.send(ctx, j)
	if class != "" && ctx.Err() != nil {
		// Shutting down mid-attempt: release the claim, so that the next
		// start (or another node) sends it again without waiting for the
		// lease to lapse. Whether the receiver got it is unknown; it is
		// sent again with the same webhook-id.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		dl.LeaseUntil = time.Time{}
		if err := d.o.Store.Update(rctx, func(tx Tx) error { return tx.UpdateDelivery(dl) }); err != nil && latchkey.ErrorCode(err) != latchkey.ENotFound {
			d.log.Warn("releasing a webhook delivery at shutdown failed; it is retried when its lease lapses", "delivery_id", dl.ID, "err", err)
		}
		return
	}
	now := d.now()
	dl.Attempts++
	dl.LastStatusCode = status
	dl.LastError = class
	dl.LeaseUntil = time.Time{}
	result := ""
	switch {
	case class == "":
		dl.Status, dl.DeliveredAt, dl.NextAttemptAt = latchkey.DeliveryDelivered, now, time.Time{}
		result = "delivered"
	case !now.Before(dl.CreatedAt.Add(d.o.GiveUp)):
		dl.Status, dl.NextAttemptAt = latchkey.DeliveryFailed, time.Time{}
		result = "failed"
	default:
		next := now.Add(d.o.Jitter(backoff(dl.Attempts, d.o.Backoff, d.o.BackoffMax)))
		// The last try is made when the delivery reaches the give-up age.
		if deadline := dl.CreatedAt.Add(d.o.GiveUp); next.After(deadline) {
			next = deadline
		}
		dl.NextAttemptAt = next.Truncate(time.Microsecond)
		result = "retry"
	}
	err := d.o.Store.Update(context.WithoutCancel(ctx), func(tx Tx) error { return tx.UpdateDelivery(dl) })
	if latchkey.ErrorCode(err) == latchkey.ENotFound {
		return // the webhook was deleted meanwhile
	}
	if err != nil {
		// The lease lapses and the delivery is tried again: at least
		// once, as receivers expect of webhooks.
		d.log.Error("recording a webhook attempt failed", "delivery_id", dl.ID, "err", err)
		return
	}
	switch result {
	case "delivered":
		d.delivered.Add(1)
	case "retry":
		d.retried.Add(1)
	case "failed":
		d.failed.Add(1)
	}
	lvl := slog.LevelInfo
	if result != "delivered" {
		lvl = slog.LevelWarn
	}
	// The server's log (the operator's) has the detail the delivery log
	// (the tenant's) leaves out; never the URL.
	d.log.Log(ctx, lvl, "webhook attempt", "delivery_id", dl.ID, "webhook_id", dl.WebhookID, "tenant", dl.Tenant,
		"event_type", dl.EventType, "attempt", dl.Attempts, "status", status, "result", result, "failure", class,
		"error", detail, "next_attempt_at", dl.NextAttemptAt)
}

// send makes one attempt and returns the answer's status and, for a
// failure, its class (latchkey.Fail…) and, for the server's log, what went
// wrong in words that hold no secret and no URL.
func (d *Dispatcher) send(ctx context.Context, j job) (int, string, string) {
	if d.o.Sealer == nil {
		return 0, latchkey.FailSigning, "this node has no keyring to open the signing secret"
	}
	secret, err := d.o.Sealer.Open(latchkey.WebhookSecretAAD(j.d.Tenant, j.d.WebhookID), j.sealed)
	if err != nil {
		d.log.Error("a webhook's signing secret does not open", "webhook_id", j.d.WebhookID, "err", err)
		return 0, latchkey.FailSigning, "the signing secret could not be unsealed on this node"
	}
	ts := d.o.Now()
	sig, err := Sign(string(secret), j.d.ID, ts, j.d.Payload)
	if err != nil {
		return 0, latchkey.FailSigning, "the stored signing secret is malformed"
	}
	actx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, j.url, bytes.NewReader(j.d.Payload))
	if err != nil {
		return 0, latchkey.FailNetwork, "the URL cannot be requested"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", d.o.UserAgent)
	req.Header[http.CanonicalHeaderKey(HeaderID)] = []string{j.d.ID}
	req.Header[http.CanonicalHeaderKey(HeaderTimestamp)] = []string{strconv.FormatInt(ts.Unix(), 10)}
	req.Header[http.CanonicalHeaderKey(HeaderSignature)] = []string{sig}
	res, err := d.client.Do(req)
	if err != nil {
		return 0, failureClass(err), networkError(err, d.o.Timeout)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	if res.StatusCode >= 200 && res.StatusCode <= 299 {
		return res.StatusCode, "", ""
	}
	return res.StatusCode, latchkey.FailHTTPStatus, "HTTP " + strconv.Itoa(res.StatusCode) + " " + http.StatusText(res.StatusCode)
}

// errRefusedTarget is the dialer's answer for an address Targets refuses.
var errRefusedTarget = errors.New("webhooks may not connect to this address (see --webhook-allow-private)")

// newClient returns the client deliveries are sent with: no proxy, no
// redirects, and a dialer that resolves the host itself and checks every
// address it connects to.
func (d *Dispatcher) newClient() *http.Client {
	dialer := &net.Dialer{KeepAlive: 30 * time.Second, Control: d.control}
	return &http.Client{
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return d.dial(ctx, dialer, network, addr)
			},
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// dial resolves addr's host (unless it is an IP address) and connects to
// its addresses in turn; the dialer's Control refuses those Targets does
// not allow, before anything is sent to them. When every address is
// refused the error is errRefusedTarget; otherwise the first other
// failure.
func (d *Dispatcher) dial(ctx context.Context, dialer *net.Dialer, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		if ips, err = d.o.Resolve(ctx, host); err != nil {
			return nil, err
		}
		if len(ips) == 0 {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
	}
	var first error
	for _, ip := range ips {
		c, err := dialer.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
		if err == nil {
			return c, nil
		}
		if first == nil || errors.Is(first, errRefusedTarget) {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// control runs on each connection's socket before it connects: it refuses
// an address Targets does not allow.
func (d *Dispatcher) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	allowed := err == nil && d.o.Targets.Allowed(ap.Addr())
	var hookErr error
	if d.o.Dialing != nil && err == nil {
		hookErr = d.o.Dialing(ap, allowed)
	}
	if !allowed {
		return errRefusedTarget
	}
	return hookErr
}

// failureClass sorts a request that got no answer into a
// latchkey.Fail… class.
func failureClass(err error) string {
	var (
		ne      net.Error
		dnsErr  *net.DNSError
		recErr  tls.RecordHeaderError
		certErr *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		op      *net.OpError
	)
	switch {
	case errors.Is(err, errRefusedTarget):
		return latchkey.FailRefusedTarget
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return latchkey.FailTimeout
	case errors.As(err, &dnsErr):
		return latchkey.FailDNS
	case errors.As(err, &recErr) || errors.As(err, &certErr) || errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid):
		return latchkey.FailTLS
	case errors.As(err, &op) && op.Op == "remote error": // a TLS alert from the receiver
		return latchkey.FailTLS
	case errors.As(err, &op) && op.Op == "dial":
		return latchkey.FailConnect
	case strings.Contains(err.Error(), "tls: "):
		return latchkey.FailTLS
	}
	return latchkey.FailNetwork
}

// networkError describes, for the server's log, a request that got no
// answer, without the URL (which *url.Error repeats and which may carry a
// receiver's token).
func networkError(err error, timeout time.Duration) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return "no answer within " + timeout.String()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	s := err.Error()
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}
