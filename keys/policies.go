package keys

import (
	"context"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// presetPolicies are the policies every tenant has without storing them,
// for the kinds of keys the seeds hand out; a tenant's stored policy of
// the same name replaces one. docs/limits.md lists them.
var presetPolicies = map[string]*latchkey.Policy{
	"development": {
		Name:         "development",
		Description:  "a developer's key: read and execute, 60 requests a minute, ends after 30 days",
		Scopes:       latchkey.Presets["execute"],
		RateLimits:   []latchkey.RateLimit{{Name: "1m", Limit: 60, Window: latchkey.Duration(time.Minute)}},
		ExpiresAfter: latchkey.Duration(30 * 24 * time.Hour),
	},
	"production": {
		Name:        "production",
		Description: "a service's key: read and execute, 1,000 requests a minute, no expiry",
		Scopes:      latchkey.Presets["execute"],
		RateLimits:  []latchkey.RateLimit{{Name: "1m", Limit: 1000, Window: latchkey.Duration(time.Minute)}},
	},
	"integration": {
		Name:         "integration",
		Description:  "a third party's key: read only, 100 requests a minute, ends after 90 days",
		Scopes:       latchkey.Presets["read"],
		RateLimits:   []latchkey.RateLimit{{Name: "1m", Limit: 100, Window: latchkey.Duration(time.Minute)}},
		ExpiresAfter: latchkey.Duration(90 * 24 * time.Hour),
	},
	"emergency": {
		Name:         "emergency",
		Description:  "break-glass: every scope, a single use, ends after an hour",
		Scopes:       latchkey.Presets["full"],
		Quota:        &latchkey.Quota{Remaining: new(int64(1))},
		ExpiresAfter: latchkey.Duration(time.Hour),
	},
}

// PresetPolicyNames lists the presets in name order.
func PresetPolicyNames() []string {
	names := make([]string, 0, len(presetPolicies))
	for n := range presetPolicies {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// preset returns a copy of the preset policy name as tenant's, or nil.
func preset(tenant, name string) *latchkey.Policy {
	p, ok := presetPolicies[name]
	if !ok {
		return nil
	}
	c := clonePolicy(p)
	c.Tenant, c.Preset = tenant, true
	return c
}

func clonePolicy(p *latchkey.Policy) *latchkey.Policy {
	c := *p
	c.Scopes = nonNil(slices.Clone(p.Scopes))
	c.Resources = nonNil(slices.Clone(p.Resources))
	c.IPAllow = slices.Clone(p.IPAllow)
	if c.IPAllow == nil {
		c.IPAllow = []netip.Prefix{}
	}
	c.Countries = nonNil(slices.Clone(p.Countries))
	c.TimeWindows = slices.Clone(p.TimeWindows)
	if c.TimeWindows == nil {
		c.TimeWindows = []latchkey.TimeWindow{}
	}
	c.RateLimits = slices.Clone(p.RateLimits)
	if c.RateLimits == nil {
		c.RateLimits = []latchkey.RateLimit{}
	}
	if p.Quota != nil {
		q := *p.Quota
		if q.Remaining != nil {
			q.Remaining = new(*q.Remaining)
		}
		c.Quota = &q
	}
	return &c
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// policyOf is the policy a key read by the verify path names: the stored
// one read with it, else the preset; nil when neither exists.
func policyOf(k *latchkey.Key) *latchkey.Policy {
	if k.Bound != nil && k.Bound.Policy != nil {
		return k.Bound.Policy
	}
	return presetPolicies[k.Policy]
}

// Values that match nothing: what is left of a key's own list narrowed by
// its policy when none of it is within the policy. An empty list would
// mean "no restriction", the opposite.
var (
	noResources = []string{"\x00"}
	noAddresses = []netip.Prefix{{}} // the invalid prefix contains no address
	noCountries = []string{"\x00"}
)

// applyPolicy turns k, a key that names policy p, into its effective
// settings (docs/limits.md, "Policies"), and returns the policy's time
// windows, which apply besides the key's own. Scopes, resources, address
// ranges and countries: the key's own, kept where the policy's allow them,
// or the policy's when the key has none. Rate windows: both sets. Quota:
// the key's, else the policy's. Concurrency: the smaller bound. Expiry:
// the earlier of the key's and its creation plus the policy's
// expires_after. A key whose policy no longer exists is suspended: it
// fails closed.
func applyPolicy(k *latchkey.Key, p *latchkey.Policy) []latchkey.TimeWindow {
	if p == nil {
		k.State, k.SuspendedUntil = latchkey.StateSuspended, time.Time{}
		k.StateReason = "its policy " + k.Policy + " does not exist"
		return nil
	}
	if len(p.Scopes) > 0 {
		if len(k.Scopes) == 0 {
			k.Scopes = p.Scopes
		} else {
			k.Scopes = keep(k.Scopes, func(s string) bool { return latchkey.ScopesAllow(p.Scopes, s) }, k.Scopes[:0:0])
		}
	}
	if len(p.Resources) > 0 {
		if len(k.Resources) == 0 {
			k.Resources = p.Resources
		} else {
			k.Resources = keep(k.Resources, func(r string) bool { return latchkey.ResourcesAllow(p.Resources, r) }, noResources)
		}
	}
	if len(p.IPAllow) > 0 {
		if len(k.IPAllow) == 0 {
			k.IPAllow = p.IPAllow
		} else {
			k.IPAllow = keep(k.IPAllow, func(r netip.Prefix) bool { return prefixWithin(p.IPAllow, r) }, noAddresses)
		}
	}
	if len(p.Countries) > 0 {
		if len(k.Countries) == 0 {
			k.Countries = p.Countries
		} else {
			k.Countries = keep(k.Countries, func(c string) bool { return slices.Contains(p.Countries, c) }, noCountries)
		}
	}
	if len(p.RateLimits) > 0 {
		k.RateLimits = append(slices.Clip(k.RateLimits), p.RateLimits...)
	}
	if k.Quota == nil {
		k.Quota = p.Quota
	}
	if p.MaxConcurrent > 0 && (k.MaxConcurrent == 0 || p.MaxConcurrent < k.MaxConcurrent) {
		k.MaxConcurrent = p.MaxConcurrent
	}
	if p.ExpiresAfter > 0 {
		if end := k.CreatedAt.Add(time.Duration(p.ExpiresAfter)); k.ExpiresAt.IsZero() || end.Before(k.ExpiresAt) {
			k.ExpiresAt = end
		}
	}
	return p.TimeWindows
}

// keep returns the elements of l that ok accepts, or none when it accepts
// none of them.
func keep[T any](l []T, ok func(T) bool, none []T) []T {
	out := make([]T, 0, len(l))
	for _, v := range l {
		if ok(v) {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return none
	}
	return out
}

// prefixWithin reports whether r lies inside one of the ranges.
func prefixWithin(ranges []netip.Prefix, r netip.Prefix) bool {
	for _, p := range ranges {
		if p.Bits() <= r.Bits() && p.Contains(r.Addr()) {
			return true
		}
	}
	return false
}

// checkPolicy checks, in the transaction that writes k, that the policy k
// names exists, that the actor may hand out what it grants, and that k's
// own settings only narrow it. Errors: EInvalid, EForbidden.
func checkPolicy(tx Tx, actor *latchkey.Actor, k *latchkey.Key) error {
	if k.Policy == "" {
		return nil
	}
	p, err := readPolicy(tx, k.Tenant, k.Policy)
	if latchkey.ErrorCode(err) == latchkey.ENotFound {
		return latchkey.Errorf(latchkey.EInvalid, "policy %q does not exist in this tenant", k.Policy)
	}
	if err != nil {
		return err
	}
	if bad, ok := latchkey.GrantableBy(actor.Scopes, p.Scopes); !ok {
		return latchkey.Errorf(latchkey.EForbidden, "policy %s grants scope %q, which reaches admin powers that your key does not hold", p.Name, bad)
	}
	if len(p.Scopes) > 0 {
		if bad, ok := latchkey.ScopesWithin(p.Scopes, k.Scopes); !ok {
			return latchkey.Errorf(latchkey.EInvalid, "scope %q is outside policy %s", bad, p.Name)
		}
	}
	if bad, ok := latchkey.ResourcesWithin(p.Resources, k.Resources); len(k.Resources) > 0 && !ok {
		return latchkey.Errorf(latchkey.EInvalid, "resource %q is outside policy %s", bad, p.Name)
	}
	if len(p.IPAllow) > 0 {
		for _, r := range k.IPAllow {
			if !prefixWithin(p.IPAllow, r) {
				return latchkey.Errorf(latchkey.EInvalid, "ip_allow %s is outside policy %s", r, p.Name)
			}
		}
	}
	if len(p.Countries) > 0 {
		for _, c := range k.Countries {
			if !slices.Contains(p.Countries, c) {
				return latchkey.Errorf(latchkey.EInvalid, "country %s is outside policy %s", c, p.Name)
			}
		}
	}
	if len(p.TimeWindows) > 0 && len(k.TimeWindows) > 0 {
		return latchkey.Errorf(latchkey.EInvalid, "policy %s has time windows; a key of it cannot set its own", p.Name)
	}
	if len(k.RateLimits)+len(p.RateLimits) > latchkey.MaxRateLimits {
		return latchkey.Errorf(latchkey.EInvalid, "ratelimits: the key's and policy %s's together may be at most %d windows", p.Name, latchkey.MaxRateLimits)
	}
	return nil
}

// readPolicy returns the tenant's stored policy name, else the preset.
func readPolicy(tx Tx, tenant, name string) (*latchkey.Policy, error) {
	p, err := tx.Policy(tenant, name)
	if latchkey.ErrorCode(err) == latchkey.ENotFound {
		if pp := preset(tenant, name); pp != nil {
			return pp, nil
		}
	}
	return p, err
}

// PolicyParams are a policy's settings as an admin writes them: on
// create every nil field is empty, on update nil leaves it as it is.
type PolicyParams struct {
	Description *string
	Scopes      *[]string // presets are expanded
	Resources   *[]string
	IPAllow     *[]string
	Countries   *[]string
	TimeWindows *[]latchkey.TimeWindow
	RateLimits  *[]latchkey.RateLimit
	// Quota sets each key's quota (when it has none of its own);
	// ClearQuota removes it; Uses N is shorthand for a credit balance of
	// N (Quota{Remaining: N}).
	Quota         *latchkey.Quota
	ClearQuota    bool
	Uses          *int64
	MaxConcurrent *int
	ExpiresAfter  *time.Duration
	// Condition sets the CEL condition every key of the policy must
	// satisfy besides its own; "" removes it.
	Condition *string
}

// apply validates p and writes it onto pol.
func (p *PolicyParams) apply(pol *latchkey.Policy, actor *latchkey.Actor, env policyEnv) error {
	if p.Description != nil {
		if err := latchkey.ValidateText("description", *p.Description, 500, false); err != nil {
			return err
		}
		pol.Description = *p.Description
	}
	var err error
	if p.Scopes != nil {
		if pol.Scopes, err = latchkey.ExpandScopes(*p.Scopes); err != nil {
			return err
		}
	}
	if bad, ok := latchkey.GrantableBy(actor.Scopes, pol.Scopes); !ok {
		return latchkey.Errorf(latchkey.EForbidden, "scope %q reaches admin powers that your key does not hold", bad)
	}
	if p.Resources != nil {
		if pol.Resources, err = latchkey.NormalizeResources(*p.Resources); err != nil {
			return err
		}
	}
	if p.IPAllow != nil {
		if pol.IPAllow, err = latchkey.ParseIPAllow(*p.IPAllow); err != nil {
			return err
		}
	}
	if err := (limitFields{p.Countries, p.TimeWindows, p.RateLimits, p.MaxConcurrent}).apply(&pol.Countries, &pol.TimeWindows, &pol.RateLimits, &pol.MaxConcurrent, env); err != nil {
		return err
	}
	set, q, err := quotaSetting(p.Uses, p.Quota, p.ClearQuota)
	if err != nil {
		return err
	}
	if set {
		pol.Quota = q
	}
	if p.ExpiresAfter != nil {
		if *p.ExpiresAfter < 0 || *p.ExpiresAfter > latchkey.MaxDuration {
			return latchkey.Errorf(latchkey.EInvalid, "expires_after must be from 0 (none) to 100y")
		}
		pol.ExpiresAfter = latchkey.Duration(*p.ExpiresAfter)
	}
	if p.Condition != nil {
		if err := CheckCondition("condition", *p.Condition); err != nil {
			return err
		}
		pol.Condition = *p.Condition
	}
	return nil
}

// CreatePolicy creates the actor's tenant's policy name (a preset's name
// gives the tenant its own version of the preset). Errors: EInvalid,
// EForbidden (it grants admin scopes the actor lacks), EConflict (the
// tenant has a policy of that name).
func (s *Service) CreatePolicy(ctx context.Context, actor *latchkey.Actor, name string, p PolicyParams) (*latchkey.Policy, error) {
	return s.writePolicy(ctx, actor, name, p, true)
}

// UpdatePolicy changes the settings p sets of the actor's tenant's policy
// name (a preset is copied into the tenant's own first). Every key that
// names it takes the new settings at its next verification, on every
// node. Errors: EInvalid, EForbidden, ENotFound.
func (s *Service) UpdatePolicy(ctx context.Context, actor *latchkey.Actor, name string, p PolicyParams) (*latchkey.Policy, error) {
	return s.writePolicy(ctx, actor, name, p, false)
}

func (s *Service) writePolicy(ctx context.Context, actor *latchkey.Actor, name string, p PolicyParams, create bool) (*latchkey.Policy, error) {
	if !latchkey.ValidPolicyName(name) {
		if create {
			return nil, latchkey.Errorf(latchkey.EInvalid, "policy name %.70q: use 1-63 of a-z, 0-9, '_' and '-'", name)
		}
		return nil, latchkey.Errorf(latchkey.ENotFound, "no policy %.70q", name)
	}
	now := s.now()
	var out *latchkey.Policy
	err := s.store.Update(ctx, func(tx Tx) error {
		action := "policy.updated"
		pol, err := tx.Policy(actor.Tenant, name)
		switch {
		case err == nil && create:
			return latchkey.Errorf(latchkey.EConflict, "policy %s exists; change it with PATCH", name)
		case err == nil:
		case latchkey.ErrorCode(err) != latchkey.ENotFound:
			return err
		case create:
			action = "policy.created"
			pol = clonePolicy(&latchkey.Policy{Tenant: actor.Tenant, Name: name, CreatedAt: now})
		default:
			if pol = preset(actor.Tenant, name); pol == nil {
				return latchkey.Errorf(latchkey.ENotFound, "no policy %q in this tenant", name)
			}
			action, pol.Preset, pol.CreatedAt = "policy.created", false, now
		}
		if err := p.apply(pol, actor, s.policyEnv()); err != nil {
			return err
		}
		pol.UpdatedAt = now
		if err := tx.PutPolicy(pol); err != nil {
			return err
		}
		out = pol
		return s.record(tx, latchkey.NewAuditEvent(actor, actor.Tenant, action, "", now, map[string]string{
			"policy": name, "scopes": strings.Join(pol.Scopes, ",")}))
	})
	if err != nil {
		return nil, err
	}
	s.Apply(latchkey.Change{Kind: latchkey.ChangePolicy, Tenant: actor.Tenant, Name: name})
	return out, nil
}

// GetPolicy returns the actor's tenant's policy name: the stored one, or
// the preset. Errors: ENotFound.
func (s *Service) GetPolicy(ctx context.Context, actor *latchkey.Actor, name string) (*latchkey.Policy, error) {
	if !latchkey.ValidPolicyName(name) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "no policy %.70q", name)
	}
	var out *latchkey.Policy
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		out, err = readPolicy(tx, actor.Tenant, name)
		return err
	})
	if latchkey.ErrorCode(err) == latchkey.ENotFound {
		return nil, latchkey.Errorf(latchkey.ENotFound, "no policy %q in this tenant", name)
	}
	return out, err
}

// ListPolicies lists the actor's tenant's policies by name, the presets it
// has not replaced among them, and returns the cursor of the next page.
func (s *Service) ListPolicies(ctx context.Context, actor *latchkey.Actor, cursor string, limit int) ([]*latchkey.Policy, string, error) {
	after, err := latchkey.DecodeCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	limit = latchkey.ClampLimit(limit)
	var stored []*latchkey.Policy
	err = s.store.View(ctx, func(tx Tx) error {
		var err error
		stored, err = tx.Policies(actor.Tenant, latchkey.Page{After: after, Limit: limit + 1})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	// The presets past the cursor, merged in name order: a stored policy
	// of a preset's name replaces it. Past the last stored one read, a
	// preset belongs to a later page unless the stored list ended.
	out := stored
	for _, name := range PresetPolicyNames() {
		if name <= after || slices.ContainsFunc(stored, func(p *latchkey.Policy) bool { return p.Name == name }) {
			continue
		}
		if len(stored) > limit && name > stored[len(stored)-1].Name {
			continue
		}
		out = append(out, preset(actor.Tenant, name))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = latchkey.EncodeCursor(out[limit-1].Name)
	}
	if out == nil {
		out = []*latchkey.Policy{}
	}
	return out, next, nil
}

// DeletePolicy deletes the actor's tenant's stored policy name (a preset
// of that name then applies again). Errors: ENotFound, EConflict (keys
// that are not revoked name it).
func (s *Service) DeletePolicy(ctx context.Context, actor *latchkey.Actor, name string) error {
	if !latchkey.ValidPolicyName(name) {
		return latchkey.Errorf(latchkey.ENotFound, "no policy %.70q", name)
	}
	now := s.now()
	err := s.store.Update(ctx, func(tx Tx) error {
		if err := tx.DeletePolicy(actor.Tenant, name); err != nil {
			return err
		}
		return s.record(tx, latchkey.NewAuditEvent(actor, actor.Tenant, "policy.deleted", "", now, map[string]string{"policy": name}))
	})
	if err != nil {
		return err
	}
	s.Apply(latchkey.Change{Kind: latchkey.ChangePolicy, Tenant: actor.Tenant, Name: name})
	return nil
}

// OwnerParams are an owner's shared limits and metadata (PUT replaces
// them all).
type OwnerParams struct {
	RateLimits []latchkey.RateLimit
	Quota      *latchkey.Quota // periodic only
	Meta       map[string]any
}

// PutOwner creates or replaces the record of owner id in the actor's
// tenant: limits every key whose owner is id shares, on every node, from
// the next verification on. Errors: EInvalid.
func (s *Service) PutOwner(ctx context.Context, actor *latchkey.Actor, id string, p OwnerParams) (*latchkey.Owner, error) {
	if err := latchkey.ValidateText("owner", id, latchkey.MaxNameLen, true); err != nil {
		return nil, err
	}
	o := &latchkey.Owner{Tenant: actor.Tenant, ID: id, RateLimits: append([]latchkey.RateLimit{}, p.RateLimits...), Meta: p.Meta}
	if err := latchkey.ValidateRateLimits(o.RateLimits); err != nil {
		return nil, err
	}
	if p.Quota != nil {
		if p.Quota.IsCredit() {
			return nil, latchkey.Errorf(latchkey.EInvalid, "an owner's quota is a periodic allowance (limit and period); credit balances belong to keys")
		}
		q := *p.Quota
		if err := latchkey.ValidateQuota(&q); err != nil {
			return nil, err
		}
		o.Quota = &q
	}
	if o.Meta == nil {
		o.Meta = map[string]any{}
	}
	if err := latchkey.ValidateMeta(o.Meta); err != nil {
		return nil, err
	}
	now := s.now()
	err := s.store.Update(ctx, func(tx Tx) error {
		action := "owner.updated"
		old, err := tx.Owner(actor.Tenant, id)
		switch {
		case latchkey.ErrorCode(err) == latchkey.ENotFound:
			action, o.CreatedAt = "owner.created", now
		case err != nil:
			return err
		default:
			o.CreatedAt = old.CreatedAt
		}
		o.UpdatedAt = now
		if err := tx.PutOwner(o); err != nil {
			return err
		}
		return s.record(tx, latchkey.NewAuditEvent(actor, actor.Tenant, action, "", now, map[string]string{"owner": id}))
	})
	if err != nil {
		return nil, err
	}
	s.Apply(latchkey.Change{Kind: latchkey.ChangeOwner, Tenant: actor.Tenant, Name: id})
	return o, nil
}

// GetOwner returns the record of owner id. Errors: ENotFound.
func (s *Service) GetOwner(ctx context.Context, actor *latchkey.Actor, id string) (*latchkey.Owner, error) {
	var out *latchkey.Owner
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Owner(actor.Tenant, id)
		return err
	})
	if latchkey.ErrorCode(err) == latchkey.ENotFound {
		return nil, latchkey.Errorf(latchkey.ENotFound, "no owner record %.70q in this tenant", id)
	}
	return out, err
}

// ListOwners lists the actor's tenant's owner records by id and returns
// the cursor of the next page.
func (s *Service) ListOwners(ctx context.Context, actor *latchkey.Actor, cursor string, limit int) ([]*latchkey.Owner, string, error) {
	after, err := latchkey.DecodeCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	limit = latchkey.ClampLimit(limit)
	var out []*latchkey.Owner
	err = s.store.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Owners(actor.Tenant, latchkey.Page{After: after, Limit: limit + 1})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = latchkey.EncodeCursor(out[limit-1].ID)
	}
	return out, next, nil
}

// DeleteOwner deletes the record of owner id: its keys keep their owner
// and lose the shared limits. Errors: ENotFound.
func (s *Service) DeleteOwner(ctx context.Context, actor *latchkey.Actor, id string) error {
	now := s.now()
	err := s.store.Update(ctx, func(tx Tx) error {
		if err := tx.DeleteOwner(actor.Tenant, id); err != nil {
			return err
		}
		return s.record(tx, latchkey.NewAuditEvent(actor, actor.Tenant, "owner.deleted", "", now, map[string]string{"owner": id}))
	})
	if err != nil {
		return err
	}
	s.Apply(latchkey.Change{Kind: latchkey.ChangeOwner, Tenant: actor.Tenant, Name: id})
	return nil
}
