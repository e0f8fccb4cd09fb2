package latchkey

import "time"

// Page selects a slice of an id-ordered list.
type Page struct {
	After string // only items whose id sorts after this
	Limit int    // at most this many (0 means no limit)
}

// Sealer encrypts small secrets for storage: webhook signing secrets and
// brokered provider keys. aad binds a ciphertext to where it is stored
// (tenant, name, version…), so a ciphertext copied to another row does not
// open. The keyring (package keyring) implements it.
type Sealer interface {
	Seal(aad, plaintext []byte) ([]byte, error)
	Open(aad, ciphertext []byte) ([]byte, error)
}

// EventDispatch is how the webhook dispatcher takes events out of the
// store: the pending ones, marked dispatched once fanned out, pruned later.
type EventDispatch interface {
	// PendingEvents returns up to limit events of any tenant not yet
	// marked dispatched, ordered by id.
	PendingEvents(limit int) ([]*Event, error)
	// MarkEventsDispatched marks the events dispatched; unknown ids are
	// ignored.
	MarkEventsDispatched(ids []string) error
	// PruneEvents deletes dispatched events older than before and returns
	// how many it deleted.
	PruneEvents(before time.Time) (int64, error)
}

// WebhookStore keeps webhook endpoints and their deliveries (the outbox).
//
// A delivery is created when the dispatcher fans an event out, in the
// transaction that marks the event dispatched, so an event reaches each of
// its endpoints exactly once in the outbox. Nodes claim due deliveries with
// a lease, so two nodes (or a node and its restarted self) never send one
// delivery at the same time.
type WebhookStore interface {
	// CreateWebhook inserts w; EConflict if its id exists, ENotFound if its
	// tenant does not.
	CreateWebhook(w *Webhook) error
	// Webhook returns the webhook with the id in the tenant; ENotFound if
	// there is none there (including another tenant's).
	Webhook(tenant, id string) (*Webhook, error)
	// Webhooks lists a tenant's webhooks ordered by id.
	Webhooks(tenant string, p Page) ([]*Webhook, error)
	// WebhooksFor returns the tenant's webhooks subscribed to events of
	// type typ and created at or before at, ordered by id.
	WebhooksFor(tenant, typ string, at time.Time) ([]*Webhook, error)
	// DeleteWebhook deletes the webhook and every delivery of it; ENotFound
	// if there is none in the tenant.
	DeleteWebhook(tenant, id string) error

	// CreateDelivery inserts d; EConflict if its id exists or the webhook
	// already has a delivery of the event, ENotFound if the webhook does
	// not exist.
	CreateDelivery(d *Delivery) error
	// Delivery returns the tenant's delivery with the id; ENotFound if there
	// is none there.
	Delivery(tenant, id string) (*Delivery, error)
	// Deliveries lists a webhook's deliveries in the tenant, newest first
	// (by id, descending).
	Deliveries(tenant, webhookID string, f DeliveryFilter) ([]*Delivery, error)
	// ClaimDeliveries takes up to limit pending deliveries of any tenant
	// whose NextAttemptAt is at or before now and whose lease has lapsed
	// (LeaseUntil at or before now), earliest due first, and sets their
	// LeaseUntil to leaseUntil.
	ClaimDeliveries(now, leaseUntil time.Time, limit int) ([]*Delivery, error)
	// UpdateDelivery stores d's Status, Attempts, NextAttemptAt,
	// LastStatusCode, LastError, DeliveredAt and LeaseUntil; ENotFound if
	// the delivery is gone (its webhook was deleted).
	UpdateDelivery(d *Delivery) error
	// CountPendingDeliveries counts the deliveries of every tenant still
	// pending: the depth of the outbox.
	CountPendingDeliveries() (int64, error)
	// PruneDeliveries deletes delivered and failed deliveries created
	// before before, and returns how many it deleted.
	PruneDeliveries(before time.Time) (int64, error)

	// ExpiringKeys returns keys of any tenant that are not revoked nor
	// rotated out (no GraceUntil) and whose ExpiresAt is after f.From and
	// at or before f.To, ordered by ExpiresAt then id, starting after the
	// key (f.AfterExpires, f.AfterID) when f.AfterID is set.
	ExpiringKeys(f ExpiringFilter) ([]*Key, error)
}

// ExpiringFilter selects a page of keys by expiry.
type ExpiringFilter struct {
	From, To time.Time
	// AfterExpires and AfterID continue a listing after its last key.
	AfterExpires time.Time
	AfterID      string
	Limit        int // at most this many (0: no limit)
}

// DeliveryFilter narrows a delivery listing. Empty fields match everything.
type DeliveryFilter struct {
	Before string // only deliveries whose id sorts before this
	Limit  int    // at most this many (0: no limit)
	Status string
}
