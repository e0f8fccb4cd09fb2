package keys

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Settings are the fields an admin sets on a key. On create every nil field
// takes its default; on update nil means "leave as it is".
type Settings struct {
	Name        *string
	Owner       *string
	Environment *string
	// Policy names the tenant's policy (or a preset) the key takes its
	// settings from; "" removes it.
	Policy    *string
	Scopes    *[]string // presets are expanded
	Resources *[]string
	Meta      *map[string]any
	IPAllow   *[]string
	// ExpiresAt sets the expiry; a pointer to the zero time removes it.
	ExpiresAt *time.Time
	// ExpiresIn sets the expiry relative to now; not together with ExpiresAt.
	ExpiresIn *time.Duration

	Countries   *[]string // ISO codes; needs the service's GeoIP database
	TimeWindows *[]latchkey.TimeWindow
	RateLimits  *[]latchkey.RateLimit
	// Quota sets the quota; ClearQuota removes it. Setting a credit balance
	// (Remaining) restarts its consumption from zero.
	Quota      *latchkey.Quota
	ClearQuota bool
	// Uses N is shorthand for a credit balance of N (Quota{Remaining: N}):
	// a single-use key is Uses 1. Not together with Quota.
	Uses          *int64
	MaxConcurrent *int
	LeaseTTL      *time.Duration
	// Condition sets the key's CEL condition over the request
	// (docs/limits.md, "Conditions"); "" removes it.
	Condition *string
}

// policyEnv is what validating policies needs to know about the service.
type policyEnv struct {
	hasGeo bool
}

// limitFields are the settings a key and a policy validate alike (nil:
// leave as it is).
type limitFields struct {
	countries     *[]string
	timeWindows   *[]latchkey.TimeWindow
	rateLimits    *[]latchkey.RateLimit
	maxConcurrent *int
}

// apply validates the fields that are set and writes them to the targets.
func (f limitFields) apply(countries *[]string, windows *[]latchkey.TimeWindow, rates *[]latchkey.RateLimit, maxConcurrent *int, env policyEnv) error {
	if f.countries != nil {
		cs, err := latchkey.NormalizeCountries(*f.countries)
		if err != nil {
			return err
		}
		if len(cs) > 0 && !env.hasGeo {
			return latchkey.Errorf(latchkey.EInvalid, "countries: this server has no GeoIP database (start it with --geoip-db)")
		}
		*countries = cs
	}
	if f.timeWindows != nil {
		ws := append([]latchkey.TimeWindow{}, *f.timeWindows...)
		if _, err := latchkey.CompileTimeWindows(ws); err != nil {
			return err
		}
		*windows = ws
	}
	if f.rateLimits != nil {
		rls := append([]latchkey.RateLimit{}, *f.rateLimits...)
		if err := latchkey.ValidateRateLimits(rls); err != nil {
			return err
		}
		*rates = rls
	}
	if f.maxConcurrent != nil {
		if *f.maxConcurrent < 0 || *f.maxConcurrent > latchkey.MaxConcurrent {
			return latchkey.Errorf(latchkey.EInvalid, "max_concurrent must be from 0 (no limit) to %d", latchkey.MaxConcurrent)
		}
		*maxConcurrent = *f.maxConcurrent
	}
	return nil
}

// quotaSetting validates a quota change given as uses (shorthand for a
// credit balance), a quota, or clear; set says whether the quota changes,
// to q.
func quotaSetting(uses *int64, quota *latchkey.Quota, clear bool) (set bool, q *latchkey.Quota, err error) {
	switch {
	case uses != nil && (quota != nil || clear):
		return false, nil, latchkey.Errorf(latchkey.EInvalid, "give uses or quota, not both")
	case quota != nil && clear:
		return false, nil, latchkey.Errorf(latchkey.EInvalid, "quota: set it or clear it, not both")
	case uses != nil:
		if *uses < 1 {
			return false, nil, latchkey.Errorf(latchkey.EInvalid, "uses must be at least 1")
		}
		return true, &latchkey.Quota{Remaining: new(*uses)}, nil
	case clear:
		return true, nil, nil
	case quota != nil:
		c := *quota
		if err := latchkey.ValidateQuota(&c); err != nil {
			return false, nil, err
		}
		return true, &c, nil
	}
	return false, nil, nil
}

// applyPolicies validates and writes the limit and access-policy settings.
func (p *Settings) applyPolicies(k *latchkey.Key, env policyEnv) error {
	if p.Condition != nil {
		if err := CheckCondition("condition", *p.Condition); err != nil {
			return err
		}
		k.Condition = *p.Condition
	}
	if err := (limitFields{p.Countries, p.TimeWindows, p.RateLimits, p.MaxConcurrent}).apply(&k.Countries, &k.TimeWindows, &k.RateLimits, &k.MaxConcurrent, env); err != nil {
		return err
	}
	set, q, err := quotaSetting(p.Uses, p.Quota, p.ClearQuota)
	if err != nil {
		return err
	}
	if p.Uses != nil {
		// From here on it is the credit balance it stands for (which the
		// caller's resetsCredit then sees too).
		p.Quota, p.Uses = q, nil
	}
	if set {
		k.Quota = q
	}
	if p.LeaseTTL != nil {
		if *p.LeaseTTL < time.Second || *p.LeaseTTL > 24*time.Hour {
			return latchkey.Errorf(latchkey.EInvalid, "lease_ttl must be from 1s to 24h")
		}
		k.LeaseTTL = latchkey.Duration(*p.LeaseTTL)
	}
	return nil
}

// resetsCredit reports whether the settings set a credit balance, whose
// consumption then starts again from zero.
func (p *Settings) resetsCredit() bool { return p.Quota != nil && p.Quota.IsCredit() }

// CreateParams are the settings of a new key plus its prefix.
type CreateParams struct {
	Settings
	Prefix string // default latchkey.DefaultPrefix
}

// apply validates p and writes it onto k. It checks that the actor does not
// hand out admin scopes it lacks.
func (p *Settings) apply(k *latchkey.Key, actor *latchkey.Actor, now time.Time, env policyEnv) error {
	if err := p.applyPolicies(k, env); err != nil {
		return err
	}
	if p.Name != nil {
		if err := latchkey.ValidateText("name", *p.Name, latchkey.MaxNameLen, true); err != nil {
			return err
		}
		k.Name = *p.Name
	}
	if p.Owner != nil {
		if err := latchkey.ValidateText("owner", *p.Owner, latchkey.MaxNameLen, false); err != nil {
			return err
		}
		k.Owner = *p.Owner
	}
	if p.Environment != nil {
		if err := latchkey.ValidateEnvironment(*p.Environment); err != nil {
			return err
		}
		k.Environment = *p.Environment
	}
	if p.Policy != nil {
		if *p.Policy != "" && !latchkey.ValidPolicyName(*p.Policy) {
			return latchkey.Errorf(latchkey.EInvalid, "policy %.70q: use 1-63 of a-z, 0-9, '_' and '-'", *p.Policy)
		}
		k.Policy = *p.Policy
	}
	if p.Scopes != nil {
		sc, err := latchkey.ExpandScopes(*p.Scopes)
		if err != nil {
			return err
		}
		if bad, ok := latchkey.GrantableBy(actor.Scopes, sc); !ok {
			return latchkey.Errorf(latchkey.EForbidden, "scope %q reaches admin powers that your key does not hold", bad)
		}
		k.Scopes = sc
	}
	if p.Resources != nil {
		rs, err := latchkey.NormalizeResources(*p.Resources)
		if err != nil {
			return err
		}
		k.Resources = rs
	}
	if p.Meta != nil {
		m := *p.Meta
		if m == nil {
			m = map[string]any{}
		}
		if err := latchkey.ValidateMeta(m); err != nil {
			return err
		}
		k.Meta = m
	}
	if p.IPAllow != nil {
		ips, err := latchkey.ParseIPAllow(*p.IPAllow)
		if err != nil {
			return err
		}
		k.IPAllow = ips
	}
	switch {
	case p.ExpiresAt != nil && p.ExpiresIn != nil:
		return latchkey.Errorf(latchkey.EInvalid, "give expires_at or expires_in, not both")
	case p.ExpiresIn != nil:
		if *p.ExpiresIn <= 0 {
			return latchkey.Errorf(latchkey.EInvalid, "expires_in must be positive")
		}
		k.ExpiresAt = now.Add(*p.ExpiresIn)
	case p.ExpiresAt != nil && p.ExpiresAt.IsZero():
		k.ExpiresAt = time.Time{}
	case p.ExpiresAt != nil:
		if !p.ExpiresAt.After(now) {
			return latchkey.Errorf(latchkey.EInvalid, "expires_at must be in the future (to end a key now, revoke it)")
		}
		if p.ExpiresAt.Sub(now) > latchkey.MaxDuration {
			// The bound of every duration, expires_in included.
			return latchkey.Errorf(latchkey.EInvalid, "expires_at must be within 100y of now")
		}
		k.ExpiresAt = p.ExpiresAt.UTC().Truncate(time.Microsecond)
	}
	return nil
}

// CreateKey issues a key in the actor's tenant and returns it with its
// plaintext, which is never available again. Errors: EInvalid, EForbidden.
func (s *Service) CreateKey(ctx context.Context, actor *latchkey.Actor, p CreateParams) (*latchkey.Key, latchkey.Token, error) {
	if p.Name == nil {
		return nil, latchkey.Token{}, latchkey.Errorf(latchkey.EInvalid, "name is required")
	}
	if p.Prefix != "" && !latchkey.ValidPrefix(p.Prefix) {
		return nil, latchkey.Token{}, latchkey.Errorf(latchkey.EInvalid, "prefix %q: use 1-16 of a-z, 0-9 and '_', not ending in '_'", p.Prefix)
	}
	tok, err := latchkey.GenerateToken(p.Prefix, s.rand)
	if err != nil {
		return nil, latchkey.Token{}, err
	}
	now := s.now()
	k := s.newKey(tok, actor.Tenant, now)
	if err := p.apply(k, actor, now, s.policyEnv()); err != nil {
		return nil, latchkey.Token{}, err
	}
	err = s.store.Update(ctx, func(tx Tx) error {
		if err := checkPolicy(tx, actor, k); err != nil {
			return err
		}
		if err := tx.CreateKey(k); err != nil {
			return err
		}
		return s.record(tx, latchkey.NewAuditEvent(actor, k.Tenant, "key.created", k.ID, now, map[string]string{"name": k.Name, "scopes": strings.Join(k.Scopes, ",")}))
	})
	if err != nil {
		return nil, latchkey.Token{}, err
	}
	s.cache.invalidate(k.Hash)
	return k, tok, nil
}

// GetKey returns a key of the actor's tenant. Errors: ENotFound.
func (s *Service) GetKey(ctx context.Context, actor *latchkey.Actor, id string) (*latchkey.Key, error) {
	if !latchkey.ValidID("key", id) {
		return nil, latchkey.KeyNotFound(id)
	}
	var k *latchkey.Key
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		k, err = tx.Key(actor.Tenant, id)
		return err
	})
	return k, err
}

// KeyQuota returns the key's quota as the next verification would find
// it: the live credit balance, or what is left of the current period and
// when it ends. ok is false when the key has no quota or the limiter
// cannot tell (none, or one that is not a QuotaReader).
func (s *Service) KeyQuota(ctx context.Context, k *latchkey.Key) (l latchkey.LimitState, ok bool, err error) {
	qr, can := s.limiter.(latchkey.QuotaReader)
	if k.Quota == nil || !can {
		return latchkey.LimitState{}, false, nil
	}
	l, err = qr.Quota(ctx, k, s.now())
	return l, err == nil, err
}

// ListParams narrow a key list.
type ListParams struct {
	Owner, Environment, Name, ParentID string
	State                              latchkey.State
	// Resource, when set, keeps the keys whose resources cover it
	// ("agent:chatAgent": the keys of that agent, those for every agent
	// and those for the whole tenant).
	Resource string
	Cursor   string
	Limit    int
}

// maxCoverScan bounds the keys one page of a Resource listing reads: a
// page may then hold fewer than Limit keys, with a cursor to go on from.
const maxCoverScan = 10_000

// ListKeys lists the actor's tenant's keys in creation order and returns
// the cursor of the next page ("" at the end). Errors: EInvalid.
func (s *Service) ListKeys(ctx context.Context, actor *latchkey.Actor, p ListParams) ([]*latchkey.Key, string, error) {
	if p.State != "" && !latchkey.ValidState(p.State) {
		return nil, "", latchkey.Errorf(latchkey.EInvalid, "state must be active, suspended, revoked or expired")
	}
	after, err := latchkey.DecodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	limit := latchkey.ClampLimit(p.Limit)
	f := latchkey.KeyFilter{
		Page:  latchkey.Page{After: after, Limit: limit + 1},
		Owner: p.Owner, Environment: p.Environment, Name: p.Name, ParentID: p.ParentID,
		State: p.State, Now: s.now(),
	}
	if p.Resource != "" {
		if err := latchkey.ValidateResource(p.Resource); err != nil {
			return nil, "", err
		}
		return s.listCovering(ctx, actor, f, limit, p.Resource)
	}
	var ks []*latchkey.Key
	err = s.store.View(ctx, func(tx Tx) error {
		var err error
		ks, err = tx.Keys(actor.Tenant, f)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(ks) > limit {
		ks = ks[:limit]
		next = latchkey.EncodeCursor(ks[limit-1].ID)
	}
	return ks, next, nil
}

// listCovering is ListKeys for a Resource: it reads the filtered keys in
// batches and keeps those whose resources cover resource, until it has a
// page or has read maxCoverScan keys.
func (s *Service) listCovering(ctx context.Context, actor *latchkey.Actor, f latchkey.KeyFilter, limit int, resource string) ([]*latchkey.Key, string, error) {
	const batch = 500
	var out []*latchkey.Key
	scanned := 0
	for {
		f.Limit = batch
		var ks []*latchkey.Key
		err := s.store.View(ctx, func(tx Tx) error {
			var err error
			ks, err = tx.Keys(actor.Tenant, f)
			return err
		})
		if err != nil {
			return nil, "", err
		}
		for _, k := range ks {
			scanned++
			f.After = k.ID
			if !latchkey.ResourcesAllow(k.Resources, resource) {
				continue
			}
			if len(out) == limit {
				// One more exists: the page ends at the last one kept.
				return out, latchkey.EncodeCursor(out[limit-1].ID), nil
			}
			out = append(out, k)
		}
		if len(ks) < batch {
			return orNone(out), "", nil
		}
		if scanned >= maxCoverScan {
			return orNone(out), latchkey.EncodeCursor(f.After), nil
		}
	}
}

func orNone(ks []*latchkey.Key) []*latchkey.Key {
	if ks == nil {
		return []*latchkey.Key{}
	}
	return ks
}

// UpdateKey changes a key's settings. Errors: EInvalid, EForbidden,
// ENotFound, EConflict (the key is revoked).
func (s *Service) UpdateKey(ctx context.Context, actor *latchkey.Actor, id string, p Settings) (*latchkey.Key, error) {
	return s.change(ctx, actor, id, "key.updated", func(tx Tx, k *latchkey.Key, now time.Time) ([]*latchkey.Key, error) {
		if k.StateAt(now) == latchkey.StateRevoked {
			return nil, latchkey.Errorf(latchkey.EConflict, "key %s is revoked; a revoked key cannot change", k.ID)
		}
		before := slices.Clone(k.Scopes)
		if err := p.apply(k, actor, now, s.policyEnv()); err != nil {
			return nil, err
		}
		if err := checkPolicy(tx, actor, k); err != nil {
			return nil, err
		}
		if added := widenedScopes(before, k.Scopes); len(added) > 0 {
			if err := tx.AppendEvent(scopesWidened(actor, k, before, added, now)); err != nil {
				return nil, err
			}
		}
		if p.resetsCredit() {
			if err := tx.ResetQuotaUsage(k.ID); err != nil {
				return nil, err
			}
		}
		if k.ParentID != "" {
			parent, err := tx.Key(k.Tenant, k.ParentID)
			if err != nil {
				return nil, err
			}
			if err := within(parent, k); err != nil {
				return nil, err
			}
			if p.Condition != nil {
				if err := deriveCondition(parent, k); err != nil {
					return nil, err
				}
			}
		}
		return []*latchkey.Key{k}, nil
	}, func() map[string]string { return map[string]string{"fields": p.named()} })
}

// change runs a read-modify-write of key id (and whatever other keys fn
// returns) in one transaction, then drops every changed key from the verify
// cache before returning, so the very next verify sees the change.
//
// When fn changed any key, the change is audited as action on key id in the
// same transaction (details from describe, if given, plus the other keys
// the change reached); if the event cannot be written, nothing changes.
func (s *Service) change(ctx context.Context, actor *latchkey.Actor, id, action string, fn func(tx Tx, k *latchkey.Key, now time.Time) ([]*latchkey.Key, error), describe func() map[string]string) (*latchkey.Key, error) {
	if !latchkey.ValidID("key", id) {
		return nil, latchkey.KeyNotFound(id)
	}
	now := s.now()
	var target *latchkey.Key
	var changed []*latchkey.Key
	err := s.store.Update(ctx, func(tx Tx) error {
		k, err := tx.Key(actor.Tenant, id)
		if err != nil {
			return err
		}
		target = k
		changed, err = fn(tx, k, now)
		if err != nil {
			return err
		}
		var affected []string
		for _, c := range changed {
			c.UpdatedAt = now
			if err := tx.UpdateKey(c); err != nil {
				return err
			}
			if c.ID != id {
				affected = append(affected, c.ID)
			}
		}
		if len(changed) == 0 {
			return nil
		}
		var details map[string]string
		if describe != nil {
			details = describe()
		}
		if len(affected) > 0 {
			if details == nil {
				details = map[string]string{}
			}
			details["affected"] = strings.Join(affected, ",")
		}
		return s.record(tx, latchkey.NewAuditEvent(actor, actor.Tenant, action, id, now, details))
	})
	if err != nil {
		return nil, err
	}
	s.invalidate(changed)
	return target, nil
}

// deriveCondition makes a derived key's condition: the parent's, and the
// child's own on top when it sets a different one (both must hold), so a
// derived key can never be used where its parent could not.
func deriveCondition(parent, child *latchkey.Key) error {
	switch {
	case parent.Condition == "" || child.Condition == parent.Condition,
		strings.HasPrefix(child.Condition, "("+parent.Condition+") && ("):
		return nil
	case child.Condition == "":
		child.Condition = parent.Condition
		return nil
	}
	child.Condition = "(" + parent.Condition + ") && (" + child.Condition + ")"
	return CheckCondition("condition (the parent's and the derived key's together)", child.Condition)
}

// named lists the fields the settings set, for the audit log.
func (p *Settings) named() string {
	var f []string
	add := func(set bool, name string) {
		if set {
			f = append(f, name)
		}
	}
	add(p.Name != nil, "name")
	add(p.Owner != nil, "owner")
	add(p.Environment != nil, "environment")
	add(p.Policy != nil, "policy")
	add(p.Scopes != nil, "scopes")
	add(p.Resources != nil, "resources")
	add(p.Meta != nil, "meta")
	add(p.IPAllow != nil, "ip_allow")
	add(p.ExpiresAt != nil || p.ExpiresIn != nil, "expires_at")
	add(p.Countries != nil, "countries")
	add(p.TimeWindows != nil, "time_windows")
	add(p.RateLimits != nil, "ratelimits")
	add(p.Quota != nil || p.ClearQuota, "quota")
	add(p.MaxConcurrent != nil, "max_concurrent")
	add(p.LeaseTTL != nil, "lease_ttl")
	add(p.Condition != nil, "condition")
	return strings.Join(f, ",")
}

func (s *Service) invalidate(ks []*latchkey.Key) {
	for _, k := range ks {
		s.cache.invalidate(k.Hash)
		if s.limiter != nil {
			s.limiter.Forget(k.ID)
		}
	}
}

// RotateParams configure a rotation.
type RotateParams struct {
	// Grace is how long the old key keeps working (nil: the service's
	// default; 0: the old key stops at once).
	Grace *time.Duration
	// ExpiresIn sets the successor's lifetime; by default it gets the same
	// lifetime the old key had, counted from now.
	ExpiresIn *time.Duration
}

// RotateKey issues a successor with the same settings and lets the old key
// work until the grace period ends. Children of the old key move to the
// successor, so revoking the successor still reaches them. Errors:
// EInvalid, ENotFound, EConflict (the key is not active, or was already
// rotated).
func (s *Service) RotateKey(ctx context.Context, actor *latchkey.Actor, id string, p RotateParams) (*latchkey.Key, latchkey.Token, error) {
	grace := s.defaultGrace
	if p.Grace != nil {
		grace = *p.Grace
	}
	if grace < 0 || grace > latchkey.MaxDuration {
		return nil, latchkey.Token{}, latchkey.Errorf(latchkey.EInvalid, "grace_period must be between 0 and 100y")
	}
	if p.ExpiresIn != nil && *p.ExpiresIn <= 0 {
		return nil, latchkey.Token{}, latchkey.Errorf(latchkey.EInvalid, "expires_in must be positive")
	}
	if s.limiter != nil {
		// The successor inherits what the old key consumed; persist it first.
		if err := s.limiter.Flush(ctx); err != nil {
			return nil, latchkey.Token{}, err
		}
	}
	var succ *latchkey.Key
	var tok latchkey.Token
	_, err := s.change(ctx, actor, id, "key.rotated", func(tx Tx, old *latchkey.Key, now time.Time) ([]*latchkey.Key, error) {
		var changed []*latchkey.Key
		var err error
		if succ, tok, changed, err = s.rotateIn(tx, old, now, grace, p.ExpiresIn); err != nil {
			return nil, err
		}
		// A schedule follows the key: the successor rotates one interval
		// from now.
		rot, err := tx.RotationOfKey(old.Tenant, old.ID)
		switch {
		case latchkey.ErrorCode(err) == latchkey.ENotFound:
		case err != nil:
			return nil, err
		default:
			rot.KeyID, rot.NextAt, rot.UpdatedAt = succ.ID, now.Add(time.Duration(rot.Interval)), now
			if err := tx.PutRotation(rot); err != nil {
				return nil, err
			}
		}
		return changed, nil
	}, func() map[string]string {
		return map[string]string{"successor": succ.ID, "grace_until": succ.CreatedAt.Add(grace).Format(time.RFC3339)}
	})
	if err != nil {
		return nil, latchkey.Token{}, err
	}
	s.cache.invalidate(succ.Hash)
	return succ, tok, nil
}

// rotateIn rotates old in tx: it creates the successor (the same
// settings, a new secret, old's lifetime counted from now unless
// expiresIn says otherwise), hands over the consumed quota and the
// derived keys, and ends old after grace. It returns the successor, its
// plaintext and the keys it changed, for change to write and audit.
func (s *Service) rotateIn(tx Tx, old *latchkey.Key, now time.Time, grace time.Duration, expiresIn *time.Duration) (*latchkey.Key, latchkey.Token, []*latchkey.Key, error) {
	if st := old.StateAt(now); st != latchkey.StateActive {
		return nil, latchkey.Token{}, nil, latchkey.Errorf(latchkey.EConflict, "key %s is %s; only an active key can be rotated", old.ID, st)
	}
	if old.RotatedTo != "" {
		return nil, latchkey.Token{}, nil, latchkey.Errorf(latchkey.EConflict, "key %s was already rotated to %s; rotate that one", old.ID, old.RotatedTo)
	}
	tok, err := latchkey.GenerateToken(old.Prefix, s.rand)
	if err != nil {
		return nil, latchkey.Token{}, nil, err
	}
	succ := s.newKey(tok, old.Tenant, now)
	succ.Name, succ.Owner, succ.Environment = old.Name, old.Owner, old.Environment
	succ.Scopes, succ.Resources, succ.Meta, succ.IPAllow = old.Scopes, old.Resources, old.Meta, old.IPAllow
	succ.Countries, succ.TimeWindows, succ.RateLimits = old.Countries, old.TimeWindows, old.RateLimits
	succ.Quota, succ.MaxConcurrent, succ.LeaseTTL = old.Quota, old.MaxConcurrent, old.LeaseTTL
	succ.ParentID, succ.Policy, succ.Condition = old.ParentID, old.Policy, old.Condition
	succ.RotatedFrom = old.ID
	switch {
	case expiresIn != nil:
		succ.ExpiresAt = now.Add(*expiresIn)
	case !old.ExpiresAt.IsZero():
		succ.ExpiresAt = now.Add(old.ExpiresAt.Sub(old.CreatedAt))
	}
	if err := tx.CreateKey(succ); err != nil {
		return nil, latchkey.Token{}, nil, err
	}
	if err := inheritQuota(tx, old, succ, now); err != nil {
		return nil, latchkey.Token{}, nil, err
	}
	old.RotatedTo = succ.ID
	old.GraceUntil = now.Add(grace)
	changed := []*latchkey.Key{old}
	kids, err := tx.Children(old.Tenant, old.ID)
	if err != nil {
		return nil, latchkey.Token{}, nil, err
	}
	for _, c := range kids {
		c.ParentID = succ.ID
		changed = append(changed, c)
	}
	return succ, tok, changed, nil
}

// inheritQuota gives a rotation's successor the consumption of its
// predecessor, so that rotating does not refill a quota or a credit
// balance. A periodic quota's period restarts at the rotation (the
// successor's creation anchors it) with what was used in the current one.
func inheritQuota(tx Tx, old, succ *latchkey.Key, now time.Time) error {
	if old.Quota == nil {
		return nil
	}
	u, err := tx.QuotaUsage(old.ID)
	if err != nil {
		return err
	}
	next := latchkey.QuotaUsage{KeyID: succ.ID, Used: u.Used}
	if !old.Quota.IsCredit() {
		cur, err := latchkey.QuotaPeriodStart(old.Quota.Period, old.CreatedAt, now)
		if err != nil || !u.PeriodStart.Equal(cur) {
			next.Used = 0
		}
		if next.PeriodStart, err = latchkey.QuotaPeriodStart(old.Quota.Period, succ.CreatedAt, now); err != nil {
			return err
		}
	}
	if next.Used == 0 {
		return nil
	}
	_, err = tx.SaveQuotaUsage(next)
	return err
}

// SuspendKey suspends a key and every key derived from it, for d (0: until
// resumed). A descendant already suspended for longer, in its own right,
// keeps its own suspension; every other descendant is marked as suspended by
// this key. Errors: EInvalid, ENotFound, EConflict (revoked).
func (s *Service) SuspendKey(ctx context.Context, actor *latchkey.Actor, id string, d time.Duration, reason string) (*latchkey.Key, error) {
	if d < 0 || d > latchkey.MaxDuration {
		return nil, latchkey.Errorf(latchkey.EInvalid, "duration must be between 0 and 100y")
	}
	if err := latchkey.ValidateText("reason", reason, latchkey.MaxNameLen, false); err != nil {
		return nil, err
	}
	return s.change(ctx, actor, id, "key.suspended", func(tx Tx, k *latchkey.Key, now time.Time) ([]*latchkey.Key, error) {
		if k.StateAt(now) == latchkey.StateRevoked {
			return nil, latchkey.Errorf(latchkey.EConflict, "key %s is revoked; it cannot be suspended", k.ID)
		}
		var until time.Time
		if d > 0 {
			until = now.Add(d)
		}
		tree, err := subtree(tx, k)
		if err != nil {
			return nil, err
		}
		k.State, k.SuspendedUntil, k.StateReason, k.SuspendedBy = latchkey.StateSuspended, until, reason, ""
		changed := []*latchkey.Key{k}
		for _, c := range tree[1:] {
			switch c.StateAt(now) {
			case latchkey.StateRevoked:
				continue
			case latchkey.StateSuspended:
				if outlasts(c.SuspendedUntil, until) {
					continue
				}
			}
			c.State, c.SuspendedUntil, c.SuspendedBy = latchkey.StateSuspended, until, k.ID
			c.StateReason = cascadeReason(k.ID, "suspended", reason)
			changed = append(changed, c)
		}
		return changed, nil
	}, func() map[string]string {
		det := map[string]string{"reason": reason, "duration": "until resumed"}
		if d > 0 {
			det["duration"] = latchkey.FormatDuration(d)
		}
		return det
	})
}

// outlasts reports whether a suspension ending at a lasts at least as long
// as one ending at b (a zero time lasts until resumed).
func outlasts(a, b time.Time) bool {
	return a.IsZero() || !b.IsZero() && !a.Before(b)
}

// ResumeKey ends a key's suspension and that of every key its suspension
// reached. Resuming an active key changes nothing. Errors: ENotFound,
// EConflict (revoked, or its parent is still suspended).
func (s *Service) ResumeKey(ctx context.Context, actor *latchkey.Actor, id string) (*latchkey.Key, error) {
	return s.change(ctx, actor, id, "key.resumed", func(tx Tx, k *latchkey.Key, now time.Time) ([]*latchkey.Key, error) {
		if k.StateAt(now) == latchkey.StateRevoked {
			return nil, latchkey.Errorf(latchkey.EConflict, "key %s is revoked; revocation is final", k.ID)
		}
		if k.ParentID != "" {
			p, err := tx.Key(k.Tenant, k.ParentID)
			if err != nil {
				return nil, err
			}
			if p.StateAt(now) == latchkey.StateSuspended {
				return nil, latchkey.Errorf(latchkey.EConflict, "parent key %s is suspended; resume it instead", p.ID)
			}
		}
		tree, err := subtree(tx, k)
		if err != nil {
			return nil, err
		}
		var changed []*latchkey.Key
		for i, c := range tree {
			if c.State != latchkey.StateSuspended || i > 0 && c.SuspendedBy != k.ID {
				continue
			}
			c.State, c.SuspendedUntil, c.StateReason, c.SuspendedBy = latchkey.StateActive, time.Time{}, "", ""
			changed = append(changed, c)
		}
		return changed, nil
	}, nil)
}

// revokeTree revokes k with the keys derived from it and the key it
// replaced, if that one is still in its grace period, and returns those
// it changed.
func revokeTree(tx Tx, k *latchkey.Key, now time.Time, reason string) ([]*latchkey.Key, error) {
	tree, err := subtree(tx, k)
	if err != nil {
		return nil, err
	}
	if k.RotatedFrom != "" {
		prev, err := tx.Key(k.Tenant, k.RotatedFrom)
		if err != nil && latchkey.ErrorCode(err) != latchkey.ENotFound {
			return nil, err
		}
		if prev != nil && prev.StateAt(now) != latchkey.StateRevoked {
			tree = append(tree, prev)
		}
	}
	var changed []*latchkey.Key
	for _, c := range tree {
		if c.State == latchkey.StateRevoked {
			continue
		}
		// A revoked key rotates no more: its schedule goes with it, and
		// its secret may serve a new key's.
		if err := dropRotation(tx, c); err != nil {
			return nil, err
		}
		c.State, c.RevokedAt, c.SuspendedUntil, c.SuspendedBy, c.StateReason = latchkey.StateRevoked, now, time.Time{}, "", reason
		if c != k {
			c.StateReason = cascadeReason(k.ID, "revoked", reason)
		}
		changed = append(changed, c)
	}
	return changed, nil
}

// RevokeKey revokes a key for good, with every key derived from it and the
// key it replaced if that one is still in its grace period. Revoking a
// revoked key changes nothing. Errors: EInvalid, ENotFound.
func (s *Service) RevokeKey(ctx context.Context, actor *latchkey.Actor, id, reason string) (*latchkey.Key, error) {
	if err := latchkey.ValidateText("reason", reason, latchkey.MaxNameLen, false); err != nil {
		return nil, err
	}
	return s.change(ctx, actor, id, "key.revoked", func(tx Tx, k *latchkey.Key, now time.Time) ([]*latchkey.Key, error) {
		if k.State == latchkey.StateRevoked {
			return nil, nil
		}
		return revokeTree(tx, k, now, reason)
	}, func() map[string]string { return map[string]string{"reason": reason} })
}

func cascadeReason(id, what, reason string) string {
	s := "key " + id + " was " + what
	if reason != "" {
		s += ": " + reason
	}
	return s
}

// maxTreeKeys bounds the keys one cascade may touch, so one request cannot
// turn into an unbounded transaction.
const maxTreeKeys = 10_000

// subtree returns k and every key derived from it, parents before children.
func subtree(tx Tx, k *latchkey.Key) ([]*latchkey.Key, error) {
	out := []*latchkey.Key{k}
	for i := 0; i < len(out); i++ {
		kids, err := tx.Children(k.Tenant, out[i].ID)
		if err != nil {
			return nil, err
		}
		out = append(out, kids...)
		if len(out) > maxTreeKeys {
			return nil, latchkey.Errorf(latchkey.EConflict, "key %s has more than %d derived keys; revoke them in batches", k.ID, maxTreeKeys)
		}
	}
	return out, nil
}

// DeriveKey mints a child of key id whose scopes, resources, address ranges
// and expiry stay within the parent's. An actor with keys:write may derive
// from any key of its tenant; one with only keys:derive from itself.
// Errors: EInvalid, EForbidden, ENotFound, EConflict (parent not active).
func (s *Service) DeriveKey(ctx context.Context, actor *latchkey.Actor, id string, p CreateParams) (*latchkey.Key, latchkey.Token, error) {
	if !latchkey.ScopesAllow(actor.Scopes, "keys:write") && actor.KeyID != id {
		return nil, latchkey.Token{}, latchkey.Errorf(latchkey.EForbidden, "a key with keys:derive but not keys:write may derive only from itself")
	}
	if p.Prefix != "" && !latchkey.ValidPrefix(p.Prefix) {
		return nil, latchkey.Token{}, latchkey.Errorf(latchkey.EInvalid, "prefix %q: use 1-16 of a-z, 0-9 and '_', not ending in '_'", p.Prefix)
	}
	var child *latchkey.Key
	var tok latchkey.Token
	_, err := s.change(ctx, actor, id, "key.derived", func(tx Tx, parent *latchkey.Key, now time.Time) ([]*latchkey.Key, error) {
		if st := parent.StateAt(now); st != latchkey.StateActive {
			return nil, latchkey.Errorf(latchkey.EConflict, "key %s is %s; only an active key can have children", parent.ID, st)
		}
		prefix := p.Prefix
		if prefix == "" {
			prefix = parent.Prefix
		}
		var err error
		if tok, err = latchkey.GenerateToken(prefix, s.rand); err != nil {
			return nil, err
		}
		child = s.newKey(tok, parent.Tenant, now)
		child.Name = parent.Name + " (derived)"
		child.Owner, child.Environment = parent.Owner, parent.Environment
		child.Scopes, child.Resources, child.IPAllow = parent.Scopes, parent.Resources, parent.IPAllow
		child.Countries, child.TimeWindows = parent.Countries, parent.TimeWindows
		child.ExpiresAt = parent.ExpiresAt
		child.ParentID = parent.ID
		if err := p.apply(child, actor, now, s.policyEnv()); err != nil {
			return nil, err
		}
		if err := deriveCondition(parent, child); err != nil {
			return nil, err
		}
		if err := within(parent, child); err != nil {
			return nil, err
		}
		if err := tx.CreateKey(child); err != nil {
			return nil, err
		}
		return nil, s.record(tx, latchkey.NewAuditEvent(actor, child.Tenant, "key.derived", child.ID, now, map[string]string{"parent": parent.ID, "scopes": strings.Join(child.Scopes, ",")}))
	}, nil)
	if err != nil {
		return nil, latchkey.Token{}, err
	}
	s.cache.invalidate(child.Hash)
	return child, tok, nil
}

// within checks that a derived key stays inside its parent's powers.
func within(parent, child *latchkey.Key) error {
	if bad, ok := latchkey.ScopesWithin(parent.Scopes, child.Scopes); !ok {
		return latchkey.Errorf(latchkey.EForbidden, "scope %q is not within parent key %s's scopes", bad, parent.ID)
	}
	if bad, ok := latchkey.ResourcesWithin(parent.Resources, child.Resources); !ok {
		return latchkey.Errorf(latchkey.EForbidden, "resource %q is not within parent key %s's resources", bad, parent.ID)
	}
	if !parent.ExpiresAt.IsZero() && (child.ExpiresAt.IsZero() || child.ExpiresAt.After(parent.ExpiresAt)) {
		return latchkey.Errorf(latchkey.EForbidden, "a derived key must expire no later than its parent key %s (%s)", parent.ID, parent.ExpiresAt.Format(time.RFC3339))
	}
	if len(parent.IPAllow) > 0 {
		if len(child.IPAllow) == 0 {
			return latchkey.Errorf(latchkey.EForbidden, "parent key %s is limited to %d address ranges; the derived key must be too", parent.ID, len(parent.IPAllow))
		}
		for _, c := range child.IPAllow {
			if !slices.ContainsFunc(parent.IPAllow, func(p netip.Prefix) bool { return p.Bits() <= c.Bits() && p.Contains(c.Addr()) }) {
				return latchkey.Errorf(latchkey.EForbidden, "address range %s is not within parent key %s's ranges", c, parent.ID)
			}
		}
	}
	return nil
}
