package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// dialRecorder replaces the webhook dispatcher's host lookup and sees each
// address it is about to connect to. Whatever the server's policy says,
// it refuses every address outside 127.0.0.0/8, so that no test packet
// leaves the loopback network even if the policy were wrong.
type dialRecorder struct {
	name  string
	addrs []netip.Addr

	mu     sync.Mutex
	dialed []recordedDial
}

type recordedDial struct {
	addr    netip.AddrPort
	allowed bool
}

func (d *dialRecorder) resolve(_ context.Context, host string) ([]netip.Addr, error) {
	if host != d.name {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return d.addrs, nil
}

func (d *dialRecorder) dialing(addr netip.AddrPort, allowed bool) error {
	d.mu.Lock()
	d.dialed = append(d.dialed, recordedDial{addr, allowed})
	d.mu.Unlock()
	if !netip.MustParsePrefix("127.0.0.0/8").Contains(addr.Addr().Unmap()) {
		return errors.New("test: only 127.0.0.0/8 may be dialed")
	}
	return nil
}

func (d *dialRecorder) seen() []recordedDial {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]recordedDial(nil), d.dialed...)
}

func withDialRecorder(d *dialRecorder) serverOption {
	return func(_ *serverConfig, h *serverHooks) { h.WebhookResolve, h.WebhookDialing = d.resolve, d.dialing }
}

// TestE2EWebhookTargetsInsideTheNetworkAreRefused: a tenant admin cannot
// aim a webhook at the server's own network. URLs whose host is such an
// address are refused at creation; a host name that resolves to one is
// refused as the connection is made, with a failure class in the delivery
// log and no connection; an operator can allow an internal network.
func TestE2EWebhookTargetsInsideTheNetworkAreRefused(t *testing.T) {
	rcv := newHookReceiver(t, 0)
	port := strconv.Itoa(rcv.Listener.Addr().(*net.TCPAddr).Port)
	inside := []string{"10.0.0.5", "169.254.169.254", "fd00::1", "127.0.0.1"}
	rec := &dialRecorder{name: "hooks.rebound.example"}
	for _, a := range inside {
		rec.addrs = append(rec.addrs, netip.MustParseAddr(a))
	}
	ts := startServer(t, withWebhookPoll(20*time.Millisecond), withDialRecorder(rec))
	admin := ts.mustTenant(t, "acme")
	ts.Clock.Advance(time.Second)

	// Creation refuses literal addresses inside the network, names of the
	// server itself, numeric hosts and ports outside 1-65535.
	for _, u := range []string{
		rcv.URL + "/in", "http://[::1]:" + port + "/", "http://10.0.0.5/", "http://169.254.169.254/latest/meta-data/",
		"http://[::ffff:127.0.0.1]:" + port + "/", "http://[fe80::1%25eth0]/", "http://0.0.0.0:" + port + "/",
		"http://100.64.0.1/", "http://192.168.1.1/", "http://172.16.0.1/", "http://224.0.0.1/", "http://255.255.255.255/",
		"http://localhost:" + port + "/", "http://2130706433:" + port + "/", "http://127.1:" + port + "/",
		"https://hooks.example.com:0/", "https://hooks.example.com:65536/",
	} {
		r := ts.call(t, "POST", "/v1/webhooks", admin, map[string]any{"url": u})
		if r.Status != http.StatusBadRequest || r.errCode() != latchkey.EInvalid {
			t.Fatalf("a webhook to %s on a server without --webhook-allow-private: %d %s", u, r.Status, r.Raw)
		}
	}

	// A name that resolves inside the network is accepted at creation (it
	// may resolve elsewhere then) and refused when connecting.
	r := ts.call(t, "POST", "/v1/webhooks", admin, map[string]any{"url": "http://hooks.rebound.example:" + port + "/in?token=s3cr3t", "events": []string{"key.created"}})
	if r.Status != http.StatusCreated {
		t.Fatalf("create a webhook to a host name: %d %s", r.Status, r.Raw)
	}
	hookID := r.str("id")
	ts.mustCreate(t, admin, map[string]any{})
	var dl struct {
		Deliveries []latchkey.Delivery `json:"deliveries"`
	}
	var raw []byte
	eventually(t, 20*time.Second, "the refused attempt in the delivery log", func() bool {
		log := ts.call(t, "GET", "/v1/webhooks/"+hookID+"/deliveries", admin, nil)
		raw = log.Raw
		if err := json.Unmarshal(log.Raw, &dl); err != nil || log.Status != 200 {
			t.Fatalf("delivery log: %d %s", log.Status, log.Raw)
		}
		return len(dl.Deliveries) == 1 && dl.Deliveries[0].Attempts > 0
	})
	if d := dl.Deliveries[0]; d.LastError != latchkey.FailRefusedTarget || d.LastStatusCode != 0 || d.Status != latchkey.DeliveryPending {
		t.Fatalf("delivery to a name resolving inside the network: %s", raw)
	}
	for _, leak := range append(inside, "s3cr3t", "dial", "connection") {
		if strings.Contains(string(raw), leak) {
			t.Fatalf("the delivery log says %q: %s", leak, raw)
		}
	}
	seen := rec.seen()
	if len(seen) < len(inside) {
		t.Fatalf("the dialer was asked to reach %v, want each of %v", seen, inside)
	}
	for i, want := range inside {
		if got := seen[i]; got.allowed || got.addr.Addr().Unmap() != netip.MustParseAddr(want) || strconv.Itoa(int(got.addr.Port())) != port {
			t.Errorf("dial %d: %v allowed=%v, want %s:%s refused", i, got.addr, got.allowed, want, port)
		}
	}
	if n := len(rcv.seen()); n != 0 {
		t.Fatalf("the receiver on 127.0.0.1 got %d requests through a name resolving to it", n)
	}

	// With --webhook-allow-private 127.0.0.0/8 a local receiver gets its
	// deliveries; other private networks stay refused.
	ts2 := startServer(t, withWebhookPoll(20*time.Millisecond), withLocalReceivers())
	admin2 := ts2.mustTenant(t, "acme")
	ts2.Clock.Advance(time.Second)
	for _, u := range []string{"http://10.0.0.5/", "http://169.254.169.254/", "http://[::1]:" + port + "/"} {
		if r := ts2.call(t, "POST", "/v1/webhooks", admin2, map[string]any{"url": u}); r.errCode() != latchkey.EInvalid {
			t.Fatalf("a webhook to %s with only 127.0.0.0/8 allowed: %d %s", u, r.Status, r.Raw)
		}
	}
	r = ts2.call(t, "POST", "/v1/webhooks", admin2, map[string]any{"url": rcv.URL + "/in", "events": []string{"key.created"}})
	if r.Status != http.StatusCreated {
		t.Fatalf("a webhook to %s with 127.0.0.0/8 allowed: %d %s", rcv.URL, r.Status, r.Raw)
	}
	rcv.setSecret(r.str("secret"))
	ts2.mustCreate(t, admin2, map[string]any{})
	eventually(t, 20*time.Second, "the delivery to the allowed local receiver", func() bool { return len(rcv.delivered()) == 1 })
}

// A --webhook-allow-private that is not a list of addresses and CIDRs is
// refused before the server listens.
func TestServeRejectsBadWebhookAllowPrivate(t *testing.T) {
	for _, v := range []string{"10.0.0.0/33", "intranet", "10.0.0.0/8,", "fe80::/10%eth0"} {
		cfg := serverConfig{Addr: "127.0.0.1:0", DB: filepath.Join(t.TempDir(), "l.db"), LogLevel: "info", MaxBody: 1 << 20, WebhookAllowPrivate: v}
		e := &env{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}
		if err := serve(context.Background(), e, cfg, serverHooks{}); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Fatalf("--webhook-allow-private %q: %v, want invalid", v, err)
		}
	}
}
