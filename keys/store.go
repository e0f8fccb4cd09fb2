package keys

import (
	"context"
	"time"

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

// Tx is what the key service needs of one transaction: tenants and keys,
// and what a key change records with them. A backend's transaction
// implements it along with the other services' contracts (secrets.Tx,
// audit.Tx, webhook.Tx, usage.Tx), and the wiring hands it over with
// latchkey.Narrow[keys.Tx](db), which keeps the store's transaction-free
// KeyByHash for the verify path. It is used by one goroutine and only
// inside the function given to View or Update.
type Tx interface {
	// CreateTenant inserts t; EConflict if its id exists.
	CreateTenant(t *latchkey.Tenant) error
	// Tenant returns the tenant with the id; ENotFound if there is none.
	Tenant(id string) (*latchkey.Tenant, error)
	// Tenants lists tenants ordered by id, those with id > p.After, at most
	// p.Limit of them.
	Tenants(p latchkey.Page) ([]*latchkey.Tenant, error)

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
	// Like the store's transaction-free KeyByHash (latchkey.HashReader),
	// it reads the key's Bound with it: the stored policy the key names
	// and its owner's record, in the same statement.
	KeyByHash(hash [32]byte) (*latchkey.Key, error)
	// Keys lists a tenant's keys that match f, ordered by id; an unknown
	// tenant has no keys. A State filter needs a non-zero Now (EInvalid).
	Keys(tenant string, f latchkey.KeyFilter) ([]*latchkey.Key, error)
	// UpdateKey stores every field of k but ID, Tenant, Hash, Prefix, Start,
	// CreatedAt and LastUsedAt over the row (k.Tenant, k.ID); ENotFound if
	// there is none. LastUsedAt is left alone so that a key change, which
	// read the key earlier, never moves back what SetLastUsed wrote.
	UpdateKey(k *latchkey.Key) error
	// Children returns the keys whose ParentID is parentID, ordered by id.
	Children(tenant, parentID string) ([]*latchkey.Key, error)

	// A key's persisted quota consumption: a rotation hands the old key's
	// over to its successor.
	latchkey.QuotaStore

	// PutRotation inserts r, or replaces the tenant's rotation with r.ID;
	// EConflict if another rotation of the tenant has r.KeyID or r.Secret
	// (or r.ID is another tenant's), ENotFound if the tenant, or r.KeyID in
	// it, does not exist.
	PutRotation(r *latchkey.Rotation) error
	// Rotation returns the tenant's rotation with the id; ENotFound if
	// there is none (including in another tenant).
	Rotation(tenant, id string) (*latchkey.Rotation, error)
	// RotationOfKey returns the rotation whose KeyID is keyID in the
	// tenant; ENotFound if none.
	RotationOfKey(tenant, keyID string) (*latchkey.Rotation, error)
	// DueRotations returns up to limit rotations of any tenant whose
	// NextAt is at or before now, earliest first (then by id). It reads
	// only due rows (an index on next_at), however many rotations exist.
	DueRotations(now time.Time, limit int) ([]*latchkey.Rotation, error)
	// DeleteRotation deletes the tenant's rotation with the id; ENotFound
	// if there is none.
	DeleteRotation(tenant, id string) error

	// PutPolicy inserts p, or replaces the tenant's policy named p.Name
	// (keeping its CreatedAt); ENotFound if the tenant does not exist.
	// On a store shared by nodes it sends ChangePolicy with the commit.
	PutPolicy(p *latchkey.Policy) error
	// Policy returns the tenant's policy with the name; ENotFound if none.
	Policy(tenant, name string) (*latchkey.Policy, error)
	// Policies lists the tenant's policies ordered by name, those with
	// name > p.After, at most p.Limit.
	Policies(tenant string, p latchkey.Page) ([]*latchkey.Policy, error)
	// DeletePolicy deletes the tenant's policy with the name; ENotFound if
	// there is none, EConflict while a key that is not revoked names it.
	// Sends ChangePolicy like PutPolicy.
	DeletePolicy(tenant, name string) error

	// PutOwner inserts o, or replaces the tenant's record of owner o.ID
	// (keeping its CreatedAt); ENotFound if the tenant does not exist.
	// Sends ChangeOwner with the commit on a shared store.
	PutOwner(o *latchkey.Owner) error
	// Owner returns the tenant's record of the owner; ENotFound if none.
	Owner(tenant, id string) (*latchkey.Owner, error)
	// Owners lists the tenant's owner records ordered by id (byte order),
	// those with id > p.After, at most p.Limit.
	Owners(tenant string, p latchkey.Page) ([]*latchkey.Owner, error)
	// DeleteOwner deletes the tenant's record of the owner (its keys keep
	// their Owner); ENotFound if there is none. Sends ChangeOwner.
	DeleteOwner(tenant, id string) error

	// A rotation seals its successor's plaintext as a secret version in
	// the rotation's own transaction, and checks that a secret it is to
	// write into is a rotation's (see secrets.Tx).
	NextSecretVersion(tenant, name string) (int64, error)
	PutSecret(v *latchkey.SecretVersion) error
	Secret(tenant, name string, version int64) (*latchkey.SecretVersion, error)

	// What a key change records in its own transaction: the audit event,
	// the webhook event, and the count of recent events a burst is
	// judged by.
	latchkey.AuditWriter
	latchkey.EventWriter
	latchkey.EventReader
}
