package keys_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// workspace is a manifest of three agents, as package manifest reads one.
func workspace() *latchkey.Manifest {
	return &latchkey.Manifest{App: "workspace", Keys: []latchkey.DeclaredKey{
		{App: "workspace", Agent: "orchestrator", Name: "Orchestrator Key", Scopes: []string{"agent:activate", "data:read"},
			ExpiresAfter: 365 * 24 * time.Hour, Environment: "production", AutoRotate: true, RotationInterval: 90 * 24 * time.Hour, Source: "m.yml:3"},
		{App: "workspace", Agent: "processor", Name: "Processor Key", Scopes: []string{"agent:activate", "data:read"},
			RateLimits: []latchkey.RateLimit{{Name: "1m", Limit: 100, Window: latchkey.Duration(time.Minute)}}, Source: "m.yml:9"},
		{App: "workspace", Agent: "reporter", Name: "reporter", Source: "m.yml:14"},
	}}
}

func apply(t *testing.T, f *fixture, m *latchkey.Manifest, p keys.ApplyParams) keys.ApplyResult {
	t.Helper()
	res, err := f.svc.ApplyManifest(context.Background(), f.admin, m, p)
	if err != nil {
		t.Fatalf("ApplyManifest: %v", err)
	}
	for _, s := range res.Plan {
		if s.Error != "" {
			t.Fatalf("step %+v failed", s)
		}
	}
	return res
}

func actions(res keys.ApplyResult) []string {
	var out []string
	for _, s := range res.Plan {
		out = append(out, s.Action+" "+s.Agent)
	}
	return out
}

// Applying creates what is missing, and applying again changes nothing
// and mints nothing.
func TestApplyIsIdempotent(t *testing.T) {
	f := newFixture(t)
	first := apply(t, f, workspace(), keys.ApplyParams{})
	if got := actions(first); !slices.Equal(got, []string{"create orchestrator", "create processor", "create reporter"}) {
		t.Fatalf("first plan %q", got)
	}
	if len(first.Keys) != 3 {
		t.Fatalf("minted %d keys, want 3", len(first.Keys))
	}
	for _, k := range first.Keys {
		if v := f.verify(t, k.Key, "agent:activate"); v.Code != latchkey.CodeValid {
			t.Errorf("minted key of %s: %s", k.Agent, v.Code)
		}
	}
	// The defaults: the reporter's key acts on its own agent only.
	rep, err := f.svc.GetKey(context.Background(), f.admin, first.Keys[2].KeyID)
	if err != nil || !slices.Equal(rep.Resources, []string{"agent:reporter"}) || !slices.Equal(rep.Scopes, []string{"agent:activate"}) {
		t.Fatalf("reporter key %+v, %v", rep, err)
	}
	orch, _ := f.svc.GetKey(context.Background(), f.admin, first.Keys[0].KeyID)
	if !orch.ExpiresAt.Equal(orch.CreatedAt.Add(365 * 24 * time.Hour)) {
		t.Errorf("orchestrator key expires %v (created %v)", orch.ExpiresAt, orch.CreatedAt)
	}
	if rot, err := f.svc.GetRotation(context.Background(), f.admin, orch.ID); err != nil || rot.Interval != latchkey.Duration(90*24*time.Hour) {
		t.Errorf("orchestrator rotation %+v, %v", rot, err)
	}

	f.clock.Advance(time.Hour)
	second := apply(t, f, workspace(), keys.ApplyParams{})
	if got := actions(second); !slices.Equal(got, []string{"unchanged orchestrator", "unchanged processor", "unchanged reporter"}) {
		t.Fatalf("second plan %q", got)
	}
	if len(second.Keys) != 0 {
		t.Fatalf("the second apply minted %d keys", len(second.Keys))
	}
}

// Editing one scope updates that key in place, and the very next verify
// sees it.
func TestApplyUpdatesInPlace(t *testing.T) {
	f := newFixture(t)
	first := apply(t, f, workspace(), keys.ApplyParams{})
	proc := first.Keys[1].Key
	if v := f.verify(t, proc, "data:write"); v.Code != latchkey.CodeInsufficientScope {
		t.Fatalf("before: %s", v.Code)
	}
	m := workspace()
	m.Keys[1].Scopes = append(m.Keys[1].Scopes, "data:write")
	res := apply(t, f, m, keys.ApplyParams{})
	if s := res.Plan[1]; s.Action != keys.PlanUpdate || !slices.Equal(s.Changes, []string{"scopes"}) || s.KeyID != first.Keys[1].KeyID {
		t.Fatalf("plan step %+v, want an update of scopes on the same key", s)
	}
	if len(res.Keys) != 0 {
		t.Fatal("an update minted a key")
	}
	if v := f.verify(t, proc, "data:write"); v.Code != latchkey.CodeValid {
		t.Fatalf("the next verify after the update: %s", v.Code)
	}
	// Dropping the rate window and lengthening the expiry are updates too.
	m.Keys[1].RateLimits = nil
	m.Keys[0].ExpiresAfter = 400 * 24 * time.Hour
	res = apply(t, f, m, keys.ApplyParams{})
	if !slices.Equal(res.Plan[0].Changes, []string{"expires_at"}) || !slices.Equal(res.Plan[1].Changes, []string{"ratelimits"}) {
		t.Fatalf("plan %+v", res.Plan)
	}
}

// A dry run plans and changes nothing.
func TestApplyDryRunChangesNothing(t *testing.T) {
	f := newFixture(t)
	res := apply(t, f, workspace(), keys.ApplyParams{DryRun: true})
	if got := actions(res); len(got) != 3 || got[0] != "create orchestrator" || len(res.Keys) != 0 {
		t.Fatalf("dry run: %q, %d keys", got, len(res.Keys))
	}
	ks, _, err := f.svc.ListKeys(context.Background(), f.admin, keys.ListParams{})
	if err != nil || len(ks) != 1 { // the tenant's admin key
		t.Fatalf("after a dry run the tenant holds %d keys, %v", len(ks), err)
	}
}

// Prune revokes the app's keys the manifest no longer declares, and
// nothing else.
func TestApplyPruneRevokesOnlyTheAppsUndeclaredKeys(t *testing.T) {
	f := newFixture(t)
	first := apply(t, f, workspace(), keys.ApplyParams{})
	other := &latchkey.Manifest{App: "other", Keys: []latchkey.DeclaredKey{{App: "other", Agent: "reporter", Name: "reporter", Source: "o.yml:2"}}}
	otherKey := apply(t, f, other, keys.ApplyParams{}).Keys[0]
	_, plain := f.create(t, keys.CreateParams{})

	m := workspace()
	m.Keys = m.Keys[:2]
	if res := apply(t, f, m, keys.ApplyParams{}); len(res.Plan) != 2 {
		t.Fatalf("without prune: %q", actions(res))
	}
	res := apply(t, f, m, keys.ApplyParams{Prune: true})
	if got := actions(res); !slices.Equal(got, []string{"unchanged orchestrator", "unchanged processor", "revoke reporter"}) || res.Plan[2].KeyID != first.Keys[2].KeyID {
		t.Fatalf("prune plan %q", got)
	}
	if v := f.verify(t, first.Keys[2].Key); v.Code != latchkey.CodeRevoked {
		t.Errorf("pruned key: %s", v.Code)
	}
	for _, k := range []string{otherKey.Key, plain, first.Keys[0].Key} {
		if v := f.verify(t, k); v.Code != latchkey.CodeValid {
			t.Errorf("a key prune must not touch: %s", v.Code)
		}
	}
	// Declared again, the reporter gets a new key.
	res = apply(t, f, workspace(), keys.ApplyParams{})
	if res.Plan[2].Action != keys.PlanCreate || len(res.Keys) != 1 || res.Keys[0].KeyID == first.Keys[2].KeyID {
		t.Fatalf("re-declared: %+v", res)
	}
}

// A manifest with one bad key changes no key, and the error names where
// the key is declared.
func TestApplyRefusesABadManifestWhole(t *testing.T) {
	f := newFixture(t)
	m := workspace()
	m.Keys[2].Resources = []string{"agent:"}
	_, err := f.svc.ApplyManifest(context.Background(), f.admin, m, keys.ApplyParams{})
	wantCode(t, err, latchkey.EInvalid)
	if !strings.HasPrefix(latchkey.ErrorMessage(err), "m.yml:14: ") {
		t.Errorf("the error does not start with the declaration's place: %v", err)
	}
	// Admin powers the applying key lacks are refused the same way.
	m = workspace()
	m.Keys[0].Scopes = []string{"tenants:admin"}
	_, err = f.svc.ApplyManifest(context.Background(), f.admin, m, keys.ApplyParams{})
	wantCode(t, err, latchkey.EForbidden)
	// The manifest may not forge another app's identity through meta.
	m = workspace()
	m.Keys[1].Meta = map[string]any{keys.MetaManifestApp: "other"}
	_, err = f.svc.ApplyManifest(context.Background(), f.admin, m, keys.ApplyParams{})
	wantCode(t, err, latchkey.EInvalid)
	ks, _, _ := f.svc.ListKeys(context.Background(), f.admin, keys.ListParams{})
	if len(ks) != 1 {
		t.Fatalf("a refused manifest left %d keys", len(ks))
	}
}

// A key that was revoked or has expired is no longer the declared key:
// the next apply mints its replacement.
func TestApplyReplacesRevokedAndExpiredKeys(t *testing.T) {
	f := newFixture(t)
	m := workspace()
	m.Keys[2].ExpiresAfter = 24 * time.Hour
	first := apply(t, f, m, keys.ApplyParams{})
	if _, err := f.svc.RevokeKey(context.Background(), f.admin, first.Keys[0].KeyID, "leaked"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(25 * time.Hour)
	res := apply(t, f, m, keys.ApplyParams{})
	if got := actions(res); !slices.Equal(got, []string{"create orchestrator", "unchanged processor", "create reporter"}) {
		t.Fatalf("plan %q", got)
	}
}

// Keys of one agent are listed by the resource they cover, the tenant's
// all-powerful keys included.
func TestListKeysByResource(t *testing.T) {
	f := newFixture(t)
	first := apply(t, f, workspace(), keys.ApplyParams{})
	ks, next, err := f.svc.ListKeys(context.Background(), f.admin, keys.ListParams{Resource: "agent:processor"})
	if err != nil || next != "" {
		t.Fatal(err, next)
	}
	var ids []string
	for _, k := range ks {
		ids = append(ids, k.ID)
	}
	// The processor's key, and the tenant admin key (no resources: the
	// whole tenant).
	if len(ids) != 2 || !slices.Contains(ids, first.Keys[1].KeyID) || slices.Contains(ids, first.Keys[2].KeyID) {
		t.Fatalf("keys of agent:processor: %q", ids)
	}
	_, _, err = f.svc.ListKeys(context.Background(), f.admin, keys.ListParams{Resource: "agent:"})
	wantCode(t, err, latchkey.EInvalid)
	// A page of one, then the rest.
	page, next, err := f.svc.ListKeys(context.Background(), f.admin, keys.ListParams{Resource: "agent:processor", Limit: 1})
	if err != nil || len(page) != 1 || next == "" {
		t.Fatalf("first page %d keys, next %q, %v", len(page), next, err)
	}
	rest, next, err := f.svc.ListKeys(context.Background(), f.admin, keys.ListParams{Resource: "agent:processor", Limit: 1, Cursor: next})
	if err != nil || len(rest) != 1 || next != "" || rest[0].ID == page[0].ID {
		t.Fatalf("second page %d keys, next %q, %v", len(rest), next, err)
	}
}
