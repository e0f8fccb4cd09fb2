package limittest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// owner returns an owner record of the suite's tenant.
func owner(id string, mod func(o *latchkey.Owner)) *latchkey.Owner {
	o := &latchkey.Owner{Tenant: tenant, ID: id, CreatedAt: t0}
	if mod != nil {
		mod(o)
	}
	return o
}

// ownedBy makes a key belong to o. Each key gets its own copy of the
// record, as keys read from a cache do: owners are told apart by tenant
// and id, not by pointer.
func ownedBy(o *latchkey.Owner, mods ...func(*latchkey.Key)) func(*latchkey.Key) {
	return func(k *latchkey.Key) {
		c := *o
		c.RateLimits = append([]latchkey.RateLimit(nil), o.RateLimits...)
		if o.Quota != nil {
			q := *o.Quota
			c.Quota = &q
		}
		k.Owner = o.ID
		k.Tenant = o.Tenant
		k.Bound = &latchkey.Bound{Owner: &c}
		for _, m := range mods {
			m(k)
		}
	}
}

func onRequest(name string, limit int64, window time.Duration) latchkey.RateLimit {
	r := rl(name, limit, window)
	r.Apply = latchkey.ApplyOnRequest
	return r
}

func costs(kv ...any) []latchkey.NamedCost {
	var n []latchkey.NamedCost
	for i := 0; i+1 < len(kv); i += 2 {
		n = append(n, latchkey.NamedCost{Name: kv[i].(string), Cost: int64(kv[i+1].(int))})
	}
	return n
}

func (f *fixture) admitNamed(t *testing.T, k *latchkey.Key, cost int64, named []latchkey.NamedCost, now time.Time) latchkey.Admission {
	t.Helper()
	adm, err := f.lim.Admit(t.Context(), k, cost, named, now)
	if err != nil {
		t.Fatalf("Admit(cost %d, named %v at %v): %v", cost, named, now, err)
	}
	return adm
}

// checkOwner compares Admission.Owner.
func checkOwner(t *testing.T, what string, got latchkey.Admission, want bool) {
	t.Helper()
	if got.Owner != want {
		t.Errorf("%s: Owner %v, want %v (code %q)", what, got.Owner, want, got.Code)
	}
}

func testOwnerWindowShared(t *testing.T, f *fixture) {
	o := owner("client-1", func(o *latchkey.Owner) { o.RateLimits = []latchkey.RateLimit{rl("m", 100, time.Minute)} })
	ks := []*latchkey.Key{f.key(t, ownedBy(o)), f.key(t, ownedBy(o)), f.key(t, ownedBy(o))}
	admitted := 0
	var lastDenied latchkey.Admission
	for i := range 300 {
		adm := f.admit(t, ks[i%3], 1, t0)
		if adm.Code == "" {
			admitted++
			checkOwner(t, "admitted", adm, false)
		} else {
			lastDenied = adm
		}
	}
	if admitted != 100 {
		t.Fatalf("three keys of an owner of 100/min admitted %d of 300 requests, want 100", admitted)
	}
	check(t, "denied by the owner", lastDenied, want{code: latchkey.CodeRateLimited, retry: 600 * time.Millisecond,
		rate: latchkey.LimitState{Limit: 100, Remaining: 0, ResetAt: at(time.Minute)}})
	checkOwner(t, "denied by the owner", lastDenied, true)
	// The window refills for all of them: one request every 600ms.
	check(t, "a second key after 600ms", f.admit(t, ks[1], 1, at(600*time.Millisecond)),
		want{rate: latchkey.LimitState{Limit: 100, Remaining: 0, ResetAt: at(time.Minute + 600*time.Millisecond)}})
	if adm := f.admit(t, ks[2], 1, at(600*time.Millisecond)); adm.Code != latchkey.CodeRateLimited || !adm.Owner {
		t.Fatalf("a third key right after: %+v, want RATE_LIMITED by the owner", adm)
	}
}

func testOwnerWindowConcurrent(t *testing.T, f *fixture) {
	o := owner("client-1", func(o *latchkey.Owner) { o.RateLimits = []latchkey.RateLimit{rl("m", 100, time.Minute)} })
	ks := []*latchkey.Key{f.key(t, ownedBy(o)), f.key(t, ownedBy(o)), f.key(t, ownedBy(o))}
	var (
		admitted, failed atomic.Int64
		wg               sync.WaitGroup
		start            = make(chan struct{})
	)
	for w := range 12 {
		wg.Go(func() {
			<-start
			for range 25 {
				adm, err := f.lim.Admit(t.Context(), ks[w%3], 1, nil, t0)
				switch {
				case err != nil:
					failed.Add(1)
				case adm.Code == "":
					admitted.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d concurrent Admits failed", n)
	}
	if n := admitted.Load(); n != 100 {
		t.Fatalf("300 concurrent requests over three keys of an owner of 100/min admitted %d, want 100", n)
	}
}

func testOwnerDenialConsumesNoKeyLimit(t *testing.T, f *fixture) {
	apr := date(2031, 4, 1, 0, 0, 0, 0)
	o := owner("client-1", func(o *latchkey.Owner) { o.RateLimits = []latchkey.RateLimit{rl("m", 3, time.Minute)} })
	k := f.key(t, ownedBy(o, windows(rl("h", 6, time.Hour)), periodic(100, "monthly")))
	for i := range 3 {
		if adm := f.admit(t, k, 1, t0); adm.Code != "" {
			t.Fatalf("request %d: %+v, want admitted", i+1, adm)
		}
	}
	for range 10 {
		adm := f.admit(t, k, 1, t0)
		if adm.Code != latchkey.CodeRateLimited || !adm.Owner {
			t.Fatalf("beyond the owner's window: %+v, want RATE_LIMITED by the owner", adm)
		}
		if adm.Quota.Remaining != 97 {
			t.Fatalf("the key's quota after an owner's denial: %+v, want 97 remaining", adm.Quota)
		}
	}
	// The owner's window is full again a minute later; the key's own
	// still holds the 3 the denials did not take.
	for i := range 3 {
		if adm := f.admit(t, k, 1, at(time.Minute)); adm.Code != "" {
			t.Fatalf("request %d a minute later: %+v, want admitted (denials consumed from the key?)", i+1, adm)
		}
	}
	adm := f.admit(t, k, 1, at(2*time.Minute))
	if adm.Code != latchkey.CodeRateLimited || adm.Owner {
		t.Fatalf("the key's own window spent: %+v, want RATE_LIMITED by the key", adm)
	}
	if want := (latchkey.LimitState{Limit: 100, Remaining: 94, ResetAt: apr}); adm.Quota != want {
		t.Fatalf("the key's quota after 6 admitted: %+v, want %+v", adm.Quota, want)
	}
}

func testKeyDenialConsumesNoOwnerLimit(t *testing.T, f *fixture) {
	apr := date(2031, 4, 1, 0, 0, 0, 0)
	o := owner("client-1", func(o *latchkey.Owner) {
		o.RateLimits = []latchkey.RateLimit{rl("m", 5, time.Minute)}
		o.Quota = &latchkey.Quota{Limit: 10, Period: "monthly"}
	})
	a := f.key(t, ownedBy(o, windows(rl("m", 2, time.Minute))))
	b := f.key(t, ownedBy(o))
	c := f.key(t, ownedBy(o, periodic(1, "monthly")))
	f.count(t, a, 1, t0, 2)
	for range 10 {
		adm := f.admit(t, a, 1, t0)
		if adm.Code != latchkey.CodeRateLimited || adm.Owner {
			t.Fatalf("beyond the key's window: %+v, want RATE_LIMITED by the key", adm)
		}
	}
	if n, _, _ := f.count(t, b, 1, t0, 10); n != 3 {
		t.Fatalf("another key of the owner admitted %d, want the 3 the owner's window has left", n)
	}
	// Quota: c's own quota of 1 denies its second request, which takes
	// nothing from the owner's 10.
	later := at(time.Hour)
	check(t, "c's first", f.admit(t, c, 1, later), want{
		quota: latchkey.LimitState{Limit: 1, Remaining: 0, ResetAt: apr},
		rate:  latchkey.LimitState{Limit: 5, Remaining: 4, ResetAt: later.Add(12 * time.Second)}})
	adm := f.admit(t, c, 1, later)
	check(t, "c beyond its own quota", adm, want{code: latchkey.CodeQuotaExceeded, retry: apr.Sub(later),
		quota: latchkey.LimitState{Limit: 1, Remaining: 0, ResetAt: apr},
		rate:  latchkey.LimitState{Limit: 5, Remaining: 4, ResetAt: later.Add(12 * time.Second)}})
	checkOwner(t, "c beyond its own quota", adm, false)
	// The owner's quota: 2 + 3 + 1 spent of 10; b (no quota of its own)
	// reports the owner's.
	for i := range 4 {
		adm := f.admit(t, b, 1, later.Add(time.Duration(i+1)*time.Minute))
		if adm.Code != "" || adm.Quota != (latchkey.LimitState{Limit: 10, Remaining: int64(3 - i), ResetAt: apr}) {
			t.Fatalf("b's request %d: %+v, want admitted with the owner's quota at %d", i+1, adm, 3-i)
		}
	}
	adm = f.admit(t, b, 1, later.Add(10*time.Minute))
	check(t, "beyond the owner's quota", adm, want{code: latchkey.CodeQuotaExceeded, retry: apr.Sub(later.Add(10 * time.Minute)),
		quota: latchkey.LimitState{Limit: 10, Remaining: 0, ResetAt: apr},
		rate:  latchkey.LimitState{Limit: 5, Remaining: 5, ResetAt: later.Add(10 * time.Minute)}})
	checkOwner(t, "beyond the owner's quota", adm, true)
}

func testOwnerQuotaPersists(t *testing.T, f *fixture) {
	apr := date(2031, 4, 1, 0, 0, 0, 0)
	o := owner("client-1", func(o *latchkey.Owner) { o.Quota = &latchkey.Quota{Limit: 50, Period: "monthly"} })
	a := f.key(t, ownedBy(o))
	b := f.key(t, ownedBy(o))
	q := func(rem int64) latchkey.LimitState {
		return latchkey.LimitState{Limit: 50, Remaining: rem, ResetAt: apr}
	}
	check(t, "a cost 20", f.admit(t, a, 20, t0), want{quota: q(30)})
	check(t, "b cost 20", f.admit(t, b, 20, t0), want{quota: q(10)})
	f.flush(t, f.lim)
	id := latchkey.OwnerQuotaID(o.Tenant, o.ID)
	var u latchkey.QuotaUsage
	if err := f.store.View(t.Context(), func(tx Tx) error {
		var err error
		u, err = tx.QuotaUsage(id)
		return err
	}); err != nil {
		t.Fatalf("QuotaUsage(%s): %v", id, err)
	}
	if u.Used != 40 || !u.PeriodStart.Equal(date(2031, 3, 1, 0, 0, 0, 0)) {
		t.Fatalf("stored owner usage after Flush: %+v, want 40 used in March", u)
	}

	second := f.restart(t)
	second.Forget(id)
	adm := admitOn(t, second, a, 11, at(time.Hour))
	check(t, "after a restart, beyond the owner's quota", adm, want{code: latchkey.CodeQuotaExceeded, quota: q(10), retry: apr.Sub(at(time.Hour))})
	checkOwner(t, "after a restart", adm, true)
	check(t, "after a restart, the rest", admitOn(t, second, b, 10, at(time.Hour)), want{quota: q(0)})

	// A reset of the owner's usage and a Forget give the quota back.
	f.resetUsage(t, &latchkey.Key{ID: id})
	second.Forget(id)
	check(t, "after a reset", admitOn(t, second, a, 1, at(2*time.Hour)), want{quota: q(49)})
}

func testOwnerWindowsChange(t *testing.T, f *fixture) {
	o := owner("client-1", func(o *latchkey.Owner) { o.RateLimits = []latchkey.RateLimit{rl("m", 2, time.Minute)} })
	k := f.key(t, ownedBy(o))
	if n, _, _ := f.count(t, k, 1, t0, 5); n != 2 {
		t.Fatalf("owner of 2/min admitted %d, want 2", n)
	}
	// The owner's record changes: keys read afresh carry the new window,
	// which starts full.
	wider := owner("client-1", func(o *latchkey.Owner) { o.RateLimits = []latchkey.RateLimit{rl("m", 3, time.Minute)} })
	k2 := *k
	ownedBy(wider)(&k2)
	f.lim.Forget(latchkey.OwnerQuotaID(tenant, "client-1"))
	if n, _, _ := f.count(t, &k2, 1, t0, 5); n != 3 {
		t.Fatalf("after the owner's window changed to 3/min: admitted %d, want 3", n)
	}
}

func testOwnersApart(t *testing.T, f *fixture) {
	const other = "limittest-other"
	if err := f.store.Update(t.Context(), func(tx Tx) error {
		return tx.CreateTenant(&latchkey.Tenant{ID: other, Name: "Another tenant", CreatedAt: t0})
	}); err != nil {
		t.Fatalf("CreateTenant: %v", err)
	}
	two := func(o *latchkey.Owner) { o.RateLimits = []latchkey.RateLimit{rl("m", 2, time.Minute)} }
	same := owner("client-1", two)
	sameElsewhere := owner("client-1", two)
	sameElsewhere.Tenant = other
	different := owner("client-2", two)
	for _, o := range []*latchkey.Owner{same, sameElsewhere, different} {
		k := f.key(t, ownedBy(o))
		if n, _, _ := f.count(t, k, 1, t0, 4); n != 2 {
			t.Errorf("owner %s/%s: admitted %d of 4, want its own 2", o.Tenant, o.ID, n)
		}
	}
}

func testOwnerWithoutLimits(t *testing.T, f *fixture) {
	k := f.key(t, ownedBy(owner("client-1", nil)))
	for i := range 20 {
		if adm := f.admit(t, k, 1, t0); adm != (latchkey.Admission{}) {
			t.Fatalf("request %d of a key whose owner has no limits: %+v, want the zero Admission", i, adm)
		}
	}
	// An owner's credit balance is not an owner limit (refused when the
	// owner is written): nothing to enforce.
	n := int64(1)
	c := f.key(t, ownedBy(owner("client-2", func(o *latchkey.Owner) { o.Quota = &latchkey.Quota{Remaining: &n} })))
	for range 3 {
		if adm := f.admit(t, c, 1, t0); adm != (latchkey.Admission{}) {
			t.Fatalf("a key whose owner has a credit balance: %+v, want the zero Admission", adm)
		}
	}
}

func testTokensOnRequest(t *testing.T, f *fixture) {
	k := f.key(t, windows(onRequest("tokens", 10_000, time.Hour)))
	// 0.36s per token.
	tok := func(n int64) time.Duration { return time.Duration(n) * 360 * time.Millisecond }
	for i := range 8 {
		adm := f.admitNamed(t, k, 1, costs("tokens", 1200), t0)
		check(t, "1200 tokens", adm, want{rate: latchkey.LimitState{Limit: 10_000, Remaining: 10_000 - int64(i+1)*1200, ResetAt: at(tok(int64(i+1) * 1200))}})
	}
	adm := f.admitNamed(t, k, 1, costs("tokens", 1200), t0)
	check(t, "the 9th 1200", adm, want{code: latchkey.CodeRateLimited, retry: tok(800),
		rate: latchkey.LimitState{Limit: 10_000, Remaining: 400, ResetAt: at(tok(9600))}})
	checkOwner(t, "the 9th 1200", adm, false)
	check(t, "then 400", f.admitNamed(t, k, 1, costs("tokens", 400), t0), want{rate: latchkey.LimitState{Limit: 10_000, Remaining: 0, ResetAt: at(time.Hour)}})
	// Requests that do not name the window neither spend from it nor
	// are denied by it, nor are those naming something else.
	check(t, "a request naming nothing", f.admit(t, k, 1, t0), want{rate: latchkey.LimitState{Limit: 10_000, Remaining: 0, ResetAt: at(time.Hour)}})
	check(t, "a request naming another window", f.admitNamed(t, k, 1, costs("images", 3), t0), want{rate: latchkey.LimitState{Limit: 10_000, Remaining: 0, ResetAt: at(time.Hour)}})
	// Cost 0 checks without spending.
	check(t, "cost 0", f.admitNamed(t, k, 1, costs("tokens", 0), t0), want{rate: latchkey.LimitState{Limit: 10_000, Remaining: 0, ResetAt: at(time.Hour)}})
	// The window refills continuously: 1200 tokens take 432s.
	adm = f.admitNamed(t, k, 1, costs("tokens", 1200), at(tok(1200)-1))
	check(t, "1200 a nanosecond early", adm, want{code: latchkey.CodeRateLimited, retry: 1,
		rate: latchkey.LimitState{Limit: 10_000, Remaining: 1199, ResetAt: at(time.Hour)}})
	check(t, "1200 after 432s", f.admitNamed(t, k, 1, costs("tokens", 1200), at(tok(1200))),
		want{rate: latchkey.LimitState{Limit: 10_000, Remaining: 0, ResetAt: at(time.Hour + tok(1200))}})
	check(t, "after the hour", f.admitNamed(t, k, 1, costs("tokens", 10_000), at(2*time.Hour+tok(1200))),
		want{rate: latchkey.LimitState{Limit: 10_000, Remaining: 0, ResetAt: at(3*time.Hour + tok(1200))}})
}

func testNamedWithRequestWindow(t *testing.T, f *fixture) {
	// A request window counts every request as one; a tokens window only
	// what is named; a fractional interval stays exact when weighted.
	k := f.key(t, windows(rl("req", 100, time.Minute), onRequest("units", 3, time.Second)))
	adm := f.admitNamed(t, k, 1, costs("units", 2), t0)
	check(t, "2 units", adm, want{rate: latchkey.LimitState{Limit: 3, Remaining: 1, ResetAt: at(666666667)}})
	check(t, "1 unit", f.admitNamed(t, k, 1, costs("units", 1), t0), want{rate: latchkey.LimitState{Limit: 3, Remaining: 0, ResetAt: at(time.Second)}})
	check(t, "1 unit more", f.admitNamed(t, k, 1, costs("units", 1), t0), want{code: latchkey.CodeRateLimited, retry: 333333334,
		rate: latchkey.LimitState{Limit: 3, Remaining: 0, ResetAt: at(time.Second)}})
	check(t, "no units", f.admit(t, k, 1, t0), want{rate: latchkey.LimitState{Limit: 3, Remaining: 0, ResetAt: at(time.Second)}})
	// 3 requests so far took one each of req (the denied one none).
	check(t, "at 1s", f.admitNamed(t, k, 1, costs("units", 3), at(time.Second)), want{rate: latchkey.LimitState{Limit: 3, Remaining: 0, ResetAt: at(2 * time.Second)}})
	check(t, "req only", f.admit(t, k, 1, at(2*time.Second)), want{rate: latchkey.LimitState{Limit: 3, Remaining: 3, ResetAt: at(2 * time.Second)}})
}

func testOwnerTokens(t *testing.T, f *fixture) {
	o := owner("client-1", func(o *latchkey.Owner) { o.RateLimits = []latchkey.RateLimit{onRequest("tokens", 1000, time.Hour)} })
	a := f.key(t, ownedBy(o))
	b := f.key(t, ownedBy(o, windows(onRequest("tokens", 600, time.Hour))))
	check(t, "a 500", f.admitNamed(t, a, 1, costs("tokens", 500), t0), want{rate: latchkey.LimitState{Limit: 1000, Remaining: 500, ResetAt: at(30 * time.Minute)}})
	adm := f.admitNamed(t, b, 1, costs("tokens", 600), t0)
	check(t, "b 600", adm, want{code: latchkey.CodeRateLimited, retry: 6 * time.Minute,
		rate: latchkey.LimitState{Limit: 1000, Remaining: 500, ResetAt: at(30 * time.Minute)}})
	checkOwner(t, "b 600", adm, true)
	check(t, "b 500", f.admitNamed(t, b, 1, costs("tokens", 500), t0), want{rate: latchkey.LimitState{Limit: 1000, Remaining: 0, ResetAt: at(time.Hour)}})
	check(t, "a without tokens", f.admit(t, a, 1, t0), want{rate: latchkey.LimitState{Limit: 1000, Remaining: 0, ResetAt: at(time.Hour)}})
}

func testNamedInvalid(t *testing.T, f *fixture) {
	o := owner("client-1", func(o *latchkey.Owner) {
		o.RateLimits = []latchkey.RateLimit{onRequest("owner-tokens", 500, time.Hour)}
	})
	k := f.key(t, ownedBy(o, windows(onRequest("tokens", 1000, time.Hour)), periodic(10, "monthly")))
	plain := f.key(t, nil)
	many := make([]latchkey.NamedCost, latchkey.MaxNamedCosts+1)
	for i := range many {
		many[i] = latchkey.NamedCost{Name: string(rune('a' + i)), Cost: 1}
	}
	for _, tc := range []struct {
		what  string
		k     *latchkey.Key
		named []latchkey.NamedCost
	}{
		{"a negative named cost", k, costs("tokens", -1)},
		{"a negative cost of an unknown name", plain, costs("other", -1)},
		{"too many named costs", plain, many},
		{"a name twice", k, costs("tokens", 1, "tokens", 2)},
		{"a cost above the key's window", k, costs("tokens", 1001)},
		{"a cost above the owner's window", k, costs("owner-tokens", 501)},
	} {
		_, err := f.lim.Admit(t.Context(), tc.k, 1, tc.named, t0)
		if code := latchkey.ErrorCode(err); code != latchkey.EInvalid {
			t.Errorf("%s: code %q (%v), want %q", tc.what, code, err, latchkey.EInvalid)
		}
	}
	if n := len(many[:latchkey.MaxNamedCosts]); n != latchkey.MaxNamedCosts {
		t.Fatal(n)
	}
	if adm := f.admitNamed(t, plain, 1, many[:latchkey.MaxNamedCosts], t0); adm.Code != "" {
		t.Fatalf("MaxNamedCosts unknown names: %+v, want admitted", adm)
	}
	// Nothing was consumed by the refused requests; the largest costs
	// that fit are admitted.
	check(t, "after the refusals", f.admitNamed(t, k, 1, costs("tokens", 1000, "owner-tokens", 500), t0),
		want{quota: latchkey.LimitState{Limit: 10, Remaining: 9, ResetAt: date(2031, 4, 1, 0, 0, 0, 0)},
			rate: latchkey.LimitState{Limit: 1000, Remaining: 0, ResetAt: at(time.Hour)}})
	// An unknown name is ignored, whatever its cost.
	check(t, "an unknown name", f.admitNamed(t, plain, 1, costs("unknown", 1<<40), t0), want{})
}

func testOwnerWithCreditKey(t *testing.T, f *fixture) {
	o := owner("client-1", func(o *latchkey.Owner) { o.RateLimits = []latchkey.RateLimit{rl("m", 100, time.Minute)} })
	k := f.key(t, ownedBy(o, credit(30)))
	if n := len(hammer(t, f.lim, k, t0, 8, 10)); n != 30 {
		t.Fatalf("80 concurrent requests of a key with 30 credits (owner 100/min): admitted %d, want 30", n)
	}
	other := f.key(t, ownedBy(o))
	if n := len(hammer(t, f.lim, other, t0, 8, 10)); n != 70 {
		t.Fatalf("another key of the owner: admitted %d, want the 70 the owner's window has left", n)
	}
}
