package httpapi

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/webhook"
)

// The request bodies of the API, each with a decoder that turns bytes into
// service parameters. Decoders are pure so that each can be fuzzed.

// optTime is a time field that distinguishes "absent" from "null".
type optTime struct {
	Set  bool
	Time time.Time // zero for null
}

func (o *optTime) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Time = time.Time{}
		return nil
	}
	if err := o.Time.UnmarshalJSON(b); err != nil || o.Time.IsZero() {
		return latchkey.Errorf(latchkey.EInvalid, "expires_at: expected an RFC 3339 time such as 2030-01-02T15:04:05Z, or null")
	}
	return nil
}

// optQuota is a quota field that distinguishes "absent" from "null"
// (remove the quota).
type optQuota struct {
	Set   bool
	Quota *latchkey.Quota
}

func (o *optQuota) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Quota = nil
		return nil
	}
	var q struct {
		Limit     int64  `json:"limit"`
		Period    string `json:"period"`
		Remaining *int64 `json:"remaining"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		return latchkey.Errorf(latchkey.EInvalid, `quota: expected {"limit": N, "period": "30d"|"daily"|"monthly"} or {"remaining": N}, or null`)
	}
	o.Quota = &latchkey.Quota{Limit: q.Limit, Period: q.Period, Remaining: q.Remaining}
	return nil
}

type settingsBody struct {
	Name        *string            `json:"name"`
	Owner       *string            `json:"owner"`
	Environment *string            `json:"environment"`
	Scopes      *[]string          `json:"scopes"`
	Resources   *[]string          `json:"resources"`
	Meta        *map[string]any    `json:"meta"`
	IPAllow     *[]string          `json:"ip_allow"`
	ExpiresAt   optTime            `json:"expires_at"`
	ExpiresIn   *latchkey.Duration `json:"expires_in"`

	Countries     *[]string              `json:"countries"`
	TimeWindows   *[]latchkey.TimeWindow `json:"time_windows"`
	RateLimits    *[]latchkey.RateLimit  `json:"ratelimits"`
	Quota         optQuota               `json:"quota"`
	Uses          *int64                 `json:"uses"`
	MaxConcurrent *int                   `json:"max_concurrent"`
	LeaseTTL      *latchkey.Duration     `json:"lease_ttl"`
	// Policy names the tenant's policy (or a preset) the key takes its
	// settings from; "" removes it.
	Policy *string `json:"policy"`
	// Condition is the key's CEL condition over the request; "" removes it.
	Condition *string `json:"condition"`
}

func (b *settingsBody) settings() keys.Settings {
	s := keys.Settings{
		Name: b.Name, Owner: b.Owner, Environment: b.Environment,
		Scopes: b.Scopes, Resources: b.Resources, Meta: b.Meta, IPAllow: b.IPAllow,
	}
	if b.ExpiresAt.Set {
		t := b.ExpiresAt.Time
		s.ExpiresAt = &t
	}
	if b.ExpiresIn != nil {
		d := time.Duration(*b.ExpiresIn)
		s.ExpiresIn = &d
	}
	s.Countries, s.TimeWindows, s.RateLimits, s.MaxConcurrent, s.Uses = b.Countries, b.TimeWindows, b.RateLimits, b.MaxConcurrent, b.Uses
	s.Policy, s.Condition = b.Policy, b.Condition
	if b.Quota.Set {
		s.Quota, s.ClearQuota = b.Quota.Quota, b.Quota.Quota == nil
	}
	if b.LeaseTTL != nil {
		d := time.Duration(*b.LeaseTTL)
		s.LeaseTTL = &d
	}
	return s
}

type createKeyBody struct {
	settingsBody
	Prefix string `json:"prefix"`
}

// decodeCreateKey reads POST /v1/keys and POST /v1/keys/{id}/derive.
func decodeCreateKey(data []byte) (keys.CreateParams, error) {
	var b createKeyBody
	if err := decodeJSON(data, &b); err != nil {
		return keys.CreateParams{}, err
	}
	return keys.CreateParams{Settings: b.settings(), Prefix: b.Prefix}, nil
}

// decodeUpdateKey reads PATCH /v1/keys/{id}.
func decodeUpdateKey(data []byte) (keys.Settings, error) {
	var b settingsBody
	if err := decodeJSON(data, &b); err != nil {
		return keys.Settings{}, err
	}
	return b.settings(), nil
}

// decodeRotate reads POST /v1/keys/{id}/rotate; an empty body takes defaults.
func decodeRotate(data []byte) (keys.RotateParams, error) {
	var b struct {
		GracePeriod *latchkey.Duration `json:"grace_period"`
		ExpiresIn   *latchkey.Duration `json:"expires_in"`
	}
	if !blank(data) {
		if err := decodeJSON(data, &b); err != nil {
			return keys.RotateParams{}, err
		}
	}
	var p keys.RotateParams
	if b.GracePeriod != nil {
		d := time.Duration(*b.GracePeriod)
		p.Grace = &d
	}
	if b.ExpiresIn != nil {
		d := time.Duration(*b.ExpiresIn)
		p.ExpiresIn = &d
	}
	return p, nil
}

type suspendBody struct {
	Duration latchkey.Duration `json:"duration"`
	Reason   string            `json:"reason"`
}

// decodeSuspend reads POST /v1/keys/{id}/suspend. Without a duration the
// key is suspended until resumed; a zero duration means no time at all, as
// everywhere in the API, and a suspension that ends as it begins is
// refused rather than read as "until resumed" (docs/api.md).
func decodeSuspend(data []byte) (suspendBody, error) {
	var b struct {
		Duration *latchkey.Duration `json:"duration"`
		Reason   string             `json:"reason"`
	}
	if !blank(data) {
		if err := decodeJSON(data, &b); err != nil {
			return suspendBody{}, err
		}
	}
	out := suspendBody{Reason: b.Reason}
	if b.Duration != nil {
		if *b.Duration <= 0 {
			return suspendBody{}, latchkey.Errorf(latchkey.EInvalid, "duration must be positive; leave it out to suspend until resumed")
		}
		out.Duration = *b.Duration
	}
	return out, nil
}

// decodeEmpty reads the body of a route that takes none (resume, keyring
// rotate, lease release, delivery retry): nothing, or an empty JSON
// object. Anything else is refused, so that a client that meant to send
// something learns it was not read.
func decodeEmpty(data []byte) error {
	if blank(data) {
		return nil
	}
	var b struct{}
	return decodeJSON(data, &b)
}

// blank reports whether a body is empty (whitespace counts as empty), which
// the routes whose every field is optional take as "all defaults".
func blank(data []byte) bool { return len(bytes.TrimSpace(data)) == 0 }

// decodeRevoke reads POST /v1/keys/{id}/revoke.
func decodeRevoke(data []byte) (string, error) {
	var b struct {
		Reason string `json:"reason"`
	}
	if !blank(data) {
		if err := decodeJSON(data, &b); err != nil {
			return "", err
		}
	}
	return b.Reason, nil
}

type tenantBody struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// decodeCreateTenant reads POST /v1/tenants.
func decodeCreateTenant(data []byte) (tenantBody, error) {
	var b tenantBody
	err := decodeJSON(data, &b)
	return b, err
}

// maxVerifyScopes bounds the scopes one verification may ask for.
const maxVerifyScopes = 32

// decodeVerify reads POST /v1/keys/verify. The client address, when the
// body names none, is the caller's (see clientIP).
func decodeVerify(data []byte) (keys.VerifyRequest, error) {
	var b struct {
		Key      string               `json:"key"`
		Scopes   []string             `json:"scopes"`
		Resource string               `json:"resource"`
		Cost     *int64               `json:"cost"`
		IP       string               `json:"ip"`
		Limits   []latchkey.NamedCost `json:"limits"`
		Request  *verifyRequestInfo   `json:"request"`
	}
	if err := decodeJSON(data, &b); err != nil {
		return keys.VerifyRequest{}, err
	}
	cost, costSet := int64(0), b.Cost != nil
	if costSet {
		cost = *b.Cost
	}
	req, err := finishVerify(b.Key, b.Scopes, b.Resource, b.IP, cost, costSet, b.Limits)
	if err != nil || b.Request == nil {
		return req, err
	}
	req.Request, err = b.Request.info()
	return req, err
}

// finishVerify checks the fields of a verify body, decoded by decodeVerify
// or by the hand decoder of the fast path (decodeVerifyFast), and makes
// the request of them.
func finishVerify(key string, scopes []string, resource, ip string, cost int64, costSet bool, named []latchkey.NamedCost) (keys.VerifyRequest, error) {
	// Checked apart from the request: escape analysis is not
	// field-sensitive, so a field of it handed to an error would take the
	// caller's scope buffer to the heap with it.
	if err := checkVerifyTarget(scopes, resource); err != nil {
		return keys.VerifyRequest{}, err
	}
	if err := checkNamedCosts(named, "limits"); err != nil {
		return keys.VerifyRequest{}, err
	}
	if !costSet {
		cost = 1
	} else if cost < 0 || cost > 1_000_000_000 {
		return keys.VerifyRequest{}, latchkey.Errorf(latchkey.EInvalid, "cost must be between 0 and 1000000000")
	}
	var addr netip.Addr
	if ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil || a.Zone() != "" {
			return keys.VerifyRequest{}, latchkey.Errorf(latchkey.EInvalid, "ip %.60q is not an IP address without a zone", ip)
		}
		addr = a.Unmap()
	}
	if len(named) == 0 {
		named = nil // [] and null ask for the same: no named costs
	}
	return keys.VerifyRequest{Key: key, Scopes: scopes, Resource: resource, IP: addr, Cost: cost, Named: named}, nil
}

// maxNamedCost bounds one named cost, as the cost of a verification is.
const maxNamedCost = 1_000_000_000

// checkNamedCosts validates the named costs of a verification ("limits"
// in a verify body, X-Latchkey-Cost-* headers in forward-auth): at most
// latchkey.MaxNamedCosts, each named (1-64 bytes, as a rate window's name)
// once, with a cost from 0 to maxNamedCost. Its errors name the element's
// place, never its name: a name points into the caller's reused buffer,
// which must not escape with an error.
func checkNamedCosts(named []latchkey.NamedCost, what string) error {
	if len(named) > latchkey.MaxNamedCosts {
		return latchkey.Errorf(latchkey.EInvalid, "%s: at most %d named costs per verification", what, latchkey.MaxNamedCosts)
	}
	for i := range named {
		if n := len(named[i].Name); n == 0 || n > 64 {
			return latchkey.Errorf(latchkey.EInvalid, "%s[%d]: name must be a rate window's name, 1 to 64 bytes", what, i)
		}
		if c := named[i].Cost; c < 0 || c > maxNamedCost {
			return latchkey.Errorf(latchkey.EInvalid, "%s[%d]: cost must be a whole number from 0 to %d", what, i, maxNamedCost)
		}
		for j := range i {
			if named[j].Name == named[i].Name {
				return latchkey.Errorf(latchkey.EInvalid, "%s[%d]: names the same window as %s[%d]", what, i, what, j)
			}
		}
	}
	return nil
}

// checkVerifyTarget validates the scopes and resource a verification asks
// about, so that a typo is an error rather than a silent denial.
func checkVerifyTarget(scopes []string, resource string) error {
	if len(scopes) > maxVerifyScopes {
		return latchkey.Errorf(latchkey.EInvalid, "scopes: at most %d per verification", maxVerifyScopes)
	}
	for _, sc := range scopes {
		if err := latchkey.ValidateScope(sc); err != nil {
			return err
		}
	}
	if resource != "" {
		return latchkey.ValidateResource(resource)
	}
	return nil
}

// decodeCreateWebhook reads POST /v1/webhooks: {"url", "events": [...]}
// (no events: every type).
func decodeCreateWebhook(data []byte) (webhook.Params, error) {
	var b struct {
		URL    string   `json:"url"`
		Events []string `json:"events"`
	}
	if err := decodeJSON(data, &b); err != nil {
		return webhook.Params{}, err
	}
	if err := latchkey.ValidateWebhookURL(b.URL); err != nil {
		return webhook.Params{}, err
	}
	events, err := latchkey.NormalizeWebhookEvents(b.Events)
	if err != nil {
		return webhook.Params{}, err
	}
	return webhook.Params{URL: b.URL, Events: events}, nil
}
