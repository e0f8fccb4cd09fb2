package latchkey

import (
	"encoding/json"
	"time"
)

// Event is something that happened to a tenant's keys that its webhooks may
// be told about. Events are written in the transaction of what caused them
// (a key change, a usage flush, a security check), so an event exists if and
// only if its cause was stored; the webhook dispatcher delivers them from
// there. Security anomalies are events of type EventSecurityAnomaly.
//
// Like audit events, an event never holds a plaintext key or secret value.
type Event struct {
	ID     string    `json:"id"` // "evt_…", sorts by creation time
	Tenant string    `json:"tenant"`
	Type   string    `json:"type"`
	At     time.Time `json:"at"`
	KeyID  string    `json:"key_id,omitempty"`
	// Data is the event's payload, a JSON object (see docs/webhooks.md).
	Data json.RawMessage `json:"data"`
}

// Event types, as in the API contract.
const (
	EventKeyCreated        = "key.created"
	EventKeyRotated        = "key.rotated"
	EventKeyRevoked        = "key.revoked"
	EventKeySuspended      = "key.suspended"
	EventKeyExpiring       = "key.expiring"
	EventKeyQuotaExhausted = "key.quota_exhausted"
	EventSecurityAnomaly   = "security.anomaly"
	// EventKeyLeaked: a key was reported leaked (GitHub secret scanning,
	// latchkey scan --revoke) and revoked or suspended for it.
	EventKeyLeaked = "key.leaked"
)

// EventTypes lists every event type, in the order docs list them.
var EventTypes = []string{
	EventKeyCreated, EventKeyRotated, EventKeyRevoked, EventKeySuspended,
	EventKeyExpiring, EventKeyQuotaExhausted, EventSecurityAnomaly, EventKeyLeaked,
}

// ValidEventType reports whether t names an event type.
func ValidEventType(t string) bool {
	for _, e := range EventTypes {
		if e == t {
			return true
		}
	}
	return false
}

// Security anomaly kinds: the "kind" of a security.anomaly event's data.
const (
	// AnomalyFailedAuthBurst: one client network presented unknown or
	// malformed keys often enough to be blocked by the brute-force guard.
	AnomalyFailedAuthBurst = "failed_auth_burst"
	// AnomalyNewNetwork: a key was used from a client network it had never
	// been used from (within the usage retention), after it had history.
	AnomalyNewNetwork = "new_network"
	// AnomalyUsageSpike: a key's verifications in one minute exceeded a
	// multiple of its trailing per-minute baseline.
	AnomalyUsageSpike = "usage_spike"
	// AnomalyDormantKeyUsed: a key unused for the dormancy period (30 days by
	// default; since its creation if it was never used) was used again.
	AnomalyDormantKeyUsed = "dormant_key_used"
	// AnomalyRotatedKeyUsed: a rotated-out key was presented after its grace
	// period ended.
	AnomalyRotatedKeyUsed = "rotated_key_used"
	// AnomalyScopesWidened: a key's scopes were changed to grant something
	// they did not grant before.
	AnomalyScopesWidened = "scopes_widened"
	// AnomalyMassCreation and AnomalyMassRevocation: many keys of a tenant
	// were created, or revoked, in a short time.
	AnomalyMassCreation   = "mass_creation"
	AnomalyMassRevocation = "mass_revocation"
	// AnomalyAuditTampered: the tenant's audit log was changed outside
	// Latchkey: events added past its head, removed from its end, its head
	// or checkpoint forged, or the whole put back to an older state. Its
	// details name the finding (one of the Audit* kinds) and the seq.
	AnomalyAuditTampered = "audit_tampered"
)

// AnomalyKinds lists every anomaly kind.
var AnomalyKinds = []string{
	AnomalyFailedAuthBurst, AnomalyNewNetwork, AnomalyUsageSpike, AnomalyDormantKeyUsed,
	AnomalyRotatedKeyUsed, AnomalyScopesWidened, AnomalyMassCreation, AnomalyMassRevocation,
	AnomalyAuditTampered,
}

// Anomaly is the data of a security.anomaly event.
type Anomaly struct {
	Kind string `json:"kind"`
	// Severity is "low", "medium" or "high".
	Severity string `json:"severity"`
	// Network is the client network involved (CIDR), if any.
	Network string `json:"network,omitempty"`
	// Summary says what happened in one sentence, for people.
	Summary string `json:"summary"`
	// Details carries the numbers behind the finding.
	Details map[string]string `json:"details,omitempty"`
}

// Anomaly severities.
const (
	SeverityLow    = "low"
	SeverityMedium = "medium"
	SeverityHigh   = "high"
)

// NewEvent returns an event of the given type with data encoded as its
// payload and a fresh id.
func NewEvent(tenant, typ, keyID string, at time.Time, data any) *Event {
	b, err := json.Marshal(data)
	if err != nil {
		// Callers pass maps of strings and structs of plain fields.
		panic("latchkey: encoding event data: " + err.Error())
	}
	return &Event{ID: NewID("evt", at), Tenant: tenant, Type: typ, At: at.UTC().Truncate(time.Microsecond), KeyID: keyID, Data: b}
}
