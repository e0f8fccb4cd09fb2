package latchkey

import (
	"errors"
	"net/netip"
	"time"
)

// Records the stores keep and the services read, beside the contracts
// that name them.

// ErrStoreLost is wrapped, beside an EUnavailable *latchkey.Error that
// says why, by the errors of a store whose database was lost under the
// running server (its file deleted or replaced): from then on its writes
// and Ping fail until a restart. The store reports the loss once, when it
// notices it, so callers need not log each such error again.
var ErrStoreLost = errors.New("the database was lost under the running server")

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

// UsageTotal is a key's verifications that ended with Code in a window,
// and the starts (UTC) of the first and last rows in which there were any.
type UsageTotal struct {
	KeyID string
	Code  string
	Count int64
	First time.Time
	Last  time.Time
}

// NetworkTotal is how many distinct client networks used a key in a
// window.
type NetworkTotal struct {
	KeyID    string
	Networks int64
}

// KeyFilter narrows a key list. Empty fields match everything.
type KeyFilter struct {
	Page
	Owner       string
	Environment string
	Name        string
	ParentID    string
	Policy      string
	// State matches the state a key has at Now (see Key.StateAt).
	State State
	Now   time.Time
}

// AuditFilter narrows an audit listing. Empty fields match everything.
type AuditFilter struct {
	AfterSeq int64 // only events with a larger seq
	Limit    int   // at most this many (0: no limit)
	Since    time.Time
	Until    time.Time
	Action   string
	KeyID    string // actor or target
	Result   string
}

// Actor is the authenticated key behind an admin request.
type Actor struct {
	KeyID  string
	Tenant string
	Scopes []string
	// Resources are the key's resource patterns (none: the whole tenant);
	// reading a secret needs "secret:<name>" among them.
	Resources []string
	IP        netip.Addr
	UserAgent string
	// Admission is what the key's limits said when it was authenticated:
	// the RateLimit figures and the concurrency lease Done releases.
	Admission Admission
}

// NewAuditEvent is the successful action of actor (nil: the server itself)
// on tenant's target key (or none), at now, with details.
func NewAuditEvent(actor *Actor, tenant, action, target string, now time.Time, details map[string]string) *AuditEvent {
	e := &AuditEvent{At: now, Tenant: tenant, Action: action, TargetKeyID: target, Result: ResultSuccess, Details: details}
	if actor != nil {
		e.ActorKeyID, e.UserAgent = actor.KeyID, actor.UserAgent
		if actor.IP.IsValid() {
			e.IP = actor.IP.String()
		}
	}
	return e
}
