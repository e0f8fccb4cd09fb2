package identity

import (
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Tx is what the identity service needs of a store transaction: the
// tenants' providers (kept as JSON bodies, so a new field needs no
// migration), the jtis already exchanged, and the audit log. store/sqlite
// and store/postgres implement it; store/storetest proves it.
type Tx interface {
	latchkey.AuditWriter

	// CreateIdentityProvider stores a provider's body under (tenant,
	// name); EConflict if the tenant has one of that name.
	CreateIdentityProvider(tenant, name string, body []byte, createdAt time.Time) error
	// IdentityProvider returns the body and creation time of a tenant's
	// provider; ENotFound if there is none (including in another tenant).
	IdentityProvider(tenant, name string) (body []byte, createdAt time.Time, err error)
	// IdentityProviders calls fn with each of the tenant's providers in
	// name order (byte by byte); fn's error stops the walk and is
	// returned.
	IdentityProviders(tenant string, fn func(name string, body []byte, createdAt time.Time) error) error
	// DeleteIdentityProvider removes a tenant's provider; ENotFound if
	// there is none.
	DeleteIdentityProvider(tenant, name string) error
	// UseIdentityJTI records that the issuer's token jti was exchanged in
	// the tenant, kept until expiresAt; EConflict if it was already
	// recorded (the token is being replayed).
	UseIdentityJTI(tenant, issuer, jti string, expiresAt time.Time) error
	// PruneIdentityJTIs forgets the jtis whose expiry is at or before
	// now (their tokens can no longer pass the expiry check) and returns
	// how many.
	PruneIdentityJTIs(now time.Time) (int, error)
}
