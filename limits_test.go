package latchkey_test

import (
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

func TestParseRatesAndQuota(t *testing.T) {
	rls, err := latchkey.ParseRates("10/s, 1000/h,100/30s")
	if err != nil || len(rls) != 3 || rls[0].Limit != 10 || time.Duration(rls[0].Window) != time.Second ||
		rls[1].Name != "1h" || time.Duration(rls[2].Window) != 30*time.Second {
		t.Fatalf("ParseRates = %+v, %v", rls, err)
	}
	for _, bad := range []string{"", "10", "x/s", "10/x", "0/s", "10/0s", "10/s,10/s", "5/400d"} {
		if _, err := latchkey.ParseRates(bad); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("ParseRates(%q) err = %v, want invalid", bad, err)
		}
	}
	q, err := latchkey.ParseQuotaFlag("10000/30d")
	if err != nil || q.Limit != 10000 || q.Period != "30d" || q.IsCredit() {
		t.Fatalf("periodic quota = %+v, %v", q, err)
	}
	q, err = latchkey.ParseQuotaFlag("500")
	if err != nil || !q.IsCredit() || *q.Remaining != 500 {
		t.Fatalf("credit quota = %+v, %v", q, err)
	}
	for _, bad := range []string{"", "x", "10/fortnightly", "0/30d", "-5", "10/30s"} {
		if _, err := latchkey.ParseQuotaFlag(bad); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("ParseQuotaFlag(%q) err = %v, want invalid", bad, err)
		}
	}
}

func TestQuotaPeriodBoundaries(t *testing.T) {
	anchor := time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		period     string
		now        time.Time
		start, end time.Time
	}{
		{"30d", anchor.Add(30*24*time.Hour - time.Nanosecond), anchor, anchor.Add(30 * 24 * time.Hour)},
		{"30d", anchor.Add(30 * 24 * time.Hour), anchor.Add(30 * 24 * time.Hour), anchor.Add(60 * 24 * time.Hour)},
		{"daily", time.Date(2026, 3, 29, 23, 59, 59, 0, time.UTC), time.Date(2026, 3, 29, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 30, 0, 0, 0, 0, time.UTC)},
		{"monthly", time.Date(2026, 2, 28, 23, 0, 0, 0, time.UTC), time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)},
		{"monthly", time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		start, err := latchkey.QuotaPeriodStart(tt.period, anchor, tt.now)
		if err != nil || !start.Equal(tt.start) || !latchkey.QuotaPeriodEnd(tt.period, start).Equal(tt.end) {
			t.Errorf("%s at %s: start %s end %s (%v); want %s – %s", tt.period, tt.now, start, latchkey.QuotaPeriodEnd(tt.period, start), err, tt.start, tt.end)
		}
	}
}

func FuzzParseRates(f *testing.F) {
	for _, s := range []string{"10/s,1000/h", "100/30s", "1/1d12h", "", ",", "9999999999999999999/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rls, err := latchkey.ParseRates(s)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("code %s", latchkey.ErrorCode(err))
			}
			return
		}
		if latchkey.ValidateRateLimits(rls) != nil {
			t.Fatalf("accepted windows that do not validate: %+v", rls)
		}
	})
}

func FuzzParseQuotaFlag(f *testing.F) {
	for _, s := range []string{"10000/30d", "500/monthly", "500", "", "/", "1/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := latchkey.ParseQuotaFlag(s)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("code %s", latchkey.ErrorCode(err))
			}
			return
		}
		if latchkey.ValidateQuota(q) != nil {
			t.Fatalf("accepted a quota that does not validate: %+v", q)
		}
	})
}
