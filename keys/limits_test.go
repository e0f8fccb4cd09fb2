package keys_test

import (
	"context"
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
		lim = limit.NewMemory(limit.Options{Store: o.Store, FlushInterval: time.Hour})
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
