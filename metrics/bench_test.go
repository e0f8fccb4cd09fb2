package metrics_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey/httpapi"
	"github.com/latchkeyhq/latchkey/metrics"
)

// nopWriter is the least a ResponseWriter can be, as in httpapi's
// benchmark.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// newAuthBench returns a node with metrics and a function that sends it
// an allowed forward-auth request for a cached key.
func newAuthBench(tb testing.TB) (*node, func()) {
	n := newNode(tb, nil)
	_, key := n.create(tb)
	return n, n.authRunner(tb, n.srv, key)
}

// authRunner returns a function that sends srv an allowed forward-auth
// request for key, with a request and writer of its own.
func (n *node) authRunner(tb testing.TB, srv http.Handler, key string) func() {
	return n.authRunnerFor(tb, srv, authRequest(key))
}

// authRequest is an allowed forward-auth request for key.
func authRequest(key string) *http.Request {
	req, _ := http.NewRequest("GET", "http://x/v1/auth?scope=data:read", nil)
	req.RemoteAddr = "127.0.0.1:5555"
	req.Header.Set("Authorization", "Bearer "+key)
	return req
}

// authRunnerFor is authRunner for a request of the caller's.
func (n *node) authRunnerFor(tb testing.TB, srv http.Handler, req *http.Request) func() {
	w := &nopWriter{h: http.Header{}}
	run := func() { clear(w.h); srv.ServeHTTP(w, req) }
	run()
	if w.h.Get("X-Latchkey-Key-Id") == "" {
		tb.Fatalf("not allowed: %v", w.h)
	}
	return run
}

// BenchmarkForwardAuthWithMetrics is httpapi's BenchmarkForwardAuth with
// metrics on: the difference is what recording a verification costs.
func BenchmarkForwardAuthWithMetrics(b *testing.B) {
	_, run := newAuthBench(b)
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
}

// BenchmarkForwardAuthParallel sends allowed forward-auth requests for one
// key from every core, without and with metrics: the cost of the shared
// counters under contention.
func BenchmarkForwardAuthParallel(b *testing.B) {
	n := newNode(b, nil)
	_, key := n.create(b)
	for _, on := range []bool{false, true} {
		cfg := httpapi.Config{Keys: n.svc, Now: n.clock.Now}
		name := "metrics=off"
		if on {
			cfg.Observer, name = n.met, "metrics=on"
		}
		srv := httpapi.New(cfg)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				run := n.authRunner(b, srv, key)
				for pb.Next() {
					run()
				}
			})
		})
	}
}

// BenchmarkVerified is the recording alone (without the two clock reads
// the handler makes around it).
func BenchmarkVerified(b *testing.B) {
	m := metrics.New(metrics.Options{})
	b.ReportAllocs()
	for b.Loop() {
		m.Verified("auth", "VALID", 3*time.Microsecond)
	}
}

// BenchmarkVerifiedParallel records from every core into the same series,
// the worst case for the shared counters.
func BenchmarkVerifiedParallel(b *testing.B) {
	m := metrics.New(metrics.Options{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Verified("auth", "VALID", 3*time.Microsecond)
		}
	})
}

// BenchmarkServed is recording one request answered outside forward-auth
// (the seed route's fast path records each of its answers so).
func BenchmarkServed(b *testing.B) {
	m := metrics.New(metrics.Options{})
	b.ReportAllocs()
	for b.Loop() {
		m.Served("GET", "GET /keys/{provider}", 200)
	}
}
