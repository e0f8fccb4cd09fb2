package latchkey

import (
	"encoding/json"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/latchkeyhq/latchkey/wire"
)

// State is a key's life-cycle state. Only active, suspended and revoked are
// stored; expired is derived from ExpiresAt, and a rotated-out key whose
// grace period has ended reads as revoked.
type State string

// Key states.
const (
	StateActive    State = "active"
	StateSuspended State = "suspended"
	StateRevoked   State = "revoked"
	StateExpired   State = "expired"
)

// ValidState reports whether s names a state a list may filter by.
func ValidState(s State) bool {
	switch s {
	case StateActive, StateSuspended, StateRevoked, StateExpired:
		return true
	}
	return false
}

// Verification codes, as in the API contract.
const (
	CodeValid               = wire.CodeValid
	CodeMalformed           = wire.CodeMalformed
	CodeNotFound            = wire.CodeNotFound
	CodeExpired             = wire.CodeExpired
	CodeRevoked             = wire.CodeRevoked
	CodeSuspended           = wire.CodeSuspended
	CodeIPNotAllowed        = wire.CodeIPNotAllowed
	CodeOutsideTimeWindow   = wire.CodeOutsideTimeWindow
	CodeInsufficientScope   = wire.CodeInsufficientScope
	CodeResourceNotAllowed  = wire.CodeResourceNotAllowed
	CodeConditionFailed     = wire.CodeConditionFailed
	CodeRateLimited         = wire.CodeRateLimited
	CodeQuotaExceeded       = wire.CodeQuotaExceeded
	CodeConcurrencyExceeded = wire.CodeConcurrencyExceeded
)

// OperatorTenant is the tenant created on first start; its root key may
// manage other tenants.
const OperatorTenant = "operator"

// Tenant isolates keys and everything attached to them.
type Tenant struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Key is a stored API key: its hash and everything that governs its use.
// It never holds the plaintext.
type Key struct {
	ID          string         `json:"id"`
	Tenant      string         `json:"tenant"`
	Name        string         `json:"name"`
	Owner       string         `json:"owner"`
	Environment string         `json:"environment"`
	Prefix      string         `json:"prefix"`
	Start       string         `json:"start"`
	Hash        [32]byte       `json:"-"`
	Scopes      []string       `json:"scopes"`
	Resources   []string       `json:"resources"`
	Meta        map[string]any `json:"meta"`
	IPAllow     []netip.Prefix `json:"ip_allow"`
	// Countries, when not empty, lists the ISO 3166-1 alpha-2 codes of the
	// countries the key may be used from (needs the server's GeoIP database).
	Countries   []string     `json:"countries"`
	TimeWindows []TimeWindow `json:"time_windows"`
	RateLimits  []RateLimit  `json:"ratelimits"`
	Quota       *Quota       `json:"quota,omitempty"`
	// MaxConcurrent bounds the requests in flight (0: unbounded); each
	// admitted request holds a lease for at most LeaseTTL (0: the default).
	MaxConcurrent int       `json:"max_concurrent,omitempty"`
	LeaseTTL      Duration  `json:"lease_ttl,omitempty"`
	ExpiresAt     time.Time `json:"expires_at,omitzero"`
	// Policy names the tenant's policy (or a preset) the key takes its
	// settings from; empty for none. See Policy.
	Policy string `json:"policy,omitempty"`
	// Condition is a CEL expression over the request that must hold for
	// the key to be allowed (docs/limits.md, "Conditions"); empty for none.
	Condition string `json:"condition,omitempty"`
	// Bound is the key's policy and owner record as the verify path's
	// KeyByHash reads them with the key; nil elsewhere (Key, Keys) and
	// when neither is stored. Never encoded.
	Bound       *Bound `json:"-"`
	State       State  `json:"state"`
	StateReason string `json:"state_reason,omitempty"`
	// SuspendedUntil is zero for a suspension that lasts until resumed.
	SuspendedUntil time.Time `json:"suspended_until,omitzero"`
	// SuspendedBy names the ancestor whose suspension reached this key; it
	// is empty for a key suspended in its own right. Resuming the ancestor
	// resumes only the keys it suspended.
	SuspendedBy string    `json:"suspended_by,omitempty"`
	ParentID    string    `json:"parent_id,omitempty"`
	RotatedFrom string    `json:"rotated_from,omitempty"`
	RotatedTo   string    `json:"rotated_to,omitempty"`
	GraceUntil  time.Time `json:"grace_until,omitzero"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
	// LastUsedAt is when the key was last presented to a verification that
	// found it, as of the usage recorder's last flush (at most its flush
	// interval behind). Only the recorder writes it.
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

// StateAt returns the state the key has at now: revoked (including a
// rotated-out key past its grace), then suspended (until SuspendedUntil),
// then expired, else active.
func (k *Key) StateAt(now time.Time) State {
	if k.State == StateRevoked || !k.GraceUntil.IsZero() && !now.Before(k.GraceUntil) {
		return StateRevoked
	}
	if k.State == StateSuspended && (k.SuspendedUntil.IsZero() || now.Before(k.SuspendedUntil)) {
		return StateSuspended
	}
	if !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) {
		return StateExpired
	}
	return StateActive
}

// ValidTenantID reports whether id is 1–63 of [a-z0-9_-], starting with a
// letter or digit.
func ValidTenantID(id string) bool {
	if len(id) == 0 || len(id) > 63 || id[0] == '_' || id[0] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Limits on free-text fields.
const (
	MaxNameLen  = 200
	MaxMetaSize = 16 << 10
)

// ValidateText checks a free-text field: valid UTF-8, no control characters,
// at most max bytes; required fields may not be blank.
func ValidateText(field, s string, max int, required bool) error {
	if required && strings.TrimSpace(s) == "" {
		return Errorf(EInvalid, "%s is required", field)
	}
	if len(s) > max {
		return Errorf(EInvalid, "%s is longer than %d bytes", field, max)
	}
	if !utf8.ValidString(s) {
		return Errorf(EInvalid, "%s is not valid UTF-8", field)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return Errorf(EInvalid, "%s contains a control character", field)
		}
	}
	return nil
}

// ValidateEnvironment checks an environment tag such as "production": up to
// 32 of [a-z0-9_-].
func ValidateEnvironment(env string) error {
	if len(env) > 32 {
		return Errorf(EInvalid, "environment is longer than 32 characters")
	}
	for i := 0; i < len(env); i++ {
		c := env[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return Errorf(EInvalid, "environment may hold only a-z, 0-9, '_' and '-'")
		}
	}
	return nil
}

// ValidateMeta checks that meta encodes to at most MaxMetaSize bytes of JSON.
func ValidateMeta(meta map[string]any) error {
	if meta == nil {
		return nil
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return Errorf(EInvalid, "meta cannot be encoded as JSON")
	}
	if len(b) > MaxMetaSize {
		return Errorf(EInvalid, "meta is larger than %d bytes of JSON", MaxMetaSize)
	}
	return nil
}

// ParseIPAllow parses an allowlist of IP addresses and CIDR ranges ("10.0.0.0/8",
// "192.0.2.7", "2001:db8::/32"); a bare address becomes a single-host range.
// An IPv6 zone ("fe80::1%eth0") is refused, never dropped.
func ParseIPAllow(in []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(in))
	for _, s := range in {
		s = strings.TrimSpace(s)
		var p netip.Prefix
		if strings.Contains(s, "/") {
			var err error
			if p, err = netip.ParsePrefix(s); err != nil {
				return nil, Errorf(EInvalid, "ip_allow %q: not an IP address or CIDR range", clip(s, 60))
			}
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, Errorf(EInvalid, "ip_allow %q: not an IP address or CIDR range", clip(s, 60))
			}
			if a.Zone() != "" {
				// A zone names an interface of one host; an allowlist
				// entry cannot mean it, and dropping it would widen it.
				return nil, Errorf(EInvalid, "ip_allow %q: an IPv6 zone (%%…) is not allowed", clip(s, 60))
			}
			a = a.Unmap()
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return nil, Errorf(EInvalid, "ip_allow %q: an IPv4-mapped range needs at least /96", clip(s, 60))
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// IPAllowed reports whether ip is inside one of the allowlist's ranges; an
// empty allowlist allows every address.
func IPAllowed(allow []netip.Prefix, ip netip.Addr) bool {
	if len(allow) == 0 {
		return true
	}
	ip = ip.Unmap()
	for _, p := range allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// KeyNotFound is the error for a key id that is not in the caller's
// tenant: unknown and another tenant's answer alike.
func KeyNotFound(id string) error {
	return Errorf(ENotFound, "no key %.60q in this tenant", id)
}
