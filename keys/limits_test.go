package keys_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/limit"
)

// TestConcurrentVerificationsAgainstAQuotaAreExact runs 10,000 verifications
// from 200 goroutines (the race detector caps live goroutines) against a
// quota of 1,000: exactly 1,000 are valid, the rest QUOTA_EXCEEDED.
func TestConcurrentVerificationsAgainstAQuotaAreExact(t *testing.T) {
	var lim *limit.Memory
	f := newFixture(t, func(o *keys.Options) {
		lim = limit.NewMemory(limit.Options{Store: latchkey.Narrow[latchkey.QuotaStore](o.Store), FlushInterval: time.Hour})
		o.Limiter = lim
	})
	t.Cleanup(func() { lim.Close(context.Background()) })
	_, key := f.create(t, keys.CreateParams{Settings: keys.Settings{Quota: &latchkey.Quota{Limit: 1000, Period: "30d"}}})
	ctx := context.Background()
	var valid, exceeded, other atomic.Int64
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			for range jobs {
				v, err := f.svc.Verify(ctx, keys.VerifyRequest{Key: key, Cost: 1})
				switch {
				case err != nil:
					t.Error(err)
				case v.Code == latchkey.CodeValid:
					valid.Add(1)
				case v.Code == latchkey.CodeQuotaExceeded:
					exceeded.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	for range 10_000 {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	if valid.Load() != 1000 || exceeded.Load() != 9000 || other.Load() != 0 {
		t.Fatalf("valid %d, quota exceeded %d, other %d; want 1000, 9000, 0", valid.Load(), exceeded.Load(), other.Load())
	}
}

// TestAuthenticateAppliesTheKeysLimits: a route's authentication spends
// the same limits as Verify, refuses with a *keys.Denied that names the
// verify code, and holds a concurrency slot until Done.
func TestAuthenticateAppliesTheKeysLimits(t *testing.T) {
	var lim *limit.Memory
	f := newFixture(t, func(o *keys.Options) {
		lim = limit.NewMemory(limit.Options{Store: latchkey.Narrow[latchkey.QuotaStore](o.Store), FlushInterval: time.Hour})
		o.Limiter = lim
	})
	t.Cleanup(func() { lim.Close(context.Background()) })
	ctx := context.Background()
	refused := func(err error, apiCode, verifyCode string) *keys.Denied {
		t.Helper()
		var d *keys.Denied
		if !errors.As(err, &d) || latchkey.ErrorCode(err) != apiCode || d.Code != verifyCode {
			t.Fatalf("got %v, want %s naming %s", err, apiCode, verifyCode)
		}
		return d
	}

	_, rated := f.create(t, keys.CreateParams{Settings: keys.Settings{Scopes: &[]string{"keys:read"},
		RateLimits: &[]latchkey.RateLimit{{Limit: 1, Window: latchkey.Duration(time.Hour)}}}})
	a, err := f.svc.Authenticate(ctx, rated, netip.Addr{}, "keys:read")
	if err != nil || a.Admission.RateLimit.Limit != 1 {
		t.Fatalf("first use: %v %+v", err, a)
	}
	d := refused(f.svc.AuthenticateInto(ctx, rated, netip.Addr{}, "keys:read", new(latchkey.Actor)), latchkey.ERateLimited, latchkey.CodeRateLimited)
	if d.Admission.RetryAfter <= 0 {
		t.Fatalf("a rate denial without retry_after: %+v", d.Admission)
	}
	if v, _ := f.svc.Verify(ctx, keys.VerifyRequest{Key: rated, Cost: 1}); v.Code != latchkey.CodeRateLimited {
		t.Fatalf("verify after the route spent the window: %s", v.Code)
	}
	// The scope is checked before the limits, as on verify.
	refused(f.svc.AuthenticateInto(ctx, rated, netip.Addr{}, "keys:write", new(latchkey.Actor)), latchkey.EForbidden, latchkey.CodeInsufficientScope)

	_, one := f.create(t, keys.CreateParams{Settings: keys.Settings{MaxConcurrent: ptr(1), LeaseTTL: ptr(time.Hour)}})
	held, err := f.svc.Authenticate(ctx, one, netip.Addr{}, "")
	if err != nil || held.Admission.LeaseID == "" {
		t.Fatalf("first use: %v %+v", err, held)
	}
	refused(f.svc.AuthenticateInto(ctx, one, netip.Addr{}, "", new(latchkey.Actor)), latchkey.ERateLimited, latchkey.CodeConcurrencyExceeded)
	f.svc.Done(held)
	f.svc.Done(held) // a second Done releases nothing more
	again, err := f.svc.Authenticate(ctx, one, netip.Addr{}, "")
	if err != nil {
		t.Fatalf("after Done: %v", err)
	}
	// Releasing a lease needs no slot of its own.
	if err := f.svc.ReleaseLease(ctx, one, netip.Addr{}, again.Admission.LeaseID); err != nil {
		t.Fatalf("release while the key's one slot is held: %v", err)
	}

	refused(f.svc.AuthenticateInto(ctx, "lk_garbage", netip.Addr{}, "", new(latchkey.Actor)), latchkey.EUnauthenticated, latchkey.CodeMalformed)
	refused(f.svc.AuthenticateInto(ctx, "", netip.Addr{}, "", new(latchkey.Actor)), latchkey.EUnauthenticated, latchkey.CodeMalformed)
}
