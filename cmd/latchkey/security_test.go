package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	keyusage "github.com/latchkeyhq/latchkey/usage"
)

// flushedNode is a server whose usage recorder the test flushes itself,
// so each step's verifications are in the store before the next step.
type flushedNode struct {
	*testServer
	rec *keyusage.Recorder
}

func startFlushedNode(t *testing.T, opts ...serverOption) *flushedNode {
	t.Helper()
	n := &flushedNode{}
	recs := make(chan *keyusage.Recorder, 1)
	opts = append(opts,
		withConfig(func(c *serverConfig) { c.UsageFlush = time.Hour }), // flushed by the test
		func(_ *serverConfig, h *serverHooks) { h.Usage = func(r *keyusage.Recorder) { recs <- r } },
	)
	n.testServer = startServer(t, opts...)
	n.rec = <-recs
	return n
}

func (n *flushedNode) flush(t *testing.T) {
	t.Helper()
	if err := n.rec.Flush(t.Context()); err != nil {
		t.Fatalf("flush usage: %v", err)
	}
}

// verifyFrom verifies key for a client address and checks the code.
func (n *flushedNode) verifyFrom(t *testing.T, key, ip, want string, times int) {
	t.Helper()
	for range times {
		if got := n.verifyCode(t, map[string]any{"key": key, "ip": ip}); got != want {
			t.Fatalf("verify from %s = %s, want %s", ip, got, want)
		}
	}
}

// securityEvents lists the anomalies an admin's tenant sees, as kind →
// the events of that kind.
func (n *flushedNode) securityEvents(t *testing.T, admin, query string) map[string][]map[string]any {
	t.Helper()
	r := n.call(t, "GET", "/v1/security-events"+query, admin, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /v1/security-events%s: %d %s", query, r.Status, r.Raw)
	}
	out := map[string][]map[string]any{}
	for _, e := range r.Body["events"].([]any) {
		m := e.(map[string]any)
		out[m["kind"].(string)] = append(out[m["kind"].(string)], m)
	}
	return out
}

func TestE2ESecurityNewNetworkAndDormantKey(t *testing.T) {
	n := startFlushedNode(t)
	admin := n.mustTenant(t, "acme")
	id, key := n.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})

	// The first networks a key is used from are its history, not news.
	n.verifyFrom(t, key, "192.0.2.10", latchkey.CodeValid, 3)
	n.verifyFrom(t, key, "192.0.2.99", latchkey.CodeValid, 1) // same /24
	n.flush(t)
	n.Clock.Advance(time.Minute)
	n.verifyFrom(t, key, "192.0.2.11", latchkey.CodeValid, 2)
	n.flush(t)
	if evs := n.securityEvents(t, admin, ""); len(evs) != 0 {
		t.Fatalf("anomalies after use from the key's own network: %v", evs)
	}

	// A network the key was never used from.
	n.Clock.Advance(time.Minute)
	n.verifyFrom(t, key, "198.51.100.7", latchkey.CodeValid, 2)
	n.flush(t)
	evs := n.securityEvents(t, admin, "?kind=new_network")[latchkey.AnomalyNewNetwork]
	if len(evs) != 1 || evs[0]["key_id"] != id || evs[0]["network"] != "198.51.100.0/24" || evs[0]["severity"] != latchkey.SeverityMedium {
		t.Fatalf("new_network events = %v", evs)
	}
	// Once known, the network is no news again.
	n.Clock.Advance(time.Minute)
	n.verifyFrom(t, key, "198.51.100.8", latchkey.CodeValid, 1)
	n.flush(t)
	if evs := n.securityEvents(t, admin, "?kind=new_network")[latchkey.AnomalyNewNetwork]; len(evs) != 1 {
		t.Fatalf("new_network raised again for a known network: %v", evs)
	}

	// 29 days of silence are not dormancy; 31 are.
	n.Clock.Advance(29 * 24 * time.Hour)
	n.verifyFrom(t, key, "192.0.2.10", latchkey.CodeValid, 1)
	n.flush(t)
	if evs := n.securityEvents(t, admin, "?kind=dormant_key_used"); len(evs) != 0 {
		t.Fatalf("dormant_key_used after 29 days: %v", evs)
	}
	n.Clock.Advance(31 * 24 * time.Hour)
	n.verifyFrom(t, key, "192.0.2.10", latchkey.CodeValid, 1)
	n.flush(t)
	dormant := n.securityEvents(t, admin, "?key_id="+id)[latchkey.AnomalyDormantKeyUsed]
	if len(dormant) != 1 || dormant[0]["details"].(map[string]any)["idle_days"] != "31" {
		t.Fatalf("dormant_key_used events = %v", dormant)
	}

	// Another tenant sees none of it.
	other := n.mustTenant(t, "globex")
	if evs := n.securityEvents(t, other, ""); len(evs) != 0 {
		t.Errorf("another tenant sees anomalies: %v", evs)
	}
	if r := n.call(t, "GET", "/v1/security-events", key, nil); r.Status != http.StatusForbidden || r.errCode() != latchkey.EForbidden {
		t.Errorf("security events read with a data key: %d %s", r.Status, r.Raw)
	}
	for _, q := range []string{"?kind=nonsense", "?since=yesterday", "?after=evt_bad", "?limit=-3"} {
		if r := n.call(t, "GET", "/v1/security-events"+q, admin, nil); r.Status != http.StatusBadRequest || r.errCode() != latchkey.EInvalid {
			t.Errorf("security-events%s: %d %s, want 400 invalid", q, r.Status, r.Raw)
		}
	}
}

func TestE2ESecurityUsageSpike(t *testing.T) {
	n := startFlushedNode(t, withConfig(func(c *serverConfig) { c.SpikeMin, c.SpikeFactor = 40, 5 }))
	admin := n.mustTenant(t, "acme")
	id, key := n.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})

	// An hour of steady use: 9 a minute, a baseline of 9 per minute... for
	// the minutes it covers (the average is over the whole hour).
	for range 30 {
		n.verifyFrom(t, key, "192.0.2.10", latchkey.CodeValid, 9)
		n.flush(t)
		n.Clock.Advance(time.Minute)
	}
	// 30 minutes × 9 over 60 minutes = 4.5 a minute; 5 × 4.5 = 22.5, but
	// the minimum is 40, so 39 in a minute is no spike.
	n.verifyFrom(t, key, "192.0.2.10", latchkey.CodeValid, 39)
	n.flush(t)
	if evs := n.securityEvents(t, admin, ""); len(evs) != 0 {
		t.Fatalf("anomalies below the spike minimum: %v", evs)
	}
	n.Clock.Advance(time.Minute)
	n.verifyFrom(t, key, "192.0.2.10", latchkey.CodeValid, 20)
	n.flush(t)
	n.verifyFrom(t, key, "192.0.2.10", latchkey.CodeValid, 40)
	n.flush(t)
	spikes := n.securityEvents(t, admin, "")[latchkey.AnomalyUsageSpike]
	if len(spikes) != 1 || spikes[0]["key_id"] != id {
		t.Fatalf("usage_spike events = %v", spikes)
	}
	d := spikes[0]["details"].(map[string]any)
	// The baseline hour holds 30×9 + 39 = 309 verifications: 5.15 a minute.
	if d["count"] != "60" || d["baseline_per_min"] != "5.15" {
		t.Errorf("usage_spike details = %v, want count 60 over a baseline of 5.15", d)
	}
	// The same spike continuing is not raised again within the hour.
	n.verifyFrom(t, key, "192.0.2.10", latchkey.CodeValid, 80)
	n.flush(t)
	if spikes := n.securityEvents(t, admin, "")[latchkey.AnomalyUsageSpike]; len(spikes) != 1 {
		t.Errorf("usage_spike raised %d times for one spike", len(spikes))
	}
}

func TestE2ESecurityRotatedKeyAfterGraceAndScopes(t *testing.T) {
	n := startFlushedNode(t)
	admin := n.mustTenant(t, "acme")
	id, key := n.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	r := n.call(t, "POST", "/v1/keys/"+id+"/rotate", admin, map[string]any{"grace_period": "10m"})
	if r.Status != http.StatusOK && r.Status != http.StatusCreated {
		t.Fatalf("rotate: %d %s", r.Status, r.Raw)
	}
	// Within the grace the old key works and is no anomaly.
	n.verifyFrom(t, key, "192.0.2.10", latchkey.CodeValid, 1)
	n.flush(t)
	n.Clock.Advance(11 * time.Minute)
	n.verifyFrom(t, key, "192.0.2.10", latchkey.CodeRevoked, 3)
	n.flush(t)
	evs := n.securityEvents(t, admin, "")[latchkey.AnomalyRotatedKeyUsed]
	if len(evs) != 1 || evs[0]["key_id"] != id || evs[0]["severity"] != latchkey.SeverityHigh || evs[0]["details"].(map[string]any)["verifications"] != "3" {
		t.Fatalf("rotated_key_used events = %v", evs)
	}
	// A key revoked outright is not a rotated-out key.
	rid, rkey := n.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	n.call(t, "POST", "/v1/keys/"+rid+"/revoke", admin, map[string]any{})
	n.verifyFrom(t, rkey, "192.0.2.10", latchkey.CodeRevoked, 1)
	n.flush(t)
	if evs := n.securityEvents(t, admin, "?key_id="+rid); len(evs) != 0 {
		t.Errorf("a revoked key's use raised %v", evs)
	}

	// Widening scopes is an anomaly at once; narrowing is not.
	sid, _ := n.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read", "agent:activate"}})
	if r := n.call(t, "PATCH", "/v1/keys/"+sid, admin, map[string]any{"scopes": []string{"data:read"}}); r.Status != http.StatusOK {
		t.Fatalf("narrow scopes: %d %s", r.Status, r.Raw)
	}
	if evs := n.securityEvents(t, admin, "?key_id="+sid); len(evs) != 0 {
		t.Fatalf("narrowing scopes raised %v", evs)
	}
	if r := n.call(t, "PATCH", "/v1/keys/"+sid, admin, map[string]any{"scopes": []string{"data:*", "agent:activate"}}); r.Status != http.StatusOK {
		t.Fatalf("widen scopes: %d %s", r.Status, r.Raw)
	}
	w := n.securityEvents(t, admin, "?key_id="+sid)[latchkey.AnomalyScopesWidened]
	if len(w) != 1 || w[0]["details"].(map[string]any)["added"] != "data:*,agent:activate" {
		t.Fatalf("scopes_widened events = %v", w)
	}
}

func TestE2ESecurityBurstsAndFailedAuth(t *testing.T) {
	// The test client verifies on its users' behalf as a trusted caller,
	// so the guard counts the ip it names.
	n := startFlushedNode(t, withConfig(func(c *serverConfig) {
		c.BurstThreshold, c.BurstWindow = 5, time.Minute
		c.GuardThreshold, c.GuardWindow, c.GuardCooloff = 5, time.Minute, time.Minute
		c.TrustedProxies = "127.0.0.1"
	}))
	admin := n.mustTenant(t, "acme") // the tenant's first admin key is its first creation
	var ids []string
	for i := range 3 {
		id, _ := n.mustCreate(t, admin, map[string]any{"name": "k" + strconv.Itoa(i)})
		ids = append(ids, id)
		n.Clock.Advance(10 * time.Second)
	}
	if evs := n.securityEvents(t, admin, ""); len(evs) != 0 {
		t.Fatalf("anomalies after 4 creations within the window: %v", evs)
	}
	id, _ := n.mustCreate(t, admin, map[string]any{"name": "k3"})
	ids = append(ids, id)
	mass := n.securityEvents(t, admin, "")[latchkey.AnomalyMassCreation]
	if len(mass) != 1 || mass[0]["details"].(map[string]any)["count"] != "5" {
		t.Fatalf("mass_creation events = %v", mass)
	}
	// Spread out, revocations are no burst; close together they are.
	for _, id := range ids {
		n.call(t, "POST", "/v1/keys/"+id+"/revoke", admin, map[string]any{})
		n.Clock.Advance(20 * time.Second)
	}
	if evs := n.securityEvents(t, admin, "?kind=mass_revocation"); len(evs) != 0 {
		t.Fatalf("mass_revocation for revocations spread over 80s: %v", evs)
	}
	for i := range 5 {
		id, _ := n.mustCreate(t, admin, map[string]any{"name": "r" + strconv.Itoa(i)})
		n.Clock.Advance(2 * time.Minute) // no creation burst either
		ids = append(ids, id)
	}
	for _, id := range ids[4:] {
		n.call(t, "POST", "/v1/keys/"+id+"/revoke", admin, map[string]any{})
	}
	if evs := n.securityEvents(t, admin, "?kind=mass_revocation")[latchkey.AnomalyMassRevocation]; len(evs) != 1 {
		t.Fatalf("mass_revocation events = %v", evs)
	}

	// Unknown keys from one network until the guard blocks it: the
	// operator sees the burst.
	for i := range 5 {
		bogus, _ := latchkey.GenerateToken("", nil)
		if c := n.verifyCode(t, map[string]any{"key": bogus.Reveal(), "ip": fmt.Sprintf("203.0.113.%d", 10+i)}); c != latchkey.CodeNotFound {
			t.Fatalf("unknown key: %s", c)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		burst := n.securityEvents(t, n.Root, "?kind=failed_auth_burst")[latchkey.AnomalyFailedAuthBurst]
		if len(burst) == 1 && burst[0]["network"] == "203.0.113.0/24" && burst[0]["severity"] == latchkey.SeverityHigh {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("failed_auth_burst events after 10s = %v", burst)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if evs := n.securityEvents(t, admin, "?kind=failed_auth_burst"); len(evs) != 0 {
		t.Errorf("a tenant sees the operator's failed-auth bursts: %v", evs)
	}
}

func TestE2EDeniedVerificationsAreAuditedWithinALimit(t *testing.T) {
	n := startFlushedNode(t, withConfig(func(c *serverConfig) { c.DeniedPerMinute = 4 }))
	admin := n.mustTenant(t, "acme")
	id, key := n.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	for range 7 {
		if c := n.verifyCode(t, map[string]any{"key": key, "scopes": []string{"data:write"}, "ip": "192.0.2.77"}); c != latchkey.CodeInsufficientScope {
			t.Fatalf("verify = %s", c)
		}
	}
	n.verifyFrom(t, key, "192.0.2.77", latchkey.CodeValid, 3)
	n.flush(t)
	r := n.call(t, "GET", "/v1/audit?action=key.denied", admin, nil)
	evs, _ := r.Body["events"].([]any)
	if r.Status != http.StatusOK || len(evs) != 4 {
		t.Fatalf("key.denied events: %d, %d of them, want 4: %s", r.Status, len(evs), r.Raw)
	}
	for i, e := range evs {
		m := e.(map[string]any)
		if m["target_key_id"] != id || m["result"] != latchkey.CodeInsufficientScope || m["ip"] != "192.0.2.77" {
			t.Errorf("key.denied event %d = %v", i, m)
		}
		details, _ := m["details"].(map[string]any)
		if want := i == 3; (details["suppressed"] == "3") != want {
			t.Errorf("event %d details = %v; the last must say 3 more were suppressed", i, details)
		}
	}
	// The chain still verifies with the recorder's appends in it.
	if v := n.call(t, "GET", "/v1/audit/verify", admin, nil); v.Body["ok"] != true {
		t.Errorf("audit verify: %s", v.Raw)
	}
}

// TestE2ESecurityAnomaliesAndQuotaExhaustionAreDelivered: what the security
// monitor finds reaches a subscribed webhook, signed, like any event.
func TestE2ESecurityAnomaliesAndQuotaExhaustionAreDelivered(t *testing.T) {
	rcv := newHookReceiver(t, 0)
	n := startFlushedNode(t, withWebhookPoll(20*time.Millisecond), withLocalReceivers())
	admin := n.mustTenant(t, "acme")
	r := n.call(t, "POST", "/v1/webhooks", admin, map[string]any{"url": rcv.URL, "events": []string{"security.anomaly", "key.quota_exhausted"}})
	if r.Status != http.StatusCreated {
		t.Fatalf("create webhook: %d %s", r.Status, r.Raw)
	}
	rcv.setSecret(r.str("secret"))
	id, key := n.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}, "quota": map[string]any{"limit": 2, "period": "daily"}})
	n.verifyFrom(t, key, "192.0.2.10", latchkey.CodeValid, 2)
	n.flush(t)
	n.verifyFrom(t, key, "198.51.100.1", latchkey.CodeQuotaExceeded, 1)
	n.flush(t)

	type payload struct {
		Type string `json:"type"`
		Data struct {
			KeyID   string `json:"key_id"`
			Kind    string `json:"kind"`
			Network string `json:"network"`
			Limit   string `json:"limit"`
		} `json:"data"`
	}
	var got []payload
	eventually(t, 10*time.Second, "two deliveries", func() bool {
		got = got[:0]
		for _, a := range rcv.seen() {
			var p payload
			if a.signedOK && json.Unmarshal(a.body, &p) == nil {
				got = append(got, p)
			}
		}
		return len(got) >= 2
	})
	byType := map[string]payload{}
	for _, p := range got {
		byType[p.Type] = p
	}
	if a := byType["security.anomaly"]; a.Data.Kind != latchkey.AnomalyNewNetwork || a.Data.KeyID != id || a.Data.Network != "198.51.100.0/24" {
		t.Errorf("security.anomaly delivery = %+v", a)
	}
	if q := byType["key.quota_exhausted"]; q.Data.KeyID != id || q.Data.Limit != "2" {
		t.Errorf("key.quota_exhausted delivery = %+v", q)
	}
}

// TestE2EKeyUsedIsOneEventPerTenantAndHour: an hour of use of many keys of
// a tenant is one key.used audit event, read over the API, with each key's
// counts inside; another tenant's keys are in its own event.
func TestE2EKeyUsedIsOneEventPerTenantAndHour(t *testing.T) {
	n := startFlushedNode(t)
	admin := n.mustTenant(t, "acme")
	other := n.mustTenant(t, "globex")
	var ids []string
	for i := range 3 {
		id, key := n.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
		ids = append(ids, id)
		n.verifyFrom(t, key, "192.0.2.10", latchkey.CodeValid, i+1)
	}
	gid, gkey := n.mustCreate(t, other, map[string]any{})
	n.verifyFrom(t, gkey, "198.51.100.1", latchkey.CodeValid, 2)
	n.Clock.Advance(time.Hour)
	n.flush(t)

	used := func(admin string) []map[string]any {
		t.Helper()
		r := n.call(t, "GET", "/v1/audit?action=key.used", admin, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("GET /v1/audit: %d %s", r.Status, r.Raw)
		}
		var out []map[string]any
		for _, e := range r.Body["events"].([]any) {
			out = append(out, e.(map[string]any))
		}
		return out
	}
	evs := used(admin)
	if len(evs) != 1 {
		t.Fatalf("acme's key.used events = %d, want 1: %v", len(evs), evs)
	}
	d := evs[0]["details"].(map[string]any)
	var perKey map[string]map[string]int
	if err := json.Unmarshal([]byte(d["keys"].(string)), &perKey); err != nil {
		t.Fatalf("details.keys: %v", err)
	}
	for i, id := range ids {
		if perKey[id]["valid"] != i+1 || perKey[id]["denied"] != 0 {
			t.Errorf("key %d's counts = %v, want %d valid", i, perKey[id], i+1)
		}
	}
	if len(perKey) != 3 || d["total"] != "6" || d["key_count"] != "3" || d["part"] != "1/1" || d["networks"] != "192.0.2.0/24=6" {
		t.Errorf("acme's key.used = %v", d)
	}
	if g := used(other); len(g) != 1 || !strings.Contains(g[0]["details"].(map[string]any)["keys"].(string), gid) {
		t.Errorf("globex's key.used events = %v", g)
	}
}
