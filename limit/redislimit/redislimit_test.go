package redislimit

import (
	"context"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/testenv"
	"github.com/latchkeyhq/latchkey/limit"
	"github.com/latchkeyhq/latchkey/limit/limittest"
	"github.com/latchkeyhq/latchkey/store/sqlite"
	"github.com/redis/go-redis/v9"
)

// TestConformance runs the limiter suite against a real Redis. Each call
// of newLimiter for the same test is a new Limiter (a restarted node) over
// the same Redis prefix and the same store.
func TestConformance(t *testing.T) {
	r := testenv.StartRedis(t)
	client := newClient(t, r.Addr)
	var (
		mu       sync.Mutex
		stores   = map[*testing.T]latchkey.Store[limittest.Tx]{}
		prefixes = map[*testing.T]string{}
	)
	limittest.Run(t, func(t *testing.T) (latchkey.Limiter, latchkey.Store[limittest.Tx]) {
		mu.Lock()
		s, ok := stores[t]
		if !ok {
			// Owners' usage rows are kept by the suite's wrapper.
			s = limittest.OwnerRows(latchkey.Narrow[limittest.Tx](openStore(t)))
			stores[t] = s
			prefixes[t] = fmt.Sprintf("lt%d:", len(prefixes))
		}
		prefix := prefixes[t]
		mu.Unlock()
		// No background flush during the suite: it flushes where it
		// means to, so every run sees the same interleaving.
		l := newTestLimiterOn(t, client, latchkey.Narrow[latchkey.QuotaStore](s), Options{Prefix: prefix, FlushInterval: time.Hour})
		return l, s
	})
}

// newClient connects to the test Redis. The pool is large enough for the
// suite's 200 concurrent callers, and the client never retries by itself
// (a retried script could count twice).
func newClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:         addr,
		MaxRetries:   -1,
		DialTimeout:  time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
		PoolSize:     64,
		PoolTimeout:  10 * time.Second,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// openStore opens a SQLite store in a temporary directory and closes it
// when the test ends (after the limiters, whose cleanups run first).
func openStore(t testing.TB) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "latchkey.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("closing the store: %v", err)
		}
	})
	return db
}

// newTestLimiter returns a Limiter over db with an in-memory fallback
// (no store: it counts alone while Redis is down), both closed when the
// test ends.
func newTestLimiter(t testing.TB, client redis.UniversalClient, db *sqlite.DB, o Options) *Limiter {
	t.Helper()
	var store latchkey.Store[latchkey.QuotaStore]
	if db != nil {
		store = latchkey.Narrow[latchkey.QuotaStore](db)
	}
	return newTestLimiterOn(t, client, store, o)
}

// newTestLimiterOn is newTestLimiter over any quota store (nil: none).
func newTestLimiterOn(t testing.TB, client redis.UniversalClient, store latchkey.Store[latchkey.QuotaStore], o Options) *Limiter {
	t.Helper()
	if o.Local == nil {
		mem := limit.NewMemory(limit.Options{})
		t.Cleanup(func() { _ = mem.Close(context.Background()) })
		o.Local = mem
	}
	l := New(client, store, o)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.Close(ctx); err != nil && latchkey.ErrorCode(err) != latchkey.EUnavailable {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

var t0 = time.Date(2031, 3, 14, 15, 9, 26, 535897000, time.UTC)

// createKey stores a key (quota usage rows refer to it) in the tenant
// "acme", creating the tenant on first use.
func createKey(t testing.TB, db *sqlite.DB, mod func(*latchkey.Key)) *latchkey.Key {
	t.Helper()
	k := &latchkey.Key{ID: latchkey.NewID("key", t0), Tenant: "acme", Name: "limited", Prefix: "lk", State: latchkey.StateActive, CreatedAt: t0, UpdatedAt: t0}
	k.Hash = sha256.Sum256([]byte(k.ID))
	k.Start = "lk_" + k.ID[4:8]
	if mod != nil {
		mod(k)
	}
	s := latchkey.Narrow[limittest.Tx](db)
	err := s.Update(context.Background(), func(tx limittest.Tx) error {
		_ = tx.CreateTenant(&latchkey.Tenant{ID: "acme", Name: "Acme", CreatedAt: t0})
		return nil
	})
	if err != nil {
		t.Fatalf("creating the tenant: %v", err)
	}
	if err := s.Update(context.Background(), func(tx limittest.Tx) error { return tx.CreateKey(k) }); err != nil {
		t.Fatalf("creating a key: %v", err)
	}
	return k
}

func storedUsage(t testing.TB, db *sqlite.DB, id string) latchkey.QuotaUsage {
	t.Helper()
	var u latchkey.QuotaUsage
	err := latchkey.Narrow[latchkey.QuotaStore](db).View(context.Background(), func(tx latchkey.QuotaStore) error {
		var err error
		u, err = tx.QuotaUsage(id)
		return err
	})
	if err != nil {
		t.Fatalf("QuotaUsage: %v", err)
	}
	return u
}

// spread makes total Admits at now from workers goroutines, each on the
// limiter workerIndex % len(lims), and returns how many were admitted and
// how many failed.
func spread(t testing.TB, lims []*Limiter, k *latchkey.Key, now time.Time, workers, total int) (admitted, failed int64) {
	t.Helper()
	var (
		ok, bad atomic.Int64
		wg      sync.WaitGroup
		start   = make(chan struct{})
	)
	each := total / workers
	for w := range workers {
		lim := lims[w%len(lims)]
		wg.Go(func() {
			<-start
			for range each {
				adm, err := lim.Admit(context.Background(), k, 1, nil, now)
				switch {
				case err != nil:
					bad.Add(1)
				case adm.Code == "":
					ok.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	return ok.Load(), bad.Load()
}

func TestClusterSharesRateWindowExactly(t *testing.T) {
	r := testenv.StartRedis(t)
	client := newClient(t, r.Addr)
	db := openStore(t)
	var nodes []*Limiter
	for range 3 {
		nodes = append(nodes, newTestLimiter(t, client, db, Options{Nodes: 3}))
	}
	k := createKey(t, db, func(k *latchkey.Key) {
		k.RateLimits = []latchkey.RateLimit{{Name: "1m", Limit: 1000, Window: latchkey.Duration(time.Minute)}}
	})
	admitted, failed := spread(t, nodes, k, t0, 30, 3000)
	if failed != 0 || admitted != 1000 {
		t.Fatalf("3,000 requests over three nodes against 1,000/min: admitted %d (%d failed), want exactly 1,000", admitted, failed)
	}
	// Every node sees the window empty, and it refills for all of them.
	for i, n := range nodes {
		adm, err := n.Admit(context.Background(), k, 1, nil, t0)
		if err != nil || adm.Code != latchkey.CodeRateLimited || adm.RetryAfter != time.Minute/1000 {
			t.Errorf("node %d afterwards: %+v, %v; want RATE_LIMITED, retry 60ms", i, adm, err)
		}
	}
	if adm, err := nodes[2].Admit(context.Background(), k, 1, nil, t0.Add(time.Minute/1000)); err != nil || adm.Code != "" {
		t.Errorf("one emission interval later: %+v, %v; want admitted", adm, err)
	}
}

func TestClusterSpendsCreditsExactly(t *testing.T) {
	r := testenv.StartRedis(t)
	client := newClient(t, r.Addr)
	db := openStore(t)
	var nodes []*Limiter
	for range 3 {
		nodes = append(nodes, newTestLimiter(t, client, db, Options{Nodes: 3}))
	}
	balance := int64(1000)
	k := createKey(t, db, func(k *latchkey.Key) { k.Quota = &latchkey.Quota{Remaining: &balance} })
	admitted, failed := spread(t, nodes, k, t0, 150, 10000)
	if failed != 0 || admitted != 1000 {
		t.Fatalf("10,000 concurrent requests over three nodes against 1,000 credits: admitted %d (%d failed), want exactly 1,000", admitted, failed)
	}
	// The store never holds less than what was spent, and after a Flush
	// of every node exactly that.
	if u := storedUsage(t, db, k.ID); u.Used < 1000 {
		t.Fatalf("before a flush the store holds %d used, less than the 1,000 spent", u.Used)
	}
	for _, n := range nodes {
		if err := n.Flush(context.Background()); err != nil {
			t.Fatalf("Flush: %v", err)
		}
	}
	if u := storedUsage(t, db, k.ID); u.Used != 1000 {
		t.Fatalf("after a flush the store holds %d used, want 1,000", u.Used)
	}
}

func TestClusterLeasesAreVisibleOnEveryNode(t *testing.T) {
	r := testenv.StartRedis(t)
	client := newClient(t, r.Addr)
	db := openStore(t)
	a := newTestLimiter(t, client, db, Options{Nodes: 2})
	b := newTestLimiter(t, client, db, Options{Nodes: 2})
	k := createKey(t, db, func(k *latchkey.Key) {
		k.MaxConcurrent = 2
		k.LeaseTTL = latchkey.Duration(10 * time.Second)
	})
	first, err := a.Admit(context.Background(), k, 1, nil, t0)
	if err != nil || first.LeaseID == "" {
		t.Fatalf("first lease on node A: %+v, %v", first, err)
	}
	if _, err := b.Admit(context.Background(), k, 1, nil, t0); err != nil {
		t.Fatal(err)
	}
	if adm, _ := b.Admit(context.Background(), k, 1, nil, t0.Add(time.Second)); adm.Code != latchkey.CodeConcurrencyExceeded || adm.RetryAfter != 9*time.Second {
		t.Fatalf("third lease on node B: %+v; want CONCURRENCY_EXCEEDED, retry 9s", adm)
	}
	if id, ok := b.LeaseKey(first.LeaseID, t0.Add(time.Second)); !ok || id != k.ID {
		t.Fatalf("node B LeaseKey of node A's lease = %q, %v; want %q, true", id, ok, k.ID)
	}
	if !b.Release(first.LeaseID, t0.Add(time.Second)) {
		t.Fatal("node B could not release node A's lease")
	}
	if a.Release(first.LeaseID, t0.Add(time.Second)) {
		t.Fatal("node A released a lease node B had already released")
	}
	if _, ok := a.LeaseKey(first.LeaseID, t0.Add(time.Second)); ok {
		t.Fatal("node A still sees a released lease")
	}
	if adm, _ := a.Admit(context.Background(), k, 1, nil, t0.Add(time.Second)); adm.Code != "" || adm.LeaseID == "" {
		t.Fatalf("after the release, node A: %+v; want a lease", adm)
	}
}

// TestRedisDataLossNeverOverspendsCredits: a Redis that loses everything
// (restarted without persistence) costs unflushed periodic consumption
// and unspent reservations, never a credit spent twice.
func TestRedisDataLossNeverOverspendsCredits(t *testing.T) {
	r := testenv.StartRedis(t)
	client := newClient(t, r.Addr)
	db := openStore(t)
	l := newTestLimiter(t, client, db, Options{Backoff: time.Millisecond})
	balance := int64(500)
	credit := createKey(t, db, func(k *latchkey.Key) { k.Quota = &latchkey.Quota{Remaining: &balance} })
	monthly := createKey(t, db, func(k *latchkey.Key) { k.Quota = &latchkey.Quota{Limit: 100, Period: "monthly"} })
	spent := 0
	for range 300 {
		if adm, err := l.Admit(context.Background(), credit, 1, nil, t0); err == nil && adm.Code == "" {
			spent++
		}
	}
	mustAdmit(t, l, monthly, 30, t0)
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustAdmit(t, l, monthly, 20, t0) // not flushed: lost with Redis
	mustAdmit(t, l, credit, 1, t0)
	spent++
	if err := client.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	after := 0
	for range 1000 {
		adm, err := l.Admit(context.Background(), credit, 1, nil, t0.Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if adm.Code != "" {
			break
		}
		after++
	}
	if spent+after > 500 {
		t.Fatalf("a balance of 500: %d spent before Redis lost its data, %d after", spent, after)
	}
	adm := mustAdmit(t, l, monthly, 0, t0.Add(time.Second))
	if adm.Quota.Remaining != 70 {
		t.Fatalf("the monthly quota after the loss: %d remaining, want 70 (the flushed 30 kept, the unflushed 20 lost)", adm.Quota.Remaining)
	}
}

func mustAdmit(t testing.TB, l *Limiter, k *latchkey.Key, cost int64, now time.Time) latchkey.Admission {
	t.Helper()
	adm, err := l.Admit(context.Background(), k, cost, nil, now)
	if err != nil {
		t.Fatalf("Admit: %v", err)
	}
	if cost > 0 && adm.Code != "" {
		t.Fatalf("Admit(cost %d): %s", cost, adm.Code)
	}
	return adm
}

// TestRedisDown stops Redis in the middle of a test: "deny" answers
// EUnavailable, "local" admits within the limits divided by the node
// count (credits spent through the store, never twice), and after Redis
// is back every call goes to it again, with no goroutine left behind.
func TestRedisDown(t *testing.T) {
	for _, mode := range []string{FailureDeny, FailureLocal} {
		t.Run(mode, func(t *testing.T) {
			r := testenv.StartRedis(t)
			client := newClient(t, r.Addr)
			db := openStore(t)
			var hooked atomic.Int64
			l := newTestLimiter(t, client, db, Options{
				Failure: mode, Nodes: 3, Backoff: 20 * time.Millisecond,
				OnFailure: func(error) { hooked.Add(1) },
			})
			window := createKey(t, db, func(k *latchkey.Key) {
				k.RateLimits = []latchkey.RateLimit{{Name: "1m", Limit: 30, Window: latchkey.Duration(time.Minute)}}
			})
			balance := int64(20)
			credit := createKey(t, db, func(k *latchkey.Key) { k.Quota = &latchkey.Quota{Remaining: &balance} })
			mustAdmit(t, l, window, 1, t0)
			spent := 0
			for range 5 {
				mustAdmit(t, l, credit, 1, t0)
				spent++
			}
			before := runtime.NumGoroutine()

			r.Stop()
			now := t0.Add(time.Second)
			switch mode {
			case FailureDeny:
				for _, k := range []*latchkey.Key{window, credit} {
					_, err := l.Admit(context.Background(), k, 1, nil, now)
					if code := latchkey.ErrorCode(err); code != latchkey.EUnavailable {
						t.Fatalf("Redis down, deny: code %q (%v), want %q", code, err, latchkey.EUnavailable)
					}
				}
				if s := l.Stats(); s.Unavailable < 2 || s.RedisErrors == 0 || !s.Down {
					t.Errorf("Stats %+v: want 2 unavailable answers, a Redis error, down", s)
				}
			case FailureLocal:
				n := 0
				for range 100 {
					adm, err := l.Admit(context.Background(), window, 1, nil, now)
					if err != nil {
						t.Fatalf("Redis down, local: %v", err)
					}
					if adm.Code == "" {
						n++
					}
				}
				if n != 10 {
					t.Errorf("Redis down, one of three nodes: admitted %d of a 30/min window, want 30/3 = 10", n)
				}
				for range 100 {
					adm, err := l.Admit(context.Background(), credit, 1, nil, now)
					if err != nil {
						t.Fatalf("Redis down, credit: %v", err)
					}
					if adm.Code != "" {
						break
					}
					spent++
				}
				if s := l.Stats(); s.Fallbacks == 0 || s.RedisErrors == 0 {
					t.Errorf("Stats %+v: want fallbacks and Redis errors counted", s)
				}
			}
			if hooked.Load() == 0 {
				t.Error("OnFailure was not called")
			}

			r.Restart()
			deadline := time.Now().Add(5 * time.Second)
			for {
				adm, err := l.Admit(context.Background(), window, 1, nil, t0.Add(time.Hour))
				if err == nil && adm.Code == "" && !l.Stats().Down {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("5s after Redis came back: %+v, %v, %+v", adm, err, l.Stats())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if n, err := client.Exists(context.Background(), l.stateKey(window.ID)).Result(); err != nil || n != 1 {
				t.Fatalf("after recovery the window is not in Redis (%d, %v)", n, err)
			}
			// Redis lost everything: the balance is read back from the
			// store, which holds every credit spent (and reservations).
			for range 100 {
				adm := mustAdmit(t, l, credit, 0, t0.Add(time.Hour))
				if adm.Quota.Remaining == 0 {
					break
				}
				mustAdmit(t, l, credit, 1, t0.Add(time.Hour))
				spent++
			}
			if spent > 20 {
				t.Fatalf("a balance of 20: %d spent across the outage", spent)
			}

			deadline = time.Now().Add(5 * time.Second)
			for runtime.NumGoroutine() > before {
				if time.Now().After(deadline) {
					t.Fatalf("%d goroutines after recovery, %d before the outage", runtime.NumGoroutine(), before)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestForgetDuringOutageIsAppliedLater: a Forget that cannot reach Redis
// is kept, and applied (the next Admit reads the reset usage) once Redis
// answers.
func TestForgetDuringOutageIsAppliedLater(t *testing.T) {
	r := testenv.StartRedis(t)
	client := newClient(t, r.Addr)
	db := openStore(t)
	// No background flush: it would read the client this test swaps.
	l := newTestLimiter(t, client, db, Options{Backoff: time.Millisecond, FlushInterval: time.Hour})
	k := createKey(t, db, func(k *latchkey.Key) { k.Quota = &latchkey.Quota{Limit: 100, Period: "monthly"} })
	mustAdmit(t, l, k, 40, t0)
	// Redis stalls (a client pause stands in for a partition that keeps
	// its data): the Forget of a reset cannot reach it.
	if err := latchkey.Narrow[latchkey.QuotaStore](db).Update(context.Background(), func(tx latchkey.QuotaStore) error {
		return tx.ResetQuotaUsage(k.ID)
	}); err != nil {
		t.Fatal(err)
	}
	paused := newClient(t, "127.0.0.1:1") // nothing listens there
	l.rdb = paused
	l.Forget(k.ID)
	l.rdb = client
	time.Sleep(5 * time.Millisecond) // past the backoff
	if adm := mustAdmit(t, l, k, 1, t0); adm.Quota.Remaining != 99 {
		t.Fatalf("after the reset and a Forget made during an outage: %d remaining, want 99", adm.Quota.Remaining)
	}
}

// BenchmarkAdmit measures one decision against a real Redis on loopback:
// the round trip and the script, per kind of limit.
func BenchmarkAdmit(b *testing.B) {
	r := testenv.StartRedis(b)
	client := newClient(b, r.Addr)
	db := openStore(b)
	l := newTestLimiter(b, client, db, Options{})
	balance := int64(1 << 50)
	for _, bc := range []struct {
		name string
		mod  func(*latchkey.Key)
	}{
		{"Window", func(k *latchkey.Key) {
			k.RateLimits = []latchkey.RateLimit{{Name: "1s", Limit: 1_000_000_000, Window: latchkey.Duration(time.Second)}}
		}},
		{"WindowsQuota", func(k *latchkey.Key) {
			k.RateLimits = []latchkey.RateLimit{
				{Name: "1s", Limit: 1_000_000_000, Window: latchkey.Duration(time.Second)},
				{Name: "1h", Limit: 1_000_000_000, Window: latchkey.Duration(time.Hour)},
			}
			k.Quota = &latchkey.Quota{Limit: 1 << 50, Period: "monthly"}
		}},
		{"Credit", func(k *latchkey.Key) { k.Quota = &latchkey.Quota{Remaining: &balance} }},
		{"Lease", func(k *latchkey.Key) { k.MaxConcurrent = 1 << 20 }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			k := createKey(b, db, bc.mod)
			ctx := context.Background()
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				i++
				adm, err := l.Admit(ctx, k, 1, nil, t0.Add(time.Duration(i)*time.Microsecond))
				if err != nil || adm.Code != "" {
					b.Fatalf("Admit: %+v, %v", adm, err)
				}
			}
		})
	}
}

// A key its windows deny is answered on the node until they can admit
// again, without asking Redis: the same answer, its wait counted down.
// A change of the key's windows, or Forget, asks Redis again.
func TestDenialIsRememberedUntilTheWindowsAdmit(t *testing.T) {
	r := testenv.StartRedis(t)
	client := newClient(t, r.Addr)
	db := openStore(t)
	l := newTestLimiter(t, client, db, Options{})
	k := createKey(t, db, func(k *latchkey.Key) {
		k.RateLimits = []latchkey.RateLimit{{Name: "1m", Limit: 2, Window: latchkey.Duration(time.Minute)}}
	})
	ctx := context.Background()
	for i := range 2 {
		if adm, err := l.Admit(ctx, k, 1, nil, t0); err != nil || adm.Code != "" {
			t.Fatalf("request %d: %+v, %v", i, adm, err)
		}
	}
	first, err := l.Admit(ctx, k, 1, nil, t0)
	if err != nil || first.Code != latchkey.CodeRateLimited || first.RetryAfter != 30*time.Second {
		t.Fatalf("third request: %+v, %v; want RATE_LIMITED, retry 30s", first, err)
	}
	// With Redis gone the answer still comes, from the node, and is the
	// same denial 10 s nearer its end.
	r.Stop()
	again, err := l.Admit(ctx, k, 1, nil, t0.Add(10*time.Second))
	if err != nil || again.Code != latchkey.CodeRateLimited || again.RetryAfter != 20*time.Second || again.RateLimit != first.RateLimit {
		t.Fatalf("10 s later: %+v, %v; want the same denial, retry 20s", again, err)
	}
	if s := l.Stats(); s.Remembered != 1 || s.RedisErrors != 0 {
		t.Fatalf("stats %+v: want one remembered denial and no Redis call", s)
	}
	r.Restart()
	// Windows changed: Redis decides (a new window starts full).
	wider := *k
	wider.RateLimits = []latchkey.RateLimit{{Name: "1m", Limit: 5, Window: latchkey.Duration(time.Minute)}}
	if adm, err := l.Admit(ctx, &wider, 1, nil, t0.Add(10*time.Second)); err != nil || adm.Code != "" {
		t.Fatalf("wider windows: %+v, %v; want admitted", adm, err)
	}
	// The old windows again: the denial remembered for them still holds
	// until Forget.
	if adm, _ := l.Admit(ctx, k, 1, nil, t0.Add(11*time.Second)); adm.Code != latchkey.CodeRateLimited || l.Stats().Remembered != 2 {
		t.Fatalf("old windows: %+v, stats %+v", adm, l.Stats())
	}
	l.Forget(k.ID)
	if _, _ = l.Admit(ctx, k, 1, nil, t0.Add(12*time.Second)); l.Stats().Remembered != 2 {
		t.Fatalf("after Forget the denial was still answered: %+v", l.Stats())
	}
	// Past the wait the node asks Redis again.
	if adm, err := l.Admit(ctx, k, 1, nil, t0.Add(31*time.Second)); err != nil || l.Stats().Remembered != 2 {
		t.Fatalf("after the wait: %+v, %v, stats %+v", adm, err, l.Stats())
	}
}
