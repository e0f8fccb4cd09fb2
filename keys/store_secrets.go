package keys

import "github.com/latchkeyhq/latchkey"

// SecretStore keeps the keyring's wrapped data keys and the brokered
// secrets sealed with them. Nothing here is ever plaintext: data keys are
// stored wrapped by the master key, secret values sealed by a data key.
type SecretStore interface {
	// The keyring's wrapped data keys (package keyring).
	latchkey.KeyringStore

	// NextSecretVersion returns the number the next version of the
	// tenant's secret name gets: one more than any version it ever had,
	// deleted ones included, so that a number is never reused.
	NextSecretVersion(tenant, name string) (int64, error)
	// PutSecret stores v as the newest version of its secret; v.Version
	// must be what NextSecretVersion returned in this transaction
	// (EConflict otherwise). ENotFound if the tenant does not exist.
	PutSecret(v *SecretVersion) error
	// Secret returns a version of a tenant's secret, the newest when
	// version is 0; ENotFound if the secret or the version does not exist
	// (including in another tenant).
	Secret(tenant, name string, version int64) (*SecretVersion, error)
	// SecretVersions returns every kept version of a secret, newest first;
	// ENotFound if the secret does not exist.
	SecretVersions(tenant, name string) ([]*SecretVersion, error)
	// Secrets lists a tenant's secrets ordered by name, those with name >
	// p.After, at most p.Limit of them; never nil.
	Secrets(tenant string, p Page) ([]*SecretInfo, error)
	// LatestSecrets returns the newest version of every secret of the
	// tenant, ordered by name; never nil.
	LatestSecrets(tenant string) ([]*SecretVersion, error)
	// DeleteSecret deletes every version of a secret; ENotFound if it does
	// not exist. Its version numbers stay used.
	DeleteSecret(tenant, name string) error
	// PruneSecretVersions deletes all but the newest keep versions of a
	// secret and returns how many it deleted.
	PruneSecretVersions(tenant, name string, keep int) (int64, error)
}

// KeyringTerm is latchkey.KeyringTerm.
type KeyringTerm = latchkey.KeyringTerm

// SecretVersion is latchkey.SecretVersion.
type SecretVersion = latchkey.SecretVersion

// SecretInfo is latchkey.SecretInfo.
type SecretInfo = latchkey.SecretInfo

// Sealer is latchkey.Sealer.
type Sealer = latchkey.Sealer
