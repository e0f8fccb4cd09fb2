package webhook_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/store/sqlite"
	"github.com/latchkeyhq/latchkey/webhook"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// loopback lets the tests' receivers, on 127.0.0.1, be webhooks
// (--webhook-allow-private 127.0.0.0/8); by default they are refused.
var loopback = latchkey.WebhookTargets{AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}

type fixture struct {
	db     *sqlite.DB
	svc    *keys.Service
	hooks  *webhook.Service
	clock  *fakeclock.Clock
	sealer latchkey.Sealer
	admin  *latchkey.Actor
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "webhooks.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	master, err := keyring.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.Open(ctx, latchkey.Narrow[keyring.Tx](db), master, keyring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db, clock: fakeclock.New(t0), sealer: kr}
	f.svc = keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db), Now: f.clock.Now})
	f.hooks = webhook.NewService(webhook.ServiceOptions{Store: latchkey.Narrow[webhook.Tx](db), Sealer: f.sealer, Now: f.clock.Now, Targets: loopback})
	root, _, _, err := f.svc.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	op, err := f.svc.Authenticate(ctx, root.Reveal(), netip.Addr{}, "tenants:admin")
	if err != nil {
		t.Fatal(err)
	}
	_, _, tok, err := f.svc.CreateTenant(ctx, op, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	if f.admin, err = f.svc.Authenticate(ctx, tok.Reveal(), netip.Addr{}, "keys:write"); err != nil {
		t.Fatal(err)
	}
	// Webhooks created from here on see none of the setup's events.
	f.clock.Advance(time.Second)
	return f
}

// dispatcher returns a dispatcher on the fixture's store that may reach
// 127.0.0.0/8 unless o.Targets says otherwise (a non-nil AllowPrivate).
func (f *fixture) dispatcher(o webhook.Options) *webhook.Dispatcher {
	o.Store, o.Sealer, o.Now = latchkey.Narrow[webhook.Tx](f.db), f.sealer, f.clock.Now
	if o.Targets.AllowPrivate == nil {
		o.Targets = loopback
	}
	if o.Jitter == nil {
		o.Jitter = func(d time.Duration) time.Duration { return d }
	}
	if o.ExpiringDays == 0 {
		o.ExpiringDays = -1
	}
	return webhook.New(o)
}

func (f *fixture) hook(t *testing.T, url string, events ...string) (*latchkey.Webhook, string) {
	t.Helper()
	w, secret, err := f.hooks.CreateWebhook(context.Background(), f.admin, webhook.Params{URL: url, Events: events})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Second)
	return w, secret
}

func (f *fixture) key(t *testing.T, s keys.Settings) *latchkey.Key {
	t.Helper()
	if s.Name == nil {
		n := "k"
		s.Name = &n
	}
	k, _, err := f.svc.CreateKey(context.Background(), f.admin, keys.CreateParams{Settings: s})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Second)
	return k
}

func (f *fixture) deliveries(t *testing.T, w *latchkey.Webhook) []*latchkey.Delivery {
	t.Helper()
	ds, _, err := f.hooks.ListDeliveries(context.Background(), f.admin, w.ID, webhook.DeliveryListParams{})
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// receiver is a webhook endpoint that answers from a script and keeps what
// it was sent.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []received
	answers []int // answer i to request i; 200 beyond the script
	block   chan struct{}
	entered chan struct{}
}

type received struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, answers ...int) *receiver {
	r := &receiver{answers: answers}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		n := len(r.got)
		r.got = append(r.got, received{req.Header.Clone(), body})
		block, entered := r.block, r.entered
		r.mu.Unlock()
		if entered != nil {
			entered <- struct{}{}
		}
		if block != nil {
			<-block
		}
		code := 200
		if n < len(r.answers) {
			code = r.answers[n]
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

func deliverDue(t *testing.T, d *webhook.Dispatcher) int {
	t.Helper()
	n, err := d.DeliverDue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func fanOut(t *testing.T, d *webhook.Dispatcher) {
	t.Helper()
	if _, err := d.FanOut(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRetriesWithBackoffUntilDelivered(t *testing.T) {
	f := newFixture(t)
	rcv := newReceiver(t, 503, 503)
	w, secret := f.hook(t, rcv.URL+"/hooks")
	d := f.dispatcher(webhook.Options{Backoff: 5 * time.Second, BackoffMax: time.Hour})
	k := f.key(t, keys.Settings{})
	fanOut(t, d)

	start := f.clock.Now()
	if n := deliverDue(t, d); n != 1 {
		t.Fatalf("first round claimed %d, want 1", n)
	}
	ds := f.deliveries(t, w)
	if len(ds) != 1 || ds[0].Status != latchkey.DeliveryPending || ds[0].Attempts != 1 || ds[0].LastStatusCode != 503 ||
		!ds[0].NextAttemptAt.Equal(start.Add(5*time.Second)) || ds[0].LastError != latchkey.FailHTTPStatus {
		t.Fatalf("after the first attempt: %+v", ds[0])
	}
	if n := deliverDue(t, d); n != 0 {
		t.Fatalf("a delivery was retried before its backoff: %d", n)
	}
	f.clock.Advance(5 * time.Second)
	deliverDue(t, d)
	ds = f.deliveries(t, w)
	if ds[0].Attempts != 2 || !ds[0].NextAttemptAt.Equal(start.Add(15*time.Second)) {
		t.Fatalf("after the second attempt (backoff doubles to 10s): %+v", ds[0])
	}
	f.clock.Advance(9 * time.Second)
	if n := deliverDue(t, d); n != 0 {
		t.Fatal("retried early")
	}
	f.clock.Advance(time.Second)
	deliverDue(t, d)
	ds = f.deliveries(t, w)
	if ds[0].Status != latchkey.DeliveryDelivered || ds[0].Attempts != 3 || ds[0].LastStatusCode != 200 || ds[0].LastError != "" ||
		!ds[0].DeliveredAt.Equal(f.clock.Now()) || !ds[0].NextAttemptAt.IsZero() {
		t.Fatalf("after the third attempt: %+v", ds[0])
	}
	if st := d.Stats(); st.Delivered != 1 || st.Retried != 2 || st.Failed != 0 {
		t.Fatalf("stats = %+v", st)
	}

	reqs := rcv.requests()
	if len(reqs) != 3 {
		t.Fatalf("receiver got %d requests, want 3", len(reqs))
	}
	for i, r := range reqs {
		if id := r.header.Get("webhook-id"); id != ds[0].ID {
			t.Errorf("attempt %d: webhook-id %q, want the delivery's id %s on every attempt", i+1, id, ds[0].ID)
		}
		at := start.Add([]time.Duration{0, 5 * time.Second, 15 * time.Second}[i])
		if ts := r.header.Get("webhook-timestamp"); ts != strconv.FormatInt(at.Unix(), 10) {
			t.Errorf("attempt %d: webhook-timestamp %s, want the attempt's time %d", i+1, ts, at.Unix())
		}
		if err := webhook.Verify(secret, r.header, r.body, at, time.Minute); err != nil {
			t.Errorf("attempt %d: signature: %v", i+1, err)
		}
		if string(r.body) != string(reqs[0].body) {
			t.Errorf("attempt %d sent another body", i+1)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
	}
	var p struct {
		Type      string         `json:"type"`
		Timestamp time.Time      `json:"timestamp"`
		Data      map[string]any `json:"data"`
	}
	if err := json.Unmarshal(reqs[0].body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != latchkey.EventKeyCreated || p.Data["key_id"] != k.ID || p.Data["tenant"] != "acme" || p.Data["id"] != ds[0].EventID ||
		p.Data["action"] != "key.created" || p.Data["name"] != "k" || !p.Timestamp.Equal(k.CreatedAt) {
		t.Fatalf("payload = %s", reqs[0].body)
	}
}

func TestGivesUpWhenTheDeliveryIsTooOld(t *testing.T) {
	f := newFixture(t)
	rcv := newReceiver(t, 500, 500, 500, 500, 500)
	w, _ := f.hook(t, rcv.URL)
	d := f.dispatcher(webhook.Options{Backoff: 20 * time.Second, GiveUp: time.Minute})
	f.key(t, keys.Settings{})
	fanOut(t, d)
	created := f.clock.Now()
	deliverDue(t, d)                  // t+0: retry at +20s
	f.clock.Advance(20 * time.Second) // t+20: retry at +60s (40s backoff)
	deliverDue(t, d)
	ds := f.deliveries(t, w)
	if !ds[0].NextAttemptAt.Equal(created.Add(time.Minute)) {
		t.Fatalf("the last retry is at %v, want the give-up age %v", ds[0].NextAttemptAt, created.Add(time.Minute))
	}
	f.clock.Advance(40 * time.Second)
	deliverDue(t, d)
	ds = f.deliveries(t, w)
	if ds[0].Status != latchkey.DeliveryFailed || ds[0].Attempts != 3 || !ds[0].NextAttemptAt.IsZero() || ds[0].LastStatusCode != 500 {
		t.Fatalf("after giving up: %+v", ds[0])
	}
	f.clock.Advance(time.Hour)
	if n := deliverDue(t, d); n != 0 {
		t.Fatal("a failed delivery was tried again")
	}
	if st := d.Stats(); st.Failed != 1 || st.Retried != 2 {
		t.Fatalf("stats = %+v", st)
	}
	if n, err := d.OutboxDepth(context.Background()); err != nil || n != 0 {
		t.Fatalf("outbox depth = %d, %v", n, err)
	}
}

func TestLeaseKeepsTwoDispatchersFromSendingOneDelivery(t *testing.T) {
	f := newFixture(t)
	rcv := newReceiver(t)
	rcv.block, rcv.entered = make(chan struct{}), make(chan struct{}, 1)
	w, _ := f.hook(t, rcv.URL)
	d1 := f.dispatcher(webhook.Options{})
	d2 := f.dispatcher(webhook.Options{})
	f.key(t, keys.Settings{})
	fanOut(t, d1)
	done := make(chan int)
	go func() { n, _ := d1.DeliverDue(context.Background()); done <- n }()
	<-rcv.entered // d1's attempt is in flight
	if n := deliverDue(t, d2); n != 0 {
		t.Fatalf("a second dispatcher claimed a delivery in flight: %d", n)
	}
	close(rcv.block)
	if n := <-done; n != 1 {
		t.Fatalf("d1 claimed %d", n)
	}
	if got := len(rcv.requests()); got != 1 {
		t.Fatalf("receiver got %d requests, want 1", got)
	}
	if ds := f.deliveries(t, w); ds[0].Status != latchkey.DeliveryDelivered {
		t.Fatalf("delivery = %+v", ds[0])
	}
}

func TestLapsedLeaseIsClaimedAgain(t *testing.T) {
	f := newFixture(t)
	rcv := newReceiver(t)
	w, _ := f.hook(t, rcv.URL)
	d := f.dispatcher(webhook.Options{Timeout: 5 * time.Second})
	f.key(t, keys.Settings{})
	fanOut(t, d)
	// A node claims the delivery and dies before sending it.
	now := f.clock.Now()
	err := f.db.Update(context.Background(), func(tx *sqlite.Tx) error {
		_, err := tx.ClaimDeliveries(now, now.Add(65*time.Second), 10)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := deliverDue(t, d); n != 0 {
		t.Fatal("claimed a leased delivery")
	}
	f.clock.Advance(65 * time.Second)
	if n := deliverDue(t, d); n != 1 {
		t.Fatalf("after the lease lapsed: claimed %d, want 1", n)
	}
	if ds := f.deliveries(t, w); ds[0].Status != latchkey.DeliveryDelivered || ds[0].Attempts != 1 {
		t.Fatalf("delivery = %+v", ds[0])
	}
}

func TestANewDispatcherResumesPendingDeliveries(t *testing.T) {
	f := newFixture(t)
	rcv := newReceiver(t, 503)
	w, _ := f.hook(t, rcv.URL)
	d1 := f.dispatcher(webhook.Options{})
	f.key(t, keys.Settings{})
	fanOut(t, d1)
	deliverDue(t, d1)
	d1.Close()
	d2 := f.dispatcher(webhook.Options{})
	f.clock.Advance(5 * time.Second)
	d2.Round(context.Background())
	ds := f.deliveries(t, w)
	if ds[0].Status != latchkey.DeliveryDelivered || ds[0].Attempts != 2 {
		t.Fatalf("delivery after a new dispatcher: %+v", ds[0])
	}
	reqs := rcv.requests()
	if len(reqs) != 2 || reqs[0].header.Get("webhook-id") != reqs[1].header.Get("webhook-id") {
		t.Fatalf("requests: %d", len(reqs))
	}
}

func TestFanOutFollowsFiltersAndCreationTime(t *testing.T) {
	f := newFixture(t)
	rcv := newReceiver(t)
	all, _ := f.hook(t, rcv.URL+"/all")
	revokes, _ := f.hook(t, rcv.URL+"/revokes", latchkey.EventKeyRevoked)
	d := f.dispatcher(webhook.Options{})
	k := f.key(t, keys.Settings{})
	late, _ := f.hook(t, rcv.URL+"/late")
	if _, err := f.svc.RevokeKey(context.Background(), f.admin, k.ID, "leaked"); err != nil {
		t.Fatal(err)
	}
	fanOut(t, d)
	types := func(w *latchkey.Webhook) string {
		var ts []string
		for _, dl := range f.deliveries(t, w) {
			ts = append(ts, dl.EventType)
		}
		// Deliveries made in one fan-out share a millisecond, which
		// orders ids only to that precision.
		slices.Sort(ts)
		return strings.Join(ts, ",")
	}
	if got := types(all); got != "key.created,key.revoked" {
		t.Errorf("the catch-all webhook got %q", got)
	}
	if got := types(revokes); got != "key.revoked" {
		t.Errorf("the key.revoked webhook got %q", got)
	}
	if got := types(late); got != "key.revoked" {
		t.Errorf("a webhook created after key.created got %q, want only the later revocation", got)
	}
	// Fanning out again finds nothing new.
	if n, err := d.FanOut(context.Background()); err != nil || n != 0 {
		t.Fatalf("second fan-out took %d events, %v", n, err)
	}
}

func TestDeletedWebhookGetsNoMoreAttempts(t *testing.T) {
	f := newFixture(t)
	rcv := newReceiver(t, 503)
	w, _ := f.hook(t, rcv.URL)
	d := f.dispatcher(webhook.Options{})
	f.key(t, keys.Settings{})
	fanOut(t, d)
	deliverDue(t, d)
	if err := f.hooks.DeleteWebhook(context.Background(), f.admin, w.ID); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	if n := deliverDue(t, d); n != 0 {
		t.Fatalf("a deleted webhook's delivery was claimed: %d", n)
	}
	if n, _ := d.OutboxDepth(context.Background()); n != 0 {
		t.Fatalf("outbox depth %d after the webhook was deleted", n)
	}
}

func TestNetworkErrorsAreRecordedWithoutTheURL(t *testing.T) {
	f := newFixture(t)
	rcv := newReceiver(t)
	rcv.Close() // nothing listens there any more
	w, _ := f.hook(t, rcv.URL+"/in?token=s3cr3t-receiver-token")
	d := f.dispatcher(webhook.Options{})
	f.key(t, keys.Settings{})
	fanOut(t, d)
	deliverDue(t, d)
	ds := f.deliveries(t, w)
	if ds[0].Status != latchkey.DeliveryPending || ds[0].LastStatusCode != 0 || ds[0].LastError != latchkey.FailConnect {
		t.Fatalf("delivery after a refused connection: %+v", ds[0])
	}
	if strings.Contains(ds[0].LastError, "s3cr3t") || strings.Contains(ds[0].LastError, "/in") {
		t.Fatalf("last_error repeats the URL: %q", ds[0].LastError)
	}
}

func TestRedirectIsAFailedAttempt(t *testing.T) {
	f := newFixture(t)
	rcv := newReceiver(t, 302)
	w, _ := f.hook(t, rcv.URL)
	d := f.dispatcher(webhook.Options{})
	f.key(t, keys.Settings{})
	fanOut(t, d)
	deliverDue(t, d)
	if ds := f.deliveries(t, w); ds[0].Status != latchkey.DeliveryPending || ds[0].LastStatusCode != 302 || ds[0].LastError != latchkey.FailHTTPStatus {
		t.Fatalf("a 302 answer: %+v", ds[0])
	}
}

func TestScanExpiring(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	d := f.dispatcher(webhook.Options{ExpiringDays: 7})
	now := f.clock.Now()
	in3 := now.Add(3 * 24 * time.Hour)
	soon := f.key(t, keys.Settings{ExpiresAt: &in3})
	in10 := now.Add(10 * 24 * time.Hour)
	later := f.key(t, keys.Settings{ExpiresAt: &in10})
	in2 := now.Add(2 * 24 * time.Hour)
	gone := f.key(t, keys.Settings{ExpiresAt: &in2})
	if _, err := f.svc.RevokeKey(ctx, f.admin, gone.ID, ""); err != nil {
		t.Fatal(err)
	}
	f.key(t, keys.Settings{}) // never expires

	expiring := func() []*latchkey.Event {
		var evs []*latchkey.Event
		err := f.db.View(ctx, func(tx *sqlite.Tx) (err error) {
			evs, err = tx.Events("acme", latchkey.EventFilter{Type: latchkey.EventKeyExpiring})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	scan := func() int {
		n, err := d.ScanExpiring(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := scan(); n != 1 {
		t.Fatalf("first scan raised %d events, want 1", n)
	}
	evs := expiring()
	var data webhook.Expiring
	if err := json.Unmarshal(evs[0].Data, &data); err != nil {
		t.Fatal(err)
	}
	if evs[0].KeyID != soon.ID || !data.ExpiresAt.Equal(in3) || data.DaysLeft != 2 || data.Name != "k" {
		// Three days ahead when created, scanned seconds later: two whole
		// days and some hours left.
		t.Fatalf("event %s: %+v", evs[0].KeyID, data)
	}
	if n := scan(); n != 0 {
		t.Fatalf("a second scan raised %d events, want none for the same expiry", n)
	}
	// Moving the expiry is worth a new warning.
	in1 := f.clock.Now().Add(24*time.Hour + time.Minute)
	if _, err := f.svc.UpdateKey(ctx, f.admin, soon.ID, keys.Settings{ExpiresAt: &in1}); err != nil {
		t.Fatal(err)
	}
	if n := scan(); n != 1 {
		t.Fatalf("after moving the expiry: %d events, want 1", n)
	}
	// Three days on, the 10-day key is within the week.
	f.clock.Advance(3*24*time.Hour + time.Minute)
	if n := scan(); n != 1 {
		t.Fatalf("three days on: %d events, want 1 (the later key)", n)
	}
	evs = expiring()
	if last := evs[len(evs)-1]; last.KeyID != later.ID {
		t.Fatalf("the last warning is for %s, want %s", last.KeyID, later.ID)
	}
	if len(evs) != 3 {
		t.Fatalf("%d key.expiring events in all, want 3", len(evs))
	}
}

func TestRoundRunsTheExpiringScanOnItsSchedule(t *testing.T) {
	f := newFixture(t)
	rcv := newReceiver(t)
	w, _ := f.hook(t, rcv.URL, latchkey.EventKeyExpiring)
	d := f.dispatcher(webhook.Options{ExpiringDays: 7, ExpiringEvery: time.Minute})
	in3 := f.clock.Now().Add(3 * 24 * time.Hour)
	f.key(t, keys.Settings{ExpiresAt: &in3})
	scanned := f.clock.Now()
	d.Round(context.Background())
	ds := f.deliveries(t, w)
	if len(ds) != 1 || ds[0].EventType != latchkey.EventKeyExpiring || ds[0].Status != latchkey.DeliveryDelivered {
		t.Fatalf("deliveries after one round: %+v", ds)
	}
	var p struct {
		Data struct {
			ExpiresAt time.Time `json:"expires_at"`
			DaysLeft  *int      `json:"days_left"`
		} `json:"data"`
	}
	if err := json.Unmarshal(rcv.requests()[0].body, &p); err != nil || !p.Data.ExpiresAt.Equal(in3) || p.Data.DaysLeft == nil {
		t.Fatalf("key.expiring payload: %s (%v)", rcv.requests()[0].body, err)
	}

	// The schedule: a key that comes due is found by the first round a
	// minute after the last scan, not by the rounds before it.
	in4 := f.clock.Now().Add(4 * 24 * time.Hour)
	f.key(t, keys.Settings{ExpiresAt: &in4})
	for _, since := range []time.Duration{2 * time.Second, 30 * time.Second, time.Minute - time.Millisecond} {
		f.clock.Set(scanned.Add(since))
		d.Round(context.Background())
		if ds := f.deliveries(t, w); len(ds) != 1 {
			t.Fatalf("%s after the last scan: %d deliveries, want 1 (no scan before a minute)", since, len(ds))
		}
	}
	f.clock.Set(scanned.Add(time.Minute))
	d.Round(context.Background())
	if ds := f.deliveries(t, w); len(ds) != 2 || ds[0].EventType != latchkey.EventKeyExpiring || ds[1].EventType != latchkey.EventKeyExpiring {
		t.Fatalf("a minute after the last scan: %+v, want a second key.expiring", ds)
	}
}

func TestPayloadAddsTheEnvelope(t *testing.T) {
	e := latchkey.NewEvent("acme", latchkey.EventSecurityAnomaly, "key_1", t0, latchkey.Anomaly{Kind: latchkey.AnomalyNewNetwork, Severity: "medium", Summary: "s"})
	b, err := webhook.Payload(e)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Type      string         `json:"type"`
		Timestamp string         `json:"timestamp"`
		Data      map[string]any `json:"data"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != "security.anomaly" || p.Timestamp != "2026-05-01T12:00:00Z" || p.Data["id"] != e.ID || p.Data["kind"] != "new_network" ||
		p.Data["key_id"] != "key_1" || p.Data["tenant"] != "acme" || p.Data["at"] != p.Timestamp {
		t.Fatalf("payload = %s", b)
	}
	if _, err := webhook.Payload(&latchkey.Event{ID: "evt_1", Data: json.RawMessage(`[1]`)}); err == nil {
		t.Fatal("an event whose data is not an object was encoded")
	}
}

func TestAChangeWakesTheDispatcher(t *testing.T) {
	f := newFixture(t)
	rcv := newReceiver(t)
	f.hook(t, rcv.URL)
	d := f.dispatcher(webhook.Options{Poll: time.Hour})
	d.Start()
	defer d.Close()
	// The wiring (cmd/latchkey's wakeOnUpdate) calls Wake after each
	// committed change; so does this store.
	svc := keys.New(keys.Options{Store: wakeAfterUpdate{latchkey.Narrow[keys.Tx](f.db), d.Wake}, Now: f.clock.Now})
	name := "woken"
	if _, _, err := svc.CreateKey(context.Background(), f.admin, keys.CreateParams{Settings: keys.Settings{Name: &name}}); err != nil {
		t.Fatal(err)
	}
	// The poll is an hour away: only the wake-up can send it now.
	deadline := time.Now().Add(10 * time.Second)
	for len(rcv.requests()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the key.created delivery did not go out after the change")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type wakeAfterUpdate struct {
	keys.Store
	wake func()
}

func (w wakeAfterUpdate) Update(ctx context.Context, fn func(keys.Tx) error) error {
	err := w.Store.Update(ctx, fn)
	if err == nil {
		w.wake()
	}
	return err
}

func TestAttemptsInFlightAreBounded(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	inflight, most, total := 0, 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inflight++
		total++
		most = max(most, inflight)
		mu.Unlock()
		// Hold the request long enough for the others to pile up, if
		// anything let them.
		time.Sleep(30 * time.Millisecond)
		mu.Lock()
		inflight--
		mu.Unlock()
	}))
	defer srv.Close()
	f.hook(t, srv.URL)
	d := f.dispatcher(webhook.Options{Concurrency: 2})
	for range 5 {
		f.key(t, keys.Settings{})
	}
	d.Round(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if total != 5 || most != 2 {
		t.Fatalf("%d requests, at most %d at once; want 5, never more than 2 (and 2 at some point)", total, most)
	}
}

func TestRetryDeliveryGivesAFailedDeliveryOneMoreAttempt(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	rcv := newReceiver(t, 500, 500)
	w, _ := f.hook(t, rcv.URL)
	d := f.dispatcher(webhook.Options{Backoff: time.Minute, GiveUp: time.Minute})
	f.key(t, keys.Settings{})
	fanOut(t, d)
	deliverDue(t, d)
	f.clock.Advance(time.Minute)
	deliverDue(t, d)
	dl := f.deliveries(t, w)[0]
	if dl.Status != latchkey.DeliveryFailed {
		t.Fatalf("delivery = %+v, want failed", dl)
	}
	if _, err := f.hooks.RetryDelivery(ctx, f.admin, "whk_"+strings.Repeat("0", 26), dl.ID); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("retry under another webhook: %v, want not_found", err)
	}
	f.clock.Advance(time.Hour) // long past the give-up age
	got, err := f.hooks.RetryDelivery(ctx, f.admin, w.ID, dl.ID)
	if err != nil || got.Status != latchkey.DeliveryPending || !got.NextAttemptAt.Equal(f.clock.Now()) {
		t.Fatalf("RetryDelivery = %+v, %v", got, err)
	}
	if _, err := f.hooks.RetryDelivery(ctx, f.admin, w.ID, dl.ID); latchkey.ErrorCode(err) != latchkey.EConflict {
		t.Fatalf("retrying a pending delivery: %v, want conflict", err)
	}
	deliverDue(t, d)
	dl = f.deliveries(t, w)[0]
	if dl.Status != latchkey.DeliveryDelivered || dl.Attempts != 3 {
		t.Fatalf("after the retry: %+v", dl)
	}
	reqs := rcv.requests()
	if len(reqs) != 3 || reqs[2].header.Get("webhook-id") != dl.ID {
		t.Fatalf("receiver saw %d requests", len(reqs))
	}
	aud := audit.New(audit.Options{Store: latchkey.Narrow[audit.Tx](f.db)})
	evs, err := aud.ListAudit(ctx, f.admin, latchkey.AuditFilter{Action: "webhook.redelivered"})
	if err != nil || len(evs) != 1 || evs[0].Details["delivery_id"] != dl.ID || evs[0].Details["was"] != "failed" {
		t.Fatalf("audit: %+v, %v", evs, err)
	}
}

func TestCloseReleasesAnAttemptInFlight(t *testing.T) {
	f := newFixture(t)
	rcv := newReceiver(t)
	rcv.block, rcv.entered = make(chan struct{}), make(chan struct{}, 1)
	defer close(rcv.block)
	w, _ := f.hook(t, rcv.URL)
	d := f.dispatcher(webhook.Options{})
	f.key(t, keys.Settings{})
	d.Start()
	<-rcv.entered
	d.Close() // cuts the attempt short
	dl := f.deliveries(t, w)[0]
	if dl.Status != latchkey.DeliveryPending || dl.Attempts != 0 {
		t.Fatalf("after a shutdown mid-attempt: %+v, want pending with no attempt counted", dl)
	}
	// The next node need not wait for the lease to lapse.
	rcv.mu.Lock()
	rcv.block, rcv.entered = nil, nil
	rcv.mu.Unlock()
	if n := deliverDue(t, f.dispatcher(webhook.Options{})); n != 1 {
		t.Fatalf("a new dispatcher claimed %d, want the released delivery", n)
	}
}

func TestRoundPrunesFinishedDeliveriesPastRetention(t *testing.T) {
	f := newFixture(t)
	rcv := newReceiver(t)
	w, _ := f.hook(t, rcv.URL)
	d := f.dispatcher(webhook.Options{Retention: 48 * time.Hour, EventRetention: 72 * time.Hour})
	f.key(t, keys.Settings{})
	d.Round(context.Background())
	if ds := f.deliveries(t, w); len(ds) != 1 || ds[0].Status != latchkey.DeliveryDelivered {
		t.Fatalf("deliveries = %+v", ds)
	}
	f.clock.Advance(47 * time.Hour)
	d.Round(context.Background())
	if ds := f.deliveries(t, w); len(ds) != 1 {
		t.Fatal("a delivery within the retention was pruned")
	}
	f.clock.Advance(2 * time.Hour)
	d.Round(context.Background())
	if ds := f.deliveries(t, w); len(ds) != 0 {
		t.Fatalf("a delivery past the retention is still listed: %+v", ds)
	}
	// The events themselves (which security listings and reports read)
	// have a retention of their own.
	if n := f.events(t); n == 0 {
		t.Fatal("events within their retention were pruned")
	}
	f.clock.Advance(24 * time.Hour)
	d.Round(context.Background())
	if n := f.events(t); n != 0 {
		t.Errorf("events past their retention = %d, want 0", n)
	}
}

// events counts the admin tenant's stored events, dispatched or not.
func (f *fixture) events(t *testing.T) int {
	t.Helper()
	var n int
	err := f.db.View(context.Background(), func(tx *sqlite.Tx) error {
		evs, err := tx.Events(f.admin.Tenant, latchkey.EventFilter{})
		n = len(evs)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
