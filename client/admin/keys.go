package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/wire"
)

// KeySettings are the fields of a key that CreateKey and DeriveKey set and
// UpdateKey changes. A nil pointer, slice or map leaves its field out of
// the request: the server's default on create, unchanged on update. An
// empty non-nil slice or map sets the field to none (no scopes, no
// address allowlist, no rate windows, …).
type KeySettings struct {
	Name, Owner, Environment *string
	Scopes, Resources        []string
	Meta                     map[string]any
	// IPAllow lists addresses and CIDR ranges the key may be used from.
	IPAllow []string
	// Countries lists ISO 3166-1 alpha-2 codes the key may be used from.
	Countries []string
	// Expiry: at most one of ExpiresIn (from now, > 0), ExpiresAt and
	// NoExpiry (which removes it).
	ExpiresIn time.Duration
	ExpiresAt time.Time
	NoExpiry  bool
	// RateLimits, TimeWindows: see latchkey.RateLimit, latchkey.TimeWindow.
	RateLimits  []latchkey.RateLimit
	TimeWindows []latchkey.TimeWindow
	// Quota sets the quota or credit balance; NoQuota removes it.
	Quota         *latchkey.Quota
	NoQuota       bool
	MaxConcurrent *int
	LeaseTTL      *time.Duration
	// Policy names the tenant's policy (or a preset) the key takes its
	// settings from; a pointer to "" removes it (UpdateKey).
	Policy *string
	// Condition is a CEL expression the request must satisfy
	// (docs/limits.md, "Conditions"); a pointer to "" removes it.
	Condition *string
}

// KeyParams are CreateKey's and DeriveKey's: the key's settings and its
// display prefix ("": the server's default, or the parent's).
type KeyParams struct {
	KeySettings
	Prefix string
}

// settingsJSON is KeySettings on the wire (the server's settingsBody).
type settingsJSON struct {
	Name          *string               `json:"name,omitempty"`
	Owner         *string               `json:"owner,omitempty"`
	Environment   *string               `json:"environment,omitempty"`
	Scopes        []string              `json:"scopes,omitzero"`
	Resources     []string              `json:"resources,omitzero"`
	Meta          map[string]any        `json:"meta,omitzero"`
	IPAllow       []string              `json:"ip_allow,omitzero"`
	Countries     []string              `json:"countries,omitzero"`
	ExpiresIn     string                `json:"expires_in,omitempty"`
	ExpiresAt     json.RawMessage       `json:"expires_at,omitempty"`
	RateLimits    []latchkey.RateLimit  `json:"ratelimits,omitzero"`
	TimeWindows   []latchkey.TimeWindow `json:"time_windows,omitzero"`
	Quota         json.RawMessage       `json:"quota,omitempty"`
	MaxConcurrent *int                  `json:"max_concurrent,omitempty"`
	LeaseTTL      string                `json:"lease_ttl,omitempty"`
	Policy        *string               `json:"policy,omitempty"`
	Condition     *string               `json:"condition,omitempty"`
	Prefix        string                `json:"prefix,omitempty"`
}

var jsonNull = json.RawMessage("null")

// encode checks s and returns its request body. Errors: *Error invalid.
func (s *KeySettings) encode() (settingsJSON, error) {
	b := settingsJSON{
		Name: s.Name, Owner: s.Owner, Environment: s.Environment,
		Scopes: s.Scopes, Resources: s.Resources, Meta: s.Meta, IPAllow: s.IPAllow, Countries: s.Countries,
		RateLimits: s.RateLimits, TimeWindows: s.TimeWindows, MaxConcurrent: s.MaxConcurrent, Policy: s.Policy,
		Condition: s.Condition,
	}
	n := 0
	for _, set := range []bool{s.ExpiresIn != 0, !s.ExpiresAt.IsZero(), s.NoExpiry} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return b, invalid("give at most one of ExpiresIn, ExpiresAt and NoExpiry")
	case s.ExpiresIn < 0:
		return b, invalid("ExpiresIn must be positive")
	case s.ExpiresIn > 0:
		b.ExpiresIn = latchkey.FormatDuration(s.ExpiresIn)
	case !s.ExpiresAt.IsZero():
		b.ExpiresAt, _ = json.Marshal(s.ExpiresAt.UTC().Format(time.RFC3339Nano))
	case s.NoExpiry:
		b.ExpiresAt = jsonNull
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
	if s.LeaseTTL != nil {
		b.LeaseTTL = latchkey.FormatDuration(*s.LeaseTTL)
	}
	return b, nil
}

func invalid(msg string) *Error { return &Error{Code: wire.EInvalid, Message: msg} }

// CreateKey issues a key (POST /v1/keys); its plaintext is in the answer
// only. Needs keys:write. Errors: invalid, forbidden.
func (c *Client) CreateKey(ctx context.Context, p KeyParams, opts ...CallOption) (*IssuedKey, error) {
	return c.issue(ctx, "/v1/keys", p, opts)
}

// DeriveKey issues a child of parentID within its scopes, resources and
// expiry (POST /v1/keys/{id}/derive). Needs keys:derive. Errors: invalid,
// forbidden, not_found.
func (c *Client) DeriveKey(ctx context.Context, parentID string, p KeyParams, opts ...CallOption) (*IssuedKey, error) {
	return c.issue(ctx, "/v1/keys/"+esc(parentID)+"/derive", p, opts)
}

func (c *Client) issue(ctx context.Context, path string, p KeyParams, opts []CallOption) (*IssuedKey, error) {
	body, err := p.KeySettings.encode()
	if err != nil {
		return nil, err
	}
	body.Prefix = p.Prefix
	return do[IssuedKey](ctx, c, request{method: "POST", path: path, body: body}, opts)
}

// KeyFilter selects keys to list: only those matching every field given,
// one page at a time.
type KeyFilter struct {
	Owner, Environment, Name string
	// Resource keeps the keys whose resources cover it ("agent:NAME":
	// an agent's keys). A page may then hold fewer keys than asked, with
	// a cursor to go on.
	Resource string
	State    latchkey.State
	// ParentID lists the keys derived from this key.
	ParentID string
	Page
}

// ListKeys lists the tenant's keys (GET /v1/keys). Needs keys:read.
// Errors: invalid (a bad cursor, limit or state).
func (c *Client) ListKeys(ctx context.Context, f KeyFilter, opts ...CallOption) (*KeyList, error) {
	q := f.Page.query(nil)
	setIf(q, "owner", f.Owner)
	setIf(q, "environment", f.Environment)
	setIf(q, "name", f.Name)
	setIf(q, "state", string(f.State))
	setIf(q, "parent_id", f.ParentID)
	setIf(q, "resource", f.Resource)
	return do[KeyList](ctx, c, request{method: "GET", path: "/v1/keys", query: q}, opts)
}

// GetKey reads one key (GET /v1/keys/{id}). Needs keys:read. Errors:
// not_found.
func (c *Client) GetKey(ctx context.Context, id string, opts ...CallOption) (*KeyDetail, error) {
	return do[KeyDetail](ctx, c, request{method: "GET", path: "/v1/keys/" + esc(id)}, opts)
}

// UpdateKey changes the fields s gives (PATCH /v1/keys/{id}). Needs
// keys:write. Errors: invalid, forbidden, not_found, conflict.
func (c *Client) UpdateKey(ctx context.Context, id string, s KeySettings, opts ...CallOption) (*latchkey.Key, error) {
	body, err := s.encode()
	if err != nil {
		return nil, err
	}
	return do[latchkey.Key](ctx, c, request{method: "PATCH", path: "/v1/keys/" + esc(id), body: body}, opts)
}

// RotateParams are RotateKey's.
type RotateParams struct {
	// Grace is how long the old key keeps working (nil: the server's
	// default, 1h; 0 ends it at once).
	Grace *time.Duration
	// ExpiresIn is the new key's lifetime (0: the old key's).
	ExpiresIn time.Duration
}

// RotateKey issues a successor of id (POST /v1/keys/{id}/rotate); the old
// key works until its grace period ends. Needs keys:write. Errors:
// invalid, not_found, conflict.
func (c *Client) RotateKey(ctx context.Context, id string, p RotateParams, opts ...CallOption) (*IssuedKey, error) {
	var body struct {
		GracePeriod string `json:"grace_period,omitempty"`
		ExpiresIn   string `json:"expires_in,omitempty"`
	}
	if p.Grace != nil {
		body.GracePeriod = latchkey.FormatDuration(*p.Grace)
	}
	if p.ExpiresIn < 0 {
		return nil, invalid("ExpiresIn must be positive")
	}
	if p.ExpiresIn > 0 {
		body.ExpiresIn = latchkey.FormatDuration(p.ExpiresIn)
	}
	return do[IssuedKey](ctx, c, request{method: "POST", path: "/v1/keys/" + esc(id) + "/rotate", body: body}, opts)
}

// SuspendParams are SuspendKey's.
type SuspendParams struct {
	// For is how long (0: until resumed).
	For time.Duration
	// Reason is kept with the key and in the audit trail.
	Reason string
}

// SuspendKey stops id and the keys derived from it, until resumed or for
// a while (POST /v1/keys/{id}/suspend). Needs keys:write. Errors: invalid,
// not_found, conflict.
func (c *Client) SuspendKey(ctx context.Context, id string, p SuspendParams, opts ...CallOption) (*latchkey.Key, error) {
	var body struct {
		Duration string `json:"duration,omitempty"`
		Reason   string `json:"reason,omitempty"`
	}
	if p.For < 0 {
		return nil, invalid("For must be positive; leave it 0 to suspend until resumed")
	}
	if p.For > 0 {
		body.Duration = latchkey.FormatDuration(p.For)
	}
	body.Reason = p.Reason
	return do[latchkey.Key](ctx, c, request{method: "POST", path: "/v1/keys/" + esc(id) + "/suspend", body: body}, opts)
}

// ResumeKey ends a suspension (POST /v1/keys/{id}/resume). Needs
// keys:write. Errors: not_found, conflict.
func (c *Client) ResumeKey(ctx context.Context, id string, opts ...CallOption) (*latchkey.Key, error) {
	return do[latchkey.Key](ctx, c, request{method: "POST", path: "/v1/keys/" + esc(id) + "/resume"}, opts)
}

// RevokeKey stops id and the keys derived from it for good (POST
// /v1/keys/{id}/revoke). Needs keys:write. Errors: not_found.
func (c *Client) RevokeKey(ctx context.Context, id, reason string, opts ...CallOption) (*latchkey.Key, error) {
	body := struct {
		Reason string `json:"reason,omitempty"`
	}{reason}
	return do[latchkey.Key](ctx, c, request{method: "POST", path: "/v1/keys/" + esc(id) + "/revoke", body: body}, opts)
}

// VerifyRequest is what VerifyKey checks.
type VerifyRequest struct {
	Key      string
	Scopes   []string // every one required
	Resource string
	// IP checks as if the call came from this address ("": the address the
	// server sees).
	IP string
	// Cost is the quota units the check consumes (nil: the server's
	// default, 1).
	Cost *int64
	// Limits are named costs: what the request spends of the key's and
	// its owner's on-request rate windows ({"tokens", 1200}); at most
	// latchkey.MaxNamedCosts.
	Limits []latchkey.NamedCost
}

// VerifyKey checks a key as a protected service would (POST
// /v1/keys/verify). It never sends the client's admin key: the route needs
// none. A key that is not VALID is an answer, not an error: see its
// Code. Errors: invalid (a malformed scope, resource, address or cost),
// rate_limited (the server's guard).
func (c *Client) VerifyKey(ctx context.Context, v VerifyRequest, opts ...CallOption) (*VerifyResponse, error) {
	body := struct {
		Key      string               `json:"key"`
		Scopes   []string             `json:"scopes,omitempty"`
		Resource string               `json:"resource,omitempty"`
		IP       string               `json:"ip,omitempty"`
		Cost     *int64               `json:"cost,omitempty"`
		Limits   []latchkey.NamedCost `json:"limits,omitempty"`
	}{v.Key, v.Scopes, v.Resource, v.IP, v.Cost, v.Limits}
	return do[VerifyResponse](ctx, c, request{method: "POST", path: "/v1/keys/verify", body: body, noKey: true, hide: []string{v.Key}}, opts)
}

// UsageParams select KeyUsage's report. Zero values take the server's
// defaults (hourly buckets over the window ending now).
type UsageParams struct {
	Bucket   string // "minute", "hour" or "day"
	From, To time.Time
}

// KeyUsage reads a key's recorded usage (GET /v1/keys/{id}/usage). Needs
// keys:read. Errors: invalid, not_found.
func (c *Client) KeyUsage(ctx context.Context, id string, p UsageParams, opts ...CallOption) (*UsageReport, error) {
	return do[UsageReport](ctx, c, request{method: "GET", path: "/v1/keys/" + esc(id) + "/usage", query: p.values()}, opts)
}

// ExportKeys streams every key of the tenant, configuration and hash, as
// JSON lines (GET /v1/keys/export); the caller reads and closes it. The
// client's timeout bounds only the wait for the answer to start. The
// stream is sensitive: its hashes make the keys work elsewhere. Needs
// keys:read.
func (c *Client) ExportKeys(ctx context.Context) (io.ReadCloser, error) {
	res, err := c.stream(ctx, request{method: "GET", path: "/v1/keys/export"}, nil, "", c.timeout)
	if err != nil {
		return nil, err
	}
	return res.Body, nil
}

// Import formats (ImportParams.Format).
const (
	ImportJSONL  = "jsonl"     // an export: one key per line
	ImportPlain  = "plaintext" // one plaintext key per line
	ImportSHA256 = "sha256"    // one hex SHA-256 of a key per line
	ImportEnv    = "env"       // a .env file's API_KEYS line
)

// ImportParams are ImportKeys'. The settings apply to every imported key
// (a jsonl import takes none: its lines carry them); nil leaves one out.
type ImportParams struct {
	Format                   string // "": plaintext
	Name, Owner, Environment *string
	Scopes                   []string // nil: left out; empty: none
}

// ImportKeys uploads body, read as it goes, as an import (POST
// /v1/keys/import) and returns what the server did. The server answers
// when it has read it all, so no timeout bounds the call: end it with
// ctx. Needs keys:write. Errors: invalid, too_large.
func (c *Client) ImportKeys(ctx context.Context, body io.Reader, p ImportParams, opts ...CallOption) (*ImportResult, error) {
	q := url.Values{}
	if p.Format != "" {
		q.Set("format", p.Format)
	}
	for name, v := range map[string]*string{"name": p.Name, "owner": p.Owner, "environment": p.Environment} {
		if v != nil {
			q.Set(name, *v)
		}
	}
	if p.Scopes != nil {
		q.Set("scopes", strings.Join(p.Scopes, ","))
	}
	return send[ImportResult](ctx, c, request{method: "POST", path: "/v1/keys/import", query: q}, body, "text/plain", opts)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
