package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// hookReceiver is a webhook endpoint on 127.0.0.1 that checks every
// request's signature with its own HMAC code (not package webhook's), and
// answers 503 to the first failFirst attempts of each delivery, then 200.
type hookReceiver struct {
	*httptest.Server
	failFirst int

	mu       sync.Mutex
	secret   string
	attempts []hookAttempt
	byID     map[string]int
}

type hookAttempt struct {
	id        string
	timestamp int64
	body      []byte
	signedOK  bool
	answered  int
}

func newHookReceiver(t *testing.T, failFirst int) *hookReceiver {
	r := &hookReceiver{failFirst: failFirst, byID: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *hookReceiver) setSecret(s string) {
	r.mu.Lock()
	r.secret = s
	r.mu.Unlock()
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id := req.Header.Get("webhook-id")
	ts, _ := strconv.ParseInt(req.Header.Get("webhook-timestamp"), 10, 64)
	r.mu.Lock()
	defer r.mu.Unlock()
	a := hookAttempt{id: id, timestamp: ts, body: body, signedOK: signatureOK(r.secret, id, req.Header.Get("webhook-timestamp"), body, req.Header.Get("webhook-signature"))}
	r.byID[id]++
	a.answered = http.StatusOK
	if !a.signedOK {
		a.answered = http.StatusUnauthorized
	} else if r.byID[id] <= r.failFirst {
		a.answered = http.StatusServiceUnavailable
	}
	r.attempts = append(r.attempts, a)
	w.WriteHeader(a.answered)
}

// signatureOK checks a Standard Webhooks signature from first principles:
// HMAC-SHA256 keyed with the base64-decoded secret over "id.ts.body",
// compared with each "v1,<base64>" entry of the header.
func signatureOK(secret, id, ts string, body []byte, header string) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(key) == 0 || id == "" || ts == "" {
		return false
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	want := m.Sum(nil)
	for _, entry := range strings.Fields(header) {
		v, sig, _ := strings.Cut(entry, ",")
		got, err := base64.StdEncoding.DecodeString(sig)
		if v == "v1" && err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

func (r *hookReceiver) seen() []hookAttempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hookAttempt(nil), r.attempts...)
}

// delivered returns the ids answered 200.
func (r *hookReceiver) delivered() map[string]bool {
	out := map[string]bool{}
	for _, a := range r.seen() {
		if a.answered == http.StatusOK {
			out[a.id] = true
		}
	}
	return out
}

func withWebhookPoll(d time.Duration) serverOption {
	return func(_ *serverConfig, h *serverHooks) { h.WebhookPoll = d }
}

// withLocalReceivers lets webhooks reach the tests' receivers on
// 127.0.0.1 (--webhook-allow-private 127.0.0.0/8); without it they are
// refused, as on a real server. Whatever the server's policy says, its
// dialer is also held to 127.0.0.0/8 (a dialRecorder's check), so that a
// webhook a broken check let through cannot send a packet off loopback.
func withLocalReceivers() serverOption {
	return func(c *serverConfig, h *serverHooks) {
		c.WebhookAllowPrivate = "127.0.0.0/8"
		if h.WebhookDialing == nil {
			h.WebhookDialing = (&dialRecorder{}).dialing
		}
	}
}

// eventually waits, in real time, for a background job (the dispatcher)
// to make cond true.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestE2EWebhookSignedDeliveryArrivesAfterRetries(t *testing.T) {
	rcv := newHookReceiver(t, 2)
	ts := startServer(t, withWebhookPoll(20*time.Millisecond), withLocalReceivers())
	admin := ts.mustTenant(t, "acme")
	// A webhook receives events from its creation on; the tenant's own
	// key.created is a second older.
	ts.Clock.Advance(time.Second)

	r := ts.call(t, "POST", "/v1/webhooks", admin, map[string]any{"url": rcv.URL + "/latchkey", "events": []string{"key.created", "key.revoked"}})
	if r.Status != http.StatusCreated {
		t.Fatalf("create webhook: %d %s", r.Status, r.Raw)
	}
	hookID, secret := r.str("id"), r.str("secret")
	if !strings.HasPrefix(secret, "whsec_") || !latchkey.ValidID("whk", hookID) {
		t.Fatalf("create webhook answered %s", r.Raw)
	}
	rcv.setSecret(secret)
	if g := ts.call(t, "GET", "/v1/webhooks/"+hookID, admin, nil); g.Status != 200 || strings.Contains(string(g.Raw), secret) || g.str("url") != rcv.URL+"/latchkey" {
		t.Fatalf("GET webhook: %d %s", g.Status, g.Raw)
	}

	keyID, _ := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	if r := ts.call(t, "POST", "/v1/keys/"+keyID+"/revoke", admin, map[string]any{"reason": "rotated out"}); r.Status != 200 {
		t.Fatalf("revoke: %d %s", r.Status, r.Raw)
	}
	// Each delivery is refused twice; the test moves the server's clock on
	// past each backoff (5s, then 10s) until both arrive.
	eventually(t, 20*time.Second, "both deliveries arrive", func() bool {
		if len(rcv.delivered()) == 2 {
			return true
		}
		ts.Clock.Advance(5 * time.Second)
		return false
	})
	// The receiver answers before the server records the answer.
	eventually(t, 10*time.Second, "the delivery log shows both delivered", func() bool {
		return strings.Count(string(ts.call(t, "GET", "/v1/webhooks/"+hookID+"/deliveries?status=delivered", admin, nil).Raw), `"status":"delivered"`) == 2
	})

	byID := map[string][]hookAttempt{}
	for _, a := range rcv.seen() {
		if !a.signedOK {
			t.Fatalf("attempt %s carries a signature the receiver cannot verify", a.id)
		}
		byID[a.id] = append(byID[a.id], a)
	}
	types := map[string]string{}
	for id, as := range byID {
		if len(as) != 3 || as[0].answered != 503 || as[1].answered != 503 || as[2].answered != 200 {
			t.Fatalf("delivery %s: %d attempts, want 503, 503, 200", id, len(as))
		}
		for i := 1; i < len(as); i++ {
			if string(as[i].body) != string(as[0].body) {
				t.Errorf("delivery %s: attempt %d sent another body", id, i+1)
			}
			if as[i].timestamp <= as[i-1].timestamp {
				t.Errorf("delivery %s: attempt %d has timestamp %d, not after %d", id, i+1, as[i].timestamp, as[i-1].timestamp)
			}
		}
		var p struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(as[0].body, &p); err != nil || p.Data["key_id"] != keyID || p.Data["tenant"] != "acme" {
			t.Fatalf("payload %s (%v)", as[0].body, err)
		}
		types[id] = p.Type
	}

	// The delivery log shows the attempts, newest first.
	log := ts.call(t, "GET", "/v1/webhooks/"+hookID+"/deliveries", admin, nil)
	var dl struct {
		Deliveries []latchkey.Delivery `json:"deliveries"`
		NextCursor string              `json:"next_cursor"`
	}
	if err := json.Unmarshal(log.Raw, &dl); err != nil || log.Status != 200 || len(dl.Deliveries) != 2 {
		t.Fatalf("delivery log: %d %s", log.Status, log.Raw)
	}
	for _, d := range dl.Deliveries {
		if d.Status != latchkey.DeliveryDelivered || d.Attempts != 3 || d.LastStatusCode != 200 || d.DeliveredAt.IsZero() ||
			d.WebhookID != hookID || types[d.ID] != d.EventType {
			t.Fatalf("delivery log entry %+v (the receiver saw %q for it)", d, types[d.ID])
		}
	}
	if page := ts.call(t, "GET", "/v1/webhooks/"+hookID+"/deliveries?limit=1", admin, nil); page.str("next_cursor") == "" {
		t.Fatalf("a one-item page has no next_cursor: %s", page.Raw)
	}

	// Metrics count the attempts and show an empty outbox.
	// (The counters move just after the outcome is stored.)
	wantMetrics := []string{
		`latchkey_webhook_deliveries_total{result="delivered"} 2`,
		`latchkey_webhook_deliveries_total{result="retry"} 4`,
		`latchkey_webhook_deliveries_total{result="failed"} 0`,
		"latchkey_webhook_outbox_depth 0",
	}
	eventually(t, 5*time.Second, "metrics count the attempts", func() bool {
		m := string(do(t, "GET", ts.URL+"/metrics", nil, nil).Raw)
		for _, want := range wantMetrics {
			if !strings.Contains(m, want) {
				return false
			}
		}
		return true
	})

	// Another tenant sees none of it; a key without webhooks:write may not.
	other := ts.mustTenant(t, "globex")
	for _, rt := range []struct{ method, path string }{
		{"GET", "/v1/webhooks/" + hookID}, {"DELETE", "/v1/webhooks/" + hookID}, {"GET", "/v1/webhooks/" + hookID + "/deliveries"},
		{"POST", "/v1/webhooks/" + hookID + "/deliveries/" + dl.Deliveries[0].ID + "/retry"},
	} {
		if r := ts.call(t, rt.method, rt.path, other, nil); r.Status != 404 || r.errCode() != latchkey.ENotFound {
			t.Fatalf("another tenant's %s %s: %d %s", rt.method, rt.path, r.Status, r.Raw)
		}
	}
	if r := ts.call(t, "GET", "/v1/webhooks", other, nil); !strings.Contains(string(r.Raw), `"webhooks":[]`) {
		t.Fatalf("another tenant's list: %s", r.Raw)
	}
	_, reader := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"keys:read"}})
	if r := ts.call(t, "GET", "/v1/webhooks", reader, nil); r.Status != 403 {
		t.Fatalf("a key without webhooks:write lists webhooks: %d", r.Status)
	}
	if r := ts.call(t, "POST", "/v1/webhooks", admin, map[string]any{"url": "ftp://example.com/x"}); r.errCode() != latchkey.EInvalid {
		t.Fatalf("an ftp URL: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "POST", "/v1/webhooks", admin, map[string]any{"url": rcv.URL, "events": []string{"key.deleted"}}); r.errCode() != latchkey.EInvalid {
		t.Fatalf("an unknown event type: %d %s", r.Status, r.Raw)
	}

	// Create and delete are in the audit log.
	if r := ts.call(t, "DELETE", "/v1/webhooks/"+hookID, admin, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "GET", "/v1/webhooks/"+hookID, admin, nil); r.Status != 404 {
		t.Fatalf("GET after delete: %d", r.Status)
	}
	for _, action := range []string{"webhook.created", "webhook.deleted"} {
		a := ts.call(t, "GET", "/v1/audit?action="+action, admin, nil)
		evs, _ := a.Body["events"].([]any)
		if len(evs) != 1 || !strings.Contains(string(a.Raw), hookID) {
			t.Fatalf("audit %s: %s", action, a.Raw)
		}
	}
}

// TestE2EWebhookDeliveryResumesAfterRestart kills the server with SIGKILL
// while a delivery waits for its retry, starts a new one on the same
// database, and sees the delivery arrive, with the same webhook-id.
func TestE2EWebhookDeliveryResumesAfterRestart(t *testing.T) {
	rcv := newHookReceiver(t, 2)
	dir, err := os.MkdirTemp(e2eRoot, "webhook-restart-")
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "latchkey.db")
	flags := " --webhook-backoff 1s --webhook-backoff-max 2s --webhook-allow-private 127.0.0.0/8"
	// The first node waits long between attempts, so that it is killed
	// between two of them, not during one: a node killed mid-attempt leaves
	// its claim leased for a minute past the attempt's timeout, longer than
	// this test waits.
	url, root, child := startChildArgs(t, dir, db, 1, " --webhook-backoff 8s --webhook-backoff-max 8s --webhook-allow-private 127.0.0.0/8")
	defer child.kill()
	registerKey(root)
	ts := &testServer{URL: url, Root: root}
	admin := ts.mustTenant(t, "acme")
	r := ts.call(t, "POST", "/v1/webhooks", admin, map[string]any{"url": rcv.URL, "events": []string{"key.created"}})
	if r.Status != http.StatusCreated {
		t.Fatalf("create webhook: %d %s", r.Status, r.Raw)
	}
	hookID := r.str("id")
	rcv.setSecret(r.str("secret"))
	ts.mustCreate(t, admin, map[string]any{})
	eventually(t, 20*time.Second, "the first attempt", func() bool { return len(rcv.seen()) > 0 })
	// The receiver answers before the node records the answer: kill it
	// once the refusal is recorded and the delivery waits for its retry.
	eventually(t, 10*time.Second, "the first attempt recorded", func() bool {
		var dl struct {
			Deliveries []latchkey.Delivery `json:"deliveries"`
		}
		log := ts.call(t, "GET", "/v1/webhooks/"+hookID+"/deliveries", admin, nil)
		return json.Unmarshal(log.Raw, &dl) == nil && len(dl.Deliveries) == 1 && dl.Deliveries[0].Attempts == 1 && dl.Deliveries[0].LastStatusCode != 0
	})
	child.kill() // the delivery was refused and waits for its retry
	before := rcv.seen()
	if len(rcv.delivered()) != 0 {
		t.Fatal("delivered before the kill; the receiver should have refused it")
	}

	url2, root2, child2 := startChildArgs(t, dir, db, 2, flags)
	defer child2.kill()
	if root2 != "" {
		t.Fatal("a restart printed a new root key")
	}
	ts.URL = url2
	eventually(t, 30*time.Second, "the delivery after the restart", func() bool { return len(rcv.delivered()) == 1 })
	all := rcv.seen()
	id := before[0].id
	for _, a := range all {
		if a.id != id || !a.signedOK {
			t.Fatalf("attempt %+v: want webhook-id %s and a valid signature on every attempt", a.id, id)
		}
		if d := time.Since(time.Unix(a.timestamp, 0)); d < -time.Minute || d > 5*time.Minute {
			t.Fatalf("webhook-timestamp %d is %s from now", a.timestamp, d)
		}
	}
	if len(all) < 3 {
		t.Fatalf("%d attempts, want at least 3 (two refused)", len(all))
	}
	var dl struct {
		Deliveries []latchkey.Delivery `json:"deliveries"`
	}
	// The receiver answers before the server records the answer.
	eventually(t, 10*time.Second, "the delivery log shows the delivery", func() bool {
		log := ts.call(t, "GET", "/v1/webhooks/"+hookID+"/deliveries", admin, nil)
		if err := json.Unmarshal(log.Raw, &dl); err != nil || len(dl.Deliveries) != 1 {
			t.Fatalf("delivery log after restart: %s", log.Raw)
		}
		return dl.Deliveries[0].Status != latchkey.DeliveryPending
	})
	if d := dl.Deliveries[0]; d.ID != id || d.Status != latchkey.DeliveryDelivered || d.Attempts != len(all) {
		t.Fatalf("delivery after restart: %+v; the receiver saw %d attempts", d, len(all))
	}
}

func TestCLIWebhooks(t *testing.T) {
	rcv := newHookReceiver(t, 0)
	n := startCLINode(t, withLocalReceivers())
	created := n.ok(t, "webhooks", "create", "--url", rcv.URL+"/in", "--events", "key.created,key.revoked")
	id := regexp.MustCompile(`whk_[0-9A-Z]{26}`).FindString(created.stdout)
	secret := regexp.MustCompile(`whsec_[A-Za-z0-9+/=]+`).FindString(created.stdout)
	registerSecret(secret)
	if id == "" || secret == "" || strings.Count(created.stdout, secret) != 1 || !strings.Contains(created.stdout, "key.created,key.revoked") {
		t.Fatalf("webhooks create printed:\n%s", created.stdout)
	}
	rcv.setSecret(secret)
	if l := n.ok(t, "webhooks", "list"); !strings.Contains(l.stdout, id) || !strings.Contains(l.stdout, rcv.URL+"/in") || strings.Contains(l.stdout, secret) {
		t.Fatalf("webhooks list:\n%s", l.stdout)
	}
	if m := n.okJSON(t, "webhooks", "show", id); m["url"] != rcv.URL+"/in" || m["secret"] != nil {
		t.Fatalf("webhooks show --json: %v", m)
	}
	n.createKey(t, "--name", "hooked")
	eventually(t, 20*time.Second, "the key.created delivery", func() bool { return len(rcv.delivered()) == 1 })
	eventually(t, 5*time.Second, "the delivery log", func() bool {
		return strings.Contains(n.ok(t, "webhooks", "deliveries", id).stdout, "delivered")
	})
	d := n.okJSON(t, "webhooks", "deliveries", id, "--status", "delivered")
	if list, _ := d["deliveries"].([]any); len(list) != 1 {
		t.Fatalf("deliveries --status delivered --json: %v", d)
	}
	list, _ := d["deliveries"].([]any)
	dlv, _ := list[0].(map[string]any)["id"].(string)
	if r := n.ok(t, "webhooks", "retry", id, dlv); !strings.Contains(r.stdout, dlv) {
		t.Fatalf("webhooks retry printed %q", r.stdout)
	}
	eventually(t, 20*time.Second, "the retried delivery", func() bool { return len(rcv.seen()) == 2 })
	if as := rcv.seen(); as[1].id != dlv || !as[1].signedOK {
		t.Fatalf("the retry went out as %s (signed %v), want %s", as[1].id, as[1].signedOK, dlv)
	}
	if r := n.run(t, "webhooks", "create", "--url", rcv.URL, "--events", "key.deleted"); cliErrCode(r.err) != latchkey.EInvalid {
		t.Fatalf("an unknown event type: %v", r.err)
	}
	if r := n.run(t, "webhooks", "create", "--url", "not a url"); cliErrCode(r.err) != latchkey.EInvalid {
		t.Fatalf("a bad URL: %v", r.err)
	}
	if r := n.run(t, "webhooks", "deliveries", id, "--status", "lost"); cliErrCode(r.err) != latchkey.EInvalid {
		t.Fatalf("a bad status: %v", r.err)
	}
	n.ok(t, "webhooks", "rm", id)
	if r := n.run(t, "webhooks", "show", id); cliErrCode(r.err) != latchkey.ENotFound {
		t.Fatalf("show after rm: %v", r.err)
	}
}

func TestE2EKeyExpiringIsDelivered(t *testing.T) {
	rcv := newHookReceiver(t, 0)
	ts := startServer(t, withWebhookPoll(20*time.Millisecond), withLocalReceivers()) // the scan as it ships: 7 days ahead
	admin := ts.mustTenant(t, "acme")
	r := ts.call(t, "POST", "/v1/webhooks", admin, map[string]any{"url": rcv.URL, "events": []string{"key.expiring"}})
	if r.Status != http.StatusCreated {
		t.Fatalf("create webhook: %d %s", r.Status, r.Raw)
	}
	rcv.setSecret(r.str("secret"))
	soon, _ := ts.mustCreate(t, admin, map[string]any{"expires_in": "3d"})
	ts.mustCreate(t, admin, map[string]any{"expires_in": "30d"})
	// The scan runs every minute of the server's clock.
	eventually(t, 10*time.Second, "the key.expiring delivery", func() bool {
		if len(rcv.delivered()) > 0 {
			return true
		}
		ts.Clock.Advance(time.Minute)
		return false
	})
	as := rcv.seen()
	var p struct {
		Type string `json:"type"`
		Data struct {
			KeyID     string    `json:"key_id"`
			ExpiresAt time.Time `json:"expires_at"`
			DaysLeft  int       `json:"days_left"`
		} `json:"data"`
	}
	if err := json.Unmarshal(as[0].body, &p); err != nil || p.Type != "key.expiring" || p.Data.KeyID != soon || p.Data.DaysLeft != 2 || !as[0].signedOK {
		t.Fatalf("key.expiring payload %s (%v)", as[0].body, err)
	}
	// (That later scans do not repeat it is TestScanExpiring's, in package
	// webhook, with the scan driven by hand.)
}
