// Package limittest is the conformance suite for latchkey.Limiter. Every
// limiter (in memory, Redis) runs Run from its own tests, so a key's limits
// mean the same whichever limiter enforces them. The suite uses nothing but
// the latchkey.Limiter contract and the store it persists quota usage in;
// time is always the now it passes, moved by hand.
//
// Besides the comments on latchkey.Limiter, the suite pins down:
//
//   - Rate windows are GCRA: a window of L per W admits a burst of exactly L
//     at one instant, then one request every W/L, exactly, also when W/L is
//     not a whole number of nanoseconds; over any stretch t at most
//     L + t·L/W. A window counts requests: each admitted request takes one
//     from every window whatever its cost, cost 0 included.
//   - A request is admitted only if every window, the quota and the
//     concurrency limit allow it; a denied request consumes nothing from
//     any of them. The denial reported is the first of RATE_LIMITED,
//     QUOTA_EXCEEDED, CONCURRENCY_EXCEEDED.
//   - Admission.RateLimit is the tightest window (fewest remaining, then
//     soonest reset) after the decision; Remaining is what the window would
//     still admit at now, ResetAt when it is full again (its TAT). RetryAfter
//     of RATE_LIMITED is exactly how long until the same request would pass
//     every window, rounded up to the nanosecond.
//   - Quotas: Limit is the periodic limit or the balance set; Remaining is
//     what is left after the decision; ResetAt the end of the period (zero
//     for a credit balance). QUOTA_EXCEEDED when used + cost > limit; cost
//     0 consumes nothing and fails only if usage is already above the limit
//     (a limit lowered below it). RetryAfter of
//     QUOTA_EXCEEDED is the time to the period's end, or 0 when waiting
//     cannot help (a credit balance, a cost above the limit).
//   - Periods start at the key's CreatedAt + n·period, or at UTC midnight
//     (daily) or the first of the UTC month (monthly), exactly.
//   - Counting is exact under concurrency.
//   - Flush persists consumption in the store: a new limiter on the same
//     store continues from it.
//   - A credit balance is never overspent by a crash: a new limiter on the
//     same store, without any Flush of the old one (a SIGKILL), admits at
//     most the balance minus what the old one admitted (a crash may forfeit
//     credits, never grant one twice); a single-use key used once is used
//     up. After a Flush it admits exactly the rest. After ResetQuotaUsage and Forget the quota is
//     full again; a flush of consumption counted before a reset never
//     writes it back. Forget without a reset keeps consumption, flushed or
//     not, and applies changed rate windows (a changed window starts full).
//   - Concurrency: an admitted request of a key with MaxConcurrent > 0 gets
//     a lease id "lease_…" (at least 22 random characters, base62 or hex)
//     that holds a slot until Release or until LeaseTTL (default
//     latchkey.DefaultLeaseTTL) has passed: a lease taken at t is live while
//     now < t + TTL. RetryAfter of CONCURRENCY_EXCEEDED is the time until the
//     first live lease expires. Release and LeaseKey answer false for an
//     unknown, released or expired lease. Forget keeps leases.
//   - A key with no limits gets the zero Admission.
//   - A negative cost is EInvalid.
//   - Windows whose Apply is latchkey.ApplyOnRequest count only requests
//     that name them, by the named cost (weighted GCRA, exact: 10,000
//     tokens an hour admit 8 × 1,200 and then 400 at one instant, and
//     refill one token every 0.36 s); other requests neither spend from
//     them nor are denied by them; cost 0 spends nothing; unknown names are
//     ignored. A named cost above its window's limit, a negative one, a
//     name given twice or more than latchkey.MaxNamedCosts of them is
//     EInvalid, and consumes nothing.
//   - Owner limits (k.Bound.Owner: rate windows and a periodic quota) are
//     shared by every key of the owner, told apart by tenant and owner id
//     (not by pointer), checked in the same decision as the key's own: a
//     request denied by either consumes from neither, and Admission.Owner
//     says the owner denied it. RateLimit is the tightest window of both;
//     Quota is the key's, or the owner's when the key has none. The owner's
//     quota is persisted under latchkey.OwnerQuotaID through the same store
//     (Flush, then a new limiter continues from it; ResetQuotaUsage and
//     Forget of that id restore it). The suite's stores keep owners' rows
//     with OwnerRows.
package limittest

import (
	"crypto/sha256"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Tx is what the suite needs of the store's transactions: the quota rows
// the limiter keeps, and a tenant and keys to limit (the rows refer to
// them).
type Tx interface {
	latchkey.QuotaStore
	CreateTenant(t *latchkey.Tenant) error
	CreateKey(k *latchkey.Key) error
}

// Run runs the suite. newLimiter returns a new limiter and the store it
// keeps quota usage in, and arranges (t.Cleanup) to close both when the test
// ends. The first call for a test must return a new, empty store; later
// calls with the same t, which the suite makes to model a restart, must
// return a new limiter over that same store.
func Run(t *testing.T, newLimiter func(t *testing.T) (latchkey.Limiter, latchkey.Store[Tx])) {
	tests := []struct {
		name string
		fn   func(t *testing.T, f *fixture)
	}{
		{"NoLimitsGiveZeroAdmission", testNoLimits},
		{"NegativeCostIsInvalid", testNegativeCost},
		{"WindowAdmitsExactlyLimitAtOneInstant", testWindowBurst},
		{"WindowRefillsContinuously", testWindowRefill},
		{"WindowFractionalIntervalIsExact", testWindowFractional},
		{"WindowSustainedRateIsLimitPerWindow", testWindowSustained},
		{"DeniedRequestsConsumeNothing", testDeniedConsumeNothing},
		{"DeniedByOneWindowConsumesNoneOfTheOthers", testTwoWindows},
		{"TightestWindowIsReported", testTightest},
		{"WindowsCountRequestsNotCost", testWindowsCountRequests},
		{"WindowExactUnderConcurrency", testWindowConcurrent},
		{"QuotaCountsCost", testQuotaCost},
		{"QuotaExactUnderConcurrency", testQuotaConcurrent},
		{"QuotaPeriodAnchoredAtCreation", testQuotaDurationPeriod},
		{"QuotaDailyRollsOverAtUTCMidnight", testQuotaDaily},
		{"QuotaMonthlyFollowsTheCalendar", testQuotaMonthly},
		{"CreditBalanceRunsOutAndNeverRefills", testCredit},
		{"QuotaPersistsAcrossRestart", testQuotaPersists},
		{"CreditExactUnderConcurrency", testCreditConcurrent},
		{"CreditSpentSurvivesCrashWithoutFlush", testCreditCrash},
		{"SingleUseCreditSurvivesCrash", testSingleUseCrash},
		{"FlushReturnsUnspentCredit", testCreditFlushExact},
		{"RemovedBalanceLimitsNothing", testCreditRemoved},
		{"ResetAndForgetRestoreFullQuota", testResetForget},
		{"StaleFlushAfterResetDoesNotResurrectUsage", testStaleFlush},
		{"ForgetAppliesChangedLimits", testForgetChangedLimits},
		{"ForgetWithoutResetKeepsConsumption", testForgetKeepsConsumption},
		{"FirstDenialInOrderRateQuotaConcurrency", testDenialOrder},
		{"DeniedByOneLimitConsumesNoOther", testCommitNone},
		{"LeasesBoundConcurrency", testLeases},
		{"LeasesExpireAfterTTL", testLeaseTTL},
		{"ReleaseOfUnknownLeaseIsFalse", testReleaseUnknown},
		{"LeaseIDsAreUniqueAndUnguessable", testLeaseIDs},
		{"LeasesExactUnderConcurrency", testLeasesConcurrent},
		{"ForgetKeepsLeases", testForgetKeepsLeases},
		{"OwnerWindowSharedByItsKeys", testOwnerWindowShared},
		{"OwnerWindowExactUnderConcurrency", testOwnerWindowConcurrent},
		{"OwnerDenialConsumesNothingOfTheKey", testOwnerDenialConsumesNoKeyLimit},
		{"KeyDenialConsumesNothingOfTheOwner", testKeyDenialConsumesNoOwnerLimit},
		{"OwnerQuotaSharedAndPersisted", testOwnerQuotaPersists},
		{"OwnerWindowChangeStartsFull", testOwnerWindowsChange},
		{"OwnersOfOtherIDsOrTenantsDoNotShare", testOwnersApart},
		{"OwnerWithoutLimitsLimitsNothing", testOwnerWithoutLimits},
		{"OnRequestWindowCountsNamedCost", testTokensOnRequest},
		{"OnRequestWindowBesideRequestWindow", testNamedWithRequestWindow},
		{"OwnerOnRequestWindowShared", testOwnerTokens},
		{"InvalidNamedCostsAreRefused", testNamedInvalid},
		{"OwnerWithCreditKeyExactUnderConcurrency", testOwnerWithCreditKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim, s := newLimiter(t)
			f := &fixture{lim: lim, store: s, newLimiter: newLimiter}
			err := s.Update(t.Context(), func(tx Tx) error {
				return tx.CreateTenant(&latchkey.Tenant{ID: tenant, Name: "Limit test", CreatedAt: t0})
			})
			if err != nil {
				t.Fatalf("CreateTenant: %v", err)
			}
			tt.fn(t, f)
		})
	}
}

const tenant = "limittest"

// t0 is the suite's reference instant, at microsecond precision (what a
// store keeps) and in UTC.
var t0 = time.Date(2031, 3, 14, 15, 9, 26, 535897000, time.UTC)

// at returns t0 + d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// date returns an instant in UTC.
func date(y int, m time.Month, d, h, min, s, ns int) time.Time {
	return time.Date(y, m, d, h, min, s, ns, time.UTC)
}

type fixture struct {
	lim        latchkey.Limiter
	store      latchkey.Store[Tx]
	newLimiter func(t *testing.T) (latchkey.Limiter, latchkey.Store[Tx])
}

// key creates a key in the store (quota usage rows refer to it), created at
// t0 unless mod says otherwise.
func (f *fixture) key(t *testing.T, mod func(k *latchkey.Key)) *latchkey.Key {
	t.Helper()
	k := &latchkey.Key{
		ID:        latchkey.NewID("key", t0),
		Tenant:    tenant,
		Name:      "limited",
		Prefix:    "lk",
		State:     latchkey.StateActive,
		CreatedAt: t0,
	}
	k.Hash = sha256.Sum256([]byte(k.ID))
	k.Start = "lk_" + k.ID[4:8]
	if mod != nil {
		mod(k)
	}
	k.UpdatedAt = k.CreatedAt
	if err := f.store.Update(t.Context(), func(tx Tx) error { return tx.CreateKey(k) }); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return k
}

// restart returns a new limiter over the same store.
func (f *fixture) restart(t *testing.T) latchkey.Limiter {
	t.Helper()
	lim, s := f.newLimiter(t)
	if s != f.store {
		t.Fatal("newLimiter returned a different store for the same test")
	}
	return lim
}

func (f *fixture) flush(t *testing.T, lim latchkey.Limiter) {
	t.Helper()
	if err := lim.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func (f *fixture) resetUsage(t *testing.T, k *latchkey.Key) {
	t.Helper()
	if err := f.store.Update(t.Context(), func(tx Tx) error { return tx.ResetQuotaUsage(k.ID) }); err != nil {
		t.Fatalf("ResetQuotaUsage: %v", err)
	}
}

func (f *fixture) admit(t *testing.T, k *latchkey.Key, cost int64, now time.Time) latchkey.Admission {
	t.Helper()
	return admitOn(t, f.lim, k, cost, now)
}

func admitOn(t *testing.T, lim latchkey.Limiter, k *latchkey.Key, cost int64, now time.Time) latchkey.Admission {
	t.Helper()
	adm, err := lim.Admit(t.Context(), k, cost, nil, now)
	if err != nil {
		t.Fatalf("Admit(cost %d at %v): %v", cost, now, err)
	}
	return adm
}

// count makes n requests at one instant and returns how many were admitted
// and the last admission and denial.
func (f *fixture) count(t *testing.T, k *latchkey.Key, cost int64, now time.Time, n int) (admitted int, lastOK, lastDenied latchkey.Admission) {
	t.Helper()
	for range n {
		adm := f.admit(t, k, cost, now)
		if adm.Code == "" {
			admitted++
			lastOK = adm
		} else {
			lastDenied = adm
		}
	}
	return admitted, lastOK, lastDenied
}

// want is an expected admission; lease says whether a lease id is expected.
type want struct {
	code  string
	rate  latchkey.LimitState
	quota latchkey.LimitState
	retry time.Duration
	lease bool
}

func check(t *testing.T, what string, got latchkey.Admission, w want) {
	t.Helper()
	var diffs []string
	if got.Code != w.code {
		diffs = append(diffs, fmt.Sprintf("Code %q, want %q", got.Code, w.code))
	}
	diffs = append(diffs, limitDiff("RateLimit", got.RateLimit, w.rate)...)
	diffs = append(diffs, limitDiff("Quota", got.Quota, w.quota)...)
	if got.RetryAfter != w.retry {
		diffs = append(diffs, fmt.Sprintf("RetryAfter %v, want %v", got.RetryAfter, w.retry))
	}
	if (got.LeaseID != "") != w.lease {
		diffs = append(diffs, fmt.Sprintf("LeaseID %q, want a lease: %v", got.LeaseID, w.lease))
	}
	if len(diffs) > 0 {
		t.Errorf("%s:\n\t%s", what, strings.Join(diffs, "\n\t"))
	}
}

func limitDiff(name string, got, want latchkey.LimitState) []string {
	var d []string
	if got.Limit != want.Limit {
		d = append(d, fmt.Sprintf("%s.Limit %d, want %d", name, got.Limit, want.Limit))
	}
	if got.Remaining != want.Remaining {
		d = append(d, fmt.Sprintf("%s.Remaining %d, want %d", name, got.Remaining, want.Remaining))
	}
	if !got.ResetAt.Equal(want.ResetAt) {
		d = append(d, fmt.Sprintf("%s.ResetAt %v, want %v", name, got.ResetAt, want.ResetAt))
	}
	return d
}

func rl(name string, limit int64, window time.Duration) latchkey.RateLimit {
	return latchkey.RateLimit{Name: name, Limit: limit, Window: latchkey.Duration(window)}
}

func windows(rls ...latchkey.RateLimit) func(*latchkey.Key) {
	return func(k *latchkey.Key) { k.RateLimits = rls }
}

func periodic(limit int64, period string) func(*latchkey.Key) {
	return func(k *latchkey.Key) { k.Quota = &latchkey.Quota{Limit: limit, Period: period} }
}

// ceilMulDiv returns ⌈a·b/c⌉ without overflow.
func ceilMulDiv(a, b, c int64) int64 {
	p := new(big.Int).Mul(big.NewInt(a), big.NewInt(b))
	q, r := new(big.Int).QuoRem(p, big.NewInt(c), new(big.Int))
	if r.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	return q.Int64()
}

// hammer makes workers×each requests at one instant from workers
// goroutines at once, and returns the admitted ones. (Bounded workers,
// because the race detector allows only 8128 live goroutines.)
func hammer(t *testing.T, lim latchkey.Limiter, k *latchkey.Key, now time.Time, workers, each int) []latchkey.Admission {
	t.Helper()
	var (
		mu       sync.Mutex
		admitted []latchkey.Admission
		failed   atomic.Int64
		wg       sync.WaitGroup
		start    = make(chan struct{})
	)
	for range workers {
		wg.Go(func() {
			<-start
			for range each {
				adm, err := lim.Admit(t.Context(), k, 1, nil, now)
				switch {
				case err != nil:
					failed.Add(1)
				case adm.Code == "":
					mu.Lock()
					admitted = append(admitted, adm)
					mu.Unlock()
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d concurrent Admits failed", n)
	}
	return admitted
}

func testNoLimits(t *testing.T, f *fixture) {
	k := f.key(t, nil)
	for _, cost := range []int64{0, 1, 1 << 40} {
		for i := range 50 {
			adm, err := f.lim.Admit(t.Context(), k, cost, nil, at(time.Duration(i)))
			if err != nil || adm != (latchkey.Admission{}) {
				t.Fatalf("Admit of a key without limits (cost %d) = %+v, %v; want the zero Admission", cost, adm, err)
			}
		}
	}
}

func testNegativeCost(t *testing.T, f *fixture) {
	for _, k := range []*latchkey.Key{
		f.key(t, nil),
		f.key(t, periodic(10, "daily")),
		f.key(t, windows(rl("s", 5, time.Second))),
	} {
		_, err := f.lim.Admit(t.Context(), k, -1, nil, t0)
		if code := latchkey.ErrorCode(err); code != latchkey.EInvalid {
			t.Errorf("Admit with cost -1: code %q (%v), want %q", code, err, latchkey.EInvalid)
		}
	}
	k := f.key(t, periodic(10, "daily"))
	check(t, "after a rejected negative cost", f.admit(t, k, 1, t0),
		want{quota: latchkey.LimitState{Limit: 10, Remaining: 9, ResetAt: date(2031, 3, 15, 0, 0, 0, 0)}})
}

func testWindowBurst(t *testing.T, f *fixture) {
	for _, tc := range []struct {
		limit  int64
		window time.Duration
	}{
		{1, time.Second},
		{3, time.Second}, // 333,333,333⅓ ns apart
		{7, time.Second},
		{10, time.Second},
		{100, time.Minute},
		{700, time.Second},
		{1000, time.Hour},
		{13, 366 * 24 * time.Hour},
	} {
		t.Run(fmt.Sprintf("%d per %v", tc.limit, tc.window), func(t *testing.T) {
			k := f.key(t, windows(rl("w", tc.limit, tc.window)))
			w := int64(tc.window)
			for i := int64(1); i <= tc.limit; i++ {
				adm := f.admit(t, k, 1, t0)
				if adm.Code != "" || adm.RateLimit.Remaining != tc.limit-i || !adm.RateLimit.ResetAt.Equal(at(time.Duration(ceilMulDiv(i, w, tc.limit)))) {
					check(t, fmt.Sprintf("request %d", i), adm, want{rate: latchkey.LimitState{
						Limit: tc.limit, Remaining: tc.limit - i, ResetAt: at(time.Duration(ceilMulDiv(i, w, tc.limit))),
					}})
					return
				}
			}
			for i := range 2*tc.limit + 5 {
				adm := f.admit(t, k, 1, t0)
				if adm.Code != latchkey.CodeRateLimited {
					t.Fatalf("request %d beyond the limit: code %q, want %s", i+1, adm.Code, latchkey.CodeRateLimited)
				}
				if i == 0 {
					check(t, "first denial", adm, want{
						code:  latchkey.CodeRateLimited,
						rate:  latchkey.LimitState{Limit: tc.limit, Remaining: 0, ResetAt: at(tc.window)},
						retry: time.Duration(ceilMulDiv(1, w, tc.limit)),
					})
				}
			}
		})
	}
}

func testWindowRefill(t *testing.T, f *fixture) {
	const s = time.Second
	k := f.key(t, windows(rl("w", 10, 10*s))) // one request per second
	if n, _, _ := f.count(t, k, 1, t0, 10); n != 10 {
		t.Fatalf("a full bucket admitted %d, want 10", n)
	}
	check(t, "1ns before the next emission", f.admit(t, k, 1, at(s-1)), want{
		code: latchkey.CodeRateLimited, rate: latchkey.LimitState{Limit: 10, ResetAt: at(10 * s)}, retry: 1,
	})
	check(t, "at the next emission", f.admit(t, k, 1, at(s)), want{
		rate: latchkey.LimitState{Limit: 10, ResetAt: at(11 * s)},
	})
	check(t, "right after it", f.admit(t, k, 1, at(s)), want{
		code: latchkey.CodeRateLimited, rate: latchkey.LimitState{Limit: 10, ResetAt: at(11 * s)}, retry: s,
	})
	n, last, denied := f.count(t, k, 1, at(6*s), 20)
	if n != 5 {
		t.Fatalf("5s later: admitted %d, want 5", n)
	}
	check(t, "last of five", last, want{rate: latchkey.LimitState{Limit: 10, ResetAt: at(16 * s)}})
	check(t, "sixth", denied, want{code: latchkey.CodeRateLimited, rate: latchkey.LimitState{Limit: 10, ResetAt: at(16 * s)}, retry: s})
	if n, _, _ := f.count(t, k, 1, at(16*s), 20); n != 10 {
		t.Fatalf("when full again: admitted %d, want 10", n)
	}
	// An idle bucket fills up, and no further.
	check(t, "after an hour idle", f.admit(t, k, 1, at(time.Hour)), want{
		rate: latchkey.LimitState{Limit: 10, Remaining: 9, ResetAt: at(time.Hour + s)},
	})
	if n, _, _ := f.count(t, k, 1, at(time.Hour), 20); n != 9 {
		t.Fatalf("after an hour idle: admitted %d in all, want 10", n+1)
	}
}

func testWindowFractional(t *testing.T, f *fixture) {
	// 3 per second: one every 333,333,333⅓ ns.
	k := f.key(t, windows(rl("w", 3, time.Second)))
	check(t, "first", f.admit(t, k, 1, t0), want{rate: latchkey.LimitState{Limit: 3, Remaining: 2, ResetAt: at(333333334)}})
	check(t, "second", f.admit(t, k, 1, t0), want{rate: latchkey.LimitState{Limit: 3, Remaining: 1, ResetAt: at(666666667)}})
	check(t, "third", f.admit(t, k, 1, t0), want{rate: latchkey.LimitState{Limit: 3, Remaining: 0, ResetAt: at(time.Second)}})
	check(t, "fourth", f.admit(t, k, 1, t0), want{
		code: latchkey.CodeRateLimited, rate: latchkey.LimitState{Limit: 3, ResetAt: at(time.Second)}, retry: 333333334,
	})
	check(t, "⅓ ns before the emission", f.admit(t, k, 1, at(333333333)), want{
		code: latchkey.CodeRateLimited, rate: latchkey.LimitState{Limit: 3, ResetAt: at(time.Second)}, retry: 1,
	})
	check(t, "at the emission, rounded up", f.admit(t, k, 1, at(333333334)), want{
		rate: latchkey.LimitState{Limit: 3, ResetAt: at(1333333334)},
	})
	// The TAT is now t0 + 1⅓ s: the bucket is full from then on, and not a
	// third of a nanosecond earlier (rounding the interval down to whole
	// nanoseconds would make it full here and admit 3).
	if n, _, _ := f.count(t, k, 1, at(1333333333), 10); n != 2 {
		t.Fatalf("⅓ns before the bucket is full: admitted %d, want 2", n)
	}
	if n, _, _ := f.count(t, k, 1, at(3*time.Second), 10); n != 3 {
		t.Fatalf("once it is full again: admitted %d, want 3", n)
	}
}

func testWindowSustained(t *testing.T, f *fixture) {
	for _, tc := range []struct {
		limit        int64
		window, step time.Duration
		span         time.Duration
	}{
		{10, 10 * time.Second, 100 * time.Millisecond, time.Minute},
		{3, time.Second, 10 * time.Millisecond, 5 * time.Second},
		{60, time.Minute, 250 * time.Millisecond, 3 * time.Minute},
	} {
		t.Run(fmt.Sprintf("%d per %v", tc.limit, tc.window), func(t *testing.T) {
			k := f.key(t, windows(rl("w", tc.limit, tc.window)))
			// Three times the demand the window allows, at every step.
			var times []time.Duration
			for d := time.Duration(0); d <= tc.span; d += tc.step {
				n, _, _ := f.count(t, k, 1, at(d), 3*int(tc.limit*int64(tc.step)/int64(tc.window)+1))
				for range n {
					times = append(times, d)
				}
			}
			bound := func(d time.Duration) int { return int(tc.limit + int64(d)*tc.limit/int64(tc.window)) }
			if len(times) != bound(tc.span) {
				t.Errorf("over %v: admitted %d, want limit + span·limit/window = %d", tc.span, len(times), bound(tc.span))
			}
			for i := range times {
				for j := i; j < len(times); j++ {
					if j-i+1 > bound(times[j]-times[i]) {
						t.Fatalf("%d admitted between %v and %v, more than %d", j-i+1, times[i], times[j], bound(times[j]-times[i]))
					}
				}
			}
		})
	}
}

func testDeniedConsumeNothing(t *testing.T, f *fixture) {
	const s = time.Second
	k := f.key(t, windows(rl("w", 10, 10*s)))
	if n, _, _ := f.count(t, k, 1, t0, 10); n != 10 {
		t.Fatalf("a full bucket admitted %d, want 10", n)
	}
	// A client that keeps hammering while limited…
	for _, d := range []time.Duration{0, s / 2, s - 1} {
		if n, _, _ := f.count(t, k, 1, at(d), 1000); n != 0 {
			t.Fatalf("at t0+%v: admitted %d, want 0", d, n)
		}
	}
	// …gets its next request exactly one emission interval later.
	for _, d := range []time.Duration{s, 2 * s, 3 * s} {
		n, _, denied := f.count(t, k, 1, at(d), 1000)
		if n != 1 {
			t.Fatalf("at t0+%v: admitted %d, want exactly 1", d, n)
		}
		if denied.RetryAfter != s {
			t.Errorf("at t0+%v: RetryAfter %v, want 1s", d, denied.RetryAfter)
		}
	}
}

func testTwoWindows(t *testing.T, f *fixture) {
	const s = time.Second
	k := f.key(t, windows(rl("hourly", 4, time.Hour), rl("burst", 2, s)))
	check(t, "first", f.admit(t, k, 1, t0), want{rate: latchkey.LimitState{Limit: 2, Remaining: 1, ResetAt: at(s / 2)}})
	check(t, "second", f.admit(t, k, 1, t0), want{rate: latchkey.LimitState{Limit: 2, Remaining: 0, ResetAt: at(s)}})
	// The burst window denies these; the hourly one must not count them.
	for i := range 50 {
		adm := f.admit(t, k, 1, t0)
		if i == 0 || adm.Code != latchkey.CodeRateLimited {
			check(t, "denied by the burst window", adm, want{
				code: latchkey.CodeRateLimited, rate: latchkey.LimitState{Limit: 2, Remaining: 0, ResetAt: at(s)}, retry: s / 2,
			})
		}
	}
	// One second on, only the hourly window could stand in the way: it has
	// 2 of its 4 left.
	check(t, "third", f.admit(t, k, 1, at(s)), want{rate: latchkey.LimitState{Limit: 2, Remaining: 1, ResetAt: at(3 * s / 2)}})
	check(t, "fourth", f.admit(t, k, 1, at(s)), want{rate: latchkey.LimitState{Limit: 2, Remaining: 0, ResetAt: at(2 * s)}})
	// Now the hourly window is empty (one request every 15 minutes), and it
	// is the tightest.
	check(t, "fifth, denied by the hourly window", f.admit(t, k, 1, at(2*s)), want{
		code:  latchkey.CodeRateLimited,
		rate:  latchkey.LimitState{Limit: 4, Remaining: 0, ResetAt: at(time.Hour)},
		retry: 15*time.Minute - 2*s,
	})
	check(t, "1ns before the hourly emission", f.admit(t, k, 1, at(15*time.Minute-1)), want{
		code:  latchkey.CodeRateLimited,
		rate:  latchkey.LimitState{Limit: 4, Remaining: 0, ResetAt: at(time.Hour)},
		retry: 1,
	})
	check(t, "at the hourly emission", f.admit(t, k, 1, at(15*time.Minute)), want{
		rate: latchkey.LimitState{Limit: 4, Remaining: 0, ResetAt: at(time.Hour + 15*time.Minute)},
	})
}

func testTightest(t *testing.T, f *fixture) {
	const s = time.Second
	for _, tc := range []struct {
		name string
		rls  []latchkey.RateLimit
		want latchkey.LimitState
	}{
		{"FewestRemaining", []latchkey.RateLimit{rl("big", 100, 100*s), rl("small", 10, 10*s)},
			latchkey.LimitState{Limit: 10, Remaining: 9, ResetAt: at(s)}},
		{"FewestRemainingBeatsSoonerReset", []latchkey.RateLimit{rl("fast", 10, s), rl("slow", 3, 30*s)},
			latchkey.LimitState{Limit: 3, Remaining: 2, ResetAt: at(10 * s)}},
		{"TieGoesToSoonestReset", []latchkey.RateLimit{rl("slow", 5, 50*s), rl("fast", 5, 5*s)},
			latchkey.LimitState{Limit: 5, Remaining: 4, ResetAt: at(s)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := f.key(t, windows(tc.rls...))
			check(t, "first request", f.admit(t, k, 1, t0), want{rate: tc.want})
		})
	}
}

func testWindowsCountRequests(t *testing.T, f *fixture) {
	k := f.key(t, func(k *latchkey.Key) {
		k.RateLimits = []latchkey.RateLimit{rl("w", 2, time.Second)}
		k.Quota = &latchkey.Quota{Limit: 100, Period: "monthly"}
	})
	apr := date(2031, 4, 1, 0, 0, 0, 0)
	check(t, "cost 50", f.admit(t, k, 50, t0), want{
		rate:  latchkey.LimitState{Limit: 2, Remaining: 1, ResetAt: at(time.Second / 2)},
		quota: latchkey.LimitState{Limit: 100, Remaining: 50, ResetAt: apr},
	})
	check(t, "cost 0", f.admit(t, k, 0, t0), want{
		rate:  latchkey.LimitState{Limit: 2, Remaining: 0, ResetAt: at(time.Second)},
		quota: latchkey.LimitState{Limit: 100, Remaining: 50, ResetAt: apr},
	})
	check(t, "cost 0 with the window empty", f.admit(t, k, 0, t0), want{
		code:  latchkey.CodeRateLimited,
		rate:  latchkey.LimitState{Limit: 2, Remaining: 0, ResetAt: at(time.Second)},
		quota: latchkey.LimitState{Limit: 100, Remaining: 50, ResetAt: apr},
		retry: time.Second / 2,
	})
}

func testWindowConcurrent(t *testing.T, f *fixture) {
	k := f.key(t, windows(rl("hourly", 500, time.Hour), rl("daily", 5000, 24*time.Hour)))
	if n := len(hammer(t, f.lim, k, t0, 50, 100)); n != 500 {
		t.Fatalf("5000 concurrent requests against 500 per hour: admitted %d", n)
	}
	check(t, "afterwards", f.admit(t, k, 1, t0), want{
		code:  latchkey.CodeRateLimited,
		rate:  latchkey.LimitState{Limit: 500, Remaining: 0, ResetAt: at(time.Hour)},
		retry: time.Hour / 500,
	})
}

func testQuotaCost(t *testing.T, f *fixture) {
	apr := date(2031, 4, 1, 0, 0, 0, 0)
	q := func(rem int64) latchkey.LimitState {
		return latchkey.LimitState{Limit: 10, Remaining: rem, ResetAt: apr}
	}
	k := f.key(t, periodic(10, "monthly"))
	check(t, "cost 3", f.admit(t, k, 3, t0), want{quota: q(7)})
	check(t, "cost 3 again", f.admit(t, k, 3, t0), want{quota: q(4)})
	check(t, "cost 3 a third time", f.admit(t, k, 3, t0), want{quota: q(1)})
	check(t, "cost 3 with 1 left", f.admit(t, k, 3, t0), want{code: latchkey.CodeQuotaExceeded, quota: q(1), retry: apr.Sub(t0)})
	check(t, "cost 1 with 1 left", f.admit(t, k, 1, t0), want{quota: q(0)})
	check(t, "cost 0 with nothing left", f.admit(t, k, 0, t0), want{quota: q(0)})
	check(t, "cost 1 with nothing left", f.admit(t, k, 1, t0), want{code: latchkey.CodeQuotaExceeded, quota: q(0), retry: apr.Sub(t0)})

	k = f.key(t, periodic(10, "monthly"))
	check(t, "cost 0 on a fresh quota", f.admit(t, k, 0, t0), want{quota: q(10)})
	check(t, "cost above the limit", f.admit(t, k, 11, t0), want{code: latchkey.CodeQuotaExceeded, quota: q(10)})
	check(t, "cost equal to the limit", f.admit(t, k, 10, t0), want{quota: q(0)})
}

func testQuotaConcurrent(t *testing.T, f *fixture) {
	k := f.key(t, periodic(1000, "monthly"))
	if n := len(hammer(t, f.lim, k, t0, 200, 50)); n != 1000 {
		t.Fatalf("10,000 concurrent requests against a quota of 1,000: admitted %d", n)
	}
	apr := date(2031, 4, 1, 0, 0, 0, 0)
	check(t, "afterwards", f.admit(t, k, 1, t0), want{
		code:  latchkey.CodeQuotaExceeded,
		quota: latchkey.LimitState{Limit: 1000, Remaining: 0, ResetAt: apr},
		retry: apr.Sub(t0),
	})
	// The count that reaches the store is exact too.
	f.flush(t, f.lim)
	check(t, "after a restart", admitOn(t, f.restart(t), k, 1, t0), want{
		code:  latchkey.CodeQuotaExceeded,
		quota: latchkey.LimitState{Limit: 1000, Remaining: 0, ResetAt: apr},
		retry: apr.Sub(t0),
	})
}

func testQuotaDurationPeriod(t *testing.T, f *fixture) {
	const day = 24 * time.Hour
	created := date(2031, 1, 30, 17, 45, 12, 123456000)
	k := f.key(t, func(k *latchkey.Key) {
		k.CreatedAt = created
		k.Quota = &latchkey.Quota{Limit: 3, Period: "30d"}
	})
	c := func(d time.Duration) time.Time { return created.Add(d) }
	q := func(rem int64, end time.Duration) latchkey.LimitState {
		return latchkey.LimitState{Limit: 3, Remaining: rem, ResetAt: c(end)}
	}
	for i := int64(1); i <= 3; i++ {
		check(t, fmt.Sprintf("request %d", i), f.admit(t, k, 1, c(time.Hour)), want{quota: q(3-i, 30*day)})
	}
	check(t, "fourth", f.admit(t, k, 1, c(time.Hour)), want{code: latchkey.CodeQuotaExceeded, quota: q(0, 30*day), retry: 30*day - time.Hour})
	check(t, "1ns before the period ends", f.admit(t, k, 1, c(30*day-1)), want{code: latchkey.CodeQuotaExceeded, quota: q(0, 30*day), retry: 1})
	check(t, "when the next period starts", f.admit(t, k, 1, c(30*day)), want{quota: q(2, 60*day)})
	check(t, "in the third period", f.admit(t, k, 2, c(75*day)), want{quota: q(1, 90*day)})
	check(t, "many periods later", f.admit(t, k, 1, c(3650*day+1)), want{quota: q(2, 3660*day)})
}

func testQuotaDaily(t *testing.T, f *fixture) {
	k := f.key(t, periodic(2, "daily"))
	last := date(2031, 3, 14, 23, 59, 59, 999999999)
	mar15, mar16 := date(2031, 3, 15, 0, 0, 0, 0), date(2031, 3, 16, 0, 0, 0, 0)
	check(t, "first", f.admit(t, k, 1, last), want{quota: latchkey.LimitState{Limit: 2, Remaining: 1, ResetAt: mar15}})
	check(t, "second", f.admit(t, k, 1, last), want{quota: latchkey.LimitState{Limit: 2, Remaining: 0, ResetAt: mar15}})
	check(t, "third, 1ns before midnight", f.admit(t, k, 1, last), want{
		code: latchkey.CodeQuotaExceeded, quota: latchkey.LimitState{Limit: 2, Remaining: 0, ResetAt: mar15}, retry: 1,
	})
	check(t, "at midnight UTC", f.admit(t, k, 1, mar15), want{quota: latchkey.LimitState{Limit: 2, Remaining: 1, ResetAt: mar16}})
	// A caller's zone does not matter: this is 2031-03-16T00:30 UTC.
	ist := time.FixedZone("IST", 5*3600+1800)
	check(t, "the next day, in another zone", f.admit(t, k, 2, time.Date(2031, 3, 16, 6, 0, 0, 0, ist)), want{
		quota: latchkey.LimitState{Limit: 2, Remaining: 0, ResetAt: date(2031, 3, 17, 0, 0, 0, 0)},
	})
}

func testQuotaMonthly(t *testing.T, f *fixture) {
	k := f.key(t, periodic(1, "monthly"))
	end := func(y int, m time.Month) latchkey.LimitState {
		return latchkey.LimitState{Limit: 1, Remaining: 0, ResetAt: date(y, m, 1, 0, 0, 0, 0)}
	}
	steps := []struct {
		name string
		now  time.Time
		want want
	}{
		{"January 31", date(2031, 1, 31, 12, 0, 0, 0), want{quota: end(2031, 2)}},
		{"January 31, again", date(2031, 1, 31, 23, 59, 59, 999999999), want{code: latchkey.CodeQuotaExceeded, quota: end(2031, 2), retry: 1}},
		{"February 1", date(2031, 2, 1, 0, 0, 0, 0), want{quota: end(2031, 3)}},
		{"February 28 (not a leap year)", date(2031, 2, 28, 23, 59, 59, 999999999), want{code: latchkey.CodeQuotaExceeded, quota: end(2031, 3), retry: 1}},
		{"March 1", date(2031, 3, 1, 0, 0, 0, 0), want{quota: end(2031, 4)}},
		{"April 30", date(2031, 4, 30, 0, 0, 0, 0), want{quota: end(2031, 5)}},
		{"December 31", date(2031, 12, 31, 23, 59, 59, 999999999), want{quota: end(2032, 1)}},
		{"December 31, again", date(2031, 12, 31, 23, 59, 59, 999999999), want{code: latchkey.CodeQuotaExceeded, quota: end(2032, 1), retry: 1}},
		{"January 1 of the next year", date(2032, 1, 1, 0, 0, 0, 0), want{quota: end(2032, 2)}},
		{"February 29 (a leap year)", date(2032, 2, 29, 23, 0, 0, 0), want{quota: end(2032, 3)}},
		{"February 29, again", date(2032, 2, 29, 23, 0, 0, 0), want{code: latchkey.CodeQuotaExceeded, quota: end(2032, 3), retry: time.Hour}},
	}
	for _, s := range steps {
		check(t, s.name, f.admit(t, k, 1, s.now), s.want)
	}
}

func testCredit(t *testing.T, f *fixture) {
	credit := func(n int64) func(*latchkey.Key) {
		return func(k *latchkey.Key) { k.Quota = &latchkey.Quota{Remaining: &n} }
	}
	q := func(rem int64) latchkey.LimitState { return latchkey.LimitState{Limit: 5, Remaining: rem} }
	k := f.key(t, credit(5))
	check(t, "cost 2", f.admit(t, k, 2, t0), want{quota: q(3)})
	check(t, "cost 4 with 3 left", f.admit(t, k, 4, t0), want{code: latchkey.CodeQuotaExceeded, quota: q(3)})
	check(t, "cost 3 with 3 left", f.admit(t, k, 3, t0), want{quota: q(0)})
	check(t, "cost 0 with nothing left", f.admit(t, k, 0, t0), want{quota: q(0)})
	check(t, "a year later", f.admit(t, k, 1, at(366*24*time.Hour)), want{code: latchkey.CodeQuotaExceeded, quota: q(0)})

	k = f.key(t, credit(0))
	check(t, "an empty balance", f.admit(t, k, 1, t0), want{code: latchkey.CodeQuotaExceeded, quota: latchkey.LimitState{}})
	check(t, "an empty balance, cost 0", f.admit(t, k, 0, t0), want{})
}

func testQuotaPersists(t *testing.T, f *fixture) {
	apr, may := date(2031, 4, 1, 0, 0, 0, 0), date(2031, 5, 1, 0, 0, 0, 0)
	balance := int64(10)
	monthly := f.key(t, periodic(100, "monthly"))
	credit := f.key(t, func(k *latchkey.Key) { k.Quota = &latchkey.Quota{Remaining: &balance} })
	check(t, "monthly", f.admit(t, monthly, 7, t0), want{quota: latchkey.LimitState{Limit: 100, Remaining: 93, ResetAt: apr}})
	check(t, "credit", f.admit(t, credit, 3, t0), want{quota: latchkey.LimitState{Limit: 10, Remaining: 7}})
	f.flush(t, f.lim)

	second := f.restart(t)
	check(t, "monthly after a restart", admitOn(t, second, monthly, 1, at(time.Hour)), want{quota: latchkey.LimitState{Limit: 100, Remaining: 92, ResetAt: apr}})
	check(t, "credit after a restart", admitOn(t, second, credit, 1, at(time.Hour)), want{quota: latchkey.LimitState{Limit: 10, Remaining: 6}})
	check(t, "monthly in the next month", admitOn(t, second, monthly, 5, date(2031, 4, 2, 0, 0, 0, 0)), want{quota: latchkey.LimitState{Limit: 100, Remaining: 95, ResetAt: may}})
	f.flush(t, second)

	third := f.restart(t)
	check(t, "monthly after another restart", admitOn(t, third, monthly, 1, date(2031, 4, 3, 0, 0, 0, 0)), want{quota: latchkey.LimitState{Limit: 100, Remaining: 94, ResetAt: may}})
	check(t, "credit after another restart", admitOn(t, third, credit, 6, date(2031, 4, 3, 0, 0, 0, 0)), want{quota: latchkey.LimitState{Limit: 10, Remaining: 0}})
}

func credit(n int64) func(*latchkey.Key) {
	return func(k *latchkey.Key) { k.Quota = &latchkey.Quota{Remaining: &n} }
}

// drain admits cost-1 requests at now until the first denial and returns
// how many were admitted (at most max).
func drain(t *testing.T, lim latchkey.Limiter, k *latchkey.Key, now time.Time, max int) int {
	t.Helper()
	for i := range max {
		if adm := admitOn(t, lim, k, 1, now); adm.Code != "" {
			if adm.Code != latchkey.CodeQuotaExceeded {
				t.Fatalf("draining: %s", adm.Code)
			}
			return i
		}
	}
	return max
}

func testCreditConcurrent(t *testing.T, f *fixture) {
	k := f.key(t, credit(1000))
	if n := len(hammer(t, f.lim, k, t0, 200, 50)); n != 1000 {
		t.Fatalf("10,000 concurrent requests against a balance of 1,000: admitted %d", n)
	}
	check(t, "afterwards", f.admit(t, k, 1, t0), want{code: latchkey.CodeQuotaExceeded, quota: latchkey.LimitState{Limit: 1000}})
	// Not one credit more after a crash (no Flush), nor after a Flush.
	if n := drain(t, f.restart(t), k, t0, 10); n != 0 {
		t.Fatalf("after a crash, a spent balance admitted %d more", n)
	}
	f.flush(t, f.lim)
	if n := drain(t, f.restart(t), k, t0, 10); n != 0 {
		t.Fatalf("after a flush, a spent balance admitted %d more", n)
	}
}

func testCreditCrash(t *testing.T, f *fixture) {
	// Restarts need this test's t (newLimiter keys its store by it), so
	// the cases are a loop, not subtests.
	for _, spent := range []int{1, 7, 300, 499} {
		k := f.key(t, credit(500))
		if n := len(hammer(t, f.lim, k, t0, 20, spent/20)) + drain(t, f.lim, k, t0, spent%20); n != spent {
			t.Fatalf("spent %d: admitted %d", spent, n)
		}
		// The limiter is abandoned without a Flush, as by SIGKILL.
		n := drain(t, f.restart(t), k, at(time.Second), 1000)
		if spent+n > 500 {
			t.Fatalf("a balance of 500: %d admitted before a crash, %d after", spent, n)
		}
		// What the second limiter admitted is as durable.
		if m := drain(t, f.restart(t), k, at(2*time.Second), 1000); m != 0 {
			t.Fatalf("spent %d: after a second crash, %d more", spent, m)
		}
	}
}

func testSingleUseCrash(t *testing.T, f *fixture) {
	k := f.key(t, credit(1))
	check(t, "the one use", f.admit(t, k, 1, t0), want{quota: latchkey.LimitState{Limit: 1}})
	check(t, "after a crash", admitOn(t, f.restart(t), k, 1, at(time.Second)), want{code: latchkey.CodeQuotaExceeded, quota: latchkey.LimitState{Limit: 1}})

	// A cost that is the whole balance is one use too.
	k = f.key(t, credit(40))
	check(t, "cost 40 of 40", f.admit(t, k, 40, t0), want{quota: latchkey.LimitState{Limit: 40}})
	check(t, "cost 40 after a crash", admitOn(t, f.restart(t), k, 1, at(time.Second)), want{code: latchkey.CodeQuotaExceeded, quota: latchkey.LimitState{Limit: 40}})
}

func testCreditRemoved(t *testing.T, f *fixture) {
	k := f.key(t, func(k *latchkey.Key) {
		credit(5)(k)
		k.RateLimits = []latchkey.RateLimit{rl("hourly", 1000, time.Hour)}
	})
	step := 3600 * time.Millisecond
	check(t, "cost 5 of 5", f.admit(t, k, 5, t0), want{
		rate:  latchkey.LimitState{Limit: 1000, Remaining: 999, ResetAt: t0.Add(step)},
		quota: latchkey.LimitState{Limit: 5},
	})
	unlimited := *k
	unlimited.Quota = nil
	f.lim.Forget(k.ID)
	check(t, "without the balance", f.admit(t, &unlimited, 100, t0), want{
		rate: latchkey.LimitState{Limit: 1000, Remaining: 998, ResetAt: t0.Add(2 * step)},
	})
}

func testCreditFlushExact(t *testing.T, f *fixture) {
	k := f.key(t, credit(1000))
	if n := len(hammer(t, f.lim, k, t0, 20, 10)); n != 200 {
		t.Fatalf("admitted %d of 200", n)
	}
	check(t, "cost 37", f.admit(t, k, 37, t0), want{quota: latchkey.LimitState{Limit: 1000, Remaining: 763}})
	f.flush(t, f.lim)
	second := f.restart(t)
	check(t, "after a graceful restart", admitOn(t, second, k, 0, t0), want{quota: latchkey.LimitState{Limit: 1000, Remaining: 763}})
	if n := drain(t, second, k, t0, 1000); n != 763 {
		t.Fatalf("after a graceful restart %d of 763 were admitted", n)
	}
}

func testResetForget(t *testing.T, f *fixture) {
	apr := date(2031, 4, 1, 0, 0, 0, 0)
	q := func(rem int64) latchkey.LimitState {
		return latchkey.LimitState{Limit: 100, Remaining: rem, ResetAt: apr}
	}
	k := f.key(t, periodic(100, "monthly"))
	check(t, "cost 60", f.admit(t, k, 60, t0), want{quota: q(40)})
	f.flush(t, f.lim)
	f.resetUsage(t, k)
	f.lim.Forget(k.ID)
	check(t, "after a reset of flushed usage", f.admit(t, k, 1, t0), want{quota: q(99)})

	check(t, "cost 40", f.admit(t, k, 40, t0), want{quota: q(59)})
	f.resetUsage(t, k)
	f.lim.Forget(k.ID)
	check(t, "after a reset of unflushed usage", f.admit(t, k, 1, t0), want{quota: q(99)})

	n := int64(5)
	credit := f.key(t, func(k *latchkey.Key) { k.Quota = &latchkey.Quota{Remaining: &n} })
	check(t, "credit cost 5", f.admit(t, credit, 5, t0), want{quota: latchkey.LimitState{Limit: 5}})
	// Topping up: the service sets the new balance and resets the usage.
	topped := *credit
	m := int64(8)
	topped.Quota = &latchkey.Quota{Remaining: &m}
	f.resetUsage(t, credit)
	f.lim.Forget(credit.ID)
	check(t, "after a top-up", f.admit(t, &topped, 1, t0), want{quota: latchkey.LimitState{Limit: 8, Remaining: 7}})
}

func testStaleFlush(t *testing.T, f *fixture) {
	apr := date(2031, 4, 1, 0, 0, 0, 0)
	k := f.key(t, periodic(100, "monthly"))
	check(t, "cost 30", f.admit(t, k, 30, t0), want{quota: latchkey.LimitState{Limit: 100, Remaining: 70, ResetAt: apr}})
	// The reset lands before the limiter flushes what it counted before it.
	f.resetUsage(t, k)
	f.flush(t, f.lim)
	second := f.restart(t)
	check(t, "after a restart", admitOn(t, second, k, 1, t0), want{quota: latchkey.LimitState{Limit: 100, Remaining: 99, ResetAt: apr}})
	// The restarted limiter's request is flushed first, so that a limiter
	// that counts per node (memory) and one whose nodes share their counts
	// (Redis) agree on what the old one finds after Forget: the reset
	// usage and that one request, never the 30 counted before the reset.
	f.flush(t, second)
	f.lim.Forget(k.ID)
	check(t, "after Forget", f.admit(t, k, 1, t0), want{quota: latchkey.LimitState{Limit: 100, Remaining: 98, ResetAt: apr}})
}

func testForgetChangedLimits(t *testing.T, f *fixture) {
	k := f.key(t, windows(rl("w", 2, time.Second)))
	if n, _, _ := f.count(t, k, 1, t0, 5); n != 2 {
		t.Fatalf("admitted %d, want 2", n)
	}
	changed := *k
	changed.RateLimits = []latchkey.RateLimit{rl("w", 5, time.Second)}
	f.lim.Forget(k.ID)
	if n, _, _ := f.count(t, &changed, 1, t0, 10); n != 5 {
		t.Fatalf("after the window grew to 5: admitted %d, want 5", n)
	}

	apr := date(2031, 4, 1, 0, 0, 0, 0)
	k = f.key(t, periodic(10, "monthly"))
	check(t, "cost 8", f.admit(t, k, 8, t0), want{quota: latchkey.LimitState{Limit: 10, Remaining: 2, ResetAt: apr}})
	f.flush(t, f.lim)
	changed = *k
	changed.Quota = &latchkey.Quota{Limit: 20, Period: "monthly"}
	f.lim.Forget(k.ID)
	check(t, "after the quota grew to 20", f.admit(t, &changed, 1, t0), want{quota: latchkey.LimitState{Limit: 20, Remaining: 11, ResetAt: apr}})
	changed.Quota = &latchkey.Quota{Limit: 5, Period: "monthly"}
	f.lim.Forget(k.ID)
	// Used 9 of 5: even cost 0 fails the check (used + cost > limit).
	check(t, "after the quota shrank below the usage", f.admit(t, &changed, 0, t0), want{
		code: latchkey.CodeQuotaExceeded, quota: latchkey.LimitState{Limit: 5, Remaining: 0, ResetAt: apr}, retry: apr.Sub(t0),
	})
}

func testForgetKeepsConsumption(t *testing.T, f *fixture) {
	apr := date(2031, 4, 1, 0, 0, 0, 0)
	q := func(rem int64) latchkey.LimitState {
		return latchkey.LimitState{Limit: 100, Remaining: rem, ResetAt: apr}
	}
	k := f.key(t, func(k *latchkey.Key) {
		k.Quota = &latchkey.Quota{Limit: 100, Period: "monthly"}
		k.RateLimits = []latchkey.RateLimit{rl("w", 3, time.Second)}
	})
	check(t, "cost 5", f.admit(t, k, 5, t0), want{quota: q(95), rate: latchkey.LimitState{Limit: 3, Remaining: 2, ResetAt: at(333333334)}})
	f.flush(t, f.lim)
	check(t, "cost 5 more, not flushed", f.admit(t, k, 5, t0), want{quota: q(90), rate: latchkey.LimitState{Limit: 3, Remaining: 1, ResetAt: at(666666667)}})
	// A change that does not touch the limits, such as a rename.
	f.lim.Forget(k.ID)
	check(t, "after Forget", f.admit(t, k, 1, t0), want{quota: q(89), rate: latchkey.LimitState{Limit: 3, Remaining: 0, ResetAt: at(time.Second)}})
	f.flush(t, f.lim)
	check(t, "after a restart", admitOn(t, f.restart(t), k, 1, at(time.Hour)), want{quota: q(88), rate: latchkey.LimitState{Limit: 3, Remaining: 2, ResetAt: at(time.Hour + 333333334)}})
}

func testDenialOrder(t *testing.T, f *fixture) {
	apr := date(2031, 4, 1, 0, 0, 0, 0)
	k := f.key(t, func(k *latchkey.Key) {
		k.RateLimits = []latchkey.RateLimit{rl("w", 1, time.Second)}
		k.Quota = &latchkey.Quota{Limit: 1, Period: "monthly"}
		k.MaxConcurrent = 1
	})
	check(t, "first", f.admit(t, k, 1, t0), want{
		rate:  latchkey.LimitState{Limit: 1, Remaining: 0, ResetAt: at(time.Second)},
		quota: latchkey.LimitState{Limit: 1, Remaining: 0, ResetAt: apr},
		lease: true,
	})
	check(t, "all three deny", f.admit(t, k, 1, t0), want{
		code:  latchkey.CodeRateLimited,
		rate:  latchkey.LimitState{Limit: 1, Remaining: 0, ResetAt: at(time.Second)},
		quota: latchkey.LimitState{Limit: 1, Remaining: 0, ResetAt: apr},
		retry: time.Second,
	})
	check(t, "quota and concurrency deny", f.admit(t, k, 1, at(time.Second)), want{
		code:  latchkey.CodeQuotaExceeded,
		rate:  latchkey.LimitState{Limit: 1, Remaining: 1, ResetAt: at(time.Second)},
		quota: latchkey.LimitState{Limit: 1, Remaining: 0, ResetAt: apr},
		retry: apr.Sub(at(time.Second)),
	})

	k = f.key(t, func(k *latchkey.Key) {
		k.Quota = &latchkey.Quota{Limit: 10, Period: "monthly"}
		k.MaxConcurrent = 1
	})
	f.admit(t, k, 1, t0)
	check(t, "concurrency denies", f.admit(t, k, 1, at(time.Second)), want{
		code:  latchkey.CodeConcurrencyExceeded,
		quota: latchkey.LimitState{Limit: 10, Remaining: 9, ResetAt: apr},
		retry: latchkey.DefaultLeaseTTL - time.Second,
	})
}

func testCommitNone(t *testing.T, f *fixture) {
	const s = time.Second
	two := int64(2)
	k := f.key(t, func(k *latchkey.Key) {
		k.RateLimits = []latchkey.RateLimit{rl("w", 3, s)}
		k.Quota = &latchkey.Quota{Remaining: &two}
		k.MaxConcurrent = 3
	})
	f.admit(t, k, 1, t0)
	f.admit(t, k, 1, t0)
	for i := range 20 {
		adm := f.admit(t, k, 1, t0)
		if i == 0 || adm.Code != latchkey.CodeQuotaExceeded {
			check(t, "denied by the quota", adm, want{
				code:  latchkey.CodeQuotaExceeded,
				rate:  latchkey.LimitState{Limit: 3, Remaining: 1, ResetAt: at(666666667)},
				quota: latchkey.LimitState{Limit: 2, Remaining: 0},
			})
		}
	}
	// Neither the window nor the slots were taken by the denials.
	check(t, "cost 0", f.admit(t, k, 0, t0), want{
		rate:  latchkey.LimitState{Limit: 3, Remaining: 0, ResetAt: at(s)},
		quota: latchkey.LimitState{Limit: 2, Remaining: 0},
		lease: true,
	})

	apr := date(2031, 4, 1, 0, 0, 0, 0)
	k = f.key(t, func(k *latchkey.Key) {
		k.RateLimits = []latchkey.RateLimit{rl("w", 5, s)}
		k.Quota = &latchkey.Quota{Limit: 10, Period: "monthly"}
		k.MaxConcurrent = 1
	})
	first := f.admit(t, k, 1, t0)
	for i := range 20 {
		adm := f.admit(t, k, 1, t0)
		if i == 0 || adm.Code != latchkey.CodeConcurrencyExceeded {
			check(t, "denied by concurrency", adm, want{
				code:  latchkey.CodeConcurrencyExceeded,
				rate:  latchkey.LimitState{Limit: 5, Remaining: 4, ResetAt: at(s / 5)},
				quota: latchkey.LimitState{Limit: 10, Remaining: 9, ResetAt: apr},
				retry: latchkey.DefaultLeaseTTL,
			})
		}
	}
	if !f.lim.Release(first.LeaseID, t0) {
		t.Fatal("Release of a live lease = false")
	}
	check(t, "after the release", f.admit(t, k, 1, t0), want{
		rate:  latchkey.LimitState{Limit: 5, Remaining: 3, ResetAt: at(2 * s / 5)},
		quota: latchkey.LimitState{Limit: 10, Remaining: 8, ResetAt: apr},
		lease: true,
	})
}

func testLeases(t *testing.T, f *fixture) {
	const s = time.Second
	k := f.key(t, func(k *latchkey.Key) {
		k.MaxConcurrent = 3
		k.LeaseTTL = latchkey.Duration(10 * s)
	})
	var ids []string
	for i := range 3 {
		adm := f.admit(t, k, 1, t0)
		check(t, fmt.Sprintf("lease %d", i+1), adm, want{lease: true})
		ids = append(ids, adm.LeaseID)
	}
	check(t, "a fourth", f.admit(t, k, 1, at(s)), want{code: latchkey.CodeConcurrencyExceeded, retry: 9 * s})
	if id, ok := f.lim.LeaseKey(ids[0], at(s)); !ok || id != k.ID {
		t.Errorf("LeaseKey of a live lease = %q, %v; want %q, true", id, ok, k.ID)
	}
	if !f.lim.Release(ids[1], at(2*s)) {
		t.Fatal("Release of a live lease = false")
	}
	if f.lim.Release(ids[1], at(2*s)) {
		t.Error("a second Release of the same lease = true")
	}
	if _, ok := f.lim.LeaseKey(ids[1], at(2*s)); ok {
		t.Error("LeaseKey of a released lease = true")
	}
	check(t, "after a release", f.admit(t, k, 1, at(2*s)), want{lease: true})
	check(t, "full again", f.admit(t, k, 1, at(3*s)), want{code: latchkey.CodeConcurrencyExceeded, retry: 7 * s})
}

func testLeaseTTL(t *testing.T, f *fixture) {
	const s = time.Second
	k := f.key(t, func(k *latchkey.Key) {
		k.MaxConcurrent = 3
		k.LeaseTTL = latchkey.Duration(10 * s)
	})
	first := f.admit(t, k, 1, t0)
	f.admit(t, k, 1, t0)
	late := f.admit(t, k, 1, at(2*s))
	check(t, "1ns before two leases expire", f.admit(t, k, 1, at(10*s-1)), want{code: latchkey.CodeConcurrencyExceeded, retry: 1})
	if _, ok := f.lim.LeaseKey(first.LeaseID, at(10*s-1)); !ok {
		t.Error("LeaseKey 1ns before expiry = false")
	}
	if _, ok := f.lim.LeaseKey(first.LeaseID, at(10*s)); ok {
		t.Error("LeaseKey at expiry = true")
	}
	if f.lim.Release(first.LeaseID, at(10*s)) {
		t.Error("Release of an expired lease = true")
	}
	check(t, "when two leases expire", f.admit(t, k, 1, at(10*s)), want{lease: true})
	check(t, "and the second slot", f.admit(t, k, 1, at(10*s)), want{lease: true})
	check(t, "full again", f.admit(t, k, 1, at(10*s)), want{code: latchkey.CodeConcurrencyExceeded, retry: 2 * s})
	if !f.lim.Release(late.LeaseID, at(11*s)) {
		t.Error("Release of a live lease = false")
	}

	k = f.key(t, func(k *latchkey.Key) { k.MaxConcurrent = 1 })
	f.admit(t, k, 1, t0)
	check(t, "default TTL, 1ns before", f.admit(t, k, 1, at(latchkey.DefaultLeaseTTL-1)), want{code: latchkey.CodeConcurrencyExceeded, retry: 1})
	check(t, "default TTL passed", f.admit(t, k, 1, at(latchkey.DefaultLeaseTTL)), want{lease: true})
}

func testReleaseUnknown(t *testing.T, f *fixture) {
	k := f.key(t, func(k *latchkey.Key) { k.MaxConcurrent = 1 })
	adm := f.admit(t, k, 1, t0)
	for _, id := range []string{"", "lease_", "lease_00000000000000000000000000000000", adm.LeaseID + "x", adm.LeaseID[:len(adm.LeaseID)-1]} {
		if f.lim.Release(id, t0) {
			t.Errorf("Release(%q) = true", id)
		}
		if key, ok := f.lim.LeaseKey(id, t0); ok {
			t.Errorf("LeaseKey(%q) = %q, true", id, key)
		}
	}
	check(t, "the real lease still holds its slot", f.admit(t, k, 1, t0), want{code: latchkey.CodeConcurrencyExceeded, retry: latchkey.DefaultLeaseTTL})
}

func testLeaseIDs(t *testing.T, f *fixture) {
	k := f.key(t, func(k *latchkey.Key) { k.MaxConcurrent = 1000 })
	seen := map[string]bool{}
	for range 1000 {
		id := f.admit(t, k, 1, t0).LeaseID
		rest, ok := strings.CutPrefix(id, "lease_")
		if !ok || len(rest) < 22 || strings.Trim(rest, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			t.Fatalf("lease id %q: want lease_ and at least 22 base62 or hex characters", id)
		}
		if seen[id] {
			t.Fatalf("lease id %q handed out twice", id)
		}
		seen[id] = true
	}
}

func testLeasesConcurrent(t *testing.T, f *fixture) {
	k := f.key(t, func(k *latchkey.Key) { k.MaxConcurrent = 100 })
	admitted := hammer(t, f.lim, k, t0, 50, 40)
	if len(admitted) != 100 {
		t.Fatalf("2000 concurrent requests against 100 slots: admitted %d", len(admitted))
	}
	seen := map[string]bool{}
	for _, adm := range admitted {
		if seen[adm.LeaseID] {
			t.Fatalf("lease id %q handed out twice", adm.LeaseID)
		}
		seen[adm.LeaseID] = true
		if id, ok := f.lim.LeaseKey(adm.LeaseID, t0); !ok || id != k.ID {
			t.Fatalf("LeaseKey(%q) = %q, %v", adm.LeaseID, id, ok)
		}
	}
}

func testForgetKeepsLeases(t *testing.T, f *fixture) {
	k := f.key(t, func(k *latchkey.Key) { k.MaxConcurrent = 2 })
	first := f.admit(t, k, 1, t0)
	f.admit(t, k, 1, t0)
	f.lim.Forget(k.ID)
	check(t, "after Forget", f.admit(t, k, 1, t0), want{code: latchkey.CodeConcurrencyExceeded, retry: latchkey.DefaultLeaseTTL})
	if !f.lim.Release(first.LeaseID, t0) {
		t.Fatal("Release after Forget = false")
	}
	check(t, "after a release", f.admit(t, k, 1, t0), want{lease: true})
}
