package latchkey

import (
	"net/netip"
	"sort"
	"time"
)

// The usage recorder's records and the store contracts the recorder and
// the security checks run on. They live here, beside the records they
// hold, so that neither imports the key service.

// LastUsed is one key's use for SetLastUsed, which fills Before.
type LastUsed struct {
	KeyID  string
	At     time.Time // when the key was used
	Before time.Time // set by SetLastUsed
}

// UsageRow counts a key's verifications that ended with Code in the minute
// that starts at Minute.
type UsageRow struct {
	KeyID  string
	Tenant string
	Minute time.Time
	Code   string
	Count  int64
}

// Grain is the time resolution of usage rows.
type Grain string

// Usage grains: minute rows, and their hour and day roll-ups.
const (
	GrainMinute Grain = "minute"
	GrainHour   Grain = "hour"
	GrainDay    Grain = "day"
)

// UsageNetwork counts a key's verifications from one client network (an
// IPv4 /24 or IPv6 /48 in CIDR notation, or "other" for networks beyond
// the recorder's per-minute cap) in the minute that starts at Minute.
type UsageNetwork struct {
	KeyID   string
	Minute  time.Time
	Network string
	Count   int64
}

// EventFilter narrows an event listing. Empty fields match everything.
type EventFilter struct {
	After string // only events whose id sorts after this
	Limit int    // at most this many (0: no limit)
	Type  string
	// Kind matches the "kind" of security.anomaly events' data.
	Kind  string
	KeyID string
	Since time.Time // At >= Since
	Until time.Time // At < Until
}

// UsageRecorder counts verifications (package usage's Recorder).
type UsageRecorder interface {
	// Record counts one verification of a key that was found: the key, its
	// tenant, the verify code, the client's address (zero if unknown) and
	// the service's clock at the check.
	Record(keyID, tenant, code string, ip netip.Addr, now time.Time)
}

// KeyReader reads a tenant's keys.
type KeyReader interface {
	// Key returns the key with the id in the tenant; ENotFound if there is
	// none, including when the id belongs to another tenant.
	Key(tenant, id string) (*Key, error)
}

// AuditWriter appends to the audit log.
type AuditWriter interface {
	// AppendAudit seals e after the last event of e.Tenant's chain (setting
	// Seq, PrevHash and Hash) and stores it. Concurrent appends to one
	// tenant's chain are serialized.
	AppendAudit(e *AuditEvent) error
}

// EventWriter stores events (webhook deliveries and security listings read
// them).
type EventWriter interface {
	// AppendEvent stores e as pending dispatch; EConflict if its id exists.
	AppendEvent(e *Event) error
}

// EventReader reads a tenant's events.
type EventReader interface {
	// Events lists a tenant's events that match f, ordered by id (creation
	// time).
	Events(tenant string, f EventFilter) ([]*Event, error)
	// CountEvents counts a tenant's events of type typ at or after since.
	CountEvents(tenant, typ string, since time.Time) (int64, error)
}

// UsageWriter writes usage rows and last use (the usage recorder).
type UsageWriter interface {
	// AddUsage adds each row's Count to the stored count of its (KeyID,
	// Minute, Code), creating the row if there is none, and likewise to the
	// hour and day roll-ups of that minute. Minute is the start of a UTC
	// minute.
	AddUsage(rows []UsageRow) error
	// AddUsageNetworks adds each row's Count to the stored count of its
	// (KeyID, Minute, Network), and to its day's roll-up, likewise.
	AddUsageNetworks(rows []UsageNetwork) error
	// SetLastUsed sets each key's LastUsedAt to its At if that is later
	// than the stored value (it only moves forward); a missing key is no
	// error. It sets each one's Before to what the key's LastUsedAt was
	// (its CreatedAt if it was never used; the zero time for a missing
	// key), which the security checks use to notice a dormant key waking
	// up. Each key appears once.
	SetLastUsed(uses []LastUsed) error
	// PruneUsage deletes the rows of grain g (for minutes and days, their
	// network rows too) that start before before, and returns how many.
	PruneUsage(g Grain, before time.Time) (int64, error)
}

// UsageReader reads usage rows (reports, the security checks).
type UsageReader interface {
	// Usage returns the tenant's minute rows of a key with from <= Minute <
	// to, ordered by Minute then Code; none for another tenant's key.
	Usage(tenant, keyID string, from, to time.Time) ([]UsageRow, error)
	// UsageRollup returns the rows of grain g (their Minute holds the start
	// of their minute, hour or day) likewise.
	UsageRollup(tenant, keyID string, g Grain, from, to time.Time) ([]UsageRow, error)
	// UsageNetworks returns the minute network rows of a key likewise,
	// ordered by Minute then Network.
	UsageNetworks(tenant, keyID string, from, to time.Time) ([]UsageNetwork, error)
	// UsageNetworkDays returns the daily network roll-up rows likewise.
	UsageNetworkDays(tenant, keyID string, from, to time.Time) ([]UsageNetwork, error)
	// NetworkHistory reports whether a key has any stored network row for
	// network, and whether it has any network row at all.
	NetworkHistory(keyID, network string) (seenThis, seenAny bool, err error)
}

// FlushTx is what the security checks read and write in a usage flush's
// transaction.
type FlushTx interface {
	UsageReader
	KeyReader
	EventReader
	EventWriter
}

// OtherNetwork is the network row that counts verifications beyond the
// usage recorder's distinct networks in a minute.
const OtherNetwork = "other"

// FlushObserver is told what each flush transaction writes, inside it and
// before the usage rows are added (so the store still holds what came
// before them). A flush of many keys is several transactions, each
// observed with its own keys. An error fails the transaction, which is
// retried with the next flush.
//
// The store may run a transaction again (a serialization conflict on
// PostgreSQL), and a transaction may fail after ObserveFlush: the observer
// keeps what it changes in its own memory provisional until FlushDone says
// the transaction committed, and drops it otherwise, or when ObserveFlush
// is called again before FlushDone.
type FlushObserver interface {
	ObserveFlush(tx FlushTx, f *UsageFlush) error
	// FlushDone follows each transaction in which ObserveFlush was called.
	FlushDone(committed bool)
}

// UsageFlush is what one flush transaction writes.
type UsageFlush struct {
	Usage    []UsageRow
	Networks []UsageNetwork
	// LastUsed holds, per key, its newest use in the flush and when it was
	// used before (its creation time if never), in key id order.
	LastUsed []LastUse
	// Tenants maps each key id of the flush to its tenant.
	Tenants map[string]string
}

// LastAt returns the newest use of key id in the flush (zero if none).
func (f *UsageFlush) LastAt(id string) time.Time {
	i := sort.Search(len(f.LastUsed), func(i int) bool { return f.LastUsed[i].KeyID >= id })
	if i < len(f.LastUsed) && f.LastUsed[i].KeyID == id {
		return f.LastUsed[i].At
	}
	return time.Time{}
}

// LastUse is a key's newest use in a flush and its use before that.
type LastUse struct {
	KeyID, Tenant string
	At, Before    time.Time
}

// ReportReader answers the aggregate queries of compliance reports. Both
// methods read one tenant only, so a report can never count another
// tenant's keys.
type ReportReader interface {
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
