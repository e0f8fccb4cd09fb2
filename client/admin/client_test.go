package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client/admin"
	"github.com/latchkeyhq/latchkey/wire"
)

const adminKey = "lk_testadminkey_0123456789abcdef"

// recorded is one request as the test server saw it.
type recorded struct {
	method, path string // path as sent, escaped
	query        url.Values
	body         []byte
	header       http.Header
}

// recorder is a server that answers every request with status and answer
// and keeps the requests.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

func (rc *recorder) last(t *testing.T) recorded {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.reqs) != 1 {
		t.Fatalf("the server saw %d requests, want 1", len(rc.reqs))
	}
	return rc.reqs[0]
}

func startRecorder(t *testing.T, status int, answer string, header http.Header) (*admin.Client, *recorder) {
	t.Helper()
	rc := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, recorded{method: r.Method, path: r.URL.EscapedPath(), query: r.URL.Query(), body: b, header: r.Header.Clone()})
		rc.mu.Unlock()
		for k, v := range header {
			w.Header()[k] = v
		}
		if answer != "" && w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	c, err := admin.New(srv.URL+"/", adminKey, admin.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c, rc
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("not JSON: %q", a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("not JSON: %q", b)
	}
	return reflect.DeepEqual(x, y)
}

var when = time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)

const whenJSON = "2030-01-02T03:04:05.0000006Z"

// TestEveryMethodSendsItsRouteAndReadsItsAnswer checks, for every method
// that answers JSON, the request (method, escaped path, query, body,
// headers) and the decoding of a 2xx answer.
func TestEveryMethodSendsItsRouteAndReadsItsAnswer(t *testing.T) {
	tests := []struct {
		name   string
		call   func(context.Context, *admin.Client, ...admin.CallOption) (any, error)
		method string
		path   string     // escaped
		query  url.Values // nil: none
		body   string     // JSON; "": no body at all
		status int        // 0: 200
		answer string
		noKey  bool
		check  func(*testing.T, any)
	}{
		{
			name: "CreateKeyWithEverySetting",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.CreateKey(ctx, admin.KeyParams{Prefix: "ci", KeySettings: admin.KeySettings{
					Name: new("n"), Owner: new(""), Environment: new("prod"), Scopes: []string{}, Resources: []string{"doc:1"},
					Meta: map[string]any{"team": "x"}, IPAllow: []string{"10.0.0.0/8"}, Countries: []string{"DE"},
					ExpiresIn: 30 * 24 * time.Hour, RateLimits: []latchkey.RateLimit{{Name: "burst", Limit: 10, Window: latchkey.Duration(time.Second)}},
					TimeWindows: []latchkey.TimeWindow{{Days: []string{"mon"}, Start: "09:00", End: "17:00", TZ: "UTC"}},
					Quota:       &latchkey.Quota{Remaining: new(int64(5))}, MaxConcurrent: new(0), LeaseTTL: new(45 * time.Second),
				}}, o...)
			},
			method: "POST", path: "/v1/keys", status: 201,
			body: `{"name":"n","owner":"","environment":"prod","scopes":[],"resources":["doc:1"],"meta":{"team":"x"},
				"ip_allow":["10.0.0.0/8"],"countries":["DE"],"expires_in":"30d","ratelimits":[{"name":"burst","limit":10,"window":"1s"}],
				"time_windows":[{"days":["mon"],"start":"09:00","end":"17:00","tz":"UTC"}],"quota":{"remaining":5},
				"max_concurrent":0,"lease_ttl":"45s","prefix":"ci"}`,
			answer: `{"id":"key_1","name":"n","state":"active","scopes":[],"key":"ci_plain"}`,
			check: func(t *testing.T, v any) {
				if k := v.(*admin.IssuedKey); k.ID != "key_1" || k.Plaintext != "ci_plain" || k.State != latchkey.StateActive {
					t.Errorf("decoded %+v", k)
				}
			},
		},
		{
			name: "CreateKeyWithNothingSendsAnEmptyObject",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.CreateKey(ctx, admin.KeyParams{}, o...)
			},
			method: "POST", path: "/v1/keys", body: `{}`, answer: `{"id":"key_1","key":"lk_x"}`,
		},
		{
			name: "UpdateKeyClearsWithNull",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.UpdateKey(ctx, "key_a/b?c", admin.KeySettings{NoExpiry: true, NoQuota: true, IPAllow: []string{}}, o...)
			},
			method: "PATCH", path: "/v1/keys/key_a%2Fb%3Fc", body: `{"expires_at":null,"quota":null,"ip_allow":[]}`,
			answer: `{"id":"key_a","ip_allow":[]}`,
			check: func(t *testing.T, v any) {
				if k := v.(*latchkey.Key); k.ID != "key_a" {
					t.Errorf("decoded %+v", k)
				}
			},
		},
		{
			name: "UpdateKeyExpiresAt",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.UpdateKey(ctx, "key_1", admin.KeySettings{ExpiresAt: when}, o...)
			},
			method: "PATCH", path: "/v1/keys/key_1", body: `{"expires_at":"` + whenJSON + `"}`, answer: `{"id":"key_1"}`,
		},
		{
			name: "DeriveKey",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.DeriveKey(ctx, "key_p", admin.KeyParams{KeySettings: admin.KeySettings{Name: new("child")}}, o...)
			},
			method: "POST", path: "/v1/keys/key_p/derive", status: 201, body: `{"name":"child"}`,
			answer: `{"id":"key_c","parent_id":"key_p","key":"lk_c"}`,
			check: func(t *testing.T, v any) {
				if k := v.(*admin.IssuedKey); k.ParentID != "key_p" || k.Plaintext != "lk_c" {
					t.Errorf("decoded %+v", k)
				}
			},
		},
		{
			name: "ListKeysWithEveryFilter",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.ListKeys(ctx, admin.KeyFilter{Owner: "o&x", Environment: "prod", Name: "n", State: latchkey.StateRevoked,
					ParentID: "key_p", Page: admin.Page{Cursor: "c1", Limit: 5}}, o...)
			},
			method: "GET", path: "/v1/keys",
			query:  url.Values{"owner": {"o&x"}, "environment": {"prod"}, "name": {"n"}, "state": {"revoked"}, "parent_id": {"key_p"}, "cursor": {"c1"}, "limit": {"5"}},
			answer: `{"keys":[{"id":"key_1"},{"id":"key_2"}],"next_cursor":"c2"}`,
			check: func(t *testing.T, v any) {
				if l := v.(*admin.KeyList); len(l.Keys) != 2 || l.Keys[1].ID != "key_2" || l.NextCursor != "c2" {
					t.Errorf("decoded %+v", l)
				}
			},
		},
		{
			name: "GetKeyWithItsQuota",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.GetKey(ctx, "key_1", o...)
			},
			method: "GET", path: "/v1/keys/key_1",
			answer: `{"id":"key_1","quota":{"limit":10,"period":"daily"},"quota_usage":{"limit":10,"remaining":3,"reset_at":"` + whenJSON + `"}}`,
			check: func(t *testing.T, v any) {
				k := v.(*admin.KeyDetail)
				if k.Quota == nil || k.Quota.Limit != 10 || k.QuotaUsage == nil || k.QuotaUsage.Remaining != 3 || !k.QuotaUsage.ResetAt.Equal(when) {
					t.Errorf("decoded %+v", k)
				}
			},
		},
		{
			name: "RotateKeyEndingTheOldKeyAtOnce",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.RotateKey(ctx, "key_1", admin.RotateParams{Grace: new(time.Duration(0)), ExpiresIn: 90 * 24 * time.Hour}, o...)
			},
			method: "POST", path: "/v1/keys/key_1/rotate", status: 201, body: `{"grace_period":"0s","expires_in":"90d"}`,
			answer: `{"id":"key_2","rotated_from":"key_1","key":"lk_new"}`,
			check: func(t *testing.T, v any) {
				if k := v.(*admin.IssuedKey); k.RotatedFrom != "key_1" || k.Plaintext != "lk_new" {
					t.Errorf("decoded %+v", k)
				}
			},
		},
		{
			name: "RotateKeyWithDefaults",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.RotateKey(ctx, "key_1", admin.RotateParams{}, o...)
			},
			method: "POST", path: "/v1/keys/key_1/rotate", body: `{}`, answer: `{"id":"key_2","key":"lk_new"}`,
		},
		{
			name: "SuspendKey",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.SuspendKey(ctx, "key_1", admin.SuspendParams{For: 2 * time.Hour, Reason: "audit"}, o...)
			},
			method: "POST", path: "/v1/keys/key_1/suspend", body: `{"duration":"2h","reason":"audit"}`,
			answer: `{"id":"key_1","state":"suspended","suspended_until":"` + whenJSON + `"}`,
			check: func(t *testing.T, v any) {
				if k := v.(*latchkey.Key); k.State != latchkey.StateSuspended || !k.SuspendedUntil.Equal(when) {
					t.Errorf("decoded %+v", k)
				}
			},
		},
		{
			name: "ResumeKeySendsNoBody",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.ResumeKey(ctx, "key_1", o...)
			},
			method: "POST", path: "/v1/keys/key_1/resume", answer: `{"id":"key_1","state":"active"}`,
		},
		{
			name: "RevokeKey",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.RevokeKey(ctx, "key_1", "leaked", o...)
			},
			method: "POST", path: "/v1/keys/key_1/revoke", body: `{"reason":"leaked"}`, answer: `{"id":"key_1","state":"revoked"}`,
		},
		{
			name: "RevokeKeyWithoutReason",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.RevokeKey(ctx, "key_1", "", o...)
			},
			method: "POST", path: "/v1/keys/key_1/revoke", body: `{}`, answer: `{"id":"key_1","state":"revoked"}`,
		},
		{
			name: "VerifyKeyWithoutTheAdminKey",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.VerifyKey(ctx, admin.VerifyRequest{Key: "lk_caller", Scopes: []string{"data:read"}, Resource: "doc:1", IP: "10.1.2.3", Cost: new(int64(0))}, o...)
			},
			method: "POST", path: "/v1/keys/verify", noKey: true,
			body:   `{"key":"lk_caller","scopes":["data:read"],"resource":"doc:1","ip":"10.1.2.3","cost":0}`,
			answer: `{"valid":false,"code":"RATE_LIMITED","key_id":"key_1","scopes":["data:read"],"ratelimit":{"limit":10,"remaining":0,"reset_at":"` + whenJSON + `"},"retry_after":3}`,
			check: func(t *testing.T, v any) {
				r := v.(*admin.VerifyResponse)
				if r.Code != wire.CodeRateLimited || r.KeyID != "key_1" || r.RateLimit == nil || r.RateLimit.Limit != 10 || r.RetryAfter != 3 {
					t.Errorf("decoded %+v", r)
				}
			},
		},
		{
			name: "KeyUsage",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.KeyUsage(ctx, "key_1", admin.UsageParams{Bucket: "day", From: when, To: when.Add(time.Hour)}, o...)
			},
			method: "GET", path: "/v1/keys/key_1/usage",
			query:  url.Values{"bucket": {"day"}, "from": {whenJSON}, "to": {"2030-01-02T04:04:05.0000006Z"}},
			answer: `{"key_id":"key_1","bucket":"day","totals":{"VALID":4},"series":[{"start":"` + whenJSON + `","counts":{"VALID":4}}],"peak_hours":[{"hour":3,"count":4}],"networks":[{"network":"10.0.0.0/24","count":4}]}`,
			check: func(t *testing.T, v any) {
				r := v.(*admin.UsageReport)
				if r.Totals["VALID"] != 4 || len(r.Series) != 1 || r.PeakHours[0].Hour != 3 || r.Networks[0].Network != "10.0.0.0/24" {
					t.Errorf("decoded %+v", r)
				}
			},
		},
		{
			name: "CreateTenant",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.CreateTenant(ctx, "acme", "Acme Inc.", o...)
			},
			method: "POST", path: "/v1/tenants", status: 201, body: `{"id":"acme","name":"Acme Inc."}`,
			answer: `{"tenant":{"id":"acme","name":"Acme Inc."},"key_id":"key_a","key":"lk_first"}`,
			check: func(t *testing.T, v any) {
				if r := v.(*admin.NewTenant); r.Tenant.Name != "Acme Inc." || r.KeyID != "key_a" || r.Key != "lk_first" {
					t.Errorf("decoded %+v", r)
				}
			},
		},
		{
			name: "ListTenants",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.ListTenants(ctx, admin.Page{Limit: 2}, o...)
			},
			method: "GET", path: "/v1/tenants", query: url.Values{"limit": {"2"}},
			answer: `{"tenants":[{"id":"acme"}],"next_cursor":""}`,
			check: func(t *testing.T, v any) {
				if l := v.(*admin.TenantList); len(l.Tenants) != 1 || l.Tenants[0].ID != "acme" {
					t.Errorf("decoded %+v", l)
				}
			},
		},
		{
			name: "PutSecret",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.PutSecret(ctx, "openai", admin.SecretParams{Value: "sk-value", ExpiresIn: time.Minute, Meta: map[string]string{"env": "prod"}}, o...)
			},
			method: "PUT", path: "/v1/secrets/openai", body: `{"value":"sk-value","expires_in":60,"meta":{"env":"prod"}}`,
			answer: `{"name":"openai","version":2,"expires_in":60}`,
			check: func(t *testing.T, v any) {
				if s := v.(*latchkey.Secret); s.Version != 2 || s.ExpiresIn != 60 || s.Value != "" {
					t.Errorf("decoded %+v", s)
				}
			},
		},
		{
			name: "GetSecretVersion",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.GetSecret(ctx, "open/ai", 2, o...)
			},
			method: "GET", path: "/v1/secrets/open%2Fai", query: url.Values{"version": {"2"}},
			answer: `{"name":"openai","value":"sk-value","version":2}`,
			check: func(t *testing.T, v any) {
				if s := v.(*latchkey.Secret); s.Value != "sk-value" {
					t.Errorf("decoded %+v", s)
				}
			},
		},
		{
			name: "ListSecrets",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.ListSecrets(ctx, admin.Page{Cursor: "openai"}, o...)
			},
			method: "GET", path: "/v1/secrets", query: url.Values{"cursor": {"openai"}},
			answer: `{"secrets":[{"name":"x","version":3,"versions":2,"updated_at":"` + whenJSON + `"}],"next_cursor":"x"}`,
			check: func(t *testing.T, v any) {
				if l := v.(*admin.SecretList); len(l.Secrets) != 1 || l.Secrets[0].Versions != 2 || !l.Secrets[0].UpdatedAt.Equal(when) || l.NextCursor != "x" {
					t.Errorf("decoded %+v", l)
				}
			},
		},
		{
			name: "SecretVersions",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.SecretVersions(ctx, "openai", o...)
			},
			method: "GET", path: "/v1/secrets/openai/versions",
			answer: `{"versions":[{"name":"openai","version":2,"created_by":"key_1"},{"name":"openai","version":1}]}`,
			check: func(t *testing.T, v any) {
				if vs := v.([]latchkey.Secret); len(vs) != 2 || vs[0].CreatedBy != "key_1" {
					t.Errorf("decoded %+v", vs)
				}
			},
		},
		{
			name: "DeleteSecret",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return nil, c.DeleteSecret(ctx, "openai", o...)
			},
			method: "DELETE", path: "/v1/secrets/openai", status: 204,
		},
		{
			name: "KeyringStatus",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.KeyringStatus(ctx, o...)
			},
			method: "GET", path: "/v1/keyring",
			answer: `{"active_term":2,"terms":[{"term":1,"created_at":"` + whenJSON + `"},{"term":2,"created_at":"` + whenJSON + `"}]}`,
			check: func(t *testing.T, v any) {
				if s := v.(*latchkey.KeyringStatus); s.Active != 2 || len(s.Terms) != 2 {
					t.Errorf("decoded %+v", s)
				}
			},
		},
		{
			name: "RotateKeyring",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.RotateKeyring(ctx, o...)
			},
			method: "POST", path: "/v1/keyring/rotate", answer: `{"active_term":3,"terms":[]}`,
		},
		{
			name: "RewrapKeyring",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.RewrapKeyring(ctx, "/etc/latchkey/new.key", o...)
			},
			method: "POST", path: "/v1/keyring/rewrap", body: `{"new_master_key_file":"/etc/latchkey/new.key"}`,
			answer: `{"terms":3,"master_key_file":"/etc/latchkey/master.key"}`,
			check: func(t *testing.T, v any) {
				if r := v.(*latchkey.RewrapResult); r.Terms != 3 || r.MasterKeyFile == "" {
					t.Errorf("decoded %+v", r)
				}
			},
		},
		{
			name: "CreateWebhook",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.CreateWebhook(ctx, "https://hooks.example/in", []string{"key.revoked"}, o...)
			},
			method: "POST", path: "/v1/webhooks", status: 201, body: `{"url":"https://hooks.example/in","events":["key.revoked"]}`,
			answer: `{"id":"whk_1","url":"https://hooks.example/in","events":["key.revoked"],"secret":"whsec_x"}`,
			check: func(t *testing.T, v any) {
				if h := v.(*admin.NewWebhook); h.ID != "whk_1" || h.Secret != "whsec_x" || len(h.Events) != 1 {
					t.Errorf("decoded %+v", h)
				}
			},
		},
		{
			name: "ListWebhooks",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.ListWebhooks(ctx, admin.Page{}, o...)
			},
			method: "GET", path: "/v1/webhooks", answer: `{"webhooks":[{"id":"whk_1"}],"next_cursor":""}`,
			check: func(t *testing.T, v any) {
				if l := v.(*admin.WebhookList); len(l.Webhooks) != 1 {
					t.Errorf("decoded %+v", l)
				}
			},
		},
		{
			name: "GetWebhook",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.GetWebhook(ctx, "whk_1/x", o...)
			},
			method: "GET", path: "/v1/webhooks/whk_1%2Fx", answer: `{"id":"whk_1","url":"https://hooks.example/in"}`,
		},
		{
			name: "DeleteWebhook",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return nil, c.DeleteWebhook(ctx, "whk_1", o...)
			},
			method: "DELETE", path: "/v1/webhooks/whk_1", status: 204,
		},
		{
			name: "ListDeliveries",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.ListDeliveries(ctx, "whk_1", admin.DeliveryFilter{Status: "failed", Page: admin.Page{Limit: 1}}, o...)
			},
			method: "GET", path: "/v1/webhooks/whk_1/deliveries", query: url.Values{"status": {"failed"}, "limit": {"1"}},
			answer: `{"deliveries":[{"id":"dlv_1","status":"failed","attempts":5,"last_status_code":500}],"next_cursor":"dlv_1"}`,
			check: func(t *testing.T, v any) {
				if l := v.(*admin.DeliveryList); len(l.Deliveries) != 1 || l.Deliveries[0].LastStatusCode != 500 || l.NextCursor != "dlv_1" {
					t.Errorf("decoded %+v", l)
				}
			},
		},
		{
			name: "RetryDelivery",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.RetryDelivery(ctx, "whk_1", "dlv 1", o...)
			},
			method: "POST", path: "/v1/webhooks/whk_1/deliveries/dlv%201/retry", answer: `{"id":"dlv 1","status":"pending"}`,
			check: func(t *testing.T, v any) {
				if d := v.(*latchkey.Delivery); d.Status != latchkey.DeliveryPending {
					t.Errorf("decoded %+v", d)
				}
			},
		},
		{
			name: "ListAuditWithEveryFilter",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.ListAudit(ctx, admin.AuditFilter{Since: when, Until: when.Add(time.Hour), Action: "key.revoked", KeyID: "key_1", Result: "success", After: 7, Limit: 50}, o...)
			},
			method: "GET", path: "/v1/audit",
			query: url.Values{"since": {whenJSON}, "until": {"2030-01-02T04:04:05.0000006Z"}, "action": {"key.revoked"}, "key_id": {"key_1"},
				"result": {"success"}, "after": {"7"}, "limit": {"50"}},
			answer: `{"events":[{"seq":8,"action":"key.revoked","details":{"reason":"x"}}],"next_after":8}`,
			check: func(t *testing.T, v any) {
				if p := v.(*admin.AuditPage); len(p.Events) != 1 || p.Events[0].Seq != 8 || p.Events[0].Details["reason"] != "x" || p.NextAfter != 8 {
					t.Errorf("decoded %+v", p)
				}
			},
		},
		{
			name: "VerifyAudit",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.VerifyAudit(ctx, o...)
			},
			method: "GET", path: "/v1/audit/verify", answer: `{"ok":false,"events":4,"broken_seq":5,"finding":"truncated","reason":"r","signed":true}`,
			check: func(t *testing.T, v any) {
				if r := v.(*admin.AuditVerdict); r.OK || r.BrokenAt != 5 || r.Finding != "truncated" || !r.Signed {
					t.Errorf("decoded %+v", r)
				}
			},
		},
		{
			name: "ListSecurityEvents",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.ListSecurityEvents(ctx, admin.SecurityFilter{Kind: "new_network", KeyID: "key_1", Since: when, Until: when, After: "evt_1", Limit: 3}, o...)
			},
			method: "GET", path: "/v1/security-events",
			query:  url.Values{"kind": {"new_network"}, "key_id": {"key_1"}, "since": {whenJSON}, "until": {whenJSON}, "after": {"evt_1"}, "limit": {"3"}},
			answer: `{"events":[{"id":"evt_2","kind":"new_network","severity":"medium","network":"10.0.0.0/24","summary":"s"}],"next_cursor":"evt_2"}`,
			check: func(t *testing.T, v any) {
				l := v.(*admin.SecurityEventList)
				if len(l.Events) != 1 || l.Events[0].Kind != "new_network" || l.Events[0].Network != "10.0.0.0/24" || l.NextCursor != "evt_2" {
					t.Errorf("decoded %+v", l)
				}
			},
		},
		{
			name: "ReportAccess",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.ReportAccess(ctx, admin.ReportWindow{From: when}, o...)
			},
			method: "GET", path: "/v1/reports/access", query: url.Values{"format": {"json"}, "from": {whenJSON}},
			answer: `{"report":"access","tenant":"acme","keys":[{"id":"key_1","ip_allow":["10.0.0.0/8"]}],"owners":[{"owner":"o","keys":1,"active_keys":1}]}`,
			check: func(t *testing.T, v any) {
				r := v.(*admin.AccessReport)
				if r.Report != "access" || len(r.Keys) != 1 || r.Keys[0].IPAllow[0].String() != "10.0.0.0/8" || r.Owners[0].ActiveKeys != 1 {
					t.Errorf("decoded %+v", r)
				}
			},
		},
		{
			name: "ReportUsage",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.ReportUsage(ctx, admin.ReportWindow{To: when}, o...)
			},
			method: "GET", path: "/v1/reports/usage", query: url.Values{"format": {"json"}, "to": {whenJSON}},
			answer: `{"report":"usage","grain":"day","totals":{"total":3,"valid":2,"denied":1,"codes":{"VALID":2,"EXPIRED":1}},"keys":[{"key_id":"key_1","total":3,"networks":2}],"owners":[{"owner":"o","keys":1,"valid":2}]}`,
			check: func(t *testing.T, v any) {
				r := v.(*admin.TenantUsageReport)
				if r.Grain != "day" || r.Totals.Codes["EXPIRED"] != 1 || r.Keys[0].Total != 3 || r.Keys[0].Networks != 2 || r.Owners[0].Valid != 2 {
					t.Errorf("decoded %+v", r)
				}
			},
		},
		{
			name: "ReportSecurity",
			call: func(ctx context.Context, c *admin.Client, o ...admin.CallOption) (any, error) {
				return c.ReportSecurity(ctx, admin.ReportWindow{}, o...)
			},
			method: "GET", path: "/v1/reports/security", query: url.Values{"format": {"json"}},
			answer: `{"report":"security","summary":{"anomalies":1,"responded":1,"by_kind":{"usage_spike":1}},"anomalies":[{"event_id":"evt_1","kind":"usage_spike","responses":[{"seq":4,"action":"key.suspended"}],"time_to_respond_seconds":1.5}]}`,
			check: func(t *testing.T, v any) {
				r := v.(*admin.SecurityReport)
				a := r.Anomalies[0]
				if r.Summary.ByKind["usage_spike"] != 1 || a.Responses[0].Seq != 4 || a.TimeToRespondSeconds == nil || *a.TimeToRespondSeconds != 1.5 {
					t.Errorf("decoded %+v", r)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status := tt.status
			if status == 0 {
				status = http.StatusOK
			}
			c, rc := startRecorder(t, status, tt.answer, nil)
			var raw []byte
			got, err := tt.call(context.Background(), c, admin.Raw(&raw))
			if err != nil {
				t.Fatalf("error %v", err)
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
			case tt.body != "" && r.header.Get("Content-Type") != "application/json":
				t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
			}
			wantAuth := "Bearer " + adminKey
			if tt.noKey {
				wantAuth = ""
			}
			if got := r.header.Get("Authorization"); got != wantAuth {
				t.Errorf("Authorization %q, want %q", got, wantAuth)
			}
			if string(raw) != tt.answer {
				t.Errorf("Raw %q, want the answer as sent %q", raw, tt.answer)
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

func TestRefusedSettingsSendNothing(t *testing.T) {
	c, rc := startRecorder(t, 200, `{}`, nil)
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"TwoExpiries": func() error {
			_, err := c.UpdateKey(ctx, "key_1", admin.KeySettings{ExpiresIn: time.Hour, NoExpiry: true})
			return err
		},
		"QuotaAndNoQuota": func() error {
			_, err := c.UpdateKey(ctx, "key_1", admin.KeySettings{Quota: &latchkey.Quota{Limit: 1}, NoQuota: true})
			return err
		},
		"NegativeExpiresIn": func() error {
			_, err := c.CreateKey(ctx, admin.KeyParams{KeySettings: admin.KeySettings{ExpiresIn: -time.Hour}})
			return err
		},
		"NegativeSuspension": func() error { _, err := c.SuspendKey(ctx, "key_1", admin.SuspendParams{For: -time.Hour}); return err },
		"SecretExpiresInFraction": func() error {
			_, err := c.PutSecret(ctx, "openai", admin.SecretParams{Value: "v", ExpiresIn: 1500 * time.Millisecond})
			return err
		},
		"UnknownReport": func() error { _, err := c.ReportCSV(ctx, "everything", admin.ReportWindow{}); return err },
	} {
		if err := call(); admin.ErrorCode(err) != wire.EInvalid {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
	if len(rc.reqs) != 0 {
		t.Errorf("the server saw %d requests, want none", len(rc.reqs))
	}
}

func TestReportCSVIsTheServersBytes(t *testing.T) {
	const csv = "id,name\r\nkey_1,\"a, b\"\r\n"
	c, rc := startRecorder(t, 200, csv, http.Header{"Content-Type": {"text/csv; charset=utf-8"}})
	got, err := c.ReportCSV(context.Background(), admin.ReportKindAccess, admin.ReportWindow{From: when})
	if err != nil || string(got) != csv {
		t.Fatalf("ReportCSV = %q, %v; want %q", got, err, csv)
	}
	r := rc.last(t)
	if r.path != "/v1/reports/access" || r.query.Get("format") != "csv" || r.query.Get("from") != whenJSON {
		t.Errorf("sent %s?%v", r.path, r.query)
	}
}

func TestStreams(t *testing.T) {
	ctx := context.Background()
	t.Run("ExportKeys", func(t *testing.T) {
		const lines = "{\"id\":\"key_1\",\"hash\":\"ab\"}\n{\"id\":\"key_2\",\"hash\":\"cd\"}\n"
		c, rc := startRecorder(t, 200, lines, http.Header{"Content-Type": {"application/x-ndjson"}})
		body, err := c.ExportKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(body)
		body.Close()
		if string(got) != lines {
			t.Errorf("export %q, want %q", got, lines)
		}
		if r := rc.last(t); r.method != "GET" || r.path != "/v1/keys/export" || r.header.Get("Authorization") != "Bearer "+adminKey {
			t.Errorf("sent %s %s", r.method, r.path)
		}
	})
	t.Run("ExportAudit", func(t *testing.T) {
		const lines = "{\"seq\":1}\n"
		c, rc := startRecorder(t, 200, lines, http.Header{"Content-Type": {"application/x-ndjson"}})
		body, err := c.ExportAudit(ctx, admin.AuditFilter{Action: "key.revoked", Since: when, After: 5, Limit: 9})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(body)
		body.Close()
		r := rc.last(t)
		want := url.Values{"action": {"key.revoked"}, "since": {whenJSON}}
		if string(got) != lines || r.path != "/v1/audit/export" || !reflect.DeepEqual(r.query, want) {
			t.Errorf("export %q from %s?%v", got, r.path, r.query)
		}
	})
	t.Run("ExportRefused", func(t *testing.T) {
		c, _ := startRecorder(t, 403, `{"error":{"code":"forbidden","message":"needs keys:read","request_id":"r9"}}`, nil)
		if _, err := c.ExportKeys(ctx); admin.ErrorCode(err) != wire.EForbidden {
			t.Errorf("error %v, want forbidden", err)
		}
	})
	t.Run("ImportKeys", func(t *testing.T) {
		const answer = `{"imported":2,"skipped":1,"invalid":1,"errors":[{"line":3,"error":"not a key"}]}`
		c, rc := startRecorder(t, 200, answer, nil)
		upload := "lk_a\nlk_b\nnot a key\n"
		var raw []byte
		res, err := c.ImportKeys(ctx, strings.NewReader(upload), admin.ImportParams{Format: admin.ImportPlain, Owner: new("acme"), Scopes: []string{}}, admin.Raw(&raw))
		if err != nil {
			t.Fatal(err)
		}
		if res.Imported != 2 || res.Invalid != 1 || res.Errors[0].Line != 3 || string(raw) != answer {
			t.Errorf("decoded %+v, raw %q", res, raw)
		}
		r := rc.last(t)
		want := url.Values{"format": {"plaintext"}, "owner": {"acme"}, "scopes": {""}}
		if r.method != "POST" || r.path != "/v1/keys/import" || !reflect.DeepEqual(r.query, want) || string(r.body) != upload || r.header.Get("Content-Type") != "text/plain" {
			t.Errorf("sent %s %s?%v %q (%s)", r.method, r.path, r.query, r.body, r.header.Get("Content-Type"))
		}
	})
}

func TestNew(t *testing.T) {
	for _, u := range []string{"", "ftp://example.com", "http://", "http://user:pw@example.com", "http://example.com/?x=1", "http://example.com/#f", "example.com"} {
		if _, err := admin.New(u, adminKey); admin.ErrorCode(err) != wire.EInvalid {
			t.Errorf("New(%q): %v, want invalid", u, err)
		}
	}
	_, err := admin.New("http://127.0.0.1:1", adminKey+"\n")
	if admin.ErrorCode(err) != wire.EInvalid || strings.Contains(err.Error(), adminKey) {
		t.Errorf("a key with a newline: %v, want invalid without the key", err)
	}
	// A path prefix (a proxy's) is kept and a trailing slash dropped.
	var path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	defer srv.Close()
	c, err := admin.New(srv.URL+"/latchkey/", adminKey)
	if err != nil {
		t.Fatal(err)
	}
	if c.BaseURL() != srv.URL+"/latchkey" {
		t.Errorf("BaseURL %q", c.BaseURL())
	}
	if _, err := c.ListKeys(context.Background(), admin.KeyFilter{}); err != nil || path != "/latchkey/v1/keys" {
		t.Errorf("asked %q (%v), want /latchkey/v1/keys", path, err)
	}
}

func TestUserAgentAndHTTPClient(t *testing.T) {
	var ua string
	var calls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ua = r.UserAgent()
		_, _ = w.Write([]byte(`{"ok":true,"events":0,"signed":false}`))
	}))
	defer srv.Close()
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		calls++
		return http.DefaultTransport.RoundTrip(r)
	})}
	c, err := admin.New(srv.URL, adminKey, admin.WithHTTPClient(hc), admin.WithUserAgent("latchkey-cli/test"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.VerifyAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ua != "latchkey-cli/test" || calls != 1 {
		t.Errorf("User-Agent %q, %d calls through the given client", ua, calls)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The raw answer is exactly the server's bytes, whitespace and field
// order included, which the CLI prints for --json.
func TestRawKeepsTheServersBytes(t *testing.T) {
	const answer = "{\n  \"id\": \"key_1\",  \"future_field\": [1, 2]\n}\n"
	c, _ := startRecorder(t, 200, answer, nil)
	var raw []byte
	k, err := c.GetKey(context.Background(), "key_1", admin.Raw(&raw))
	if err != nil || k.ID != "key_1" || !bytes.Equal(raw, []byte(answer)) {
		t.Fatalf("GetKey = %+v, %v; raw %q", k, err, raw)
	}
}
