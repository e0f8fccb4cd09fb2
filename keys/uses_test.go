package keys_test

import (
	"context"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/limit"
)

// uses: N is a credit balance of N: a single-use key works once.
func TestUsesIsACreditBalance(t *testing.T) {
	var lim *limit.Memory
	f := newFixture(t, func(o *keys.Options) {
		lim = limit.NewMemory(limit.Options{Store: latchkey.Narrow[latchkey.QuotaStore](o.Store), FlushInterval: time.Hour})
		o.Limiter = lim
	})
	t.Cleanup(func() { lim.Close(context.Background()) })
	k, key := f.create(t, keys.CreateParams{Settings: keys.Settings{Uses: ptr(int64(1))}})
	if k.Quota == nil || k.Quota.Remaining == nil || *k.Quota.Remaining != 1 {
		t.Fatalf("quota of a --uses 1 key: %+v", k.Quota)
	}
	ctx := context.Background()
	for i, want := range []string{latchkey.CodeValid, latchkey.CodeQuotaExceeded} {
		v, err := f.svc.Verify(ctx, keys.VerifyRequest{Key: key, Cost: 1})
		if err != nil || v.Code != want {
			t.Fatalf("use %d: %s, %v; want %s", i+1, v.Code, err, want)
		}
	}
	// Setting uses again on update gives a fresh balance.
	if _, err := f.svc.UpdateKey(ctx, f.admin, k.ID, keys.Settings{Uses: ptr(int64(2))}); err != nil {
		t.Fatal(err)
	}
	if v, _ := f.svc.Verify(ctx, keys.VerifyRequest{Key: key, Cost: 1}); v.Code != latchkey.CodeValid {
		t.Fatalf("after uses 2: %s", v.Code)
	}
	for _, bad := range []keys.Settings{
		{Uses: ptr(int64(0))},
		{Uses: ptr(int64(-3))},
		{Uses: ptr(int64(5)), Quota: &latchkey.Quota{Limit: 10, Period: "daily"}},
		{Uses: ptr(int64(5)), ClearQuota: true},
	} {
		bad.Name = ptr("bad")
		_, _, err := f.svc.CreateKey(ctx, f.admin, keys.CreateParams{Settings: bad})
		wantCode(t, err, latchkey.EInvalid)
	}
}
