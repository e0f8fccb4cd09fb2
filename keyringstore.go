package latchkey

import "time"

// KeyringTerm is one data key of the keyring, wrapped (sealed) by the
// master key. Terms are numbered from 1; the highest seals new values.
type KeyringTerm struct {
	Term      int64
	Wrapped   []byte
	CreatedAt time.Time
}

// KeyringStore keeps the keyring's data keys, wrapped by the master key,
// and the value that checks a master key against them (package keyring).
type KeyringStore interface {
	// KeyringTerms returns every keyring term, ordered by Term.
	KeyringTerms() ([]KeyringTerm, error)
	// AddKeyringTerm stores a new term; EConflict if its number exists.
	AddKeyringTerm(t KeyringTerm) error
	// RewrapKeyringTerm replaces the wrapped data key of an existing term
	// (after the master key changed); ENotFound if there is no such term.
	RewrapKeyringTerm(term int64, wrapped []byte) error
	// KeyringCheck returns the key-check value sealed by the master key,
	// nil if none was stored yet.
	KeyringCheck() ([]byte, error)
	// SetKeyringCheck stores the key-check value, replacing any.
	SetKeyringCheck(check []byte) error
}

// CheckpointStore keeps the signed checkpoints of the tenants' audit
// chains (the audit anchor re-signs them when the keyring's master key
// changes).
type CheckpointStore interface {
	// AuditCheckpoints returns every checkpoint whose Counter is above
	// after, in Counter order.
	AuditCheckpoints(after int64) ([]*AuditCheckpoint, error)
	// PutAuditCheckpoint stores cp as its tenant's checkpoint (replacing
	// the one before).
	PutAuditCheckpoint(cp *AuditCheckpoint) error
}

// RecordTx is what recording an audited change writes and reads: the audit
// event, the webhook event it raises, and the count of recent ones that
// tells a burst (keys.Service.RecordAudit).
type RecordTx interface {
	AuditWriter
	EventWriter
	EventReader
}

// KeyringTx is what the keyring (package keyring) needs of a store's transaction: its terms and
// check value, and what the callers' audit records and the audit anchor's
// re-signed checkpoints write in the same transaction.
type KeyringTx interface {
	KeyringStore
	RecordTx
	CheckpointStore
}

// KeyringTermInfo describes a term without its key.
type KeyringTermInfo struct {
	Term      int64     `json:"term"`
	CreatedAt time.Time `json:"created_at"`
}

// KeyringStatus is what the keyring holds: its terms, and the one new values are
// sealed with.
type KeyringStatus struct {
	Active int64             `json:"active_term"`
	Terms  []KeyringTermInfo `json:"terms"`
}

// RewrapResult says what the keyring's RewrapFromFile did.
type RewrapResult struct {
	Terms int `json:"terms"`
	// MasterKeyFile is the server's own master key file, now holding the
	// new key; "" when the master key came from the environment, which the
	// operator must change before the next start.
	MasterKeyFile string `json:"master_key_file,omitempty"`
}
