package keys

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Meta fields a manifest's keys carry: which app and agent declared them
// (the key's identity with its name).
const (
	MetaManifestApp   = "manifest_app"
	MetaManifestAgent = "manifest_agent"
)

// Plan actions.
const (
	PlanCreate    = "create"
	PlanUpdate    = "update"
	PlanUnchanged = "unchanged"
	PlanRevoke    = "revoke"
)

// PlanStep is what applying a manifest does, or would do, to one key.
type PlanStep struct {
	Action  string   `json:"action"`
	Agent   string   `json:"agent"`
	KeyName string   `json:"key_name"`
	KeyID   string   `json:"key_id,omitempty"`  // empty for a key not created yet
	Changes []string `json:"changes,omitempty"` // the fields an update sets
	Source  string   `json:"source,omitempty"`  // where the key is declared
	Error   string   `json:"error,omitempty"`   // why the step failed
	Code    string   `json:"error_code,omitempty"`
}

// MintedKey is a key an apply created, with its plaintext (shown once).
type MintedKey struct {
	Agent   string `json:"agent"`
	KeyName string `json:"key_name"`
	KeyID   string `json:"key_id"`
	Key     string `json:"key"`
}

// ApplyParams say how to apply a manifest.
type ApplyParams struct {
	// DryRun computes the plan and changes nothing.
	DryRun bool
	// Prune revokes the keys the app declared before and no longer does
	// (in Env, when set).
	Prune bool
	// Env, when set, is the environment the manifest was read for
	// (manifest.Parse left the others out): Prune touches only its keys.
	Env string
}

// ApplyResult is the plan and the plaintexts of the keys it minted.
type ApplyResult struct {
	Plan []PlanStep  `json:"plan"`
	Keys []MintedKey `json:"keys"`
}

// maxManifestKeys bounds one apply.
const maxManifestKeys = 10_000

// ApplyManifest makes the actor's tenant hold the keys m declares: it
// creates the keys it does not find (by app, agent and name), updates in
// place those whose settings differ, leaves the others alone and, with
// Prune, revokes the app's keys it no longer declares. Applying the same
// manifest twice changes nothing and mints nothing.
//
// Every declaration is checked before anything changes, so a manifest
// with one bad key changes no key (EInvalid naming the declaration's file
// and line). Each key is then changed in its own transaction, audited as
// the single-key operations are; a step that fails (a concurrent change)
// is reported in its plan step and the others go ahead. Errors: EInvalid,
// EForbidden (a scope beyond the actor's), EConflict.
func (s *Service) ApplyManifest(ctx context.Context, actor *latchkey.Actor, m *latchkey.Manifest, p ApplyParams) (ApplyResult, error) {
	if m == nil || m.App == "" {
		return ApplyResult{}, latchkey.Errorf(latchkey.EInvalid, "the manifest names no app")
	}
	if len(m.Keys) > maxManifestKeys {
		return ApplyResult{}, latchkey.Errorf(latchkey.EInvalid, "a manifest may declare at most %d keys", maxManifestKeys)
	}
	now := s.now()
	for i := range m.Keys {
		if d := &m.Keys[i]; d.AutoRotate && s.sealer == nil {
			return ApplyResult{}, latchkey.Errorf(latchkey.EUnavailable, "%s: agent %s, key %q: auto_rotate needs a keyring to seal successors with, and this server has none", d.Source, d.Agent, d.Name)
		}
	}
	type item struct {
		d        *latchkey.DeclaredKey
		set      Settings
		current  *latchkey.Key
		rotation *latchkey.Rotation // current's schedule, if any
	}
	items := make([]item, len(m.Keys))
	for i := range m.Keys {
		d := &m.Keys[i]
		set, err := declaredSettings(d)
		if err == nil {
			// Validate on a scratch key, as CreateKey would.
			err = set.apply(&latchkey.Key{Tenant: actor.Tenant}, actor, now, s.policyEnv())
		}
		if err != nil {
			return ApplyResult{}, latchkey.Errorf(latchkey.ErrorCode(err), "%s: agent %s, key %q: %s", d.Source, d.Agent, d.Name, latchkey.ErrorMessage(err))
		}
		items[i] = item{d: d, set: set}
	}
	// Find what exists: a key is found by its name (indexed) and then its
	// app and agent.
	declared := map[string]bool{}
	err := s.store.View(ctx, func(tx Tx) error {
		for i := range items {
			it := &items[i]
			ks, err := tx.Keys(actor.Tenant, latchkey.KeyFilter{Name: it.d.Name, Page: latchkey.Page{Limit: maxManifestKeys}})
			if err != nil {
				return err
			}
			it.current = current(ks, m.App, it.d.Agent, now)
			if it.current != nil {
				declared[it.current.ID] = true
				rot, err := tx.RotationOfKey(actor.Tenant, it.current.ID)
				if err != nil && latchkey.ErrorCode(err) != latchkey.ENotFound {
					return err
				}
				it.rotation = rot
			}
		}
		return nil
	})
	if err != nil {
		return ApplyResult{}, err
	}
	var stale []*latchkey.Key
	if p.Prune {
		if stale, err = s.undeclared(ctx, actor, m.App, p.Env, declared, now); err != nil {
			return ApplyResult{}, err
		}
	}

	res := ApplyResult{Plan: []PlanStep{}, Keys: []MintedKey{}}
	for _, it := range items {
		step := PlanStep{Agent: it.d.Agent, KeyName: it.d.Name, Source: it.d.Source}
		if it.current == nil {
			step.Action = PlanCreate
			if !p.DryRun {
				k, tok, err := s.CreateKey(ctx, actor, CreateParams{Settings: it.set})
				if err != nil {
					step.fail(err)
				} else {
					step.KeyID = k.ID
					res.Keys = append(res.Keys, MintedKey{Agent: it.d.Agent, KeyName: it.d.Name, KeyID: k.ID, Key: tok.Reveal()})
					if err := s.syncRotation(ctx, actor, k.ID, it.d, nil); err != nil {
						step.fail(err)
					}
				}
			}
			res.Plan = append(res.Plan, step)
			continue
		}
		step.KeyID = it.current.ID
		upd, changes, err := s.diff(it.current, it.set, it.d, actor, now)
		if err != nil {
			return ApplyResult{}, latchkey.Errorf(latchkey.ErrorCode(err), "%s: agent %s, key %q: %s", it.d.Source, it.d.Agent, it.d.Name, latchkey.ErrorMessage(err))
		}
		rotates := it.rotation != nil && time.Duration(it.rotation.Interval) == it.d.RotationInterval
		if it.d.AutoRotate != rotates {
			changes = append(changes, "rotation")
		}
		if len(changes) == 0 {
			step.Action = PlanUnchanged
			res.Plan = append(res.Plan, step)
			continue
		}
		step.Action, step.Changes = PlanUpdate, changes
		if !p.DryRun {
			_, err := s.UpdateKey(ctx, actor, it.current.ID, upd)
			if err == nil && it.d.AutoRotate != rotates {
				err = s.syncRotation(ctx, actor, it.current.ID, it.d, it.rotation)
			}
			if err != nil {
				step.fail(err)
			}
		}
		res.Plan = append(res.Plan, step)
	}
	for _, k := range stale {
		agent, _ := k.Meta[MetaManifestAgent].(string)
		step := PlanStep{Action: PlanRevoke, Agent: agent, KeyName: k.Name, KeyID: k.ID}
		if !p.DryRun {
			if _, err := s.RevokeKey(ctx, actor, k.ID, "no longer in the manifest of app "+m.App); err != nil {
				step.fail(err)
			}
		}
		res.Plan = append(res.Plan, step)
	}
	return res, nil
}

// syncRotation makes key id's schedule what d asks: rotation every
// d.RotationInterval (keeping the schedule's grace, secret and reader when
// it has one), or none.
func (s *Service) syncRotation(ctx context.Context, actor *latchkey.Actor, id string, d *latchkey.DeclaredKey, have *latchkey.Rotation) error {
	switch {
	case !d.AutoRotate && have != nil:
		return s.DeleteRotation(ctx, actor, id)
	case !d.AutoRotate:
		return nil
	}
	p := RotationParams{Interval: d.RotationInterval}
	if have != nil {
		g := time.Duration(have.Grace)
		p.Grace, p.Secret, p.Reader = &g, have.Secret, have.Reader
	}
	_, err := s.SetRotation(ctx, actor, id, p)
	return err
}

func (st *PlanStep) fail(err error) {
	st.Error, st.Code = latchkey.ErrorMessage(err), latchkey.ErrorCode(err)
}

// current is the key of app and agent among ks (keys of one name): the
// newest that is neither revoked, expired nor rotated out. An expired or
// revoked key is not the declared key any more; applying mints a new one.
func current(ks []*latchkey.Key, app, agent string, now time.Time) *latchkey.Key {
	var found *latchkey.Key
	for _, k := range ks {
		if k.Meta[MetaManifestApp] != app || k.Meta[MetaManifestAgent] != agent || k.RotatedTo != "" {
			continue
		}
		if st := k.StateAt(now); st == latchkey.StateRevoked || st == latchkey.StateExpired {
			continue
		}
		if found == nil || k.CreatedAt.After(found.CreatedAt) {
			found = k
		}
	}
	return found
}

// undeclared lists the app's live keys (in env, when set) that no
// declaration matched. It reads the tenant's keys page by page: pruning
// is the one part of an apply that scans.
func (s *Service) undeclared(ctx context.Context, actor *latchkey.Actor, app, env string, declared map[string]bool, now time.Time) ([]*latchkey.Key, error) {
	var out []*latchkey.Key
	after := ""
	for {
		var ks []*latchkey.Key
		err := s.store.View(ctx, func(tx Tx) error {
			var err error
			ks, err = tx.Keys(actor.Tenant, latchkey.KeyFilter{Page: latchkey.Page{After: after, Limit: 1000}, Environment: env})
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, k := range ks {
			if k.Meta[MetaManifestApp] != app || declared[k.ID] || k.StateAt(now) == latchkey.StateRevoked {
				continue
			}
			out = append(out, k)
		}
		if len(ks) < 1000 {
			return out, nil
		}
		after = ks[len(ks)-1].ID
	}
}

// declaredSettings are the settings a declared key asks for, its identity
// in its meta. Expiry is left to diff and CreateKey (ExpiresIn).
func declaredSettings(d *latchkey.DeclaredKey) (Settings, error) {
	meta := map[string]any{}
	for k, v := range d.Meta {
		meta[k] = v
	}
	for _, reserved := range []string{MetaManifestApp, MetaManifestAgent} {
		if _, ok := meta[reserved]; ok {
			return Settings{}, latchkey.Errorf(latchkey.EInvalid, "meta.%s is set by the manifest itself", reserved)
		}
	}
	meta[MetaManifestApp], meta[MetaManifestAgent] = d.App, d.Agent
	// Meta reads back from the store as JSON; compare like with like.
	raw, err := json.Marshal(meta)
	if err != nil {
		return Settings{}, latchkey.Errorf(latchkey.EInvalid, "meta: %v", err)
	}
	meta = nil
	if err := json.Unmarshal(raw, &meta); err != nil {
		return Settings{}, latchkey.Errorf(latchkey.EInvalid, "meta: %v", err)
	}
	name, env, owner := d.Name, d.Environment, d.Owner
	scopes, resources := d.Scopes, d.Resources
	if scopes == nil {
		scopes = []string{"agent:activate"}
	}
	if resources == nil {
		resources = []string{"agent:" + d.Agent}
	}
	ipAllow, countries := orEmpty(d.IPAllow), orEmpty(d.Countries)
	windows, limits := d.TimeWindows, d.RateLimits
	if windows == nil {
		windows = []latchkey.TimeWindow{}
	}
	if limits == nil {
		limits = []latchkey.RateLimit{}
	}
	maxc := d.MaxConcurrent
	set := Settings{
		Name: &name, Environment: &env, Owner: &owner, Scopes: &scopes, Resources: &resources,
		Meta: &meta, IPAllow: &ipAllow, Countries: &countries, TimeWindows: &windows, RateLimits: &limits,
		MaxConcurrent: &maxc, Quota: d.Quota, ClearQuota: d.Quota == nil,
	}
	if d.ExpiresAfter > 0 {
		in := d.ExpiresAfter
		set.ExpiresIn = &in
	}
	return set, nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// diff returns the update that brings key k to the declared settings
// set, and the names of the fields it changes (none: k is as declared).
// The expiry is the key's creation plus ExpiresAfter.
func (s *Service) diff(k *latchkey.Key, set Settings, d *latchkey.DeclaredKey, actor *latchkey.Actor, now time.Time) (Settings, []string, error) {
	want := *k
	want.Meta = k.Meta
	set.ExpiresIn = nil
	if err := set.apply(&want, actor, now, s.policyEnv()); err != nil {
		return Settings{}, nil, err
	}
	var upd Settings
	var changes []string
	field := func(name string, same bool, take func()) {
		if !same {
			changes = append(changes, name)
			take()
		}
	}
	field("environment", want.Environment == k.Environment, func() { upd.Environment = set.Environment })
	field("owner", want.Owner == k.Owner, func() { upd.Owner = set.Owner })
	field("scopes", slices.Equal(want.Scopes, k.Scopes), func() { upd.Scopes = set.Scopes })
	field("resources", slices.Equal(want.Resources, k.Resources), func() { upd.Resources = set.Resources })
	field("meta", reflect.DeepEqual(want.Meta, k.Meta), func() { upd.Meta = set.Meta })
	field("ip_allow", slices.Equal(want.IPAllow, k.IPAllow), func() { upd.IPAllow = set.IPAllow })
	field("countries", slices.Equal(want.Countries, k.Countries), func() { upd.Countries = set.Countries })
	field("time_windows", len(want.TimeWindows)+len(k.TimeWindows) == 0 || reflect.DeepEqual(want.TimeWindows, k.TimeWindows), func() { upd.TimeWindows = set.TimeWindows })
	field("ratelimits", slices.Equal(want.RateLimits, k.RateLimits), func() { upd.RateLimits = set.RateLimits })
	field("quota", reflect.DeepEqual(want.Quota, k.Quota), func() { upd.Quota, upd.ClearQuota = set.Quota, set.ClearQuota })
	field("max_concurrent", want.MaxConcurrent == k.MaxConcurrent, func() { upd.MaxConcurrent = set.MaxConcurrent })
	var expires time.Time
	if d.ExpiresAfter > 0 {
		expires = k.CreatedAt.Add(d.ExpiresAfter).UTC().Truncate(time.Microsecond)
	}
	field("expires_at", expires.Equal(k.ExpiresAt), func() { upd.ExpiresAt = &expires })
	if !expires.IsZero() && !expires.After(now) {
		return Settings{}, nil, latchkey.Errorf(latchkey.EInvalid, "expires_after %s is shorter than the key's age (created %s); revoke the key and apply again to mint a new one",
			latchkey.Duration(d.ExpiresAfter), k.CreatedAt.Format(time.RFC3339))
	}
	return upd, changes, nil
}
