package admin_test

import (
	"context"
	"net/url"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/client/admin"
	"github.com/latchkeyhq/latchkey/httpapi"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/limit"
	"github.com/latchkeyhq/latchkey/store/sqlite"
	"github.com/latchkeyhq/latchkey/wire"

	"net/http/httptest"
)

// TestPolicyAndOwnerMethodsSendTheirRoutes: each method sends its route,
// query and body as the server reads them.
func TestPolicyAndOwnerMethodsSendTheirRoutes(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		call   func(*admin.Client) error
		method string
		path   string
		query  url.Values
		body   string
	}{
		{"CreatePolicy", func(c *admin.Client) error {
			_, err := c.CreatePolicy(ctx, "svc", admin.PolicySettings{Description: new("d"), Scopes: []string{"data:read"}, Resources: []string{},
				IPAllow: []string{"10.0.0.0/8"}, Countries: []string{"DE"}, RateLimits: []latchkey.RateLimit{{Name: "tokens", Limit: 10, Window: latchkey.Duration(time.Hour), Apply: latchkey.ApplyOnRequest}},
				TimeWindows: []latchkey.TimeWindow{{Start: "09:00", End: "17:00"}}, Quota: &latchkey.Quota{Limit: 5, Period: "30d"}, MaxConcurrent: new(2),
				ExpiresAfter: new(30 * 24 * time.Hour)})
			return err
		}, "POST", "/v1/policies", nil, `{"name":"svc","description":"d","scopes":["data:read"],"resources":[],"ip_allow":["10.0.0.0/8"],"countries":["DE"],
			"ratelimits":[{"name":"tokens","limit":10,"window":"1h","apply":"on_request"}],"time_windows":[{"start":"09:00","end":"17:00"}],
			"quota":{"limit":5,"period":"30d"},"max_concurrent":2,"expires_after":"30d"}`},
		{"CreatePolicyWithUses", func(c *admin.Client) error {
			_, err := c.CreatePolicy(ctx, "once", admin.PolicySettings{Uses: new(int64(1))})
			return err
		}, "POST", "/v1/policies", nil, `{"name":"once","uses":1}`},
		{"GetPolicy", func(c *admin.Client) error { _, err := c.GetPolicy(ctx, "svc"); return err }, "GET", "/v1/policies/svc", nil, ""},
		{"ListPolicies", func(c *admin.Client) error {
			_, err := c.ListPolicies(ctx, admin.Page{Cursor: "c", Limit: 3})
			return err
		}, "GET", "/v1/policies", url.Values{"cursor": {"c"}, "limit": {"3"}}, ""},
		{"UpdatePolicyClearsTheQuota", func(c *admin.Client) error {
			_, err := c.UpdatePolicy(ctx, "svc", admin.PolicySettings{NoQuota: true, ExpiresAfter: new(time.Duration(0))})
			return err
		}, "PATCH", "/v1/policies/svc", nil, `{"quota":null,"expires_after":"0s"}`},
		{"DeletePolicy", func(c *admin.Client) error { return c.DeletePolicy(ctx, "svc") }, "DELETE", "/v1/policies/svc", nil, ""},
		{"PutOwner", func(c *admin.Client) error {
			_, err := c.PutOwner(ctx, "team/a b", admin.OwnerParams{RateLimits: []latchkey.RateLimit{{Name: "1m", Limit: 100, Window: latchkey.Duration(time.Minute)}},
				Quota: &latchkey.Quota{Limit: 1000, Period: "monthly"}, Meta: map[string]any{"plan": "pro"}})
			return err
		}, "PUT", "/v1/owners/team%2Fa%20b", nil, `{"ratelimits":[{"name":"1m","limit":100,"window":"1m"}],"quota":{"limit":1000,"period":"monthly"},"meta":{"plan":"pro"}}`},
		{"PutOwnerEmpty", func(c *admin.Client) error { _, err := c.PutOwner(ctx, "o", admin.OwnerParams{}); return err }, "PUT", "/v1/owners/o", nil, `{}`},
		{"GetOwner", func(c *admin.Client) error {
			_, err := c.GetOwner(ctx, "team/a", admin.UsageParams{Bucket: "day"})
			return err
		}, "GET", "/v1/owners/team%2Fa", url.Values{"bucket": {"day"}}, ""},
		{"ListOwners", func(c *admin.Client) error { _, err := c.ListOwners(ctx, admin.Page{Limit: 2}); return err }, "GET", "/v1/owners", url.Values{"limit": {"2"}}, ""},
		{"OwnerUsage", func(c *admin.Client) error {
			_, err := c.OwnerUsage(ctx, "o", admin.UsageParams{Bucket: "minute"})
			return err
		}, "GET", "/v1/owners/o/usage", url.Values{"bucket": {"minute"}}, ""},
		{"DeleteOwner", func(c *admin.Client) error { return c.DeleteOwner(ctx, "o") }, "DELETE", "/v1/owners/o", nil, ""},
		{"KeyWithPolicy", func(c *admin.Client) error {
			_, err := c.UpdateKey(ctx, "key_1", admin.KeySettings{Policy: new("")})
			return err
		}, "PATCH", "/v1/keys/key_1", nil, `{"policy":""}`},
		{"BatchSetPolicy", func(c *admin.Client) error {
			_, err := c.BatchKeys(ctx, admin.BatchParams{Op: admin.BatchSetPolicy, Filter: &admin.BatchFilter{Policy: "old"}, Policy: new("new")})
			return err
		}, "POST", "/v1/keys/batch", nil, `{"op":"set_policy","filter":{"policy":"old"},"policy":"new"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, rc := startRecorder(t, 200, `{}`, nil)
			if err := tt.call(c); err != nil {
				t.Fatal(err)
			}
			r := rc.last(t)
			if r.method != tt.method || r.path != tt.path {
				t.Errorf("sent %s %s, want %s %s", r.method, r.path, tt.method, tt.path)
			}
			want := tt.query
			if want == nil {
				want = url.Values{}
			}
			if !reflect.DeepEqual(r.query, want) {
				t.Errorf("query %v, want %v", r.query, want)
			}
			switch {
			case tt.body == "" && len(r.body) != 0:
				t.Errorf("sent a body %q, want none", r.body)
			case tt.body != "" && !sameJSON(t, r.body, []byte(tt.body)):
				t.Errorf("sent body %s, want %s", r.body, tt.body)
			}
		})
	}
	c, rc := startRecorder(t, 200, `{}`, nil)
	if _, err := c.CreatePolicy(ctx, "x", admin.PolicySettings{NoQuota: true}); admin.ErrorCode(err) != wire.EInvalid {
		t.Errorf("CreatePolicy with NoQuota: %v", err)
	}
	if _, err := c.UpdatePolicy(ctx, "x", admin.PolicySettings{NoQuota: true, Quota: &latchkey.Quota{Limit: 1}}); admin.ErrorCode(err) != wire.EInvalid {
		t.Errorf("UpdatePolicy with Quota and NoQuota: %v", err)
	}
	if len(rc.reqs) != 0 {
		t.Errorf("refused calls sent %d requests", len(rc.reqs))
	}
}

// TestPoliciesAndOwnersAgainstTheServer runs the methods against a real
// server: what the client sends, the server takes, and what the server
// answers, the client reads.
func TestPoliciesAndOwnersAgainstTheServer(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	lim := limit.NewMemory(limit.Options{Store: latchkey.Narrow[latchkey.QuotaStore](db)})
	aud := audit.New(audit.Options{Store: latchkey.Narrow[audit.Tx](db)})
	svc := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db), Limiter: lim})
	t.Cleanup(func() { aud.Close(ctx); lim.Close(ctx) })
	root, _, _, err := svc.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(httpapi.New(httpapi.Config{Keys: svc, Audit: aud}))
	t.Cleanup(ts.Close)
	op, err := admin.New(ts.URL, root.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	tn, err := op.CreateTenant(ctx, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := admin.New(ts.URL, tn.Key)
	if err != nil {
		t.Fatal(err)
	}

	pol, err := c.CreatePolicy(ctx, "llm", admin.PolicySettings{Scopes: []string{"data:read"},
		RateLimits:   []latchkey.RateLimit{{Name: "tokens", Limit: 10000, Window: latchkey.Duration(time.Hour), Apply: latchkey.ApplyOnRequest}},
		Quota:        &latchkey.Quota{Limit: 100, Period: "30d"},
		ExpiresAfter: new(90 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if pol.Name != "llm" || pol.ExpiresAfter != latchkey.Duration(90*24*time.Hour) || len(pol.RateLimits) != 1 {
		t.Fatalf("created %+v", pol)
	}
	if _, err := c.CreatePolicy(ctx, "llm", admin.PolicySettings{}); admin.ErrorCode(err) != wire.EConflict {
		t.Fatalf("again: %v", err)
	}
	if pol, err = c.UpdatePolicy(ctx, "llm", admin.PolicySettings{NoQuota: true}); err != nil || pol.Quota != nil {
		t.Fatalf("update: %+v, %v", pol, err)
	}
	list, err := c.ListPolicies(ctx, admin.Page{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, p := range list.Policies {
		names[p.Name] = p.Preset
	}
	if preset, ok := names["llm"]; !ok || preset || !names["production"] {
		t.Fatalf("listed %v", names)
	}

	k, err := c.CreateKey(ctx, admin.KeyParams{KeySettings: admin.KeySettings{Name: new("k"), Owner: new("client 7"), Policy: new("llm")}})
	if err != nil {
		t.Fatal(err)
	}
	if k.Policy != "llm" {
		t.Fatalf("key %+v", k.Key)
	}
	for i, want := range []string{latchkey.CodeValid, latchkey.CodeRateLimited} {
		v, err := c.VerifyKey(ctx, admin.VerifyRequest{Key: k.Plaintext, Scopes: []string{"data:read"}, Limits: []latchkey.NamedCost{{Name: "tokens", Cost: 6000}}})
		if err != nil || v.Code != want {
			t.Fatalf("verification %d of 6000 tokens: %+v, %v; want %s", i+1, v, err, want)
		}
	}
	if err := c.DeletePolicy(ctx, "llm"); admin.ErrorCode(err) != wire.EConflict {
		t.Fatalf("delete in use: %v", err)
	}
	res, err := c.BatchKeys(ctx, admin.BatchParams{Op: admin.BatchSetPolicy, Filter: &admin.BatchFilter{Policy: "llm"}, Policy: new("")})
	if err != nil || res.Matched != 1 || res.Failed() != 0 {
		t.Fatalf("set_policy: %+v, %v", res, err)
	}
	if err := c.DeletePolicy(ctx, "llm"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetPolicy(ctx, "llm"); admin.ErrorCode(err) != wire.ENotFound {
		t.Fatalf("get after delete: %v", err)
	}

	o, err := c.PutOwner(ctx, "client 7", admin.OwnerParams{RateLimits: []latchkey.RateLimit{{Name: "1m", Limit: 1, Window: latchkey.Duration(time.Minute)}}, Meta: map[string]any{"plan": "pro"}})
	if err != nil || o.ID != "client 7" {
		t.Fatalf("put: %+v, %v", o, err)
	}
	if v, err := c.VerifyKey(ctx, admin.VerifyRequest{Key: k.Plaintext}); err != nil || v.Code != latchkey.CodeValid {
		t.Fatalf("first: %+v, %v", v, err)
	}
	if v, err := c.VerifyKey(ctx, admin.VerifyRequest{Key: k.Plaintext}); err != nil || v.Code != latchkey.CodeRateLimited || v.LimitedBy != "owner" {
		t.Fatalf("second: %+v, %v", v, err)
	}
	d, err := c.GetOwner(ctx, "client 7", admin.UsageParams{Bucket: "minute"})
	if err != nil || d.ID != "client 7" || d.Usage == nil || d.Usage.Owner != "client 7" {
		t.Fatalf("get: %+v, %v", d, err)
	}
	if u, err := c.OwnerUsage(ctx, "nobody", admin.UsageParams{}); err != nil || u.Owner != "nobody" || len(u.Keys) != 0 {
		t.Fatalf("usage: %+v, %v", u, err)
	}
	if ol, err := c.ListOwners(ctx, admin.Page{}); err != nil || len(ol.Owners) != 1 {
		t.Fatalf("list: %+v, %v", ol, err)
	}
	if err := c.DeleteOwner(ctx, "client 7"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetOwner(ctx, "client 7", admin.UsageParams{}); admin.ErrorCode(err) != wire.ENotFound {
		t.Fatalf("get after delete: %v", err)
	}
}
