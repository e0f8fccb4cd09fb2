package keys

import (
	"context"

	"github.com/latchkeyhq/latchkey"
)

// Store keeps tenants and keys. Every implementation passes the conformance
// suite in store/storetest, so the service behaves the same on each.
//
// Errors: *latchkey.Error with ENotFound or EConflict where documented below,
// EUnavailable when the database cannot be reached; anything else is internal.
//
// Rules every implementation keeps (store/storetest checks them):
//   - Update transactions are serializable: a read-modify-write inside one
//     (rotate, suspending a subtree) never loses a concurrent write.
//   - View cannot write, and sees one snapshot from its first read.
//   - Update returns fn's error unchanged and passes a panic on, after
//     rolling back.
//   - Lists are ordered by id in byte order and are never nil; Scopes,
//     Resources, IPAllow and Meta read back non-nil; times read back in UTC
//     at microsecond precision; a zero time is stored as "unset".
//   - Key ids and hashes are unique across all tenants.
type Store interface {
	// View runs fn in a read-only transaction that sees one consistent
	// snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a read-write transaction. The changes are committed,
	// durably, only if fn returns nil; otherwise none of them happen.
	Update(ctx context.Context, fn func(Tx) error) error
	// Ping reports whether the database answers.
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
}

// ErrStoreLost is latchkey.ErrStoreLost.
var ErrStoreLost = latchkey.ErrStoreLost

// Tx is one transaction. It is used by one goroutine and only inside the
// function given to View or Update.
type Tx interface {
	// Each capability's methods are declared in a file of their own
	// (store_events.go, store_webhooks.go) or in the root (the audit
	// service's reads, latchkey.AuditReader and latchkey.ReportReader) and
	// embedded here. The secrets' are the secret service's (secrets.Tx) and the
	// keyring's (latchkey.KeyringStore): a backend's transaction
	// implements those too, and is narrowed to them (latchkey.Narrow).
	EventStore
	WebhookStore
	latchkey.ReportReader

	// CreateTenant inserts t; EConflict if its id exists.
	CreateTenant(t *latchkey.Tenant) error
	// Tenant returns the tenant with the id; ENotFound if there is none.
	Tenant(id string) (*latchkey.Tenant, error)
	// Tenants lists tenants ordered by id, those with id > p.After, at most
	// p.Limit of them.
	Tenants(p Page) ([]*latchkey.Tenant, error)

	// CreateKey inserts k; EConflict if its id or hash exists, ENotFound if
	// its tenant does not.
	CreateKey(k *latchkey.Key) error
	// ImportKeys inserts each key of ks whose hash is not stored yet (in
	// any tenant) and skips the others, a hash repeated within ks
	// included; it returns how many it inserted. ENotFound if a key's
	// tenant does not exist. An empty ks ends an import: the store lets
	// go of what it kept from one batch to the next (a larger cache).
	ImportKeys(ks []*latchkey.Key) (created int, err error)
	latchkey.KeyReader
	// KeyByHash returns the key whose SHA-256 is hash; ENotFound if none.
	KeyByHash(hash [32]byte) (*latchkey.Key, error)
	// Keys lists a tenant's keys that match f, ordered by id; an unknown
	// tenant has no keys. A State filter needs a non-zero Now (EInvalid).
	Keys(tenant string, f KeyFilter) ([]*latchkey.Key, error)
	// UpdateKey stores every field of k but ID, Tenant, Hash, Prefix, Start,
	// CreatedAt and LastUsedAt over the row (k.Tenant, k.ID); ENotFound if
	// there is none. LastUsedAt is left alone so that a key change, which
	// read the key earlier, never moves back what SetLastUsed wrote.
	UpdateKey(k *latchkey.Key) error
	// Children returns the keys whose ParentID is parentID, ordered by id.
	Children(tenant, parentID string) ([]*latchkey.Key, error)

	// A key's persisted quota consumption (the limiter's part).
	latchkey.QuotaStore

	// The audit log: appends, and the reads of the audit service
	// (audit.Tx).
	latchkey.AuditWriter
	latchkey.AuditReader
	latchkey.CheckpointStore

	// Usage rows: written by the usage recorder, read by reports and the
	// security checks.
	latchkey.UsageWriter
	latchkey.UsageReader
}

// The usage records live in the domain root, so that the usage recorder
// and the security checks import the root and not this package.
type (
	LastUsed     = latchkey.LastUsed
	UsageRow     = latchkey.UsageRow
	Grain        = latchkey.Grain
	UsageNetwork = latchkey.UsageNetwork
)

// Usage grains: minute rows, and their hour and day roll-ups.
const (
	GrainMinute = latchkey.GrainMinute
	GrainHour   = latchkey.GrainHour
	GrainDay    = latchkey.GrainDay
)

// AuditFilter is latchkey.AuditFilter.
type AuditFilter = latchkey.AuditFilter

// QuotaUsage is latchkey.QuotaUsage, the limiter's record.
type QuotaUsage = latchkey.QuotaUsage

// Page is latchkey.Page.
type Page = latchkey.Page

// KeyFilter is latchkey.KeyFilter.
type KeyFilter = latchkey.KeyFilter
