package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/httpapi"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/limit"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// policyServer is a server with a limiter, an audit service and a clock
// the test moves, and the admin key of tenant "acme".
type policyServer struct {
	t     *testing.T
	base  string
	admin string
	root  string // the operator's key
	mu    sync.Mutex
	now   time.Time
}

func (p *policyServer) clock() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.now
}

func newPolicyServer(t *testing.T) *policyServer {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ps := &policyServer{t: t, now: time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)}
	lim := limit.NewMemory(limit.Options{Store: latchkey.Narrow[latchkey.QuotaStore](db)})
	aud := audit.New(audit.Options{Store: latchkey.Narrow[audit.Tx](db), Now: ps.clock})
	svc := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db), Limiter: lim, Now: ps.clock})
	t.Cleanup(func() { aud.Close(ctx); lim.Close(ctx) })
	root, _, _, err := svc.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(httpapi.New(httpapi.Config{Keys: svc, Audit: aud, Now: ps.clock}))
	t.Cleanup(ts.Close)
	ps.base, ps.root = ts.URL, root.Reveal()
	created := ps.do(ps.root, "POST", "/v1/tenants", `{"id": "acme"}`, 201)
	ps.admin = str(t, created, "key")
	return ps
}

// do sends a request with key as its bearer and wants status; it returns
// the answer's JSON object.
func (p *policyServer) do(key, method, path, body string, want int, header ...string) map[string]any {
	p.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, p.base+path, rd)
	if err != nil {
		p.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		p.t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
	}
	var out map[string]any
	if len(b) > 0 {
		_ = json.Unmarshal(b, &out)
	}
	return out
}

// verify posts a verify body and returns the verdict's code.
func (p *policyServer) verify(body string) map[string]any {
	p.t.Helper()
	return p.do("", "POST", "/v1/keys/verify", body, 200)
}

func str(t *testing.T, m map[string]any, field string) string {
	t.Helper()
	s, _ := m[field].(string)
	if s == "" {
		t.Fatalf("no %s in %v", field, m)
	}
	return s
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func TestPolicyRoutes(t *testing.T) {
	ps := newPolicyServer(t)
	a := ps.admin

	list := ps.do(a, "GET", "/v1/policies", "", 200)
	presets := map[string]bool{}
	for _, p := range list["policies"].([]any) {
		m := p.(map[string]any)
		if m["preset"] == true {
			presets[m["name"].(string)] = true
		}
	}
	for _, n := range []string{"development", "production", "integration", "emergency"} {
		if !presets[n] {
			t.Errorf("preset %s is not listed as one: %v", n, list)
		}
	}
	if _, ok := list["next_cursor"]; !ok {
		t.Errorf("no next_cursor in %v", list)
	}

	created := ps.do(a, "POST", "/v1/policies", `{"name": "svc", "description": "services", "scopes": ["data:read"],
		"ratelimits": [{"name": "1m", "limit": 50, "window": "1m"}], "quota": {"limit": 1000, "period": "30d"}, "expires_after": "90d", "max_concurrent": 3}`, 201)
	if created["name"] != "svc" || created["expires_after"] != "90d" || created["quota"] == nil {
		t.Fatalf("created %v", created)
	}
	if c := errCode(ps.do(a, "POST", "/v1/policies", `{"name": "svc"}`, 409)); c != "conflict" {
		t.Fatalf("a second svc: %s", c)
	}
	ps.do(a, "POST", "/v1/policies", `{"name": "Not A Name"}`, 400)
	ps.do(a, "POST", "/v1/policies", `{"scopes": ["data:read"]}`, 400)
	ps.do(a, "POST", "/v1/policies", `{"name": "x", "expires_after": "soon"}`, 400)
	ps.do(a, "GET", "/v1/policies/nope", "", 404)
	if got := ps.do(a, "GET", "/v1/policies/production", "", 200); got["preset"] != true {
		t.Fatalf("production: %v", got)
	}

	patched := ps.do(a, "PATCH", "/v1/policies/svc", `{"quota": null, "description": "changed"}`, 200)
	if patched["quota"] != nil || patched["description"] != "changed" || patched["max_concurrent"] != 3.0 {
		t.Fatalf("patched %v", patched)
	}
	ps.do(a, "PATCH", "/v1/policies/nope", `{"description": "x"}`, 404)
	ps.do(a, "PATCH", "/v1/policies/svc", `{"colour": "red"}`, 400)

	// A reader may not write policies.
	reader := str(t, ps.do(a, "POST", "/v1/keys", `{"name": "r", "scopes": ["policies:read"]}`, 201), "key")
	ps.do(reader, "GET", "/v1/policies/svc", "", 200)
	ps.do(reader, "POST", "/v1/policies", `{"name": "mine"}`, 403)
	ps.do(reader, "DELETE", "/v1/policies/svc", "", 403)

	// A key that names it keeps it from being deleted.
	k := ps.do(a, "POST", "/v1/keys", `{"name": "k", "policy": "svc"}`, 201)
	if k["policy"] != "svc" {
		t.Fatalf("key %v", k)
	}
	ps.do(a, "POST", "/v1/keys", `{"name": "k2", "policy": "nope"}`, 400)
	if c := errCode(ps.do(a, "DELETE", "/v1/policies/svc", "", 409)); c != "conflict" {
		t.Fatalf("deleting a policy in use: %s", c)
	}
	ps.do(a, "PATCH", "/v1/keys/"+str(t, k, "id"), `{"policy": ""}`, 200)
	ps.do(a, "DELETE", "/v1/policies/svc", "", 204)
	ps.do(a, "GET", "/v1/policies/svc", "", 404)
	ps.do(a, "DELETE", "/v1/policies/svc", "", 404)
}

// TestPolicyGovernsVerify: a key of the production preset verifies with
// its scopes, and a change to its policy's scopes is seen by the very
// next verification.
func TestPolicyGovernsVerify(t *testing.T) {
	ps := newPolicyServer(t)
	a := ps.admin
	prod := str(t, ps.do(a, "POST", "/v1/keys", `{"name": "prod", "policy": "production"}`, 201), "key")
	if v := ps.verify(`{"key": "` + prod + `", "scopes": ["data:read"]}`); v["code"] != "VALID" {
		t.Fatalf("production key reading: %v", v)
	}
	if v := ps.verify(`{"key": "` + prod + `", "scopes": ["keys:write"]}`); v["code"] != "INSUFFICIENT_SCOPE" {
		t.Fatalf("production key writing keys: %v", v)
	}

	ps.do(a, "POST", "/v1/policies", `{"name": "svc", "scopes": ["data:read", "data:write"]}`, 201)
	k := str(t, ps.do(a, "POST", "/v1/keys", `{"name": "svc", "policy": "svc"}`, 201), "key")
	if v := ps.verify(`{"key": "` + k + `", "scopes": ["data:write"]}`); v["code"] != "VALID" {
		t.Fatalf("before the change: %v", v)
	}
	ps.do(a, "PATCH", "/v1/policies/svc", `{"scopes": ["data:read"]}`, 200)
	if v := ps.verify(`{"key": "` + k + `", "scopes": ["data:write"]}`); v["code"] != "INSUFFICIENT_SCOPE" {
		t.Fatalf("right after the change: %v", v)
	}
	if v := ps.verify(`{"key": "` + k + `", "scopes": ["data:read"]}`); v["code"] != "VALID" {
		t.Fatalf("reading after the change: %v", v)
	}
}

// TestBatchSetPolicy: set_policy gives the keys a policy, and the filter
// finds them by it.
func TestBatchSetPolicy(t *testing.T) {
	ps := newPolicyServer(t)
	a := ps.admin
	k1 := str(t, ps.do(a, "POST", "/v1/keys", `{"name": "a", "owner": "o1"}`, 201), "id")
	k2 := str(t, ps.do(a, "POST", "/v1/keys", `{"name": "b", "owner": "o1"}`, 201), "id")
	res := ps.do(a, "POST", "/v1/keys/batch", `{"op": "set_policy", "filter": {"owner": "o1"}, "policy": "integration"}`, 200)
	if res["matched"] != 2.0 {
		t.Fatalf("batch %v", res)
	}
	for _, id := range []string{k1, k2} {
		if got := ps.do(a, "GET", "/v1/keys/"+id, "", 200); got["policy"] != "integration" {
			t.Fatalf("%s after set_policy: %v", id, got)
		}
	}
	res = ps.do(a, "POST", "/v1/keys/batch", `{"op": "set_policy", "filter": {"policy": "integration"}, "policy": ""}`, 200)
	if res["matched"] != 2.0 {
		t.Fatalf("by policy: %v", res)
	}
	if got := ps.do(a, "GET", "/v1/keys/"+k1, "", 200); got["policy"] != nil {
		t.Fatalf("after removing it: %v", got)
	}
	ps.do(a, "POST", "/v1/keys/batch", `{"op": "set_policy", "ids": ["`+k1+`"]}`, 400)
	ps.do(a, "POST", "/v1/keys/batch", `{"op": "revoke", "ids": ["`+k1+`"], "policy": "production"}`, 400)
}

// TestNamedCosts: a key with a tokens window of 10,000 an hour, applied on
// request, admits costs of 1,200 eight times and denies the ninth, by the
// verify body and by forward-auth's headers alike; requests that name no
// cost do not count against it.
func TestNamedCosts(t *testing.T) {
	ps := newPolicyServer(t)
	a := ps.admin
	body := `{"name": "llm", "scopes": ["data:read"], "ratelimits": [{"name": "tokens", "limit": 10000, "window": "1h", "apply": "on_request"}]}`
	viaVerify := str(t, ps.do(a, "POST", "/v1/keys", body, 201), "key")
	viaAuth := str(t, ps.do(a, "POST", "/v1/keys", body, 201), "key")
	for i := range 9 {
		want := "VALID"
		if i == 8 {
			want = "RATE_LIMITED"
		}
		if v := ps.verify(`{"key": "` + viaVerify + `", "limits": [{"name": "tokens", "cost": 1200}]}`); v["code"] != want {
			t.Fatalf("verify %d: %v, want %s", i+1, v, want)
		}
		status := 200
		if i == 8 {
			status = 429
		}
		ps.do(viaAuth, "GET", "/v1/auth?scope=data:read", "", status, "X-Latchkey-Cost-Tokens", "1200")
	}
	// Without a named cost the window is not consulted.
	if v := ps.verify(`{"key": "` + viaVerify + `"}`); v["code"] != "VALID" {
		t.Fatalf("without a cost: %v", v)
	}
	ps.do(viaAuth, "GET", "/v1/auth", "", 200)
	// An hour later the window has refilled.
	ps.mu.Lock()
	ps.now = ps.now.Add(time.Hour + time.Second)
	ps.mu.Unlock()
	if v := ps.verify(`{"key": "` + viaVerify + `", "limits": [{"name": "tokens", "cost": 1200}]}`); v["code"] != "VALID" {
		t.Fatalf("an hour later: %v", v)
	}

	// Malformed named costs.
	ps.do("", "POST", "/v1/keys/verify", `{"key": "`+viaVerify+`", "limits": [{"name": "tokens", "cost": -1}]}`, 400)
	ps.do("", "POST", "/v1/keys/verify", `{"key": "`+viaVerify+`", "limits": [{"name": "", "cost": 1}]}`, 400)
	ps.do("", "POST", "/v1/keys/verify", `{"key": "`+viaVerify+`", "limits": [{"name": "a", "cost": 1}, {"name": "a", "cost": 1}]}`, 400)
	ps.do("", "POST", "/v1/keys/verify", `{"key": "`+viaVerify+`", "limits": [{"name": "a", "cost": 1, "unit": "x"}]}`, 400)
	ps.do(viaAuth, "GET", "/v1/auth", "", 400, "X-Latchkey-Cost-Tokens", "many")
	ps.do(viaAuth, "GET", "/v1/auth", "", 400, "X-Latchkey-Cost-Tokens", "-3")
}

// TestOwnerRoutes: an owner's record with its usage, listed, replaced and
// deleted; an owner limited to 100 a minute over three keys admits
// exactly 100 verifications in all, and the denials say the owner's
// limit was hit.
func TestOwnerRoutes(t *testing.T) {
	ps := newPolicyServer(t)
	a := ps.admin
	var plain []string
	for _, n := range []string{"a", "b", "c"} {
		plain = append(plain, str(t, ps.do(a, "POST", "/v1/keys", `{"name": "`+n+`", "owner": "client/7"}`, 201), "key"))
	}
	ps.do(a, "GET", "/v1/owners/client%2F7", "", 404)
	o := ps.do(a, "PUT", "/v1/owners/client%2F7", `{"ratelimits": [{"name": "1m", "limit": 100, "window": "1m"}], "meta": {"plan": "pro"}}`, 200)
	if o["id"] != "client/7" {
		t.Fatalf("put %v", o)
	}
	ps.do(a, "PUT", "/v1/owners/client%2F7", `{"ratelimits": [{"limit": -1, "window": "1m"}]}`, 400)
	ps.do(a, "PUT", "/v1/owners/client%2F7", `{"colour": "red"}`, 400)

	admitted, ownerDenied := 0, 0
	for i := range 150 {
		v := ps.verify(`{"key": "` + plain[i%3] + `"}`)
		switch v["code"] {
		case "VALID":
			admitted++
		case "RATE_LIMITED":
			if v["limited_by"] == "owner" {
				ownerDenied++
			}
		default:
			t.Fatalf("verification %d: %v", i, v)
		}
	}
	if admitted != 100 || ownerDenied != 50 {
		t.Fatalf("%d admitted, %d denied by the owner's limit; want 100 and 50", admitted, ownerDenied)
	}

	got := ps.do(a, "GET", "/v1/owners/client%2F7?bucket=minute", "", 200)
	if got["id"] != "client/7" || got["usage"] == nil {
		t.Fatalf("get %v", got)
	}
	ps.do(a, "GET", "/v1/owners/client%2F7?bucket=fortnight", "", 400)
	if u := ps.do(a, "GET", "/v1/owners/client%2F7/usage", "", 200); u["owner"] != "client/7" {
		t.Fatalf("usage %v", u)
	}
	if u := ps.do(a, "GET", "/v1/owners/nobody/usage", "", 200); u["owner"] != "nobody" {
		t.Fatalf("usage of an owner without a record: %v", u)
	}
	list := ps.do(a, "GET", "/v1/owners?limit=10", "", 200)
	if os, _ := list["owners"].([]any); len(os) != 1 {
		t.Fatalf("list %v", list)
	}
	ps.do(a, "GET", "/v1/owners?limit=0", "", 400)

	reader := str(t, ps.do(a, "POST", "/v1/keys", `{"name": "r", "scopes": ["keys:read"]}`, 201), "key")
	ps.do(reader, "GET", "/v1/owners/client%2F7", "", 200)
	ps.do(reader, "PUT", "/v1/owners/x", `{}`, 403)

	ps.do(a, "DELETE", "/v1/owners/client%2F7", "", 204)
	ps.do(a, "DELETE", "/v1/owners/client%2F7", "", 404)
	// Without the record the keys are limited by their own settings only.
	if v := ps.verify(`{"key": "` + plain[0] + `"}`); v["code"] != "VALID" {
		t.Fatalf("after the owner's record is gone: %v", v)
	}
}

// TestPoliciesAndOwnersAreTenantScoped: another tenant's admin key finds
// neither this tenant's policy nor its owner, and may use the same names
// for its own.
func TestPoliciesAndOwnersAreTenantScoped(t *testing.T) {
	ps := newPolicyServer(t)
	ps.do(ps.admin, "POST", "/v1/policies", `{"name": "svc", "scopes": ["data:read"]}`, 201)
	ps.do(ps.admin, "PUT", "/v1/owners/team", `{"meta": {"a": 1}}`, 200)
	b := str(t, ps.do(ps.root, "POST", "/v1/tenants", `{"id": "beta"}`, 201), "key")
	for _, r := range [][2]string{{"GET", "/v1/policies/svc"}, {"DELETE", "/v1/policies/svc"}, {"GET", "/v1/owners/team"}, {"DELETE", "/v1/owners/team"}} {
		if c := errCode(ps.do(b, r[0], r[1], "", 404)); c != "not_found" {
			t.Fatalf("%s %s from tenant beta: %s", r[0], r[1], c)
		}
	}
	ps.do(b, "PATCH", "/v1/policies/svc", `{"description": "x"}`, 404)
	ps.do(b, "POST", "/v1/keys", `{"name": "k", "policy": "svc"}`, 400)
	if l := ps.do(b, "GET", "/v1/owners", "", 200); len(l["owners"].([]any)) != 0 {
		t.Fatalf("beta's owners: %v", l)
	}
	ps.do(b, "POST", "/v1/policies", `{"name": "svc"}`, 201)
	ps.do(ps.admin, "GET", "/v1/policies/svc", "", 200)
}
