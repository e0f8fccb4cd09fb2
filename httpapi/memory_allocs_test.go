//go:build !race

package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/httpapi"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/usage"
)

// The race detector's shadow memory would be counted too: this file is
// built without it.

// TestActiveKeysAllocateAtMost1KBEach is issue 10's memory goal: at most
// 1,024 bytes resident per active key, everything the server keeps for it
// counted — its cache entry and slot, its strings, what the verify answer
// needs of it, and the usage recorder's state. 100,000 keys (1,000,000
// with LATCHKEY_BIG=1) of the typical shape (two scopes; half with no meta,
// half with a team) are each verified by POST /v1/keys/verify and by GET
// /v1/auth, read from a store as the store decodes them; the usage is
// flushed and every key verified again, so each key holds its cache entry,
// its minute's bucket and its hour's key.used sums at once (the steady
// state of a key in use). Measured after GC, with the server's fixed costs
// amortised over the keys.
func TestActiveKeysAllocateAtMost1KBEach(t *testing.T) {
	if testing.Short() {
		t.Skip("verifies 100,000 keys")
	}
	sizes := []int{100_000}
	if os.Getenv("LATCHKEY_BIG") == "1" {
		sizes = append(sizes, 1_000_000)
	}
	for _, n := range sizes {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			per := activeKeyBytes(t, n)
			t.Logf("%d active keys: %.0f bytes resident per key", n, per)
			if per > 1024 {
				t.Errorf("%.0f bytes resident per active key, want at most 1,024", per)
			}
		})
	}
}

func activeKeyBytes(t *testing.T, n int) float64 {
	now := time.Date(2026, 12, 3, 20, 0, 5, 0, time.UTC)
	plain := make([]string, n)
	byHash := make(map[[32]byte]int, n)
	for i := range plain {
		plain[i] = fmt.Sprintf("imported-agent-key-%012d", i)
		byHash[latchkey.HashKey(plain[i])] = i
	}
	st := &memStore{byHash: byHash, now: now}
	base := heap()
	rec := usage.New(usage.Options{Store: latchkey.Narrow[usage.Tx](st), FlushInterval: time.Hour, Now: func() time.Time { return now }})
	defer rec.Close(context.Background())
	svc := keys.New(keys.Options{Store: st, Usage: rec, CacheSize: n + n/8, Now: func() time.Time { return now }})
	srv := httpapi.New(httpapi.Config{Keys: svc})

	w := &nopWriter{h: http.Header{}}
	body := &rewindBody{}
	post, _ := http.NewRequest("POST", "http://x/v1/keys/verify", body)
	post.RemoteAddr = "127.0.0.1:5555"
	post.Header.Set("Content-Type", "application/json")
	post.Header.Set("X-Request-Id", "proxy-request-1")
	get, _ := http.NewRequest("GET", "http://x/v1/auth?scope=data:read", nil)
	get.RemoteAddr = "127.0.0.1:5555"
	get.Header.Set("X-Request-Id", "proxy-request-2")
	answer := &captureWriter{h: http.Header{}}
	verifyAll := func() {
		for i, p := range plain {
			body.data = append(append(append(body.data[:0], `{"key":"`...), p...), `","scopes":["data:read"]}`...)
			body.off = 0
			post.Body, post.ContentLength = body, int64(len(body.data))
			var ww http.ResponseWriter = w
			if i%(n/10) == 0 {
				answer.b = answer.b[:0]
				ww = answer
			}
			clear(w.h)
			srv.ServeHTTP(ww, post)
			if ww == answer && !strings.Contains(string(answer.b), `"valid":true`) {
				t.Fatalf("POST /v1/keys/verify of key %d: %s", i, answer.b)
			}
			clear(w.h)
			get.Header.Set("Authorization", "Bearer "+p)
			srv.ServeHTTP(w, get)
			if w.h.Get("X-Latchkey-Key-Id") == "" {
				t.Fatalf("GET /v1/auth of key %d: not allowed (%v)", i, w.h)
			}
		}
	}
	verifyAll()
	if err := rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	verifyAll()
	if reads := svc.StoreReads(); reads != uint64(n) {
		t.Fatalf("%d store reads for %d keys: the cache did not keep them all", reads, n)
	}
	per := float64(heap()-base) / float64(n)
	runtime.KeepAlive(srv)
	runtime.KeepAlive(rec)
	return per
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// memStore serves the keys by hash as a store reads them (every string
// and collection decoded on its own), and takes the usage recorder's
// writes without keeping them.
type memStore struct {
	keys.Store
	byHash map[[32]byte]int
	now    time.Time
}

func (s *memStore) KeyByHash(_ context.Context, h [32]byte) (*latchkey.Key, error) {
	i, ok := s.byHash[h]
	if !ok {
		return nil, latchkey.Errorf(latchkey.ENotFound, "no such key")
	}
	meta := `{}`
	if i%2 == 1 {
		meta = `{"team":"payments"}`
	}
	k := &latchkey.Key{
		ID: fmt.Sprintf("key_%026d", i), Tenant: string([]byte("acme")), Name: string([]byte("agent key")),
		Owner: "agent-" + strconv.Itoa(i) + "@example.com", Environment: string([]byte("production")),
		Prefix: string([]byte("lk")), Start: "impo" + strconv.Itoa(i%10000), Hash: h,
		State: latchkey.StateActive, CreatedAt: s.now, UpdatedAt: s.now,
	}
	for _, c := range []struct {
		col string
		v   any
	}{
		{`["data:read","agent:activate"]`, &k.Scopes}, {`[]`, &k.Resources}, {meta, &k.Meta},
		{`[]`, &k.IPAllow}, {`[]`, &k.Countries}, {`[]`, &k.TimeWindows}, {`[]`, &k.RateLimits},
	} {
		if err := json.Unmarshal([]byte(c.col), c.v); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func (s *memStore) Update(_ context.Context, fn func(keys.Tx) error) error { return fn(nopTx{}) }

// memTx is what the key service and the usage recorder ask of memStore's
// transactions.
type memTx interface {
	keys.Tx
	usage.Tx
}

type nopTx struct{ memTx }

func (nopTx) SetLastUsed([]latchkey.LastUsed) error          { return nil }
func (nopTx) AddUsage([]latchkey.UsageRow) error             { return nil }
func (nopTx) AddUsageNetworks([]latchkey.UsageNetwork) error { return nil }
func (nopTx) AppendAudit(*latchkey.AuditEvent) error         { return nil }

// captureWriter keeps the answer's body.
type captureWriter struct {
	h http.Header
	b []byte
}

func (w *captureWriter) Header() http.Header              { return w.h }
func (w *captureWriter) Write(p []byte) (int, error)      { w.b = append(w.b, p...); return len(p), nil }
func (w *captureWriter) WriteHeader(int)                  {}
func (w *captureWriter) SetReadDeadline(time.Time) error  { return nil }
func (w *captureWriter) SetWriteDeadline(time.Time) error { return nil }
