package admin

import (
	"context"
	"encoding/json"
	"net/url"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// PolicySettings are a policy's fields that CreatePolicy sets and
// UpdatePolicy changes. As with KeySettings, a nil pointer, slice or map
// leaves its field out of the request (empty on create, unchanged on
// update), and an empty non-nil slice sets the field to none.
type PolicySettings struct {
	Description        *string
	Scopes, Resources  []string
	IPAllow, Countries []string
	TimeWindows        []latchkey.TimeWindow
	RateLimits         []latchkey.RateLimit
	// Quota sets each key's quota (for keys without one of their own);
	// NoQuota removes it (UpdatePolicy); Uses N is shorthand for a credit
	// balance of N.
	Quota         *latchkey.Quota
	NoQuota       bool
	Uses          *int64
	MaxConcurrent *int
	// ExpiresAfter ends each key this long after its creation (0: no
	// expiry from the policy).
	ExpiresAfter *time.Duration
	// Condition is a CEL expression every key's requests must satisfy;
	// a pointer to "" removes it.
	Condition *string
}

// policyJSON is PolicySettings on the wire (the server's policyBody).
type policyJSON struct {
	Name          string                `json:"name,omitempty"`
	Description   *string               `json:"description,omitempty"`
	Scopes        []string              `json:"scopes,omitzero"`
	Resources     []string              `json:"resources,omitzero"`
	IPAllow       []string              `json:"ip_allow,omitzero"`
	Countries     []string              `json:"countries,omitzero"`
	TimeWindows   []latchkey.TimeWindow `json:"time_windows,omitzero"`
	RateLimits    []latchkey.RateLimit  `json:"ratelimits,omitzero"`
	Quota         json.RawMessage       `json:"quota,omitempty"`
	Uses          *int64                `json:"uses,omitempty"`
	MaxConcurrent *int                  `json:"max_concurrent,omitempty"`
	ExpiresAfter  string                `json:"expires_after,omitempty"`
	Condition     *string               `json:"condition,omitempty"`
}

func (s *PolicySettings) encode() (policyJSON, error) {
	b := policyJSON{
		Description: s.Description, Scopes: s.Scopes, Resources: s.Resources, IPAllow: s.IPAllow, Countries: s.Countries,
		TimeWindows: s.TimeWindows, RateLimits: s.RateLimits, Uses: s.Uses, MaxConcurrent: s.MaxConcurrent,
		Condition: s.Condition,
	}
	switch {
	case s.Quota != nil && s.NoQuota:
		return b, invalid("give Quota or NoQuota, not both")
	case s.Quota != nil:
		q, err := json.Marshal(s.Quota)
		if err != nil {
			return b, invalid("the quota cannot be encoded")
		}
		b.Quota = q
	case s.NoQuota:
		b.Quota = jsonNull
	}
	if s.ExpiresAfter != nil {
		if *s.ExpiresAfter < 0 {
			return b, invalid("ExpiresAfter must not be negative")
		}
		b.ExpiresAfter = latchkey.FormatDuration(*s.ExpiresAfter)
	}
	return b, nil
}

// PolicyList is a page of policies, the presets the tenant has not
// replaced among them (Preset true).
type PolicyList struct {
	Policies   []*latchkey.Policy `json:"policies"`
	NextCursor string             `json:"next_cursor"`
}

// CreatePolicy creates the tenant's policy name (POST /v1/policies); a
// preset's name gives the tenant its own version of it. Needs
// policies:write. Errors: invalid, forbidden (it grants admin scopes the
// client's key lacks), conflict (the name is taken).
func (c *Client) CreatePolicy(ctx context.Context, name string, s PolicySettings, opts ...CallOption) (*latchkey.Policy, error) {
	if s.NoQuota {
		return nil, invalid("NoQuota applies to UpdatePolicy; leave Quota nil for none")
	}
	body, err := s.encode()
	if err != nil {
		return nil, err
	}
	body.Name = name
	return do[latchkey.Policy](ctx, c, request{method: "POST", path: "/v1/policies", body: body}, opts)
}

// GetPolicy reads the tenant's policy name, or the preset of that name
// (GET /v1/policies/{name}). Needs policies:read. Errors: not_found.
func (c *Client) GetPolicy(ctx context.Context, name string, opts ...CallOption) (*latchkey.Policy, error) {
	return do[latchkey.Policy](ctx, c, request{method: "GET", path: "/v1/policies/" + esc(name)}, opts)
}

// ListPolicies lists the tenant's policies by name (GET /v1/policies).
// Needs policies:read. Errors: invalid.
func (c *Client) ListPolicies(ctx context.Context, p Page, opts ...CallOption) (*PolicyList, error) {
	return do[PolicyList](ctx, c, request{method: "GET", path: "/v1/policies", query: p.query(nil)}, opts)
}

// UpdatePolicy changes the fields s sets (PATCH /v1/policies/{name});
// every key that names the policy takes the change at its next
// verification. Needs policies:write. Errors: invalid, forbidden,
// not_found.
func (c *Client) UpdatePolicy(ctx context.Context, name string, s PolicySettings, opts ...CallOption) (*latchkey.Policy, error) {
	body, err := s.encode()
	if err != nil {
		return nil, err
	}
	return do[latchkey.Policy](ctx, c, request{method: "PATCH", path: "/v1/policies/" + esc(name), body: body}, opts)
}

// DeletePolicy deletes the tenant's policy name (DELETE
// /v1/policies/{name}); a preset of that name applies again. Needs
// policies:write. Errors: not_found, conflict (keys that are not revoked
// name it).
func (c *Client) DeletePolicy(ctx context.Context, name string, opts ...CallOption) error {
	return c.call(ctx, request{method: "DELETE", path: "/v1/policies/" + esc(name)}, nil, opts)
}

// OwnerParams are an owner's record as PutOwner writes it, whole: the
// rate windows and periodic quota every key of the owner shares, and
// free metadata.
type OwnerParams struct {
	RateLimits []latchkey.RateLimit `json:"ratelimits,omitzero"`
	Quota      *latchkey.Quota      `json:"quota,omitempty"`
	Meta       map[string]any       `json:"meta,omitzero"`
}

// OwnerList is a page of owner records.
type OwnerList struct {
	Owners     []*latchkey.Owner `json:"owners"`
	NextCursor string            `json:"next_cursor"`
}

// OwnerUsageReport is the summed usage of an owner's keys (the server's
// audit.OwnerUsageReport).
type OwnerUsageReport struct {
	Owner  string           `json:"owner"`
	Bucket string           `json:"bucket"`
	From   time.Time        `json:"from"`
	To     time.Time        `json:"to"`
	Totals map[string]int64 `json:"totals"`
	Series []UsageBucket    `json:"series"`
	// Keys has each key's totals, busiest first.
	Keys []OwnerKeyUsage `json:"keys"`
	// Truncated: the owner has more keys than the report reads (1000).
	Truncated bool `json:"truncated,omitempty"`
}

// OwnerKeyUsage is one key's share of its owner's usage.
type OwnerKeyUsage struct {
	KeyID      string           `json:"key_id"`
	Name       string           `json:"name"`
	Totals     map[string]int64 `json:"totals"`
	LastUsedAt time.Time        `json:"last_used_at,omitzero"`
}

// OwnerDetail is GetOwner's answer: the record and, on a server with an
// audit service, its keys' usage.
type OwnerDetail struct {
	latchkey.Owner
	Usage *OwnerUsageReport `json:"usage,omitempty"`
}

// PutOwner creates or replaces owner id's record (PUT /v1/owners/{id}):
// from the next verification on, every key whose owner is id shares these
// limits besides its own. Needs keys:write. Errors: invalid.
func (c *Client) PutOwner(ctx context.Context, id string, p OwnerParams, opts ...CallOption) (*latchkey.Owner, error) {
	return do[latchkey.Owner](ctx, c, request{method: "PUT", path: "/v1/owners/" + esc(id), body: p}, opts)
}

// GetOwner reads owner id's record with its keys' usage over the window
// p selects (GET /v1/owners/{id}). Needs keys:read. Errors: invalid,
// not_found (no record, though keys may name the owner: see OwnerUsage).
func (c *Client) GetOwner(ctx context.Context, id string, p UsageParams, opts ...CallOption) (*OwnerDetail, error) {
	return do[OwnerDetail](ctx, c, request{method: "GET", path: "/v1/owners/" + esc(id), query: p.values()}, opts)
}

// ListOwners lists the tenant's owner records by id (GET /v1/owners).
// Needs keys:read. Errors: invalid.
func (c *Client) ListOwners(ctx context.Context, p Page, opts ...CallOption) (*OwnerList, error) {
	return do[OwnerList](ctx, c, request{method: "GET", path: "/v1/owners", query: p.query(nil)}, opts)
}

// OwnerUsage reads the summed usage of every key whose owner is id, with
// or without a record (GET /v1/owners/{id}/usage). Needs keys:read.
// Errors: invalid, not_found (a server without an audit service).
func (c *Client) OwnerUsage(ctx context.Context, id string, p UsageParams, opts ...CallOption) (*OwnerUsageReport, error) {
	return do[OwnerUsageReport](ctx, c, request{method: "GET", path: "/v1/owners/" + esc(id) + "/usage", query: p.values()}, opts)
}

// DeleteOwner deletes owner id's record; its keys keep their owner and
// lose the shared limits (DELETE /v1/owners/{id}). Needs keys:write.
// Errors: not_found.
func (c *Client) DeleteOwner(ctx context.Context, id string, opts ...CallOption) error {
	return c.call(ctx, request{method: "DELETE", path: "/v1/owners/" + esc(id)}, nil, opts)
}

// values is p as a query.
func (p UsageParams) values() url.Values {
	q := url.Values{}
	setIf(q, "bucket", p.Bucket)
	setTime(q, "from", p.From)
	setTime(q, "to", p.To)
	return q
}
