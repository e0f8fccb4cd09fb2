package audit

import "github.com/latchkeyhq/latchkey"

// Tx is what the audit service needs of a store's transaction: the
// tenants' chains and their signed checkpoints, the events (security
// listings, and the findings it raises), and the keys and usage rows that
// reports and usage analytics read. It writes nothing but events and
// checkpoints: every audit event is appended by the change it records, in
// that change's transaction.
type Tx interface {
	latchkey.AuditReader
	latchkey.CheckpointStore
	latchkey.EventWriter
	latchkey.EventReader
	latchkey.KeyReader
	latchkey.UsageReader
	latchkey.ReportReader
	// Tenant returns the tenant with the id; ENotFound if there is none.
	Tenant(id string) (*latchkey.Tenant, error)
	// Keys lists a tenant's keys that match f, ordered by id (as
	// keys.Tx's Keys).
	Keys(tenant string, f latchkey.KeyFilter) ([]*latchkey.Key, error)
}
