package audit

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Usage report limits.
const (
	// MaxUsageBuckets bounds the buckets one usage report covers.
	MaxUsageBuckets = 1000
	// DefaultUsageWindow is the window of an hourly report that names no
	// start; the other bucket sizes have their own (DefaultUsageWindowFor).
	DefaultUsageWindow = 24 * time.Hour
)

// DefaultUsageWindowFor is the window of a report that names no start: it
// follows the bucket, so that every bucket size answers without one — the
// last hour by minute, the last day by hour, the last 30 days by day.
func DefaultUsageWindowFor(bucket string) time.Duration {
	switch bucket {
	case "minute":
		return time.Hour
	case "day":
		return 30 * 24 * time.Hour
	}
	return DefaultUsageWindow
}

// UsageParams select a usage report. Zero values take the defaults: hourly
// buckets over the window that ends now (DefaultUsageWindowFor).
type UsageParams struct {
	Bucket string // "minute", "hour" (default) or "day"
	From   time.Time
	To     time.Time
}

// UsageReport is a key's recorded usage, as stored by the last flush of
// the usage recorder (at most its flush interval behind).
type UsageReport struct {
	KeyID  string           `json:"key_id"`
	Bucket string           `json:"bucket"`
	From   time.Time        `json:"from"`
	To     time.Time        `json:"to"`
	Totals map[string]int64 `json:"totals"`
	// Series has one entry per bucket of the window, empty ones included.
	Series     []UsageBucket  `json:"series"`
	PeakHours  []PeakHour     `json:"peak_hours"`
	Networks   []NetworkCount `json:"networks"`
	LastUsedAt time.Time      `json:"last_used_at,omitzero"`
}

// UsageBucket counts verifications by code in the bucket that starts at
// Start.
type UsageBucket struct {
	Start  time.Time        `json:"start"`
	Counts map[string]int64 `json:"counts"`
}

// PeakHour is an hour of the day (UTC, 0–23) and the verifications in it
// over the window.
type PeakHour struct {
	Hour  int   `json:"hour"`
	Count int64 `json:"count"`
}

// NetworkCount is a client network and the verifications from it.
type NetworkCount struct {
	Network string `json:"network"`
	Count   int64  `json:"count"`
}

// Report sizes.
const (
	peakHours   = 3
	topNetworks = 10
)

// usageWindow checks p's bucket and window, filling in the defaults
// (the window ends at now), and returns the bucket's size. Errors:
// EInvalid (bucket, window, more than MaxUsageBuckets buckets).
func usageWindow(p *UsageParams, now time.Time) (time.Duration, error) {
	var size time.Duration
	switch p.Bucket {
	case "minute":
		size = time.Minute
	case "", "hour":
		p.Bucket, size = "hour", time.Hour
	case "day":
		size = 24 * time.Hour
	default:
		return 0, latchkey.Errorf(latchkey.EInvalid, "bucket must be minute, hour or day")
	}
	if p.To.IsZero() {
		p.To = now
	}
	if p.From.IsZero() {
		p.From = p.To.Add(-DefaultUsageWindowFor(p.Bucket))
	}
	p.From, p.To = p.From.UTC().Truncate(size), p.To.UTC()
	if !p.From.Before(p.To) {
		return 0, latchkey.Errorf(latchkey.EInvalid, "from must be before to")
	}
	if n := int((p.To.Sub(p.From) + size - 1) / size); n > MaxUsageBuckets {
		return 0, latchkey.Errorf(latchkey.EInvalid, "the window holds %d %s buckets; at most %d", n, p.Bucket, MaxUsageBuckets)
	}
	return size, nil
}

// KeyUsage reports a key of the actor's tenant's usage: totals by code, a
// series by bucket (from is rounded down to the bucket, in UTC), the top 3
// hours of the day, the top 10 client networks, and when it was last used.
// Minute buckets read minute rows; hour and day buckets read the hour and
// day roll-ups, which are kept longer (the last bucket counts its whole
// hour or day, which is the same thing when to is now). Peak hours come
// from the rows of the bucket, or the hour roll-ups for day buckets;
// networks from minute rows, or the daily network roll-ups for day
// buckets. Errors: ENotFound
// (no such key in the tenant), EInvalid (bucket, window, more than
// MaxUsageBuckets buckets).
func (s *Service) KeyUsage(ctx context.Context, actor *latchkey.Actor, id string, p UsageParams) (*UsageReport, error) {
	size, err := usageWindow(&p, s.now())
	if err != nil {
		return nil, err
	}
	n := int((p.To.Sub(p.From) + size - 1) / size)
	if !latchkey.ValidID("key", id) {
		return nil, latchkey.KeyNotFound(id)
	}
	var (
		k      *latchkey.Key
		rows   []latchkey.UsageRow
		hourly []latchkey.UsageRow // for peak hours
		nets   []latchkey.UsageNetwork
	)
	err = s.store.View(ctx, func(tx Tx) error {
		var err error
		if k, err = tx.Key(actor.Tenant, id); err != nil {
			return err
		}
		if rows, err = tx.UsageRollup(actor.Tenant, id, latchkey.Grain(p.Bucket), p.From, p.To); err != nil {
			return err
		}
		if p.Bucket != "day" {
			hourly = rows
			nets, err = tx.UsageNetworks(actor.Tenant, id, p.From, p.To)
			return err
		}
		if hourly, err = tx.UsageRollup(actor.Tenant, id, latchkey.GrainHour, p.From, p.To); err != nil {
			return err
		}
		nets, err = tx.UsageNetworkDays(actor.Tenant, id, p.From, p.To)
		return err
	})
	if err != nil {
		return nil, err
	}
	r := &UsageReport{
		KeyID: k.ID, Bucket: p.Bucket, From: p.From, To: p.To,
		Totals:     map[string]int64{},
		Series:     make([]UsageBucket, n),
		PeakHours:  []PeakHour{},
		Networks:   []NetworkCount{},
		LastUsedAt: k.LastUsedAt,
	}
	for i := range r.Series {
		r.Series[i] = UsageBucket{Start: p.From.Add(time.Duration(i) * size), Counts: map[string]int64{}}
	}
	for _, u := range rows {
		r.Totals[u.Code] += u.Count
		if i := int(u.Minute.Sub(p.From) / size); i >= 0 && i < n {
			r.Series[i].Counts[u.Code] += u.Count
		}
	}
	var hours [24]int64
	for _, u := range hourly {
		hours[u.Minute.UTC().Hour()] += u.Count
	}
	for h, c := range hours {
		if c > 0 {
			r.PeakHours = append(r.PeakHours, PeakHour{Hour: h, Count: c})
		}
	}
	slices.SortStableFunc(r.PeakHours, func(a, b PeakHour) int { return cmp.Compare(b.Count, a.Count) })
	r.PeakHours = r.PeakHours[:min(len(r.PeakHours), peakHours)]
	byNet := map[string]int64{}
	for _, u := range nets {
		byNet[u.Network] += u.Count
	}
	for nw, c := range byNet {
		r.Networks = append(r.Networks, NetworkCount{Network: nw, Count: c})
	}
	slices.SortFunc(r.Networks, func(a, b NetworkCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Network, b.Network))
	})
	r.Networks = r.Networks[:min(len(r.Networks), topNetworks)]
	return r, nil
}

// MaxOwnerUsageKeys bounds the keys an owner's usage report reads.
const MaxOwnerUsageKeys = 1000

// OwnerUsageReport is the recorded usage of all of an owner's keys: the
// totals by code, a series by bucket, and each key's total.
type OwnerUsageReport struct {
	Owner  string           `json:"owner"`
	Bucket string           `json:"bucket"`
	From   time.Time        `json:"from"`
	To     time.Time        `json:"to"`
	Totals map[string]int64 `json:"totals"`
	Series []UsageBucket    `json:"series"`
	// Keys has one entry per key of the owner, busiest first.
	Keys []OwnerKeyUsage `json:"keys"`
	// Truncated is true when the owner has more than MaxOwnerUsageKeys
	// keys: the report counts the first ones created.
	Truncated bool `json:"truncated,omitempty"`
}

// OwnerKeyUsage is one key's share of its owner's usage.
type OwnerKeyUsage struct {
	KeyID      string           `json:"key_id"`
	Name       string           `json:"name"`
	Totals     map[string]int64 `json:"totals"`
	LastUsedAt time.Time        `json:"last_used_at,omitzero"`
}

// OwnerUsage reports the usage of every key of the actor's tenant whose
// owner is owner, summed (the seeds' per-client analytics), with the same
// buckets and window rules as KeyUsage. An owner with no keys has an
// empty report. Errors: EInvalid (bucket, window).
func (s *Service) OwnerUsage(ctx context.Context, actor *latchkey.Actor, owner string, p UsageParams) (*OwnerUsageReport, error) {
	size, err := usageWindow(&p, s.now())
	if err != nil {
		return nil, err
	}
	if err := latchkey.ValidateText("owner", owner, latchkey.MaxNameLen, true); err != nil {
		return nil, err
	}
	n := int((p.To.Sub(p.From) + size - 1) / size)
	r := &OwnerUsageReport{Owner: owner, Bucket: p.Bucket, From: p.From, To: p.To,
		Totals: map[string]int64{}, Series: make([]UsageBucket, n), Keys: []OwnerKeyUsage{}}
	for i := range r.Series {
		r.Series[i] = UsageBucket{Start: p.From.Add(time.Duration(i) * size), Counts: map[string]int64{}}
	}
	err = s.store.View(ctx, func(tx Tx) error {
		ks, err := tx.Keys(actor.Tenant, latchkey.KeyFilter{Owner: owner, Page: latchkey.Page{Limit: MaxOwnerUsageKeys + 1}})
		if err != nil {
			return err
		}
		if len(ks) > MaxOwnerUsageKeys {
			ks, r.Truncated = ks[:MaxOwnerUsageKeys], true
		}
		for _, k := range ks {
			rows, err := tx.UsageRollup(actor.Tenant, k.ID, latchkey.Grain(p.Bucket), p.From, p.To)
			if err != nil {
				return err
			}
			ku := OwnerKeyUsage{KeyID: k.ID, Name: k.Name, Totals: map[string]int64{}, LastUsedAt: k.LastUsedAt}
			for _, u := range rows {
				ku.Totals[u.Code] += u.Count
				r.Totals[u.Code] += u.Count
				if i := int(u.Minute.Sub(p.From) / size); i >= 0 && i < n {
					r.Series[i].Counts[u.Code] += u.Count
				}
			}
			r.Keys = append(r.Keys, ku)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sum := func(m map[string]int64) (t int64) {
		for _, c := range m {
			t += c
		}
		return t
	}
	slices.SortStableFunc(r.Keys, func(a, b OwnerKeyUsage) int { return cmp.Compare(sum(b.Totals), sum(a.Totals)) })
	return r, nil
}
