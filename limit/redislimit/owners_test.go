package redislimit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/testenv"
	"github.com/latchkeyhq/latchkey/limit/limittest"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// ownerStore is the test's SQLite store with owners' usage rows kept by
// limittest.OwnerRows.
func ownerStore(db *sqlite.DB) latchkey.Store[latchkey.QuotaStore] {
	return latchkey.Narrow[latchkey.QuotaStore](limittest.OwnerRows(latchkey.Narrow[limittest.Tx](db)))
}

// ownedKey creates a key of owner o (its own copy of the record, as
// cached keys hold).
func ownedKey(t *testing.T, db *sqlite.DB, o latchkey.Owner, mod func(*latchkey.Key)) *latchkey.Key {
	t.Helper()
	return createKey(t, db, func(k *latchkey.Key) {
		o.RateLimits = append([]latchkey.RateLimit(nil), o.RateLimits...)
		k.Owner, k.Tenant = o.ID, o.Tenant
		k.Bound = &latchkey.Bound{Owner: &o}
		if mod != nil {
			mod(k)
		}
	})
}

func TestClusterSharesOwnerLimitsExactly(t *testing.T) {
	r := testenv.StartRedis(t)
	client := newClient(t, r.Addr)
	db := openStore(t)
	store := ownerStore(db)
	var nodes []*Limiter
	for range 3 {
		nodes = append(nodes, newTestLimiterOn(t, client, store, Options{Nodes: 3, FlushInterval: time.Hour}))
	}
	o := latchkey.Owner{Tenant: "acme", ID: "client-1", CreatedAt: t0,
		RateLimits: []latchkey.RateLimit{{Name: "1m", Limit: 100, Window: latchkey.Duration(time.Minute)}},
		Quota:      &latchkey.Quota{Limit: 150, Period: "monthly"},
	}
	ks := []*latchkey.Key{ownedKey(t, db, o, nil), ownedKey(t, db, o, nil), ownedKey(t, db, o, nil)}
	var (
		admitted, failed, byOwner atomic.Int64
		wg                        sync.WaitGroup
		start                     = make(chan struct{})
	)
	// 300 requests: 12 workers, each on one node and one key, every
	// node-key pair used.
	for w := range 12 {
		lim, k := nodes[w%3], ks[(w/3)%3]
		if w >= 9 {
			k = ks[w%3]
		}
		wg.Go(func() {
			<-start
			for range 25 {
				adm, err := lim.Admit(context.Background(), k, 1, nil, t0)
				switch {
				case err != nil:
					failed.Add(1)
				case adm.Code == "":
					admitted.Add(1)
				case adm.Owner:
					byOwner.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if admitted.Load() != 100 || failed.Load() != 0 || byOwner.Load() != 200 {
		t.Fatalf("300 requests over three nodes and three keys of an owner of 100/min: admitted %d, %d denied by the owner, %d failed; want 100, 200, 0",
			admitted.Load(), byOwner.Load(), failed.Load())
	}
	// The owner's quota is shared too: 100 of 150 spent, whichever node.
	later := t0.Add(time.Hour)
	adm, err := nodes[1].Admit(context.Background(), ks[2], 51, nil, later)
	if err != nil || adm.Code != latchkey.CodeQuotaExceeded || !adm.Owner || adm.Quota.Remaining != 50 {
		t.Fatalf("51 of the owner's 50 left: %+v, %v; want QUOTA_EXCEEDED by the owner", adm, err)
	}
	if adm, err := nodes[2].Admit(context.Background(), ks[0], 50, nil, later); err != nil || adm.Code != "" || adm.Quota.Remaining != 0 {
		t.Fatalf("the owner's last 50: %+v, %v", adm, err)
	}
	// Any node flushes what every node counted, under the owner's id.
	if err := nodes[0].Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	id := latchkey.OwnerQuotaID(o.Tenant, o.ID)
	var u latchkey.QuotaUsage
	if err := store.View(context.Background(), func(tx latchkey.QuotaStore) error {
		var err error
		u, err = tx.QuotaUsage(id)
		return err
	}); err != nil || u.Used != 150 {
		t.Fatalf("stored owner usage: %+v, %v; want 150 used", u, err)
	}
}

// Remembered denials stay exact: a denial by an owner, or of a request
// with named costs, is not answered from memory.
func TestDenialShortcutSkipsOwnersAndNamedCosts(t *testing.T) {
	r := testenv.StartRedis(t)
	client := newClient(t, r.Addr)
	db := openStore(t)
	l := newTestLimiterOn(t, client, ownerStore(db), Options{FlushInterval: time.Hour})
	ctx := context.Background()
	o := latchkey.Owner{Tenant: "acme", ID: "client-1", CreatedAt: t0,
		RateLimits: []latchkey.RateLimit{{Name: "1m", Limit: 1, Window: latchkey.Duration(time.Minute)}}}
	own := func(k *latchkey.Key) {
		k.RateLimits = []latchkey.RateLimit{{Name: "1h", Limit: 100, Window: latchkey.Duration(time.Hour)}}
	}
	a, b := ownedKey(t, db, o, own), ownedKey(t, db, o, own)
	if adm, err := l.Admit(ctx, a, 1, nil, t0); err != nil || adm.Code != "" {
		t.Fatalf("a: %+v, %v", adm, err)
	}
	if adm, err := l.Admit(ctx, b, 1, nil, t0); err != nil || adm.Code != latchkey.CodeRateLimited || !adm.Owner {
		t.Fatalf("b: %+v, %v; want RATE_LIMITED by the owner", adm, err)
	}
	// The owner's window widens (its keys are read again): b must pass
	// at once, though its own windows did not change.
	wider := o
	wider.RateLimits = []latchkey.RateLimit{{Name: "1m", Limit: 5, Window: latchkey.Duration(time.Minute)}}
	b2 := *b
	b2.Bound = &latchkey.Bound{Owner: &wider}
	l.Forget(latchkey.OwnerQuotaID(o.Tenant, o.ID))
	if adm, err := l.Admit(ctx, &b2, 1, nil, t0.Add(time.Second)); err != nil || adm.Code != "" {
		t.Fatalf("b after the owner's window widened: %+v, %v; want admitted", adm, err)
	}

	tokens := createKey(t, db, func(k *latchkey.Key) {
		k.RateLimits = []latchkey.RateLimit{
			{Name: "1h", Limit: 100, Window: latchkey.Duration(time.Hour)},
			{Name: "tokens", Limit: 10, Window: latchkey.Duration(time.Minute), Apply: latchkey.ApplyOnRequest},
		}
	})
	ten := []latchkey.NamedCost{{Name: "tokens", Cost: 10}}
	if adm, err := l.Admit(ctx, tokens, 1, ten, t0); err != nil || adm.Code != "" {
		t.Fatalf("10 tokens: %+v, %v", adm, err)
	}
	if adm, err := l.Admit(ctx, tokens, 1, ten, t0); err != nil || adm.Code != latchkey.CodeRateLimited || adm.RetryAfter != time.Minute {
		t.Fatalf("10 more tokens: %+v, %v; want RATE_LIMITED, retry 1m", adm, err)
	}
	if adm, err := l.Admit(ctx, tokens, 1, nil, t0); err != nil || adm.Code != "" {
		t.Fatalf("a request without tokens after a tokens denial: %+v, %v; want admitted", adm, err)
	}
	if n := l.Stats().Remembered; n != 0 {
		t.Fatalf("%d denials answered from memory, want none", n)
	}
}

// While Redis is down, the local fallback gets the owner's limits and the
// named costs, divided by the node count as the key's own limits are.
func TestRedisDownOwnerAndNamedCostsGoLocal(t *testing.T) {
	r := testenv.StartRedis(t)
	client := newClient(t, r.Addr)
	db := openStore(t)
	l := newTestLimiterOn(t, client, ownerStore(db), Options{Nodes: 3, Backoff: time.Hour, FlushInterval: time.Hour})
	o := latchkey.Owner{Tenant: "acme", ID: "client-1", CreatedAt: t0,
		RateLimits: []latchkey.RateLimit{{Name: "1m", Limit: 30, Window: latchkey.Duration(time.Minute)}}}
	a, b := ownedKey(t, db, o, nil), ownedKey(t, db, o, nil)
	tokens := createKey(t, db, func(k *latchkey.Key) {
		k.RateLimits = []latchkey.RateLimit{{Name: "tokens", Limit: 300, Window: latchkey.Duration(time.Minute), Apply: latchkey.ApplyOnRequest}}
	})
	r.Stop()
	ctx := context.Background()
	n := 0
	for i := range 40 {
		adm, err := l.Admit(ctx, []*latchkey.Key{a, b}[i%2], 1, nil, t0)
		if err != nil {
			t.Fatalf("Redis down, local: %v", err)
		}
		if adm.Code == "" {
			n++
		} else if !adm.Owner {
			t.Fatalf("denial without Redis: %+v, want one by the owner", adm)
		}
	}
	if n != 10 {
		t.Fatalf("Redis down, one of three nodes: two keys of an owner of 30/min admitted %d, want 30/3 = 10", n)
	}
	// 200 tokens of a 300/min window: more than this node's share of
	// 100, yet no error; it takes the node's whole share.
	big := []latchkey.NamedCost{{Name: "tokens", Cost: 200}}
	if adm, err := l.Admit(ctx, tokens, 1, big, t0); err != nil || adm.Code != "" {
		t.Fatalf("200 tokens, Redis down: %+v, %v; want admitted", adm, err)
	}
	if adm, err := l.Admit(ctx, tokens, 1, []latchkey.NamedCost{{Name: "tokens", Cost: 1}}, t0); err != nil || adm.Code != latchkey.CodeRateLimited {
		t.Fatalf("1 more token, Redis down: %+v, %v; want RATE_LIMITED", adm, err)
	}
	if _, err := l.Admit(ctx, tokens, 1, []latchkey.NamedCost{{Name: "tokens", Cost: 301}}, t0); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("301 tokens of 300: %v, want %s", err, latchkey.EInvalid)
	}
	if s := l.Stats(); s.Fallbacks == 0 {
		t.Fatalf("Stats %+v: want fallbacks", s)
	}
}
