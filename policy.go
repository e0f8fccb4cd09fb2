package latchkey

import (
	"net/netip"
	"time"
)

// Policy is a named set of settings that keys of a tenant share: a key
// that names it ("policy": "production") takes the policy's scopes,
// resources, address ranges, countries, time windows, limits and expiry,
// and may only narrow them with settings of its own (docs/limits.md,
// "Policies"). A key reads its policy when it is verified, so a policy
// change reaches every key that names it at once, without rewriting them.
type Policy struct {
	Tenant      string `json:"tenant"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Scopes and Resources bound the key's: a key with none of its own
	// takes these, a key with its own keeps those these allow.
	Scopes    []string `json:"scopes"`
	Resources []string `json:"resources"`
	// IPAllow, Countries and TimeWindows apply to a key that has none of
	// its own.
	IPAllow     []netip.Prefix `json:"ip_allow"`
	Countries   []string       `json:"countries"`
	TimeWindows []TimeWindow   `json:"time_windows"`
	// RateLimits are enforced on each key besides its own windows.
	RateLimits []RateLimit `json:"ratelimits"`
	// Quota is each key's quota when it has none of its own.
	Quota *Quota `json:"quota,omitempty"`
	// MaxConcurrent bounds each key's requests in flight (the smaller of
	// this and the key's own, when both are set).
	MaxConcurrent int `json:"max_concurrent,omitempty"`
	// ExpiresAfter ends each key this long after its creation (or at its
	// own expiry, if that is earlier); 0: no expiry from the policy.
	ExpiresAfter Duration `json:"expires_after,omitempty"`
	// Condition is a CEL expression every key of the policy must satisfy
	// besides its own (docs/limits.md, "Conditions"); empty for none.
	Condition string    `json:"condition,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Preset is true for a built-in policy (PresetPolicies) that the
	// tenant has not replaced with one of its own; presets are not stored.
	Preset bool `json:"preset,omitempty"`
}

// Owner is what a tenant records about the owner of keys (the seeds'
// client id): limits that all of the owner's keys share, checked with each
// key's own (the stricter wins), so that minting more keys does not buy
// more requests. Owners are named by keys' Owner field; an owner without a
// record has no limits of its own.
type Owner struct {
	Tenant string `json:"tenant"`
	ID     string `json:"id"`
	// RateLimits are counted once for all of the owner's keys.
	RateLimits []RateLimit `json:"ratelimits"`
	// Quota is a periodic allowance shared by the owner's keys (credit
	// balances are a key's own).
	Quota     *Quota         `json:"quota,omitempty"`
	Meta      map[string]any `json:"meta"`
	CreatedAt time.Time      `json:"created_at,omitzero"`
	UpdatedAt time.Time      `json:"updated_at,omitzero"`
}

// Bound is what governs a key besides its own settings, as the verify
// path reads it with the key (HashReader.KeyByHash): the policy the key
// names and its owner's record. Either is nil when there is none stored
// (a preset policy is not stored).
type Bound struct {
	Policy *Policy
	Owner  *Owner
}

// NamedCost is what a request spends of a named rate window whose Apply is
// ApplyOnRequest ("tokens": 1200 for an LLM call).
type NamedCost struct {
	Name string `json:"name"`
	Cost int64  `json:"cost"`
}

// Apply values of a RateLimit.
const (
	// ApplyAlways (the default, written as "") counts every request as one.
	ApplyAlways = ""
	// ApplyOnRequest counts only requests that name the window with a
	// cost (NamedCost), by that cost.
	ApplyOnRequest = "on_request"
)

// MaxNamedCosts bounds the named costs one request may carry.
const MaxNamedCosts = 8

// ValidPolicyName reports whether name can name a policy: 1–63 of
// [a-z0-9_-], starting with a letter or digit (as a tenant id), so that it
// fits a URL segment and a change notice.
func ValidPolicyName(name string) bool { return ValidTenantID(name) }

// OwnerQuotaID is the id under which a limiter keeps an owner's shared
// quota consumption (QuotaStore): no key id starts with "owner:", and a
// tenant id holds no ':'.
func OwnerQuotaID(tenant, owner string) string { return "owner:" + tenant + ":" + owner }

// ParseOwnerQuotaID splits an OwnerQuotaID; ok is false for a key id.
func ParseOwnerQuotaID(id string) (tenant, owner string, ok bool) {
	const p = "owner:"
	if len(id) <= len(p) || id[:len(p)] != p {
		return "", "", false
	}
	rest := id[len(p):]
	for i := 0; i < len(rest); i++ {
		if rest[i] == ':' {
			return rest[:i], rest[i+1:], ValidTenantID(rest[:i])
		}
	}
	return "", "", false
}
