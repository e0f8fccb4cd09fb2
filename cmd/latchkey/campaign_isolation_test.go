package main

import (
	"cmp"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/httpapi"
)

// The isolation campaign (docs/reliability.md): every route of
// httpapi.Routes — the table the mux is built from, so a new route is in
// the matrix without being added here — is called
//
//   - with tenant B's admin key on tenant A's objects (its path parameters
//     filled with A's real ids): refused exactly as the same call on an id
//     that does not exist (same status, same error code), and no answer
//     B gets carries anything of A's;
//   - with a key of A that lacks the route's scope: refused with 403
//     forbidden, on A's real objects exactly as on nonexistent ones.
//
// A route with a path parameter the matrix has no object of A's for fails
// the test: give it one in isolationFixture.params.

// isolationBodies are the bodies the matrix sends, by "METHOD pattern";
// each would succeed for A's admin key, so a refusal is the isolation's
// and not the body's. Routes not listed get no body.
func isolationBodies(hookURL string) map[string]any {
	return map[string]any{
		"POST /v1/keys":             map[string]any{"name": "matrix"},
		"PATCH /v1/keys/{id}":       map[string]any{"name": "stolen"},
		"POST /v1/keys/{id}/derive": map[string]any{"name": "stolen"},
		"POST /v1/webhooks":         map[string]any{"url": hookURL, "events": []string{"key.created"}},
		"POST /v1/tenants":          map[string]any{"id": "tenant-x", "name": "X Inc."},
		"PUT /v1/secrets/{name}":    map[string]any{"value": secretValue("sk-matrix-")},
		"POST /v1/policies":         map[string]any{"name": "matrix", "scopes": []string{"data:read"}},
		"PATCH /v1/policies/{name}": map[string]any{"description": "stolen"},
		"PUT /v1/owners/{id}":       map[string]any{"meta": map[string]any{"team": "stolen"}},
		"POST /v1/identity-providers": map[string]any{"name": "matrix", "issuer": "https://issuer.example", "jwks_url": "https://issuer.example/jwks",
			"audience": "latchkey", "claims": map[string]string{"sub": "repo:a/*"}, "key_template": map[string]any{"name": "ci"}},
	}
}

// upserts are routes whose path names an object in the caller's own
// tenant, created if it is missing: B's call creates B's object, and the
// check is that A's is untouched (isolationFixture.unchanged). An owner's
// usage is answered for any owner id, as the sum of the caller's own
// tenant's keys of that owner: B is answered about B's keys (none), and
// the check is that nothing of A's is in it.
var upserts = map[string]bool{"PUT /v1/secrets/{name}": true, "PUT /v1/owners/{id}": true, "GET /v1/owners/{id}/usage": true}

// isolationFixture is tenant A's objects, one of each kind a route
// parameter names.
type isolationFixture struct {
	ts                 *testServer
	a, b               string // the tenants' admin keys
	keyID, key         string
	lease              string
	hookID, deliveryID string
	secretName, secret string
	policy, owner      string // A's policy's name, and the owner of A's key, with a record
	idp                string // A's identity provider's name
}

// params maps "segment/{param}" (the path segment before the parameter
// and its name) to A's real value.
func (f *isolationFixture) params() map[string]string {
	return map[string]string{
		"keys/{id}":                 f.keyID,
		"leases/{id}":               f.lease,
		"webhooks/{id}":             f.hookID,
		"deliveries/{delivery_id}":  f.deliveryID,
		"secrets/{name}":            f.secretName,
		"keys/{provider}":           f.secretName,
		"policies/{name}":           f.policy,
		"owners/{id}":               f.owner,
		"identity-providers/{name}": f.idp,
	}
}

var paramRE = regexp.MustCompile(`([a-z-]+)/\{([a-z_]+)\}`)

// fill returns the route's path with A's real objects, or with objects of
// the same form that do not exist.
func (f *isolationFixture) fill(t *testing.T, pattern string, real bool) string {
	t.Helper()
	ps := f.params()
	return paramRE.ReplaceAllStringFunc(pattern, func(m string) string {
		seg, _, _ := strings.Cut(m, "/")
		v, ok := ps[m]
		if !ok {
			t.Fatalf("route %s: the isolation matrix has no object of tenant A for %s; add one to isolationFixture", pattern, m)
		}
		if !real {
			if kind, _, ok := strings.Cut(v, "_"); ok {
				v = latchkey.NewID(kind, time.Now())
			} else {
				v = "nonexistent-" + v
			}
		}
		return seg + "/" + v
	})
}

// aData are the strings that would show B something of A's.
func (f *isolationFixture) aData() []string {
	return []string{f.keyID, f.lease, f.hookID, f.deliveryID, f.secret, "tenant-a"}
}

func newIsolationFixture(t *testing.T) (*isolationFixture, string) {
	t.Helper()
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable) // deliveries stay pending, retryable
	}))
	t.Cleanup(rcv.Close)
	ts := startServer(t, withWebhookPoll(20*time.Millisecond), withLocalReceivers())
	f := &isolationFixture{ts: ts, secretName: "openai", secret: secretValue("sk-tenant-a-"), policy: "policy-a", owner: "owner-a", idp: "idp-a"}
	f.a = ts.mustTenant(t, "tenant-a")
	f.b = ts.mustTenant(t, "tenant-b")
	r := ts.call(t, "POST", "/v1/webhooks", f.a, map[string]any{"url": rcv.URL + "/hook", "events": []string{"key.created"}})
	if r.Status != http.StatusCreated {
		t.Fatalf("create webhook: %d %s", r.Status, r.Raw)
	}
	f.hookID = r.str("id")
	ts.Clock.Advance(time.Second)
	f.keyID, f.key = ts.mustCreate(t, f.a, map[string]any{"scopes": []string{"data:read"}, "max_concurrent": 2, "lease_ttl": "1h"})
	v := ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": f.key})
	if f.lease = v.str("lease_id"); f.lease == "" {
		t.Fatalf("verify gave no lease: %s", v.Raw)
	}
	ts.putSecret(t, f.a, f.secretName, map[string]any{"value": f.secret})
	if r := ts.call(t, "POST", "/v1/policies", f.a, map[string]any{"name": f.policy, "description": "A's", "scopes": []string{"data:read"}}); r.Status != http.StatusCreated {
		t.Fatalf("create policy: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "POST", "/v1/identity-providers", f.a, map[string]any{"name": f.idp, "issuer": "https://issuer.example",
		"jwks_url": "https://issuer.example/jwks", "audience": "latchkey", "claims": map[string]string{"sub": "repo:a/*"},
		"key_template": map[string]any{"name": "ci"}}); r.Status != http.StatusCreated {
		t.Fatalf("create identity provider: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "PUT", "/v1/owners/"+f.owner, f.a, map[string]any{"meta": map[string]any{"team": "a"}}); r.Status != http.StatusOK {
		t.Fatalf("put owner: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "PATCH", "/v1/keys/"+f.keyID, f.a, map[string]any{"owner": f.owner}); r.Status != http.StatusOK {
		t.Fatalf("give A's key its owner: %d %s", r.Status, r.Raw)
	}
	eventually(t, 20*time.Second, "a delivery of A's webhook exists", func() bool {
		d := ts.call(t, "GET", "/v1/webhooks/"+f.hookID+"/deliveries", f.a, nil)
		ds, _ := d.Body["deliveries"].([]any)
		if len(ds) == 0 {
			return false
		}
		f.deliveryID, _ = ds[0].(map[string]any)["id"].(string)
		return f.deliveryID != ""
	})
	return f, rcv.URL + "/hook"
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// unchanged checks that A's objects are as A left them; last, that A's
// lease is still held (its own key releases it).
func (f *isolationFixture) unchanged(t *testing.T, last bool) {
	t.Helper()
	ts := f.ts
	if k := ts.call(t, "GET", "/v1/keys/"+f.keyID, f.a, nil); k.str("state") != "active" || k.str("name") != "e2e" {
		t.Fatalf("tenant A's key changed: %s", k.Raw)
	}
	if s := ts.call(t, "GET", "/v1/secrets/"+f.secretName, f.a, nil); s.str("value") != f.secret || s.Body["version"] != 1.0 {
		t.Fatalf("tenant A's secret changed: %d version %v", s.Status, s.Body["version"])
	}
	if w := ts.call(t, "GET", "/v1/webhooks/"+f.hookID, f.a, nil); w.Status != 200 {
		t.Fatalf("tenant A's webhook: %d %s", w.Status, w.Raw)
	}
	if p := ts.call(t, "GET", "/v1/policies/"+f.policy, f.a, nil); p.Status != 200 || p.str("description") != "A's" {
		t.Fatalf("tenant A's policy changed: %d %s", p.Status, p.Raw)
	}
	if o := ts.call(t, "GET", "/v1/owners/"+f.owner, f.a, nil); o.Status != 200 || !strings.Contains(string(o.Raw), `"team":"a"`) {
		t.Fatalf("tenant A's owner changed: %d %s", o.Status, o.Raw)
	}
	if p := ts.call(t, "GET", "/v1/identity-providers/"+f.idp, f.a, nil); p.Status != 200 || p.str("issuer") != "https://issuer.example" {
		t.Fatalf("tenant A's identity provider changed: %d %s", p.Status, p.Raw)
	}
	if !last {
		return
	}
	if r := ts.call(t, "POST", "/v1/leases/"+f.lease+"/release", f.key, nil); r.Status != http.StatusNoContent {
		t.Fatalf("tenant A's lease was released by someone else: %d %s", r.Status, r.Raw)
	}
}

func TestCampaignIsolationMatrix(t *testing.T) {
	routes := httpapi.Routes()
	if len(routes) < 40 {
		t.Fatalf("httpapi.Routes lists %d routes; the table has more", len(routes))
	}
	f, hookURL := newIsolationFixture(t)
	ts := f.ts
	bodies := isolationBodies(hookURL)
	calls := 0

	// Tenant B's admin key on A's objects. The upserts go last: once B has
	// its own secret "openai", B's reads of that name are B's.
	byB := slices.Clone(routes)
	slices.SortStableFunc(byB, func(x, y httpapi.Route) int {
		return cmp.Compare(b2i(upserts[x.Method+" "+x.Pattern]), b2i(upserts[y.Method+" "+y.Pattern]))
	})
	for _, rt := range byB {
		name := rt.Method + " " + rt.Pattern
		hasParams := strings.Contains(rt.Pattern, "{")
		if rt.Scope == "" && !hasParams {
			continue // health, metrics, verify: nothing of a tenant's in the path
		}
		t.Run("tenantB/"+name, func(t *testing.T) {
			path := f.fill(t, rt.Pattern, true)
			got := ts.call(t, rt.Method, path, f.b, bodies[name])
			calls++
			for _, d := range f.aData() {
				// An error may echo the id B sent; anything else of A's is a leak.
				if d != "" && !strings.Contains(path, d) && strings.Contains(string(got.Raw), d) {
					t.Fatalf("B's answer carries A's %q: %d %s", clip(d, 12), got.Status, got.Raw)
				}
			}
			if !hasParams || upserts[name] {
				return // acts on B's own tenant; A's objects are checked below
			}
			absent := ts.call(t, rt.Method, f.fill(t, rt.Pattern, false), f.b, bodies[name])
			calls++
			if got.Status < 400 {
				t.Fatalf("B's admin key on A's object was served: %d %s", got.Status, got.Raw)
			}
			if got.Status != absent.Status || got.errCode() != absent.errCode() {
				t.Fatalf("not-yours (%d %s) differs from absent (%d %s)", got.Status, got.errCode(), absent.Status, absent.errCode())
			}
		})
	}
	f.unchanged(t, false)

	// A key of A's own tenant lacking each required scope, on A's objects.
	scopes := map[string]bool{}
	for _, rt := range routes {
		if rt.Scope != "" {
			scopes[rt.Scope] = true
		}
	}
	for scope := range scopes {
		lacking := lackingKey(t, f, scope)
		for _, rt := range routes {
			if rt.Scope != scope {
				continue
			}
			name := rt.Method + " " + rt.Pattern
			t.Run("lacking-"+scope+"/"+name, func(t *testing.T) {
				got := ts.call(t, rt.Method, f.fill(t, rt.Pattern, true), lacking, bodies[name])
				absent := ts.call(t, rt.Method, f.fill(t, rt.Pattern, false), lacking, bodies[name])
				calls += 2
				if got.Status != http.StatusForbidden || got.errCode() != latchkey.EForbidden {
					t.Fatalf("a key without %s: %d %s", scope, got.Status, got.Raw)
				}
				if absent.Status != got.Status || absent.errCode() != got.errCode() {
					t.Fatalf("without %s, absent (%d %s) differs from real (%d %s)", scope, absent.Status, absent.errCode(), got.Status, got.errCode())
				}
			})
		}
	}
	f.unchanged(t, true)
	campaignReport(t, "isolation", "routes=%d scopes=%d calls=%d failed=%t", len(routes), len(scopes), calls, t.Failed())
}

// lackingKey returns a key of tenant A that holds every admin scope a
// tenant may hold except scope (tenants:admin is the operator's alone, so
// A's admin key already lacks it).
func lackingKey(t *testing.T, f *isolationFixture, scope string) string {
	t.Helper()
	if scope == "tenants:admin" {
		return f.a
	}
	var grant []string
	for _, s := range latchkey.AdminScopes {
		if s != scope && s != "tenants:admin" {
			grant = append(grant, s)
		}
	}
	_, k := f.ts.mustCreate(t, f.a, map[string]any{"name": "lacks " + scope, "scopes": append(grant, "data:read")})
	return k
}
