package admin

import (
	"net/netip"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/wire"
)

// The answers whose server type lives in a service package (audit, keys,
// httpapi) are declared here with the same JSON; client/admin's
// roundtrip_test.go holds each to its server type. The others are the
// root's records (latchkey.Key, latchkey.Secret, …) or the lists and
// envelopes the server builds around them.

// IssuedKey is a key just minted (CreateKey, DeriveKey, RotateKey) with
// its plaintext, which the server shows only this once.
type IssuedKey struct {
	latchkey.Key
	Plaintext string `json:"key"`
}

// KeyDetail is a key as GetKey shows it: with its quota as the next
// verification would find it (nil for a key without a quota).
type KeyDetail struct {
	latchkey.Key
	QuotaUsage *wire.Limit `json:"quota_usage,omitempty"`
}

// KeyList is a page of keys.
type KeyList struct {
	Keys       []latchkey.Key `json:"keys"`
	NextCursor string         `json:"next_cursor"`
}

// NewTenant is a tenant just created and its first admin key, whose
// plaintext is shown only this once.
type NewTenant struct {
	Tenant latchkey.Tenant `json:"tenant"`
	KeyID  string          `json:"key_id"`
	Key    string          `json:"key"`
}

// TenantList is a page of tenants.
type TenantList struct {
	Tenants    []latchkey.Tenant `json:"tenants"`
	NextCursor string            `json:"next_cursor"`
}

// SecretList is a page of secrets, without their values.
type SecretList struct {
	Secrets    []latchkey.SecretInfo `json:"secrets"`
	NextCursor string                `json:"next_cursor"`
}

// NewWebhook is a webhook just created with its signing secret, which the
// server shows only this once.
type NewWebhook struct {
	latchkey.Webhook
	Secret string `json:"secret"`
}

// WebhookList is a page of webhooks.
type WebhookList struct {
	Webhooks   []latchkey.Webhook `json:"webhooks"`
	NextCursor string             `json:"next_cursor"`
}

// DeliveryList is a page of a webhook's delivery log, newest first.
type DeliveryList struct {
	Deliveries []latchkey.Delivery `json:"deliveries"`
	NextCursor string              `json:"next_cursor"`
}

// AuditPage is a page of the audit log, oldest first. NextAfter is the
// seq to pass as AuditFilter.After for the next page; 0 at the end.
type AuditPage struct {
	Events    []*latchkey.AuditEvent `json:"events"`
	NextAfter int64                  `json:"next_after"`
}

// AuditVerdict is the result of checking the tenant's hash chain (the
// server's audit.Verdict).
type AuditVerdict struct {
	OK       bool  `json:"ok"`
	Events   int64 `json:"events"`
	BrokenAt int64 `json:"broken_seq,omitempty"`
	// Finding is one of latchkey.AuditFindings when the chain is broken.
	Finding string `json:"finding,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Signed says whether the log's end was checked against a signed
	// checkpoint.
	Signed bool `json:"signed"`
}

// SecurityEvent is a security anomaly as listings show it (the server's
// audit.SecurityEvent): the event's envelope with its data spread out.
type SecurityEvent struct {
	ID     string    `json:"id"`
	At     time.Time `json:"at"`
	Tenant string    `json:"tenant"`
	KeyID  string    `json:"key_id,omitempty"`
	latchkey.Anomaly
}

// SecurityEventList is a page of security events, oldest first.
type SecurityEventList struct {
	Events     []SecurityEvent `json:"events"`
	NextCursor string          `json:"next_cursor"`
}

// UsageReport is a key's recorded usage (the server's audit.UsageReport).
type UsageReport struct {
	KeyID  string           `json:"key_id"`
	Bucket string           `json:"bucket"`
	From   time.Time        `json:"from"`
	To     time.Time        `json:"to"`
	Totals map[string]int64 `json:"totals"`
	// Series has one entry per bucket of the window, empty ones included.
	Series     []UsageBucket  `json:"series"`
	PeakHours  []PeakHour     `json:"peak_hours"`
	Networks   []NetworkCount `json:"networks"`
	LastUsedAt time.Time      `json:"last_used_at,omitzero"`
}

// UsageBucket counts verifications by code in the bucket starting at
// Start.
type UsageBucket struct {
	Start  time.Time        `json:"start"`
	Counts map[string]int64 `json:"counts"`
}

// PeakHour is an hour of the day (UTC, 0–23) and the verifications in it.
type PeakHour struct {
	Hour  int   `json:"hour"`
	Count int64 `json:"count"`
}

// NetworkCount is a client network and the verifications from it.
type NetworkCount struct {
	Network string `json:"network"`
	Count   int64  `json:"count"`
}

// ImportResult is what an import did (the server's keys.ImportResult).
type ImportResult struct {
	Imported int64 `json:"imported"`
	Skipped  int64 `json:"skipped"`
	Invalid  int64 `json:"invalid"`
	// Errors lists the first invalid lines; Invalid counts them all.
	Errors []ImportProblem `json:"errors"`
}

// ImportProblem is one line an import refused.
type ImportProblem struct {
	Line  int64  `json:"line"`
	Error string `json:"error"`
}

// VerifyResponse is the answer of a verification (the server's
// httpapi.VerifyResponse).
type VerifyResponse struct {
	Valid bool   `json:"valid"`
	Code  string `json:"code"`

	KeyID       string         `json:"key_id,omitempty"`
	Tenant      string         `json:"tenant,omitempty"`
	Owner       string         `json:"owner,omitempty"`
	Name        string         `json:"name,omitempty"`
	Environment string         `json:"environment,omitempty"`
	Scopes      []string       `json:"scopes,omitempty"`
	Resources   []string       `json:"resources,omitempty"`
	Meta        map[string]any `json:"meta,omitempty"`
	ExpiresAt   time.Time      `json:"expires_at,omitzero"`

	// Missing names the first required scope, or the resource, the key
	// lacks.
	Missing   string      `json:"missing,omitempty"`
	RateLimit *wire.Limit `json:"ratelimit,omitempty"`
	Quota     *wire.Limit `json:"quota,omitempty"`
	// LeaseID is the concurrency lease the verification took.
	LeaseID string `json:"lease_id,omitempty"`
	// RetryAfter is in seconds.
	RetryAfter int64 `json:"retry_after,omitempty"`
	// LimitedBy is "owner" when the owner's shared limits, not the key's
	// own, denied the request.
	LimitedBy string `json:"limited_by,omitempty"`
}

// ReportHeader is what every report starts with.
type ReportHeader struct {
	Report      string    `json:"report"` // "access", "usage" or "security"
	GeneratedAt time.Time `json:"generated_at"`
	Tenant      string    `json:"tenant"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
}

// AccessReport says who holds which keys with which scopes (the server's
// audit.AccessReport; docs/reports.md).
type AccessReport struct {
	ReportHeader
	Keys   []AccessKey   `json:"keys"`
	Owners []AccessOwner `json:"owners"`
}

// AccessKey is one key of an access report.
type AccessKey struct {
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	Owner       string         `json:"owner"`
	Environment string         `json:"environment"`
	State       latchkey.State `json:"state"`
	Scopes      []string       `json:"scopes"`
	Resources   []string       `json:"resources"`
	ParentID    string         `json:"parent_id,omitempty"`
	CreatedAt   time.Time      `json:"created_at"`
	ExpiresAt   time.Time      `json:"expires_at,omitzero"`
	LastUsedAt  time.Time      `json:"last_used_at,omitzero"`
	IPAllow     []netip.Prefix `json:"ip_allow"`
}

// AccessOwner summarizes an owner's keys.
type AccessOwner struct {
	Owner      string   `json:"owner"`
	Keys       int      `json:"keys"`
	ActiveKeys int      `json:"active_keys"`
	Scopes     []string `json:"scopes"`
}

// TenantUsageReport is the usage report: verifications per key and owner
// by code (the server's audit.TenantUsageReport).
type TenantUsageReport struct {
	ReportHeader
	Grain  latchkey.Grain `json:"grain"`
	Totals UsageCounts    `json:"totals"`
	Keys   []UsageKey     `json:"keys"`
	Owners []UsageOwner   `json:"owners"`
}

// UsageCounts counts verifications: in all, VALID, denied, and by code.
type UsageCounts struct {
	Total  int64            `json:"total"`
	Valid  int64            `json:"valid"`
	Denied int64            `json:"denied"`
	Codes  map[string]int64 `json:"codes"`
}

// UsageKey is one key of a usage report.
type UsageKey struct {
	KeyID       string `json:"key_id"`
	Name        string `json:"name"`
	Owner       string `json:"owner"`
	Environment string `json:"environment"`
	UsageCounts
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	Networks  int64     `json:"networks"`
}

// UsageOwner sums the usage of an owner's keys.
type UsageOwner struct {
	Owner string `json:"owner"`
	Keys  int    `json:"keys"`
	UsageCounts
}

// SecurityReport lists the anomalies of a window with the responses to
// them (the server's audit.SecurityReport).
type SecurityReport struct {
	ReportHeader
	Summary   SecuritySummary   `json:"summary"`
	Anomalies []SecurityAnomaly `json:"anomalies"`
}

// SecuritySummary counts a security report's anomalies.
type SecuritySummary struct {
	Anomalies   int            `json:"anomalies"`
	Responded   int            `json:"responded"`
	Unresponded int            `json:"unresponded"`
	ByKind      map[string]int `json:"by_kind"`
	BySeverity  map[string]int `json:"by_severity"`
}

// SecurityAnomaly is an anomaly and what was done about it.
type SecurityAnomaly struct {
	EventID  string            `json:"event_id"`
	At       time.Time         `json:"at"`
	Kind     string            `json:"kind"`
	Severity string            `json:"severity"`
	KeyID    string            `json:"key_id,omitempty"`
	KeyName  string            `json:"key_name,omitempty"`
	Owner    string            `json:"owner,omitempty"`
	Network  string            `json:"network,omitempty"`
	Summary  string            `json:"summary"`
	Details  map[string]string `json:"details"`

	Responses            []SecurityResponse `json:"responses"`
	FirstResponseAt      time.Time          `json:"first_response_at,omitzero"`
	TimeToRespond        string             `json:"time_to_respond,omitempty"`
	TimeToRespondSeconds *float64           `json:"time_to_respond_seconds,omitempty"`
}

// SecurityResponse is one audited action that answered an anomaly.
type SecurityResponse struct {
	Seq        int64     `json:"seq"`
	At         time.Time `json:"at"`
	Action     string    `json:"action"`
	ActorKeyID string    `json:"actor_key_id,omitempty"`
	Via        string    `json:"via,omitempty"`
	Reason     string    `json:"reason,omitempty"`
}
