package limit

import (
	"context"
	"crypto/sha256"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/limit/limittest"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

func TestConformance(t *testing.T) {
	var mu sync.Mutex
	stores := map[*testing.T]latchkey.Store[limittest.Tx]{}
	limittest.Run(t, func(t *testing.T) (latchkey.Limiter, latchkey.Store[limittest.Tx]) {
		mu.Lock()
		s, ok := stores[t]
		if !ok {
			// Owners' usage rows are kept by the suite's wrapper.
			s = limittest.OwnerRows(latchkey.Narrow[limittest.Tx](openStore(t)))
			stores[t] = s
		}
		mu.Unlock()
		// No background flush during the suite: it flushes where it
		// means to, so every run sees the same interleaving.
		return newTestMemory(t, Options{Store: latchkey.Narrow[latchkey.QuotaStore](s), FlushInterval: time.Hour}), s
	})
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

func newTestMemory(t testing.TB, o Options) *Memory {
	m := NewMemory(o)
	t.Cleanup(func() {
		if err := m.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

var t0 = time.Date(2031, 3, 14, 15, 9, 26, 535897000, time.UTC)

var apr = time.Date(2031, 4, 1, 0, 0, 0, 0, time.UTC)

// createKey stores a key (quota usage rows refer to it) in the tenant
// "acme", creating the tenant on first use.
func createKey(t testing.TB, s keys.Store, mod func(*latchkey.Key)) *latchkey.Key {
	t.Helper()
	k := &latchkey.Key{ID: latchkey.NewID("key", t0), Tenant: "acme", Prefix: "lk", Start: "lk_abcd", State: latchkey.StateActive, CreatedAt: t0, UpdatedAt: t0}
	k.Hash = sha256.Sum256([]byte(k.ID))
	if mod != nil {
		mod(k)
	}
	err := s.Update(context.Background(), func(tx keys.Tx) error {
		if _, err := tx.Tenant("acme"); latchkey.ErrorCode(err) == latchkey.ENotFound {
			if err := tx.CreateTenant(&latchkey.Tenant{ID: "acme", Name: "Acme", CreatedAt: t0}); err != nil {
				return err
			}
		}
		return tx.CreateKey(k)
	})
	if err != nil {
		t.Fatalf("creating a key: %v", err)
	}
	return k
}

func withQuota(limit int64) func(*latchkey.Key) {
	return func(k *latchkey.Key) { k.Quota = &latchkey.Quota{Limit: limit, Period: "monthly"} }
}

func storedUsage(t testing.TB, s keys.Store, id string) latchkey.QuotaUsage {
	t.Helper()
	var u latchkey.QuotaUsage
	err := s.View(context.Background(), func(tx keys.Tx) error {
		var err error
		u, err = tx.QuotaUsage(id)
		return err
	})
	if err != nil {
		t.Fatalf("QuotaUsage: %v", err)
	}
	return u
}

func mustAdmit(t testing.TB, m *Memory, k *latchkey.Key, cost int64, now time.Time) latchkey.Admission {
	t.Helper()
	adm, err := m.Admit(context.Background(), k, cost, nil, now)
	if err != nil {
		t.Fatalf("Admit: %v", err)
	}
	return adm
}

// states counts the keys the limiter holds state for.
func (m *Memory) states() int {
	n := 0
	for i := range m.shards {
		m.shards[i].mu.RLock()
		n += len(m.shards[i].m)
		m.shards[i].mu.RUnlock()
	}
	return n
}

func (m *Memory) leaseRefs() int {
	n := 0
	for i := range m.leases {
		m.leases[i].mu.RLock()
		n += len(m.leases[i].m)
		m.leases[i].mu.RUnlock()
	}
	return n
}

// A reset the limiter was not told about shows when its flush is refused;
// it then reads the usage again instead of counting on from before.
func TestRefusedFlushReloadsUsage(t *testing.T) {
	db := openStore(t)
	m := newTestMemory(t, Options{Store: latchkey.Narrow[latchkey.QuotaStore](db), FlushInterval: time.Hour})
	k := createKey(t, latchkey.Narrow[keys.Tx](db), withQuota(100))
	mustAdmit(t, m, k, 30, t0)
	if err := db.Update(t.Context(), func(tx *sqlite.Tx) error { return tx.ResetQuotaUsage(k.ID) }); err != nil {
		t.Fatal(err)
	}
	if err := m.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if u := storedUsage(t, latchkey.Narrow[keys.Tx](db), k.ID); u.Used != 0 || u.Epoch != 1 {
		t.Fatalf("stored usage after the refused flush: %+v, want epoch 1 and nothing used", u)
	}
	if got := mustAdmit(t, m, k, 1, t0).Quota.Remaining; got != 99 {
		t.Fatalf("Remaining after the refused flush = %d, want 99", got)
	}
}

func TestBackgroundFlushPersists(t *testing.T) {
	db := openStore(t)
	m := newTestMemory(t, Options{Store: latchkey.Narrow[latchkey.QuotaStore](db), FlushInterval: 5 * time.Millisecond})
	k := createKey(t, latchkey.Narrow[keys.Tx](db), withQuota(100))
	mustAdmit(t, m, k, 5, t0)
	deadline := time.Now().Add(10 * time.Second)
	for storedUsage(t, latchkey.Narrow[keys.Tx](db), k.ID).Used != 5 {
		if time.Now().After(deadline) {
			t.Fatal("the background flusher did not write the usage within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCloseFlushesEverything(t *testing.T) {
	db := openStore(t)
	m := NewMemory(Options{Store: latchkey.Narrow[latchkey.QuotaStore](db), FlushInterval: time.Hour})
	var ks []*latchkey.Key
	// More keys than one flush transaction takes.
	for i := range flushBatch + 10 {
		k := createKey(t, latchkey.Narrow[keys.Tx](db), withQuota(100))
		mustAdmit(t, m, k, int64(i%7+1), t0)
		ks = append(ks, k)
	}
	if err := m.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m.Close(t.Context()); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	for i, k := range ks {
		if u := storedUsage(t, latchkey.Narrow[keys.Tx](db), k.ID); u.Used != int64(i%7+1) || !u.PeriodStart.Equal(time.Date(2031, 3, 1, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("key %d after Close: stored %+v, want %d used in March", i, u, i%7+1)
		}
	}
}

// A row that cannot be saved (here: a key missing from the store) must not
// hold back the others.
func TestFlushSavesOtherRowsPastABadOne(t *testing.T) {
	db := openStore(t)
	m := newTestMemory(t, Options{Store: latchkey.Narrow[latchkey.QuotaStore](db), FlushInterval: time.Hour})
	good := createKey(t, latchkey.Narrow[keys.Tx](db), withQuota(100))
	ghost := &latchkey.Key{ID: latchkey.NewID("key", t0), Tenant: "acme", CreatedAt: t0, Quota: &latchkey.Quota{Limit: 10, Period: "monthly"}}
	mustAdmit(t, m, good, 3, t0)
	mustAdmit(t, m, ghost, 4, t0)
	if err := m.Flush(t.Context()); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("Flush with a row for a missing key: %v, want %s", err, latchkey.ENotFound)
	}
	if u := storedUsage(t, latchkey.Narrow[keys.Tx](db), good.ID); u.Used != 3 {
		t.Fatalf("the good row: stored %+v, want 3 used", u)
	}
	// The row that cannot be saved is given up, not retried for ever.
	if err := m.Flush(t.Context()); err != nil {
		t.Fatalf("second Flush: %v", err)
	}
}

// countingStore counts quota usage reads and can hold them until released.
type countingStore struct {
	keys.Store
	views atomic.Int64
	gate  chan struct{} // nil: reads pass at once
	fail  error
}

func (s *countingStore) View(ctx context.Context, fn func(keys.Tx) error) error {
	s.views.Add(1)
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.fail != nil {
		return s.fail
	}
	return s.Store.View(ctx, fn)
}

func TestConcurrentFirstRequestsReadUsageOnce(t *testing.T) {
	db := openStore(t)
	cs := &countingStore{Store: latchkey.Narrow[keys.Tx](db), gate: make(chan struct{})}
	m := newTestMemory(t, Options{Store: latchkey.Narrow[latchkey.QuotaStore](cs), FlushInterval: time.Hour})
	k := createKey(t, latchkey.Narrow[keys.Tx](db), withQuota(1000))
	var wg sync.WaitGroup
	var admitted atomic.Int64
	for range 100 {
		wg.Go(func() {
			if adm, err := m.Admit(context.Background(), k, 1, nil, t0); err != nil {
				t.Error(err)
			} else if adm.Code == "" {
				admitted.Add(1)
			}
		})
	}
	// Let the requests pile up behind the first read.
	for cs.views.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(cs.gate)
	wg.Wait()
	if n := cs.views.Load(); n != 1 {
		t.Errorf("100 first requests read the usage %d times, want 1", n)
	}
	if n := admitted.Load(); n != 100 {
		t.Errorf("admitted %d, want 100", n)
	}
}

func TestWaitingForUsageHonoursContext(t *testing.T) {
	db := openStore(t)
	cs := &countingStore{Store: latchkey.Narrow[keys.Tx](db), gate: make(chan struct{})}
	m := newTestMemory(t, Options{Store: latchkey.Narrow[latchkey.QuotaStore](cs), FlushInterval: time.Hour})
	k := createKey(t, latchkey.Narrow[keys.Tx](db), withQuota(10))
	first := make(chan error, 1)
	go func() {
		_, err := m.Admit(context.Background(), k, 1, nil, t0)
		first <- err
	}()
	for cs.views.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Admit(ctx, k, 1, nil, t0); latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Fatalf("Admit with a cancelled context while the usage is read: %v, want %s", err, latchkey.EUnavailable)
	}
	close(cs.gate)
	if err := <-first; err != nil {
		t.Fatalf("the first request: %v", err)
	}
	if got := mustAdmit(t, m, k, 1, t0).Quota.Remaining; got != 8 {
		t.Fatalf("Remaining = %d, want 8: the cancelled request must not count", got)
	}
}

// Unkey lets requests through when its limiter fails; Latchkey returns the
// error and the caller decides.
func TestStoreFailureIsReturnedNotAdmitted(t *testing.T) {
	db := openStore(t)
	cs := &countingStore{Store: latchkey.Narrow[keys.Tx](db), fail: latchkey.Errorf(latchkey.EUnavailable, "database is down")}
	m := newTestMemory(t, Options{Store: latchkey.Narrow[latchkey.QuotaStore](cs), FlushInterval: time.Hour})
	k := createKey(t, latchkey.Narrow[keys.Tx](db), func(k *latchkey.Key) {
		k.Quota = &latchkey.Quota{Limit: 10, Period: "monthly"}
		k.MaxConcurrent = 1
	})
	adm, err := m.Admit(t.Context(), k, 1, nil, t0)
	if latchkey.ErrorCode(err) != latchkey.EUnavailable || adm != (latchkey.Admission{}) {
		t.Fatalf("Admit with the store down = %+v, %v; want no admission and %s", adm, err, latchkey.EUnavailable)
	}
	// Nothing was taken: once the store is back, the one slot is free.
	cs.fail = nil
	if adm := mustAdmit(t, m, k, 1, t0); adm.Code != "" || adm.Quota.Remaining != 9 {
		t.Fatalf("after the store came back: %+v", adm)
	}
	// Rate windows need no store.
	cs.fail = latchkey.Errorf(latchkey.EUnavailable, "database is down")
	w := createKey(t, latchkey.Narrow[keys.Tx](db), func(k *latchkey.Key) {
		k.RateLimits = []latchkey.RateLimit{{Name: "s", Limit: 1, Window: latchkey.Duration(time.Second)}}
	})
	if adm := mustAdmit(t, m, w, 1, t0); adm.Code != "" {
		t.Fatalf("a rate window with the store down: %+v", adm)
	}
}

func TestWithoutStoreQuotaLivesInMemory(t *testing.T) {
	m := newTestMemory(t, Options{})
	k := &latchkey.Key{ID: "key_x", CreatedAt: t0, Quota: &latchkey.Quota{Limit: 2, Period: "daily"}}
	if adm := mustAdmit(t, m, k, 2, t0); adm.Code != "" {
		t.Fatalf("two units of 2: %+v", adm)
	}
	if adm := mustAdmit(t, m, k, 1, t0); adm.Code != latchkey.CodeQuotaExceeded {
		t.Fatalf("third unit of 2: %+v", adm)
	}
	if err := m.Flush(t.Context()); err != nil {
		t.Fatalf("Flush without a store: %v", err)
	}
	// A flush with nowhere to write keeps the consumption in memory.
	if adm := mustAdmit(t, m, k, 1, t0.Add(time.Second)); adm.Code != latchkey.CodeQuotaExceeded {
		t.Fatalf("after a flush without a store: %+v, want the quota still used up", adm)
	}
	if adm := mustAdmit(t, m, k, 1, t0.Add(24*time.Hour)); adm.Code != "" {
		t.Fatalf("the next day: %+v, want the daily quota refilled", adm)
	}
}

func TestSweepDropsOnlyIdleState(t *testing.T) {
	db := openStore(t)
	m := newTestMemory(t, Options{Store: latchkey.Narrow[latchkey.QuotaStore](db), FlushInterval: time.Hour})
	limited := createKey(t, latchkey.Narrow[keys.Tx](db), func(k *latchkey.Key) {
		k.RateLimits = []latchkey.RateLimit{{Name: "s", Limit: 10, Window: latchkey.Duration(time.Second)}}
		k.Quota = &latchkey.Quota{Limit: 100, Period: "monthly"}
	})
	leased := createKey(t, latchkey.Narrow[keys.Tx](db), func(k *latchkey.Key) {
		k.MaxConcurrent = 1
		k.LeaseTTL = latchkey.Duration(time.Minute)
	})
	mustAdmit(t, m, limited, 3, t0)
	lease := mustAdmit(t, m, leased, 1, t0).LeaseID
	expired := createKey(t, latchkey.Narrow[keys.Tx](db), func(k *latchkey.Key) {
		k.MaxConcurrent = 1
		k.LeaseTTL = latchkey.Duration(time.Second)
	})
	mustAdmit(t, m, expired, 1, t0)

	m.clock.Store(t0.Add(2 * time.Second).UnixNano())
	m.sweep() // every state was touched in this interval
	if n := m.states(); n != 3 {
		t.Fatalf("after a sweep of fresh state: %d states, want 3", n)
	}
	m.sweep() // limited: its usage is not flushed yet
	if n := m.states(); n != 2 {
		t.Fatalf("after a sweep with unflushed usage: %d states, want 2 (the expired lease's key dropped)", n)
	}
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	m.sweep()
	if n := m.states(); n != 1 {
		t.Fatalf("after a sweep with everything flushed: %d states, want 1 (the live lease's key)", n)
	}
	if n := m.leaseRefs(); n != 1 {
		t.Fatalf("%d leases remembered, want the 1 live one", n)
	}
	if id, ok := m.LeaseKey(lease, t0.Add(2*time.Second)); !ok || id != leased.ID {
		t.Fatalf("LeaseKey of the live lease after sweeps = %q, %v", id, ok)
	}
	// A dropped key starts again from its stored usage and a full bucket.
	adm := mustAdmit(t, m, limited, 1, t0.Add(2*time.Second))
	if adm.Quota.Remaining != 96 || adm.RateLimit.Remaining != 9 {
		t.Fatalf("after its state was dropped: %+v, want 96 units and 9 requests left", adm)
	}
	if adm := mustAdmit(t, m, leased, 1, t0.Add(2*time.Second)); adm.Code != latchkey.CodeConcurrencyExceeded {
		t.Fatalf("the live lease's slot after sweeps: %+v", adm)
	}
}

// A lease heap full of released leases is compacted rather than growing
// with every request.
func TestReleasedLeasesDoNotAccumulate(t *testing.T) {
	m := newTestMemory(t, Options{})
	k := &latchkey.Key{ID: "key_x", MaxConcurrent: 2}
	for i := range 10_000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		adm := mustAdmit(t, m, k, 1, now)
		if adm.Code != "" || !m.Release(adm.LeaseID, now) {
			t.Fatalf("request %d: %+v", i, adm)
		}
	}
	st := m.state(k.ID)
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.expiry) > 100 || len(st.leases) != 0 {
		t.Fatalf("after 10,000 released leases: heap %d, live %d", len(st.expiry), len(st.leases))
	}
}

func benchStore(b *testing.B) keys.Store { return latchkey.Narrow[keys.Tx](openStore(b)) }

func BenchmarkAdmitNoLimits(b *testing.B) {
	m := newTestMemory(b, Options{Store: latchkey.Narrow[latchkey.QuotaStore](benchStore(b))})
	k := &latchkey.Key{ID: "key_nolimits"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Admit(ctx, k, 1, nil, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func twoWindowsAndQuota(k *latchkey.Key) {
	k.RateLimits = []latchkey.RateLimit{
		{Name: "burst", Limit: 1_000_000_000, Window: latchkey.Duration(time.Second)},
		{Name: "hourly", Limit: 1_000_000_000, Window: latchkey.Duration(time.Hour)},
	}
	k.Quota = &latchkey.Quota{Limit: 1 << 53, Period: "monthly"}
}

func BenchmarkAdmitTwoWindowsAndQuota(b *testing.B) {
	db := benchStore(b)
	m := newTestMemory(b, Options{Store: latchkey.Narrow[latchkey.QuotaStore](db)})
	k := createKey(b, db, twoWindowsAndQuota)
	ctx := context.Background()
	mustAdmit(b, m, k, 1, t0) // warm-up: the usage is read once
	b.ReportAllocs()
	now := t0
	for b.Loop() {
		now = now.Add(time.Microsecond)
		adm, err := m.Admit(ctx, k, 1, nil, now)
		if err != nil || adm.Code != "" {
			b.Fatal(adm, err)
		}
	}
}

func BenchmarkAdmitTwoWindowsAndQuotaParallel(b *testing.B) {
	for _, tc := range []struct {
		name string
		keys int
	}{{"KeyPerGoroutine", 256}, {"OneKey", 1}} {
		b.Run(tc.name, func(b *testing.B) {
			db := benchStore(b)
			m := newTestMemory(b, Options{Store: latchkey.Narrow[latchkey.QuotaStore](db)})
			ks := make([]*latchkey.Key, tc.keys)
			for i := range ks {
				ks[i] = createKey(b, db, twoWindowsAndQuota)
				mustAdmit(b, m, ks[i], 1, t0)
			}
			var next atomic.Int64
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				k := ks[int(next.Add(1)-1)%len(ks)]
				now := t0
				for pb.Next() {
					now = now.Add(time.Microsecond)
					if _, err := m.Admit(ctx, k, 1, nil, now); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkAdmitAndReleaseLease(b *testing.B) {
	m := newTestMemory(b, Options{})
	k := &latchkey.Key{ID: "key_leased", MaxConcurrent: 10}
	ctx := context.Background()
	b.ReportAllocs()
	now := t0
	for b.Loop() {
		now = now.Add(time.Microsecond)
		adm, err := m.Admit(ctx, k, 1, nil, now)
		if err != nil || adm.Code != "" || !m.Release(adm.LeaseID, now) {
			b.Fatal(adm, err)
		}
	}
}

// Callers' clocks differ a little: a request stamped just before a period
// boundary that arrives after one stamped just after it counts in the new
// period rather than starting that period over.
func TestLateRequestAtPeriodBoundaryCountsInNewPeriod(t *testing.T) {
	db := openStore(t)
	m := newTestMemory(t, Options{Store: latchkey.Narrow[latchkey.QuotaStore](db), FlushInterval: time.Hour})
	k := createKey(t, latchkey.Narrow[keys.Tx](db), withQuota(2))
	may := time.Date(2031, 5, 1, 0, 0, 0, 0, time.UTC)
	if adm := mustAdmit(t, m, k, 1, apr); adm.Quota.Remaining != 1 || !adm.Quota.ResetAt.Equal(may) {
		t.Fatalf("first request of April: %+v", adm.Quota)
	}
	if adm := mustAdmit(t, m, k, 1, apr.Add(-time.Millisecond)); adm.Code != "" || adm.Quota.Remaining != 0 || !adm.Quota.ResetAt.Equal(may) {
		t.Fatalf("a request stamped 1ms before April: %+v", adm)
	}
	if adm := mustAdmit(t, m, k, 1, apr.Add(time.Millisecond)); adm.Code != latchkey.CodeQuotaExceeded {
		t.Fatalf("a third request in April: %+v", adm)
	}
}

// Usage counted in a period of another kind (the key's quota changed from
// 30d to monthly) is not mistaken for a later period of the new kind: the
// new period is a proper calendar month.
func TestChangedPeriodStartsAProperPeriod(t *testing.T) {
	db := openStore(t)
	m := newTestMemory(t, Options{Store: latchkey.Narrow[latchkey.QuotaStore](db), FlushInterval: time.Hour})
	k := createKey(t, latchkey.Narrow[keys.Tx](db), func(k *latchkey.Key) { k.Quota = &latchkey.Quota{Limit: 2, Period: "30d"} })
	second := t0.Add(30*24*time.Hour + time.Hour) // April 13, in the key's second 30-day period
	if adm := mustAdmit(t, m, k, 2, second); adm.Quota.Remaining != 0 || !adm.Quota.ResetAt.Equal(t0.Add(60*24*time.Hour)) {
		t.Fatalf("in the second 30-day period: %+v", adm.Quota)
	}
	monthly := *k
	monthly.Quota = &latchkey.Quota{Limit: 2, Period: "monthly"}
	m.Forget(k.ID)
	may := time.Date(2031, 5, 1, 0, 0, 0, 0, time.UTC)
	if adm := mustAdmit(t, m, &monthly, 1, second.Add(time.Hour)); adm.Code != "" || !adm.Quota.ResetAt.Equal(may) {
		t.Fatalf("after the period became monthly: %+v, want a period ending on May 1", adm)
	}
}
