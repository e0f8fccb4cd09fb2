package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/httpapi"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/limit"
	"github.com/latchkeyhq/latchkey/secrets"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// nopWriter is the least a ResponseWriter can be, so the benchmark counts
// the handler's own work.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// SetReadDeadline and SetWriteDeadline make the writer take deadlines, as
// net/http's does (http.ResponseController finds them), so a handler that
// sets them is measured as it runs in a server.
func (w *nopWriter) SetReadDeadline(time.Time) error  { return nil }
func (w *nopWriter) SetWriteDeadline(time.Time) error { return nil }

// newAuthBench returns a server, an allowed forward-auth request for a
// cached key, and a writer.
func newAuthBench(tb testing.TB) (*httpapi.Server, *http.Request, *nopWriter, string) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "b.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	svc := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db)})
	root, _, _, err := svc.Bootstrap(ctx, "")
	if err != nil {
		tb.Fatal(err)
	}
	actor, err := svc.Authenticate(ctx, root.Reveal(), netip.Addr{}, "")
	if err != nil {
		tb.Fatal(err)
	}
	name := "bench"
	k, tok, err := svc.CreateKey(ctx, actor, keys.CreateParams{Settings: keys.Settings{Name: &name, Scopes: &[]string{"data:read"}}})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httpapi.New(httpapi.Config{Keys: svc})
	req, _ := http.NewRequest("GET", "http://x/v1/auth?scope=data:read", nil)
	req.RemoteAddr = "127.0.0.1:5555"
	req.Header.Set("Authorization", "Bearer "+tok.Reveal())
	w := &nopWriter{h: http.Header{}}
	srv.ServeHTTP(w, req)
	if w.h.Get("X-Latchkey-Key-Id") != k.ID || w.h.Get("X-Latchkey-Code") != "" {
		tb.Fatalf("not allowed: %v", w.h)
	}
	return srv, req, w, k.ID
}

// BenchmarkForwardAuth measures GET /v1/auth for a cached, allowed key in
// process, without the network: the handler's share of a forward-auth
// request.
func BenchmarkForwardAuth(b *testing.B) {
	srv, req, w, _ := newAuthBench(b)
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		srv.ServeHTTP(w, req)
	}
}

// BenchmarkSeedKey measures GET /keys/{provider} in process: key check
// from the cache, the opened value from the secret cache, the read's
// audit event queued (the flusher writes the queue once a second, one
// event for these alike reads), and the answer encoded by hand.
func BenchmarkSeedKey(b *testing.B) {
	srv, req, w := newSeedBench(b)
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		srv.ServeHTTP(w, req)
	}
}

// BenchmarkSeedKeyLimiter is BenchmarkSeedKey with the limiter a server
// runs with: the key (without limits of its own) is asked of it too, as on
// every route that takes a key.
func BenchmarkSeedKeyLimiter(b *testing.B) {
	srv, req, w := newSeedBenchWith(b, true)
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		srv.ServeHTTP(w, req)
	}
}

// newSeedBench returns a server with a secret, a GET /keys/openai request
// for it whose value is cached, and a writer.
func newSeedBench(tb testing.TB) (*httpapi.Server, *http.Request, *nopWriter) {
	return newSeedBenchWith(tb, false)
}

// newSeedBenchWith is newSeedBench, with the in-memory limiter if limiter.
func newSeedBenchWith(tb testing.TB, limiter bool) (*httpapi.Server, *http.Request, *nopWriter) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "b.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	master, _ := keyring.GenerateMasterKey()
	kr, err := keyring.Open(ctx, latchkey.Narrow[keyring.Tx](db), master, keyring.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	opts := keys.Options{Store: latchkey.Narrow[keys.Tx](db)}
	if limiter {
		m := limit.NewMemory(limit.Options{Store: latchkey.Narrow[latchkey.QuotaStore](db)})
		tb.Cleanup(func() { m.Close(ctx) })
		opts.Limiter = m
	}
	sec := secrets.New(secrets.Options{Store: latchkey.Narrow[secrets.Tx](db), Sealer: kr})
	svc := keys.New(opts)
	tb.Cleanup(func() { sec.Close(ctx) })
	root, _, _, err := svc.Bootstrap(ctx, "")
	if err != nil {
		tb.Fatal(err)
	}
	actor, err := svc.Authenticate(ctx, root.Reveal(), netip.Addr{}, "")
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := sec.PutSecret(ctx, actor, "openai", secrets.SecretParams{Value: "sk-proj-0123456789abcdef0123456789"}); err != nil {
		tb.Fatal(err)
	}
	srv := httpapi.New(httpapi.Config{Keys: svc, Secrets: sec, Keyring: kr})
	req, _ := http.NewRequest("GET", "http://x/keys/openai", nil)
	req.RemoteAddr = "127.0.0.1:5555"
	req.Header.Set("Authorization", "Bearer "+root.Reveal())
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"api_key":"sk-proj-`) {
		tb.Fatalf("GET /keys/openai: %d %s", rec.Code, rec.Body)
	}
	return srv, req, &nopWriter{h: http.Header{}}
}

// rewindBody is a request body a benchmark or an allocation test replays
// without allocating a reader per request.
type rewindBody struct {
	data []byte
	off  int
}

func (b *rewindBody) Read(p []byte) (int, error) {
	if b.off >= len(b.data) {
		return 0, io.EOF
	}
	n := copy(p, b.data[b.off:])
	b.off += n
	return n, nil
}

func (b *rewindBody) Close() error { return nil }

// newVerifyBench returns a server, a POST /v1/keys/verify request for the
// cached, allowed key of newAuthBench with its replayable body, and a
// writer.
func newVerifyBench(tb testing.TB) (*httpapi.Server, *http.Request, *rewindBody, *nopWriter) {
	srv, auth, _, _ := newAuthBench(tb)
	tok := strings.TrimPrefix(auth.Header.Get("Authorization"), "Bearer ")
	body := &rewindBody{data: []byte(`{"key":"` + tok + `","scopes":["data:read"]}`)}
	req, _ := http.NewRequest("POST", "http://x/v1/keys/verify", body)
	req.RemoteAddr = "127.0.0.1:5555"
	req.ContentLength = int64(len(body.data))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"valid":true`) {
		tb.Fatalf("POST /v1/keys/verify: %d %s", rec.Code, rec.Body)
	}
	return srv, req, body, &nopWriter{h: http.Header{}}
}

// serveVerify replays the verify request.
func serveVerify(srv *httpapi.Server, req *http.Request, body *rewindBody, w *nopWriter) {
	clear(w.h)
	body.off = 0
	req.Body = body
	srv.ServeHTTP(w, req)
}

// BenchmarkVerifyPOST measures POST /v1/keys/verify for a cached, allowed
// key in process: body read and decoded, the key checked, the answer
// encoded. Compare it with BenchmarkForwardAuth of the same run.
func BenchmarkVerifyPOST(b *testing.B) {
	srv, req, body, w := newVerifyBench(b)
	b.ReportAllocs()
	for b.Loop() {
		serveVerify(srv, req, body, w)
	}
}
