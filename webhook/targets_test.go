package webhook_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/webhook"
)

// publicOnly is the default: nothing allowed beyond the public internet.
var publicOnly = latchkey.WebhookTargets{AllowPrivate: []netip.Prefix{}}

// dialLog is a dialer hook: it records every address the dispatcher is
// about to connect to, with the policy's verdict, and refuses anything
// outside 127.0.0.0/8 whatever the verdict, so that a test never sends a
// packet elsewhere even if the policy were wrong.
type dialLog struct {
	mu  sync.Mutex
	got []dialed
}

type dialed struct {
	addr    netip.AddrPort
	allowed bool
}

var errNotLoopback = errors.New("test: only 127.0.0.0/8 may be dialed")

func (l *dialLog) hook(addr netip.AddrPort, allowed bool) error {
	l.mu.Lock()
	l.got = append(l.got, dialed{addr, allowed})
	l.mu.Unlock()
	if !netip.MustParsePrefix("127.0.0.0/8").Contains(addr.Addr().Unmap()) {
		return errNotLoopback
	}
	return nil
}

func (l *dialLog) seen() []dialed {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]dialed(nil), l.got...)
}

// resolveTo answers every lookup of name with addrs, and any other with
// "no such host".
func resolveTo(name string, addrs ...string) func(context.Context, string) ([]netip.Addr, error) {
	return func(_ context.Context, host string) ([]netip.Addr, error) {
		if host != name {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		var out []netip.Addr
		for _, a := range addrs {
			out = append(out, netip.MustParseAddr(a))
		}
		return out, nil
	}
}

// A host name that resolves to addresses inside the network is refused at
// connection time: the dialer's check sees each resolved address and
// refuses it before connecting, and the delivery log says refused_target.
func TestDeliveryToANameResolvingInsideTheNetworkIsRefused(t *testing.T) {
	f := newFixture(t)
	rcv := newReceiver(t)
	port := rcv.Listener.Addr().(*net.TCPAddr).Port
	inside := []string{"10.0.0.5", "169.254.169.254", "192.168.1.1", "100.64.0.1", "fd00::1", "fe80::1", "::ffff:172.16.0.1", "::1", "127.0.0.1"}
	w, _ := f.hook(t, "http://hooks.internal.example:"+itoa(port)+"/in?token=s3cr3t")
	var log dialLog
	d := f.dispatcher(webhook.Options{Targets: publicOnly, Resolve: resolveTo("hooks.internal.example", inside...), Dialing: log.hook})
	f.key(t, keys.Settings{})
	fanOut(t, d)
	deliverDue(t, d)

	ds := f.deliveries(t, w)
	if len(ds) != 1 || ds[0].Status != latchkey.DeliveryPending || ds[0].LastError != latchkey.FailRefusedTarget || ds[0].LastStatusCode != 0 {
		t.Fatalf("delivery to a name resolving inside the network: %+v", ds[0])
	}
	seen := log.seen()
	if len(seen) != len(inside) {
		t.Fatalf("the dialer was asked for %d addresses, want each of the %d resolved: %v", len(seen), len(inside), seen)
	}
	for i, s := range seen {
		if want := netip.AddrPortFrom(netip.MustParseAddr(inside[i]).Unmap(), uint16(port)); s.addr.Addr().WithZone("") != want.Addr() || s.addr.Port() != want.Port() || s.allowed {
			t.Errorf("dial %d: %v allowed=%v, want %v refused", i, s.addr, s.allowed, want)
		}
	}
	if n := len(rcv.requests()); n != 0 {
		t.Fatalf("the receiver on 127.0.0.1 got %d requests through a name the policy refuses", n)
	}
}

// DNS rebinding: the name was harmless when the webhook was created and
// resolves to loopback at delivery time; the check at connection time
// refuses it. With loopback allowed, the public/private mix connects to
// the allowed address only.
func TestRebindingToLoopbackIsRefusedAndAllowedNetworksAreReached(t *testing.T) {
	f := newFixture(t)
	rcv := newReceiver(t)
	port := itoa(rcv.Listener.Addr().(*net.TCPAddr).Port)
	w, _ := f.hook(t, "http://rebound.example:"+port+"/in")
	var strict dialLog
	d := f.dispatcher(webhook.Options{Targets: publicOnly, Resolve: resolveTo("rebound.example", "127.0.0.1"), Dialing: strict.hook})
	f.key(t, keys.Settings{})
	fanOut(t, d)
	deliverDue(t, d)
	if ds := f.deliveries(t, w); ds[0].LastError != latchkey.FailRefusedTarget || len(rcv.requests()) != 0 {
		t.Fatalf("a name rebound to 127.0.0.1: %+v, %d requests arrived", ds[0], len(rcv.requests()))
	}
	if s := strict.seen(); len(s) != 1 || s[0].allowed {
		t.Fatalf("dials: %v", s)
	}

	var allowed dialLog
	d2 := f.dispatcher(webhook.Options{Resolve: resolveTo("rebound.example", "10.0.0.5", "127.0.0.1"), Dialing: allowed.hook})
	f.clock.Advance(time.Minute)
	deliverDue(t, d2)
	if ds := f.deliveries(t, w); ds[0].Status != latchkey.DeliveryDelivered || len(rcv.requests()) != 1 {
		t.Fatalf("with 127.0.0.0/8 allowed: %+v, %d requests arrived", ds[0], len(rcv.requests()))
	}
	if s := allowed.seen(); len(s) != 2 || s[0].allowed || s[0].addr.Addr() != netip.MustParseAddr("10.0.0.5") || !s[1].allowed {
		t.Fatalf("dials with 127.0.0.0/8 allowed: %v; want 10.0.0.5 refused, then 127.0.0.1", s)
	}
}

// A webhook created while loopback was allowed (its URL is 127.0.0.1) is
// still refused by a dispatcher that does not allow it: the dispatcher
// does not trust what was checked at creation.
func TestLiteralAddressIsCheckedWhenConnecting(t *testing.T) {
	f := newFixture(t)
	rcv := newReceiver(t)
	w, _ := f.hook(t, rcv.URL)
	var log dialLog
	d := f.dispatcher(webhook.Options{Targets: publicOnly, Dialing: log.hook})
	f.key(t, keys.Settings{})
	fanOut(t, d)
	deliverDue(t, d)
	if ds := f.deliveries(t, w); ds[0].LastError != latchkey.FailRefusedTarget || len(rcv.requests()) != 0 {
		t.Fatalf("a 127.0.0.1 webhook with loopback not allowed: %+v, %d requests arrived", ds[0], len(rcv.requests()))
	}
	if s := log.seen(); len(s) != 1 || s[0].allowed {
		t.Fatalf("dials: %v", s)
	}
}

// A redirect is not followed (so it cannot lead inside the network); it is
// a failed attempt of class http_status.
func TestRedirectInsideTheNetworkIsNotFollowed(t *testing.T) {
	f := newFixture(t)
	inner := newReceiver(t)
	outer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, inner.URL+"/metadata", http.StatusTemporaryRedirect)
	}))
	defer outer.Close()
	w, _ := f.hook(t, outer.URL)
	d := f.dispatcher(webhook.Options{})
	f.key(t, keys.Settings{})
	fanOut(t, d)
	deliverDue(t, d)
	if ds := f.deliveries(t, w); ds[0].LastStatusCode != 307 || ds[0].LastError != latchkey.FailHTTPStatus || len(inner.requests()) != 0 {
		t.Fatalf("a redirect: %+v, the redirect's target got %d requests", ds[0], len(inner.requests()))
	}
}

// The delivery log holds a failure class, never the raw error with its
// address and port state.
func TestFailuresAreRecordedAsAClass(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	slow := make(chan struct{})
	slowSrv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-slow }))
	defer slowSrv.Close()
	defer close(slow) // before Close, which waits for the handler
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	defer tlsSrv.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }))
	defer failing.Close()

	for _, c := range []struct {
		name, url string
		o         webhook.Options
		want      string
	}{
		{"closed port", closedURL, webhook.Options{}, latchkey.FailConnect},
		{"no answer", slowSrv.URL, webhook.Options{Timeout: 200 * time.Millisecond}, latchkey.FailTimeout},
		{"untrusted certificate", tlsSrv.URL, webhook.Options{}, latchkey.FailTLS},
		{"500", failing.URL, webhook.Options{}, latchkey.FailHTTPStatus},
		{"unknown host", "http://nowhere.example:81/", webhook.Options{Resolve: resolveTo("elsewhere.example")}, latchkey.FailDNS},
		{"private address", "http://inside.example:81/", webhook.Options{Targets: publicOnly, Resolve: resolveTo("inside.example", "10.1.2.3")}, latchkey.FailRefusedTarget},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			w, _ := f.hook(t, c.url)
			var log dialLog
			c.o.Dialing = log.hook
			d := f.dispatcher(c.o)
			f.key(t, keys.Settings{})
			fanOut(t, d)
			deliverDue(t, d)
			ds := f.deliveries(t, w)
			if ds[0].LastError != c.want {
				t.Fatalf("last_error = %q, want %q", ds[0].LastError, c.want)
			}
			if !slices.Contains(latchkey.DeliveryFailureClasses, ds[0].LastError) || strings.ContainsAny(ds[0].LastError, ":. ") {
				t.Fatalf("last_error %q is not a bare class", ds[0].LastError)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
