package keys

import (
	"context"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Batch operations (BatchParams.Op).
const (
	BatchRevoke  = "revoke"
	BatchSuspend = "suspend"
	BatchResume  = "resume"
	BatchRotate  = "rotate"
	// BatchSetPolicy makes each key name BatchParams.Policy ("" for
	// none), as UpdateKey would.
	BatchSetPolicy = "set_policy"
)

// MaxBatchKeys bounds the keys one batch changes.
const MaxBatchKeys = 10_000

// BatchFilter selects the keys of a batch by their fields. A filter that
// sets none selects nothing: every key of the tenant takes All, said
// explicitly, so that a mistyped field cannot reach them all.
type BatchFilter struct {
	Owner, Environment string
	// Policy selects the keys that name the policy.
	Policy string
	// State matches the state a key has now. Without it, revoked keys
	// (which nothing changes any more) are left out.
	State latchkey.State
	// Resource keeps the keys whose resources cover it ("agent:NAME").
	Resource string
	// All selects every key of the tenant; it takes no other field.
	All bool
}

func (f *BatchFilter) empty() bool {
	return f.Owner == "" && f.Environment == "" && f.Policy == "" && f.State == "" && f.Resource == ""
}

// BatchParams say what a batch does to which keys.
type BatchParams struct {
	Op string
	// IDs or Filter (exactly one) select the keys. A filter never selects
	// the key making the request for a revoke, suspend or rotate: naming
	// it in IDs is the only way to change it in a batch.
	IDs    []string
	Filter *BatchFilter
	// DryRun selects the keys and changes nothing.
	DryRun bool
	// Reason is kept with the keys (revoke, suspend).
	Reason string
	// Duration is how long a suspension lasts (0: until resumed).
	Duration time.Duration
	// Grace is how long a rotated key keeps working (nil: the service's
	// default).
	Grace *time.Duration
	// Policy is the policy set_policy gives each key ("" removes it).
	Policy *string
}

// BatchItem is what a batch did, or would do, to one key.
type BatchItem struct {
	ID string `json:"id"`
	OK bool   `json:"ok"`
	// Error and Code say why the key was not changed; the others go ahead.
	Error string `json:"error,omitempty"`
	Code  string `json:"error_code,omitempty"`
	// SuccessorID and Key are a rotation's new key and its plaintext,
	// shown once.
	SuccessorID string `json:"successor_id,omitempty"`
	Key         string `json:"key,omitempty"`
}

func (it *BatchItem) fail(err error) {
	it.OK, it.Error, it.Code = false, latchkey.ErrorMessage(err), latchkey.ErrorCode(err)
}

// BatchResult is a batch's answer: how many keys its selection matched,
// and one item per id given or key matched, in that order.
type BatchResult struct {
	Matched int         `json:"matched"`
	Results []BatchItem `json:"results"`
}

// BatchKeys revokes, suspends, resumes or rotates the keys p selects,
// each in its own transaction and audited as the single-key operations
// are. A key that fails (not found, revoked, changed meanwhile, the key
// making the request under a filter) carries its error in its item, and
// the others go ahead. The whole batch is refused (EInvalid) when its
// parameters are wrong, or when it selects more than MaxBatchKeys keys.
func (s *Service) BatchKeys(ctx context.Context, actor *latchkey.Actor, p BatchParams) (BatchResult, error) {
	if err := p.check(); err != nil {
		return BatchResult{}, err
	}
	var items []BatchItem
	var err error
	if p.Filter != nil {
		items, err = s.batchMatch(ctx, actor, p)
	} else {
		items, err = s.batchFind(ctx, actor, p.IDs)
	}
	if err != nil {
		return BatchResult{}, err
	}
	res := BatchResult{Results: items}
	for i := range res.Results {
		it := &res.Results[i]
		if it.Code != "" {
			continue // not found
		}
		res.Matched++
		if p.Filter != nil && it.ID == actor.KeyID && p.Op != BatchResume {
			it.fail(latchkey.Errorf(latchkey.EConflict, "key %s is the key making this request; a filter leaves it alone (name it in ids to %s it)", it.ID, p.Op))
			continue
		}
		if p.DryRun {
			continue
		}
		if err := ctx.Err(); err != nil {
			return BatchResult{}, err
		}
		if err := s.batchOne(ctx, actor, p, it); err != nil {
			it.fail(err)
		}
	}
	return res, nil
}

// check validates p before any key is read. Errors: EInvalid.
func (p *BatchParams) check() error {
	switch p.Op {
	case BatchRevoke, BatchSuspend, BatchResume, BatchRotate:
	case BatchSetPolicy:
		if p.Policy == nil {
			return latchkey.Errorf(latchkey.EInvalid, `set_policy needs "policy": the policy's name, or "" to remove it`)
		}
		if *p.Policy != "" && !latchkey.ValidPolicyName(*p.Policy) {
			return latchkey.Errorf(latchkey.EInvalid, "policy %.70q: use 1-63 of a-z, 0-9, '_' and '-'", *p.Policy)
		}
	case "":
		return latchkey.Errorf(latchkey.EInvalid, "op is required: revoke, suspend, resume, rotate or set_policy")
	default:
		return latchkey.Errorf(latchkey.EInvalid, "op %.40q: use revoke, suspend, resume, rotate or set_policy", p.Op)
	}
	if p.Policy != nil && p.Op != BatchSetPolicy {
		return latchkey.Errorf(latchkey.EInvalid, "policy applies to set_policy, not %s", p.Op)
	}
	if p.Reason != "" && p.Op != BatchRevoke && p.Op != BatchSuspend {
		return latchkey.Errorf(latchkey.EInvalid, "reason applies to revoke and suspend, not %s", p.Op)
	}
	if err := latchkey.ValidateText("reason", p.Reason, latchkey.MaxNameLen, false); err != nil {
		return err
	}
	if p.Duration != 0 && p.Op != BatchSuspend {
		return latchkey.Errorf(latchkey.EInvalid, "duration applies to suspend, not %s", p.Op)
	}
	if p.Duration < 0 || p.Duration > latchkey.MaxDuration {
		return latchkey.Errorf(latchkey.EInvalid, "duration must be between 0 and 100y")
	}
	if p.Grace != nil && p.Op != BatchRotate {
		return latchkey.Errorf(latchkey.EInvalid, "grace_period applies to rotate, not %s", p.Op)
	}
	if p.Grace != nil && (*p.Grace < 0 || *p.Grace > latchkey.MaxDuration) {
		return latchkey.Errorf(latchkey.EInvalid, "grace_period must be between 0 and 100y")
	}
	switch {
	case p.Filter != nil && p.IDs != nil:
		return latchkey.Errorf(latchkey.EInvalid, "give ids or filter, not both")
	case p.Filter == nil && len(p.IDs) == 0:
		return latchkey.Errorf(latchkey.EInvalid, "give the keys as ids or select them with filter")
	case p.Filter != nil:
		return p.Filter.check()
	case len(p.IDs) > MaxBatchKeys:
		return latchkey.Errorf(latchkey.EInvalid, "a batch may name at most %d keys; it names %d", MaxBatchKeys, len(p.IDs))
	}
	seen := make(map[string]bool, len(p.IDs))
	for _, id := range p.IDs {
		if seen[id] {
			return latchkey.Errorf(latchkey.EInvalid, "ids: key %.60q is given twice", id)
		}
		seen[id] = true
	}
	return nil
}

func (f *BatchFilter) check() error {
	switch {
	case f.All && !f.empty():
		return latchkey.Errorf(latchkey.EInvalid, `filter: "all" selects every key and takes no other field`)
	case f.All:
		return nil
	case f.empty():
		return latchkey.Errorf(latchkey.EInvalid, `filter: an empty filter would select every key of the tenant; set "all": true if that is meant`)
	}
	if err := latchkey.ValidateText("owner", f.Owner, latchkey.MaxNameLen, false); err != nil {
		return err
	}
	if f.Environment != "" {
		if err := latchkey.ValidateEnvironment(f.Environment); err != nil {
			return err
		}
	}
	if f.Policy != "" && !latchkey.ValidPolicyName(f.Policy) {
		return latchkey.Errorf(latchkey.EInvalid, "filter policy %.70q: use 1-63 of a-z, 0-9, '_' and '-'", f.Policy)
	}
	if f.State != "" && !latchkey.ValidState(f.State) {
		return latchkey.Errorf(latchkey.EInvalid, "state must be active, suspended, revoked or expired")
	}
	if f.Resource != "" {
		if err := latchkey.ValidateResource(f.Resource); err != nil {
			return err
		}
	}
	return nil
}

// batchFind looks up the keys ids names, in one transaction: an item for
// each, those not found failed (ENotFound).
func (s *Service) batchFind(ctx context.Context, actor *latchkey.Actor, ids []string) ([]BatchItem, error) {
	items := make([]BatchItem, len(ids))
	err := s.store.View(ctx, func(tx Tx) error {
		for i, id := range ids {
			items[i] = BatchItem{ID: id, OK: true}
			if !latchkey.ValidID("key", id) {
				items[i].fail(latchkey.KeyNotFound(id))
				continue
			}
			if _, err := tx.Key(actor.Tenant, id); err != nil {
				if latchkey.ErrorCode(err) != latchkey.ENotFound {
					return err
				}
				items[i].fail(err)
			}
		}
		return nil
	})
	return items, err
}

// batchMatch reads the tenant's keys page by page and keeps those p's
// filter matches, in creation order. When more than MaxBatchKeys match,
// it counts them all to say how many. Errors: EInvalid (too many).
func (s *Service) batchMatch(ctx context.Context, actor *latchkey.Actor, p BatchParams) ([]BatchItem, error) {
	const page = 1000
	f := p.Filter
	now := s.now()
	kf := latchkey.KeyFilter{Page: latchkey.Page{Limit: page}, Owner: f.Owner, Environment: f.Environment, Policy: f.Policy, State: f.State, Now: now}
	var items []BatchItem
	matched := 0
	for {
		var ks []*latchkey.Key
		err := s.store.View(ctx, func(tx Tx) error {
			var err error
			ks, err = tx.Keys(actor.Tenant, kf)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, k := range ks {
			kf.After = k.ID
			if f.State == "" && k.StateAt(now) == latchkey.StateRevoked {
				continue
			}
			if f.Resource != "" && !latchkey.ResourcesAllow(k.Resources, f.Resource) {
				continue
			}
			matched++
			if matched <= MaxBatchKeys {
				items = append(items, BatchItem{ID: k.ID, OK: true})
			}
		}
		if len(ks) < page {
			break
		}
	}
	if matched > MaxBatchKeys {
		return nil, latchkey.Errorf(latchkey.EInvalid, "the filter matches %d keys; a batch changes at most %d: narrow the filter", matched, MaxBatchKeys)
	}
	if items == nil {
		items = []BatchItem{}
	}
	return items, nil
}

// batchOne applies p's operation to the key of it.
func (s *Service) batchOne(ctx context.Context, actor *latchkey.Actor, p BatchParams, it *BatchItem) error {
	var err error
	switch p.Op {
	case BatchRevoke:
		_, err = s.RevokeKey(ctx, actor, it.ID, p.Reason)
	case BatchSuspend:
		_, err = s.SuspendKey(ctx, actor, it.ID, p.Duration, p.Reason)
	case BatchResume:
		_, err = s.ResumeKey(ctx, actor, it.ID)
	case BatchRotate:
		var succ *latchkey.Key
		var tok latchkey.Token
		succ, tok, err = s.RotateKey(ctx, actor, it.ID, RotateParams{Grace: p.Grace})
		if err == nil {
			it.SuccessorID, it.Key = succ.ID, tok.Reveal()
		}
	case BatchSetPolicy:
		_, err = s.UpdateKey(ctx, actor, it.ID, Settings{Policy: p.Policy})
	}
	return err
}
