package latchkey

import "time"

// Rotation is a key's automatic rotation: every Interval the key named
// by KeyID is rotated (its successor then takes KeyID), the old key
// keeps working for Grace, and the successor's plaintext is sealed as
// the secret Secret of the tenant, for the key Reader to fetch through
// the broker.
type Rotation struct {
	ID     string // "rot_…"; stays across rotations
	Tenant string
	KeyID  string // the key the next rotation rotates
	// Interval is the time between rotations; Grace how long a rotated
	// key keeps working.
	Interval Duration
	Grace    Duration
	// Secret is the name of the secret each successor is sealed as; one
	// rotation per secret name in a tenant.
	Secret string
	// Reader is the key id that may read Secret through the broker
	// ("" leaves it to the secret scopes and resources alone).
	Reader string
	// NextAt is when the next rotation is due.
	NextAt    time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
}

// SecretMetaReader is the meta field of a secret version that names the
// one key allowed to read its value (a rotation's successor is sealed
// with its rotation's Reader there); without it, a secret is read by any
// key its scopes and resources allow.
const SecretMetaReader = "reader"
