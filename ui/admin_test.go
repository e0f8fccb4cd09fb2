package ui_test

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/secrets"
	"github.com/latchkeyhq/latchkey/webhook"
)

// token reads the CSRF token of the session from one of its pages.
func (b *browser) tokenFrom(path string) string {
	b.f.t.Helper()
	_, _, body := b.get(path)
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		b.f.t.Fatalf("no CSRF token on %s", path)
	}
	return m[1]
}

var onceField = regexp.MustCompile(`class="plaintext once" readonly value="([^"]+)"`)

func TestPagesNeedTheScopesOfTheirAPIRoutes(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	_, reader := f.createKey("reader", "ops", "keys:read")
	_, policyReader := f.createKey("policy-reader", "ops", "keys:read", "policies:read")
	_, auditor := f.createKey("auditor", "ops", "keys:read", "audit:read")
	pages := []string{"/ui/audit", "/ui/audit/verify", "/ui/security", "/ui/webhooks", "/ui/secrets", "/ui/policies",
		"/ui/policies/new", "/ui/owners", "/ui/owners/ops", "/ui/apply", "/ui/tenants"}
	tests := []struct {
		name string
		key  string
		ok   []string // the pages answered 200; the others 403
	}{
		{"ReadOnly", reader, []string{"/ui/owners", "/ui/owners/ops"}},
		{"PolicyReader", policyReader, []string{"/ui/owners", "/ui/owners/ops", "/ui/policies"}},
		{"Auditor", auditor, []string{"/ui/owners", "/ui/owners/ops", "/ui/audit", "/ui/audit/verify", "/ui/security"}},
		{"TenantAdmin", f.adminKey, []string{"/ui/owners", "/ui/owners/ops", "/ui/audit", "/ui/audit/verify", "/ui/security",
			"/ui/webhooks", "/ui/secrets", "/ui/policies", "/ui/policies/new", "/ui/apply"}},
		{"Operator", f.rootKey, pages},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := f.browser()
			b.signIn(tt.key)
			_, _, home := b.get("/ui/")
			for _, p := range pages {
				want := http.StatusForbidden
				for _, ok := range tt.ok {
					if ok == p {
						want = http.StatusOK
					}
				}
				if code, _, _ := b.get(p); code != want {
					t.Errorf("GET %s = %d, want %d", p, code, want)
				}
				// The menu links the pages the key may open, and only those.
				for _, nav := range []string{"/ui/audit", "/ui/security", "/ui/webhooks", "/ui/secrets", "/ui/policies", "/ui/apply", "/ui/tenants"} {
					if nav != p {
						continue
					}
					if linked := strings.Contains(home, `href="`+nav+`"`); linked != (want == http.StatusOK) {
						t.Errorf("the menu links %s: %v, want %v", nav, linked, want == http.StatusOK)
					}
				}
			}
		})
	}
	// A read-only key's changes are refused, whatever the form says.
	b := f.browser()
	b.signIn(policyReader)
	token := b.tokenFrom("/ui/policies")
	for _, p := range []string{"/ui/policies/new", "/ui/policies/standard/edit", "/ui/policies/standard/delete", "/ui/owners/ops", "/ui/owners/ops/delete", "/ui/apply", "/ui/webhooks", "/ui/tenants"} {
		if code, _, _ := b.post(p, url.Values{"csrf": {token}, "confirm": {"yes"}, "name": {"p1"}, "rate": {"1/s"}}); code != http.StatusForbidden {
			t.Errorf("POST %s by a read-only key = %d, want 403", p, code)
		}
	}
}

var auditRow = regexp.MustCompile(`<tr><td>(\d+)</td>`)

func TestAuditLogFiltersPagesAndChain(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	var target *latchkey.Key
	for i := range 60 {
		k, _ := f.createKey(fmt.Sprintf("k%02d", i), "ops")
		if i == 7 {
			target = k
		}
	}
	if _, err := f.keys.RevokeKey(context.Background(), f.admin, target.ID, "test"); err != nil {
		t.Fatal(err)
	}
	b := f.browser()
	b.signIn(f.adminKey)
	code, _, body := b.get("/ui/audit")
	first := auditRow.FindAllStringSubmatch(body, -1)
	if code != http.StatusOK || len(first) != 50 {
		t.Fatalf("first page = %d with %d events, want 200 with 50", code, len(first))
	}
	m := nextLink.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no link to the next page")
	}
	_, _, body = b.get(strings.ReplaceAll(m[1], "&amp;", "&"))
	second := auditRow.FindAllStringSubmatch(body, -1)
	if len(second) == 0 || second[0][1] <= first[49][1] && len(second[0][1]) <= len(first[49][1]) {
		t.Fatalf("the second page does not go on after seq %s", first[49][1])
	}
	tests := []struct {
		query string
		want  int
	}{
		{"action=key.revoked", 1},
		{"key_id=" + target.ID, 2}, // created and revoked
		{"action=key.created&key_id=" + target.ID, 1},
		{"result=nothing", 0},
		{"since=2031-01-01", 0},
		{"until=2030-01-01", 0},
		{"since=" + t0.Add(-time.Minute).Format("2006-01-02T15:04") + "&action=key.revoked", 1},
	}
	for _, tt := range tests {
		code, _, body := b.get("/ui/audit?" + tt.query)
		if got := len(auditRow.FindAllStringSubmatch(body, -1)); code != http.StatusOK || got != tt.want {
			t.Errorf("GET /ui/audit?%s = %d with %d events, want 200 with %d", tt.query, code, got, tt.want)
		}
	}
	for _, q := range []string{"since=yesterday", "after=-1", "after=x"} {
		if code, _, _ := b.get("/ui/audit?" + q); code != http.StatusBadRequest {
			t.Errorf("GET /ui/audit?%s = %d, want 400", q, code)
		}
	}
	if _, _, body := b.get("/ui/audit/verify"); !strings.Contains(body, `data-status="intact"`) {
		t.Errorf("the chain of an untouched log is not shown intact: %.400s", body)
	}
}

func TestSecurityEventsFilterAndPage(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	k, _ := f.createKey("watched", "ops")
	err := f.hookDB.Update(context.Background(), func(tx webhook.Tx) error {
		for i := range 55 {
			kind, sev := latchkey.AnomalyNewNetwork, latchkey.SeverityLow
			if i%5 == 0 {
				kind, sev = latchkey.AnomalyUsageSpike, latchkey.SeverityHigh
			}
			e := latchkey.NewEvent("acme", latchkey.EventSecurityAnomaly, k.ID, t0.Add(time.Duration(i)*time.Second),
				latchkey.Anomaly{Kind: kind, Severity: sev, Summary: "event " + itoa(i)})
			if err := tx.AppendEvent(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b := f.browser()
	b.signIn(f.adminKey)
	count := func(body string) int { return strings.Count(body, `<span class="badge warn">`) }
	code, _, body := b.get("/ui/security")
	if code != http.StatusOK || count(body) != 50 || !nextLink.MatchString(body) {
		t.Fatalf("first page = %d with %d events, want 200 with 50 and a next page", code, count(body))
	}
	_, _, body = b.get(strings.ReplaceAll(nextLink.FindStringSubmatch(body)[1], "&amp;", "&"))
	if count(body) != 5 || nextLink.MatchString(body) {
		t.Errorf("second page has %d events, want the last 5", count(body))
	}
	tests := []struct {
		query string
		want  int
	}{
		{"kind=" + latchkey.AnomalyUsageSpike, 11},
		{"severity=high", 10}, // of the first page's 50
		{"kind=" + latchkey.AnomalyMassCreation, 0},
	}
	for _, tt := range tests {
		code, _, body := b.get("/ui/security?" + tt.query)
		if code != http.StatusOK || count(body) != tt.want {
			t.Errorf("GET /ui/security?%s = %d with %d events, want 200 with %d", tt.query, code, count(body), tt.want)
		}
	}
	for _, q := range []string{"kind=nonsense", "severity=dire"} {
		if code, _, _ := b.get("/ui/security?" + q); code != http.StatusBadRequest {
			t.Errorf("GET /ui/security?%s = %d, want 400", q, code)
		}
	}
}

func TestWebhooksAddRemoveRetry(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ctx := context.Background()
	b := f.browser()
	b.signIn(f.adminKey)
	token := b.tokenFrom("/ui/webhooks")
	if code, _, _ := b.post("/ui/webhooks", url.Values{"csrf": {token}, "url": {"not a url"}}); code != http.StatusBadRequest {
		t.Errorf("adding a bad URL = %d, want 400", code)
	}
	code, _, body := b.post("/ui/webhooks", url.Values{"csrf": {token}, "url": {"https://hooks.example.com/in"}, "events": {latchkey.EventKeyCreated}})
	m := onceField.FindStringSubmatch(body)
	if code != http.StatusOK || m == nil {
		t.Fatalf("adding a webhook = %d, want 200 with its secret", code)
	}
	secret, shown := html.UnescapeString(m[1]), len(b.pages)-1
	if cc := b.pages[len(b.pages)-1].header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("the secret's page has Cache-Control %q", cc)
	}
	hooks, _, err := f.hooks.ListWebhooks(ctx, f.admin, "", 10)
	if err != nil || len(hooks) != 1 || len(hooks[0].Events) != 1 {
		t.Fatalf("webhooks after adding: %v, %v", hooks, err)
	}
	hook := hooks[0]
	if _, err := latchkey.ParseWebhookSecret(secret); err != nil {
		t.Errorf("the page shows no signing secret: %v", err)
	}
	failed := &latchkey.Delivery{ID: latchkey.NewID("dlv", t0), WebhookID: hook.ID, EventID: "evt_x", Tenant: "acme",
		EventType: latchkey.EventKeyCreated, Status: latchkey.DeliveryFailed, Attempts: 5, CreatedAt: t0}
	if err := f.hookDB.Update(ctx, func(tx webhook.Tx) error { return tx.CreateDelivery(failed) }); err != nil {
		t.Fatal(err)
	}
	code, _, body = b.get("/ui/webhooks/" + hook.ID)
	if code != http.StatusOK || !strings.Contains(body, failed.ID) || !strings.Contains(body, "/deliveries/"+failed.ID+"/retry") {
		t.Fatalf("the webhook's page = %d, want its delivery with a retry button", code)
	}
	if _, _, body := b.get("/ui/webhooks"); !strings.Contains(body, "https://hooks.example.com/in") {
		t.Error("the list does not show the webhook")
	}
	retry := "/ui/webhooks/" + hook.ID + "/deliveries/" + failed.ID + "/retry"
	if code, _, body := b.post(retry, url.Values{"csrf": {token}}); code != http.StatusOK || !strings.Contains(body, `name="confirm" value="yes"`) {
		t.Fatalf("retry without confirm = %d, want the confirmation page", code)
	}
	status := func() string {
		ds, _, err := f.hooks.ListDeliveries(ctx, f.admin, hook.ID, webhook.DeliveryListParams{})
		if err != nil || len(ds) != 1 {
			t.Fatalf("deliveries: %v, %v", ds, err)
		}
		return ds[0].Status
	}
	if s := status(); s != latchkey.DeliveryFailed {
		t.Fatalf("an unconfirmed retry changed the delivery to %s", s)
	}
	if code, loc, _ := b.post(retry, url.Values{"csrf": {token}, "confirm": {"yes"}}); code != http.StatusSeeOther || loc != "/ui/webhooks/"+hook.ID {
		t.Fatalf("retry = %d → %q", code, loc)
	}
	if s := status(); s != latchkey.DeliveryPending {
		t.Errorf("a retried delivery is %s, want pending", s)
	}
	if code, _, _ := b.post(retry, url.Values{"csrf": {token}, "confirm": {"yes"}}); code != http.StatusConflict {
		t.Errorf("retrying a pending delivery = %d, want 409", code)
	}
	if code, _, _ := b.get("/ui/webhooks/whk_00000000000000000000000000"); code != http.StatusNotFound {
		t.Errorf("an unknown webhook = %d, want 404", code)
	}
	del := "/ui/webhooks/" + hook.ID + "/delete"
	b.post(del, url.Values{"csrf": {token}})
	if _, err := f.hooks.GetWebhook(ctx, f.admin, hook.ID); err != nil {
		t.Fatalf("an unconfirmed removal removed the webhook: %v", err)
	}
	if code, loc, _ := b.post(del, url.Values{"csrf": {token}, "confirm": {"yes"}}); code != http.StatusSeeOther || loc != "/ui/webhooks" {
		t.Fatalf("remove = %d → %q", code, loc)
	}
	if _, err := f.hooks.GetWebhook(ctx, f.admin, hook.ID); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("after removal: %v, want ENotFound", err)
	}
	for i, pg := range b.pages {
		if strings.Contains(html.UnescapeString(pg.body), secret) && i != shown {
			t.Errorf("%s shows the webhook's signing secret", pg.path)
		}
	}
}

func TestSecretPagesNeverShowValues(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ctx := context.Background()
	value := "sk-live-VALUE-" + strings.Repeat("q", 24)
	for _, v := range []string{value + "1", value + "2"} {
		if _, err := f.secrets.PutSecret(ctx, f.admin, "openai", secrets.SecretParams{Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.secrets.PutSecret(ctx, f.admin, "anthropic", secrets.SecretParams{Value: value + "3"}); err != nil {
		t.Fatal(err)
	}
	b := f.browser()
	b.signIn(f.adminKey)
	code, _, body := b.get("/ui/secrets")
	if code != http.StatusOK || !strings.Contains(body, `href="/ui/secrets/openai"`) || !strings.Contains(body, `href="/ui/secrets/anthropic"`) {
		t.Fatalf("secret list = %d, want both names", code)
	}
	code, _, body = b.get("/ui/secrets/openai")
	if code != http.StatusOK || strings.Count(body, "<tr><td>") != 2 {
		t.Fatalf("openai's versions = %d with %d rows, want 200 with 2", code, strings.Count(body, "<tr><td>"))
	}
	if code, _, _ := b.get("/ui/secrets/nosuch"); code != http.StatusNotFound {
		t.Errorf("an unknown secret = %d, want 404", code)
	}
	// Every page a session can reach, and the audit log that records the
	// writes: no value anywhere.
	for _, p := range []string{"/ui/", "/ui/audit", "/ui/security", "/ui/keys", "/ui/policies", "/ui/owners", "/ui/webhooks"} {
		b.get(p)
	}
	for _, pg := range b.pages {
		if strings.Contains(pg.body, value) {
			t.Errorf("%s shows a secret's value", pg.path)
		}
	}
	// A key limited to one secret sees only that one's name.
	name, owner, scopes, res := "limited", "ops", []string{"keys:read", "secrets:read"}, []string{"secret:anthropic"}
	_, tok, err := f.keys.CreateKey(ctx, f.admin, func() (p keys.CreateParams) {
		p.Name, p.Owner, p.Scopes, p.Resources = &name, &owner, &scopes, &res
		return p
	}())
	if err != nil {
		t.Fatal(err)
	}
	limited := tok.Reveal()
	lb := f.browser()
	lb.signIn(limited)
	if _, _, body := lb.get("/ui/secrets"); strings.Contains(body, "openai") || !strings.Contains(body, "anthropic") {
		t.Error("a key limited to one secret sees another's name")
	}
	if code, _, _ := lb.get("/ui/secrets/openai"); code != http.StatusForbidden {
		t.Errorf("a key limited to anthropic opening openai = %d, want 403", code)
	}
}

func TestPoliciesCreateEditDelete(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ctx := context.Background()
	b := f.browser()
	b.signIn(f.adminKey)
	token := b.tokenFrom("/ui/policies/new")
	_, _, body := b.get("/ui/policies")
	if !strings.Contains(body, `badge preset`) {
		t.Error("the list marks no preset")
	}
	form := url.Values{"csrf": {token}, "name": {"partner"}, "description": {"for partners"}, "scopes": {"orders:read, orders:write"},
		"resources": {"agent:support"}, "rate": {"10/s,1000/h"}, "quota": {"10000/30d"}, "expires_after": {"90d"}}
	if code, loc, body := b.post("/ui/policies/new", form); code != http.StatusSeeOther || loc != "/ui/policies/partner" {
		t.Fatalf("create = %d → %q: %.300s", code, loc, body)
	}
	p, err := f.keys.GetPolicy(ctx, f.admin, "partner")
	if err != nil || len(p.Scopes) != 2 || len(p.RateLimits) != 2 || p.Quota == nil || p.Quota.Limit != 10000 || time.Duration(p.ExpiresAfter) != 90*24*time.Hour {
		t.Fatalf("the created policy: %+v, %v", p, err)
	}
	if code, _, _ := b.post("/ui/policies/new", form); code != http.StatusConflict {
		t.Errorf("creating it again = %d, want 409", code)
	}
	bad := url.Values{"csrf": {token}, "name": {"bad"}, "rate": {"lots"}}
	if code, _, body := b.post("/ui/policies/new", bad); code != http.StatusBadRequest || !strings.Contains(body, `value="lots"`) {
		t.Errorf("a bad rate = %d, want 400 with the form kept", code)
	}
	// Edit: the page's form as shown, with uses instead of the quota.
	code, _, body := b.get("/ui/policies/partner")
	if code != http.StatusOK || !strings.Contains(body, `value="10/1s,1000/1h"`) {
		t.Fatalf("the policy's page = %d, want its form filled in", code)
	}
	edit := url.Values{"csrf": {token}, "description": {"for partners"}, "scopes": {"orders:read orders:write"}, "resources": {"agent:support"},
		"rate": {"10/1s,1000/1h"}, "uses": {"500"}, "expires_after": {"90d"}}
	if code, loc, body := b.post("/ui/policies/partner/edit", edit); code != http.StatusSeeOther || loc != "/ui/policies/partner" {
		t.Fatalf("edit = %d → %q: %.300s", code, loc, body)
	}
	p, _ = f.keys.GetPolicy(ctx, f.admin, "partner")
	if !p.Quota.IsCredit() || *p.Quota.Remaining != 500 || p.Description != "for partners" || len(p.RateLimits) != 2 {
		t.Errorf("after the edit: %+v", p)
	}
	if code, _, _ := b.post("/ui/policies/nosuch/edit", edit); code != http.StatusNotFound {
		t.Errorf("editing an unknown policy = %d, want 404", code)
	}
	// Delete asks first.
	if code, _, body := b.post("/ui/policies/partner/delete", url.Values{"csrf": {token}}); code != http.StatusOK || !strings.Contains(body, `name="confirm" value="yes"`) {
		t.Fatalf("delete without confirm = %d", code)
	}
	if _, err := f.keys.GetPolicy(ctx, f.admin, "partner"); err != nil {
		t.Fatal("an unconfirmed delete deleted the policy")
	}
	if code, loc, _ := b.post("/ui/policies/partner/delete", url.Values{"csrf": {token}, "confirm": {"yes"}}); code != http.StatusSeeOther || loc != "/ui/policies" {
		t.Fatalf("delete = %d → %q", code, loc)
	}
	if _, err := f.keys.GetPolicy(ctx, f.admin, "partner"); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("after delete: %v, want ENotFound", err)
	}
}

func TestOwnersLimitsAndUsage(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ctx := context.Background()
	f.createKey("alice-app", "alice")
	b := f.browser()
	b.signIn(f.adminKey)
	token := b.tokenFrom("/ui/owners")
	code, _, body := b.get("/ui/owners/alice")
	if code != http.StatusOK || !strings.Contains(body, `id="no-record"`) || strings.Count(body, "<svg") != 2 {
		t.Fatalf("alice's page = %d, want no record and two charts", code)
	}
	if code, loc, _ := b.get("/ui/owners?id=alice"); code != http.StatusSeeOther || loc != "/ui/owners/alice" {
		t.Errorf("opening an owner by id = %d → %q", code, loc)
	}
	if code, loc, body := b.post("/ui/owners/alice", url.Values{"csrf": {token}, "rate": {"100/s"}, "quota": {"5000/monthly"}}); code != http.StatusSeeOther || loc != "/ui/owners/alice" {
		t.Fatalf("set limits = %d → %q: %.300s", code, loc, body)
	}
	o, err := f.keys.GetOwner(ctx, f.admin, "alice")
	if err != nil || len(o.RateLimits) != 1 || o.Quota == nil || o.Quota.Limit != 5000 {
		t.Fatalf("alice's record: %+v, %v", o, err)
	}
	if _, _, body := b.get("/ui/owners"); !strings.Contains(body, `href="/ui/owners/alice"`) {
		t.Error("the list does not show alice's record")
	}
	if code, _, _ := b.post("/ui/owners/alice", url.Values{"csrf": {token}, "quota": {"500"}}); code != http.StatusBadRequest {
		t.Errorf("a credit balance as an owner's quota = %d, want 400", code)
	}
	b.post("/ui/owners/alice/delete", url.Values{"csrf": {token}})
	if _, err := f.keys.GetOwner(ctx, f.admin, "alice"); err != nil {
		t.Fatal("an unconfirmed delete deleted the record")
	}
	b.post("/ui/owners/alice/delete", url.Values{"csrf": {token}, "confirm": {"yes"}})
	if _, err := f.keys.GetOwner(ctx, f.admin, "alice"); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("after delete: %v, want ENotFound", err)
	}
}

const testManifest = `app: {name: shop}
agents:
  - name: support
    api_key: {generate: true, scopes: [orders:read]}
`

func TestApplyManifestPlansThenApplies(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ctx := context.Background()
	b := f.browser()
	b.signIn(f.adminKey)
	token := b.tokenFrom("/ui/apply")
	countKeys := func() int {
		ks, _, err := f.keys.ListKeys(ctx, f.admin, keys.ListParams{})
		if err != nil {
			t.Fatal(err)
		}
		return len(ks)
	}
	before := countKeys()
	if code, _, _ := b.post("/ui/apply", url.Values{"csrf": {token}, "manifest": {"app: [\n"}}); code != http.StatusBadRequest {
		t.Errorf("a broken manifest = %d, want 400", code)
	}
	code, _, body := b.post("/ui/apply", url.Values{"csrf": {token}, "manifest": {testManifest}})
	if code != http.StatusOK || !strings.Contains(body, "plan-create") || !strings.Contains(body, `name="confirm" value="yes"`) {
		t.Fatalf("the plan = %d, want a create step and a confirm form: %.400s", code, body)
	}
	if countKeys() != before {
		t.Fatal("the dry run made a key")
	}
	code, _, body = b.post("/ui/apply", url.Values{"csrf": {token}, "manifest": {testManifest}, "confirm": {"yes"}})
	m := onceField.FindStringSubmatch(body)
	if code != http.StatusOK || m == nil {
		t.Fatalf("apply = %d, want the new key shown", code)
	}
	if cc := b.pages[len(b.pages)-1].header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("the minted keys' page has Cache-Control %q", cc)
	}
	if _, err := f.keys.Authenticate(ctx, m[1], netip.Addr{}, ""); err != nil {
		t.Errorf("the minted key does not authenticate: %v", err)
	}
	minted := m[1]
	// Applying again changes nothing and mints nothing.
	_, _, body = b.post("/ui/apply", url.Values{"csrf": {token}, "manifest": {testManifest}})
	if !strings.Contains(body, "plan-unchanged") || strings.Contains(body, "plan-create") {
		t.Error("a second plan is not unchanged")
	}
	for i, pg := range b.pages {
		if strings.Contains(pg.body, minted) && i != len(b.pages)-2 {
			t.Errorf("%s (page %d) shows the minted key", pg.path, i)
		}
	}
}

func TestOperatorCreatesTenants(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	b := f.browser()
	b.signIn(f.rootKey)
	token := b.tokenFrom("/ui/tenants")
	if _, _, body := b.get("/ui/tenants"); !strings.Contains(body, "<code>acme</code>") {
		t.Error("the list does not show acme")
	}
	if code, _, _ := b.post("/ui/tenants", url.Values{"csrf": {token}, "id": {"acme"}}); code != http.StatusConflict {
		t.Errorf("creating acme again = %d, want 409", code)
	}
	if code, _, _ := b.post("/ui/tenants", url.Values{"csrf": {token}, "id": {"Bad Id!"}}); code != http.StatusBadRequest {
		t.Errorf("a bad id = %d, want 400", code)
	}
	code, _, body := b.post("/ui/tenants", url.Values{"csrf": {token}, "id": {"globex"}, "name": {"Globex"}})
	m := onceField.FindStringSubmatch(body)
	if code != http.StatusOK || m == nil {
		t.Fatalf("create = %d, want the admin key shown", code)
	}
	a, err := f.keys.Authenticate(context.Background(), m[1], netip.Addr{}, "keys:write")
	if err != nil || a.Tenant != "globex" {
		t.Fatalf("the new tenant's admin key: %v, %v", a, err)
	}
	if _, _, body := b.get("/ui/tenants"); strings.Contains(body, m[1]) || !strings.Contains(body, "globex") {
		t.Error("the list shows the key, or not the tenant")
	}
}

func TestOverviewCountsCachedAndForgottenOnChange(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	b := f.browser()
	b.signIn(f.adminKey)
	token := b.tokenFrom("/ui/keys/new")
	active := regexp.MustCompile(`id="count-active">(\d+)<`)
	count := func() string {
		_, _, body := b.get("/ui/")
		m := active.FindStringSubmatch(body)
		if m == nil {
			t.Fatal("no active count")
		}
		return m[1]
	}
	if got := count(); got != "1" {
		t.Fatalf("active = %s, want 1", got)
	}
	// A key made through the API (here: the service) shows once the
	// cached counts are old.
	f.createKey("elsewhere", "ops")
	if got := count(); got != "1" {
		t.Fatalf("active right after an outside change = %s, want the cached 1", got)
	}
	f.clock.Advance(11 * time.Second)
	if got := count(); got != "2" {
		t.Fatalf("active after the counts aged = %s, want 2", got)
	}
	// A key made in the dashboard shows at once.
	if code, _, _ := b.post("/ui/keys/new", url.Values{"csrf": {token}, "name": {"here"}}); code != http.StatusOK {
		t.Fatalf("create = %d", code)
	}
	if got := count(); got != "3" {
		t.Fatalf("active right after a dashboard change = %s, want 3", got)
	}
}
