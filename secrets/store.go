package secrets

import "github.com/latchkeyhq/latchkey"

// Tx is what the secret service needs of a store's transaction: the
// sealed versions of the tenants' secrets, and the audit log their writes
// and reads are recorded in, in the same transaction. Nothing here is
// ever plaintext: values are sealed by the keyring (latchkey.Sealer)
// before they reach the store. Every backend passes store/storetest's
// secrets section.
type Tx interface {
	latchkey.AuditWriter

	// NextSecretVersion returns the number the next version of the
	// tenant's secret name gets: one more than any version it ever had,
	// deleted ones included, so that a number is never reused.
	NextSecretVersion(tenant, name string) (int64, error)
	// PutSecret stores v as the newest version of its secret; v.Version
	// must be what NextSecretVersion returned in this transaction
	// (EConflict otherwise). ENotFound if the tenant does not exist.
	PutSecret(v *latchkey.SecretVersion) error
	// Secret returns a version of a tenant's secret, the newest when
	// version is 0; ENotFound if the secret or the version does not exist
	// (including in another tenant).
	Secret(tenant, name string, version int64) (*latchkey.SecretVersion, error)
	// SecretVersions returns every kept version of a secret, newest first;
	// ENotFound if the secret does not exist.
	SecretVersions(tenant, name string) ([]*latchkey.SecretVersion, error)
	// Secrets lists a tenant's secrets ordered by name, those with name >
	// p.After, at most p.Limit of them; never nil.
	Secrets(tenant string, p latchkey.Page) ([]*latchkey.SecretInfo, error)
	// LatestSecrets returns the newest version of every secret of the
	// tenant, ordered by name; never nil.
	LatestSecrets(tenant string) ([]*latchkey.SecretVersion, error)
	// DeleteSecret deletes every version of a secret; ENotFound if it does
	// not exist. Its version numbers stay used.
	DeleteSecret(tenant, name string) error
	// PruneSecretVersions deletes all but the newest keep versions of a
	// secret and returns how many it deleted.
	PruneSecretVersions(tenant, name string, keep int) (int64, error)
}
