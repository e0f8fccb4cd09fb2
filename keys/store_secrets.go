package keys

import (
	"time"

	"github.com/latchkeyhq/latchkey"
)

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

// SecretVersion is one stored version of a brokered secret. Ciphertext is
// the value sealed by the keyring with the tenant, name and version as
// associated data.
type SecretVersion struct {
	Tenant     string
	Name       string
	Version    int64
	Ciphertext []byte
	// ExpiresIn is how long, in seconds, clients are told to cache the
	// value (0: the service's default).
	ExpiresIn int64
	Meta      map[string]string
	CreatedAt time.Time
	// CreatedBy is the key id that wrote the version.
	CreatedBy string
}

// SecretInfo describes a secret without its value.
type SecretInfo struct {
	Name string `json:"name"`
	// Version is the newest version, Versions how many are kept.
	Version   int64             `json:"version"`
	Versions  int64             `json:"versions"`
	ExpiresIn int64             `json:"expires_in"`
	Meta      map[string]string `json:"meta"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// Sealer is latchkey.Sealer.
type Sealer = latchkey.Sealer
