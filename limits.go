package latchkey

import (
	"strconv"
	"strings"
	"time"
)

// RateLimit is one named rate window of a key: at most Limit requests per
// Window, enforced with GCRA (see docs/limits.md): a full bucket allows a
// burst of Limit, and it refills continuously at Limit per Window.
type RateLimit struct {
	Name   string   `json:"name"`
	Limit  int64    `json:"limit"`
	Window Duration `json:"window"`
	// Apply is ApplyAlways ("", or "always" as written, which validation
	// turns into "": every request counts as one) or ApplyOnRequest (only a request that names the window with a cost
	// counts, by that cost: tokens an hour).
	Apply string `json:"apply,omitempty"`
}

// Quota is either a periodic allowance (Limit units per Period, refilled
// at each period boundary) or a credit balance (Remaining units, no refill;
// admins set it again to top it up).
type Quota struct {
	Limit int64 `json:"limit,omitempty"`
	// Period is a duration ("30d", counted from the key's creation) or a
	// calendar period in UTC: "daily" or "monthly".
	Period string `json:"period,omitempty"`
	// Remaining, when set, makes the quota a credit balance.
	Remaining *int64 `json:"remaining,omitempty"`
}

// IsCredit reports whether q is a credit balance.
func (q *Quota) IsCredit() bool { return q != nil && q.Remaining != nil }

// TimeWindow is a weekly period in which a key may be used: on Days (empty
// means every day), from Start to End ("09:00"–"17:00") in the IANA zone TZ
// (default UTC). An End before Start runs past midnight into the next day;
// equal Start and End are refused.
type TimeWindow struct {
	Days  []string `json:"days,omitempty"`
	Start string   `json:"start"`
	End   string   `json:"end"`
	TZ    string   `json:"tz,omitempty"`
}

// Limits on policy sizes, so that one key cannot make verification slow.
const (
	MaxRateLimits   = 8
	MaxTimeWindows  = 16
	MaxCountries    = 250
	MaxConcurrent   = 1_000_000
	DefaultLeaseTTL = 30 * time.Second
)

// ValidateRateLimits checks a key's rate windows: 1 to MaxRateLimits of
// them, each with a positive limit, a window from 1s to 366d, and a unique
// name (a missing name becomes the window, e.g. "1m").
func ValidateRateLimits(rls []RateLimit) error {
	if len(rls) > MaxRateLimits {
		return Errorf(EInvalid, "ratelimits: at most %d windows", MaxRateLimits)
	}
	seen := map[string]bool{}
	for i := range rls {
		r := &rls[i]
		if r.Name == "" {
			r.Name = FormatDuration(time.Duration(r.Window))
		}
		if err := ValidateText("ratelimits name", r.Name, 64, true); err != nil {
			return err
		}
		if seen[r.Name] {
			return Errorf(EInvalid, "ratelimits: two windows named %q", r.Name)
		}
		seen[r.Name] = true
		if r.Limit < 1 || r.Limit > 1_000_000_000 {
			return Errorf(EInvalid, "ratelimits %q: limit must be from 1 to 1000000000", r.Name)
		}
		if w := time.Duration(r.Window); w < time.Second || w > 366*24*time.Hour {
			return Errorf(EInvalid, "ratelimits %q: window must be from 1s to 366d", r.Name)
		}
		if r.Apply == "always" {
			r.Apply = ApplyAlways // the default, spelled out
		}
		if r.Apply != ApplyAlways && r.Apply != ApplyOnRequest {
			return Errorf(EInvalid, "ratelimits %q: apply must be \"always\" (the default) or %q", r.Name, ApplyOnRequest)
		}
	}
	return nil
}

// ValidateQuota checks a quota: a periodic one needs a positive limit and a
// period; a credit balance needs Remaining ≥ 0 and nothing else.
func ValidateQuota(q *Quota) error {
	if q == nil {
		return nil
	}
	if q.IsCredit() {
		if *q.Remaining < 0 || *q.Remaining > 1<<53 {
			return Errorf(EInvalid, "quota remaining must be from 0 to 2^53")
		}
		if q.Limit != 0 || q.Period != "" {
			return Errorf(EInvalid, "quota: give either remaining (a credit balance) or limit and period, not both")
		}
		return nil
	}
	if q.Limit < 1 || q.Limit > 1<<53 {
		return Errorf(EInvalid, "quota limit must be from 1 to 2^53")
	}
	if _, err := QuotaPeriodStart(q.Period, time.Time{}, time.Time{}); err != nil {
		return err
	}
	return nil
}

// QuotaPeriodStart returns the start of the period that contains now:
// calendar periods in UTC, duration periods counted from anchor (the key's
// creation). The period's end is QuotaPeriodEnd.
func QuotaPeriodStart(period string, anchor, now time.Time) (time.Time, error) {
	now = now.UTC()
	switch period {
	case "daily":
		y, m, d := now.Date()
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC), nil
	case "monthly":
		y, m, _ := now.Date()
		return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC), nil
	}
	p, err := ParseDuration(period)
	if err != nil || p < time.Minute {
		return time.Time{}, Errorf(EInvalid, "quota period %q: use daily, monthly or a duration of at least 1m such as 30d", clip(period, 40))
	}
	if now.Before(anchor) {
		return anchor, nil
	}
	n := now.Sub(anchor) / p
	return anchor.Add(n * p), nil
}

// QuotaPeriodEnd returns when the period that starts at start ends.
func QuotaPeriodEnd(period string, start time.Time) time.Time {
	switch period {
	case "daily":
		return start.AddDate(0, 0, 1)
	case "monthly":
		return start.AddDate(0, 1, 0)
	}
	p, _ := ParseDuration(period)
	return start.Add(p)
}

// ParseRates reads the CLI's rate list, "10/s,1000/h" or "100/30s": a
// limit, '/', and a unit (s, m, h, d) or a duration. Each window is named
// after its duration.
func ParseRates(s string) ([]RateLimit, error) {
	var out []RateLimit
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		n, w, ok := strings.Cut(part, "/")
		limit, err := strconv.ParseInt(n, 10, 64)
		if !ok || err != nil {
			return nil, Errorf(EInvalid, "rate %q: use LIMIT/WINDOW such as 100/m or 1000/1h", clip(part, 40))
		}
		if w != "" && (w[0] < '0' || w[0] > '9') {
			w = "1" + w
		}
		d, err := ParseDuration(w)
		if err != nil {
			return nil, Errorf(EInvalid, "rate %q: use LIMIT/WINDOW such as 100/m or 1000/1h", clip(part, 40))
		}
		out = append(out, RateLimit{Limit: limit, Window: Duration(d)})
	}
	return out, ValidateRateLimits(out)
}

// ParseQuotaFlag reads the CLI's quota, "10000/30d", "500/daily" or a
// credit balance "500".
func ParseQuotaFlag(s string) (*Quota, error) {
	n, period, ok := strings.Cut(strings.TrimSpace(s), "/")
	v, err := strconv.ParseInt(n, 10, 64)
	if err != nil {
		return nil, Errorf(EInvalid, "quota %q: use LIMIT/PERIOD such as 10000/30d or 500/monthly, or a credit balance such as 500", clip(s, 40))
	}
	q := &Quota{Limit: v, Period: period}
	if !ok {
		q = &Quota{Remaining: &v}
	}
	return q, ValidateQuota(q)
}

// QuotaPeriodAligned reports whether t is exactly the start of a period
// of the quota (anchored at anchor), at the stores' microsecond
// precision: a stored usage row whose start is not one belongs to other
// settings.
func QuotaPeriodAligned(period string, anchor, t time.Time) bool {
	ps, err := QuotaPeriodStart(period, anchor, t)
	return err == nil && ps.UTC().Truncate(time.Microsecond).Equal(t)
}
