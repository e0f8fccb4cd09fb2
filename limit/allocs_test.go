//go:build !race

package limit

import (
	"context"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/allocstest"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/limit/limittest"
)

// TestAdmitAllocatesNothing guards the verify path's budget: a key without
// limits, a warm key with rate windows and a quota, a key with an owner's
// limits and a request with named costs cost no allocation.
// (The race detector changes allocation counts, hence the build tag.)
func TestAdmitAllocatesNothing(t *testing.T) {
	db := openStore(t)
	// Owners' usage rows are kept by limittest's wrapper.
	qs := latchkey.Narrow[latchkey.QuotaStore](limittest.OwnerRows(latchkey.Narrow[limittest.Tx](db)))
	m := newTestMemory(t, Options{Store: qs, FlushInterval: time.Hour})
	ctx := context.Background()

	none := &latchkey.Key{ID: "key_none"}
	allocstest.None(t, "Admit of a key without limits", func() { _, _ = m.Admit(ctx, none, 1, nil, t0) })

	k := createKey(t, latchkey.Narrow[keys.Tx](db), twoWindowsAndQuota)
	mustAdmit(t, m, k, 1, t0)
	now := t0
	allocstest.None(t, "Admit with two windows and a quota", func() {
		now = now.Add(time.Microsecond)
		if adm, err := m.Admit(ctx, k, 1, nil, now); err != nil || adm.Code != "" {
			t.Fatal(adm, err)
		}
	})

	// Spending a credit balance from its reservation allocates nothing:
	// only the rare reservation writes do. Warm it until the reservation
	// outlasts the measured requests.
	credit := createKey(t, latchkey.Narrow[keys.Tx](db), withCredit(1<<40))
	for m.quota(credit.ID).reserved-m.quota(credit.ID).usage.Used < 2000 {
		mustAdmit(t, m, credit, 1, t0)
	}
	if n := testing.AllocsPerRun(1000, func() {
		if adm, err := m.Admit(ctx, credit, 1, nil, t0); err != nil || adm.Code != "" {
			t.Fatal(adm, err)
		}
	}); n != 0 {
		t.Errorf("Admit of a credit balance allocates %.1f times", n)
	}

	// A denial allocates nothing either: a client hammering while limited
	// costs no garbage.
	tight := createKey(t, latchkey.Narrow[keys.Tx](db), func(k *latchkey.Key) {
		k.RateLimits = []latchkey.RateLimit{{Name: "s", Limit: 1, Window: latchkey.Duration(time.Hour)}}
		k.Quota = &latchkey.Quota{Limit: 10, Period: "30d"}
	})
	mustAdmit(t, m, tight, 1, t0)
	allocstest.None(t, "a denied Admit", func() {
		if adm, _ := m.Admit(ctx, tight, 1, nil, t0); adm.Code != latchkey.CodeRateLimited {
			t.Fatal(adm)
		}
	})

	// A key with an owner's limits (its own record copy, as a cached key
	// holds) and no limits of its own: the owner's state is found
	// without allocating.
	o := &latchkey.Owner{Tenant: "acme", ID: "client-1", CreatedAt: t0,
		RateLimits: []latchkey.RateLimit{{Name: "m", Limit: 1 << 30, Window: latchkey.Duration(time.Minute)}},
		Quota:      &latchkey.Quota{Limit: 1 << 40, Period: "monthly"}}
	owned := &latchkey.Key{ID: "key_owned", Tenant: "acme", Owner: "client-1", CreatedAt: t0, Bound: &latchkey.Bound{Owner: o}}
	mustAdmit(t, m, owned, 1, t0)
	allocstest.None(t, "Admit of a key with an owner", func() {
		now = now.Add(time.Microsecond)
		if adm, err := m.Admit(ctx, owned, 1, nil, now); err != nil || adm.Code != "" {
			t.Fatal(adm, err)
		}
	})
	// Named costs on an existing state, over the key's windows and its
	// owner's.
	tokens := createKey(t, latchkey.Narrow[keys.Tx](db), func(k *latchkey.Key) {
		twoWindowsAndQuota(k)
		k.RateLimits = append(k.RateLimits, latchkey.RateLimit{Name: "tokens", Limit: 1 << 30, Window: latchkey.Duration(time.Hour), Apply: latchkey.ApplyOnRequest})
		k.Owner, k.Bound = "client-1", &latchkey.Bound{Owner: o}
	})
	named := []latchkey.NamedCost{{Name: "tokens", Cost: 1200}, {Name: "images", Cost: 2}}
	mustAdmit(t, m, tokens, 1, t0)
	allocstest.None(t, "Admit with named costs", func() {
		now = now.Add(time.Microsecond)
		if adm, err := m.Admit(ctx, tokens, 1, named, now); err != nil || adm.Code != "" {
			t.Fatal(adm, err)
		}
	})
}
