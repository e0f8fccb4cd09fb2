package limit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/limit/limittest"
)

// Keys with limits of their own and an owner's, hammered at once: the
// owner's state and each key's are locked in one order, so nothing
// deadlocks, and both counts are exact.
func TestOwnerAndKeyLimitsExactUnderConcurrency(t *testing.T) {
	db := openStore(t)
	qs := latchkey.Narrow[latchkey.QuotaStore](limittest.OwnerRows(latchkey.Narrow[limittest.Tx](db)))
	m := newTestMemory(t, Options{Store: qs, FlushInterval: time.Hour})
	o := latchkey.Owner{Tenant: "acme", ID: "client-1", CreatedAt: t0,
		RateLimits: []latchkey.RateLimit{{Name: "m", Limit: 250, Window: latchkey.Duration(time.Minute)}},
		Quota:      &latchkey.Quota{Limit: 200, Period: "monthly"}}
	var ks []*latchkey.Key
	for range 4 {
		c := o
		ks = append(ks, createKey(t, latchkey.Narrow[keys.Tx](db), func(k *latchkey.Key) {
			k.RateLimits = []latchkey.RateLimit{{Name: "m", Limit: 60, Window: latchkey.Duration(time.Minute)}}
			k.Quota = &latchkey.Quota{Limit: 1000, Period: "monthly"}
			k.Owner, k.Bound = o.ID, &latchkey.Bound{Owner: &c}
		}))
	}
	var (
		admitted [4]atomic.Int64
		failed   atomic.Int64
		wg       sync.WaitGroup
		start    = make(chan struct{})
	)
	for w := range 16 {
		wg.Go(func() {
			<-start
			for range 50 {
				adm, err := m.Admit(context.Background(), ks[w%4], 1, nil, t0)
				switch {
				case err != nil:
					failed.Add(1)
				case adm.Code == "":
					admitted[w%4].Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	total := int64(0)
	for i := range admitted {
		n := admitted[i].Load()
		if n > 60 {
			t.Errorf("key %d admitted %d, beyond its own 60/min", i, n)
		}
		total += n
	}
	// 800 requests: each key's 60/min caps it at 60 (240 in all), the
	// owner's quota at 200.
	if failed.Load() != 0 || total != 200 {
		t.Fatalf("admitted %d (%d failed), want the owner's quota of 200", total, failed.Load())
	}
	if err := m.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	var u latchkey.QuotaUsage
	if err := qs.View(t.Context(), func(tx latchkey.QuotaStore) error {
		var err error
		u, err = tx.QuotaUsage(latchkey.OwnerQuotaID("acme", "client-1"))
		return err
	}); err != nil || u.Used != 200 {
		t.Fatalf("stored owner usage %+v, %v; want 200", u, err)
	}
	// The owner's state is kept under its OwnerQuotaID: Forget finds it.
	st := m.ownerState(&o)
	if st.id != latchkey.OwnerQuotaID("acme", "client-1") {
		t.Fatalf("owner state id %q, want %q", st.id, latchkey.OwnerQuotaID("acme", "client-1"))
	}
	m.Forget(st.id)
	st.mu.Lock()
	stale := st.quota.stale
	st.mu.Unlock()
	if !stale {
		t.Fatal("Forget(OwnerQuotaID) did not reach the owner's state")
	}
}

func BenchmarkAdmitOwnerAndNamedCost(b *testing.B) {
	db := benchStore(b)
	qs := latchkey.Narrow[latchkey.QuotaStore](limittest.OwnerRows(latchkey.Narrow[limittest.Tx](db)))
	m := newTestMemory(b, Options{Store: qs})
	o := &latchkey.Owner{Tenant: "acme", ID: "client-1", CreatedAt: t0,
		RateLimits: []latchkey.RateLimit{{Name: "m", Limit: 1_000_000_000, Window: latchkey.Duration(time.Minute)}},
		Quota:      &latchkey.Quota{Limit: 1 << 53, Period: "monthly"}}
	k := createKey(b, db, func(k *latchkey.Key) {
		twoWindowsAndQuota(k)
		// Refills a token a nanosecond: the loop never runs dry.
		k.RateLimits = append(k.RateLimits, latchkey.RateLimit{Name: "tokens", Limit: 1_000_000_000, Window: latchkey.Duration(time.Second), Apply: latchkey.ApplyOnRequest})
		k.Owner, k.Bound = o.ID, &latchkey.Bound{Owner: o}
	})
	named := []latchkey.NamedCost{{Name: "tokens", Cost: 100}}
	ctx := context.Background()
	mustAdmit(b, m, k, 1, t0)
	b.ReportAllocs()
	now := t0
	for b.Loop() {
		now = now.Add(time.Microsecond)
		adm, err := m.Admit(ctx, k, 1, named, now)
		if err != nil || adm.Code != "" {
			b.Fatal(adm, err)
		}
	}
}
