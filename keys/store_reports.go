package keys

import (
	"time"

	"github.com/latchkeyhq/latchkey"
)

// ReportStore answers the aggregate queries of compliance reports. Both
// methods read one tenant only, so a report can never count another
// tenant's keys.
type ReportStore interface {
	// UsageTotals sums a tenant's usage rows of grain g that start in
	// [from, to) by key and code: the count, and the starts of the first
	// and last rows. Ordered by key id, then code.
	UsageTotals(tenant string, g Grain, from, to time.Time) ([]UsageTotal, error)
	// NetworkTotals counts, per key of the tenant, the distinct client
	// networks its network rows that start in [from, to) name — daily
	// roll-ups for GrainDay, minute rows otherwise; "other" (networks past
	// the recorder's per-minute cap) is not counted. Ordered by key id;
	// keys without network rows are left out.
	NetworkTotals(tenant string, g Grain, from, to time.Time) ([]NetworkTotal, error)
}

// UsageTotal is latchkey.UsageTotal.
type UsageTotal = latchkey.UsageTotal

// NetworkTotal is latchkey.NetworkTotal.
type NetworkTotal = latchkey.NetworkTotal
