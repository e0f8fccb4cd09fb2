package keys_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// conditioned creates an acme key with the condition.
func (f *fixture) conditioned(t testing.TB, cond string, more ...func(*keys.Settings)) (*latchkey.Key, string) {
	t.Helper()
	s := keys.Settings{Scopes: &[]string{"data:read", "data:write"}, Condition: &cond}
	for _, m := range more {
		m(&s)
	}
	return f.create(t, keys.CreateParams{Settings: s})
}

// verifyReq verifies key for a request with the method, path and headers
// from ip.
func (f *fixture) verifyReq(t testing.TB, key, ip string, ri *keys.RequestInfo, scopes ...string) string {
	t.Helper()
	req := keys.VerifyRequest{Key: key, Scopes: scopes, Request: ri}
	if ip != "" {
		req.IP = netip.MustParseAddr(ip)
	}
	v, err := f.svc.Verify(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return v.Code
}

func get(path string, h ...string) *keys.RequestInfo {
	return reqInfo("GET", path, h...)
}

func reqInfo(method, path string, h ...string) *keys.RequestInfo {
	ri := &keys.RequestInfo{Method: method, Path: path, Host: "api.example.com", Headers: http.Header{}}
	for i := 0; i+1 < len(h); i += 2 {
		ri.Headers.Set(h[i], h[i+1])
	}
	return ri
}

func TestConditionsAllowAndDenyAsWritten(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name, cond string
		allow      []*keys.RequestInfo
		deny       []*keys.RequestInfo
		ip         string
	}{
		{
			name:  "method and path",
			cond:  `request.method in ["GET","HEAD"] && request.path.startsWith("/reports/")`,
			allow: []*keys.RequestInfo{get("/reports/q1"), reqInfo("HEAD", "/reports/")},
			deny:  []*keys.RequestInfo{reqInfo("POST", "/reports/q1"), get("/admin"), nil},
		},
		{
			name:  "header",
			cond:  `"x-team" in request.headers && request.headers["x-team"] == "payments"`,
			allow: []*keys.RequestInfo{get("/", "X-Team", "payments")},
			deny:  []*keys.RequestInfo{get("/", "X-Team", "growth"), get("/"), nil},
		},
		{
			name:  "host",
			cond:  `request.host == "api.example.com"`,
			allow: []*keys.RequestInfo{get("/")},
			deny:  []*keys.RequestInfo{{Method: "GET", Host: "evil.example.com"}},
		},
		{
			name:  "credential headers are not visible",
			cond:  `!("authorization" in request.headers) && !("x-api-key" in request.headers)`,
			allow: []*keys.RequestInfo{get("/", "Authorization", "Bearer x", "X-Api-Key", "y")},
		},
		{
			name:  "forward-auth: nginx headers",
			cond:  `request.method == "GET" && request.path == "/reports/q1"`,
			allow: []*keys.RequestInfo{{Method: "GET", Path: "", Proxied: true, Headers: http.Header{"X-Original-Method": {"GET"}, "X-Original-Uri": {"/reports/q1?x=1"}}}},
			deny:  []*keys.RequestInfo{{Method: "GET", Path: "", Proxied: true, Headers: http.Header{"X-Original-Method": {"POST"}, "X-Original-Uri": {"/reports/q1"}}}},
		},
		{
			name:  "forward-auth: Traefik headers",
			cond:  `request.method == "DELETE" && request.path == "/x" && request.host == "app.example.com"`,
			allow: []*keys.RequestInfo{{Method: "GET", Proxied: true, Headers: http.Header{"X-Forwarded-Method": {"DELETE"}, "X-Forwarded-Uri": {"/x"}, "X-Forwarded-Host": {"app.example.com"}}}},
			deny:  []*keys.RequestInfo{{Method: "GET", Proxied: true, Headers: http.Header{"X-Forwarded-Method": {"DELETE"}, "X-Forwarded-Uri": {"/y"}, "X-Forwarded-Host": {"app.example.com"}}}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, key := f.conditioned(t, c.cond)
			for _, ri := range c.allow {
				if code := f.verifyReq(t, key, "10.1.2.3", ri); code != latchkey.CodeValid {
					t.Errorf("%+v: %s, want VALID", ri, code)
				}
			}
			for _, ri := range c.deny {
				if code := f.verifyReq(t, key, "10.1.2.3", ri); code != latchkey.CodeConditionFailed {
					t.Errorf("%+v: %s, want CONDITION_FAILED", ri, code)
				}
			}
		})
	}
}

func TestConditionOnAddressAndNetwork(t *testing.T) {
	f := newFixture(t)
	_, key := f.conditioned(t, `request.ip in cidr("10.0.0.0/8") && !(request.ip in cidr("10.9.0.0/16"))`)
	for ip, want := range map[string]string{
		"10.1.2.3":          latchkey.CodeValid,
		"::ffff:10.1.2.3":   latchkey.CodeValid,
		"10.9.1.1":          latchkey.CodeConditionFailed,
		"192.0.2.1":         latchkey.CodeConditionFailed,
		"2001:db8::1":       latchkey.CodeConditionFailed,
		"":                  latchkey.CodeConditionFailed, // no address is in no range
		"2001:db8:0:1::abc": latchkey.CodeConditionFailed,
	} {
		if code := f.verifyReq(t, key, ip, nil); code != want {
			t.Errorf("from %q: %s, want %s", ip, code, want)
		}
	}
	_, net := f.conditioned(t, `request.network in ["192.0.2.0/24", "2001:db8:0:1::/64"]`)
	for ip, want := range map[string]string{
		"192.0.2.200":       latchkey.CodeValid,
		"2001:db8:0:1::abc": latchkey.CodeValid,
		"192.0.3.1":         latchkey.CodeConditionFailed,
	} {
		if code := f.verifyReq(t, net, ip, nil); code != want {
			t.Errorf("network from %q: %s, want %s", ip, code, want)
		}
	}
}

func TestConditionOnTimeOfDay(t *testing.T) {
	f := newFixture(t) // the clock starts at 09:00 UTC, 10:00 in Berlin
	_, key := f.conditioned(t, `!(request.ip in cidr("10.0.0.0/8")) || now.getHours("Europe/Berlin") < 18`)
	if code := f.verifyReq(t, key, "10.1.2.3", nil); code != latchkey.CodeValid {
		t.Fatalf("inside at 10:00 Berlin: %s", code)
	}
	f.clock.Advance(8 * time.Hour) // 18:00 in Berlin
	if code := f.verifyReq(t, key, "10.1.2.3", nil); code != latchkey.CodeConditionFailed {
		t.Fatalf("inside at 18:00 Berlin: %s", code)
	}
	if code := f.verifyReq(t, key, "192.0.2.1", nil); code != latchkey.CodeValid {
		t.Fatalf("outside at 18:00 Berlin: %s", code)
	}
}

func TestConditionSeesKeyScopeAndResource(t *testing.T) {
	f := newFixture(t)
	meta := map[string]any{"tier": "gold"}
	_, key := f.conditioned(t, `key.meta.tier == "gold" && key.environment == "prod" && scope == "data:read" && resource == "" && "data:write" in key.scopes`,
		func(s *keys.Settings) { s.Meta = &meta; s.Environment = ptr("prod") })
	if code := f.verifyReq(t, key, "", nil, "data:read"); code != latchkey.CodeValid {
		t.Fatalf("data:read: %s", code)
	}
	if code := f.verifyReq(t, key, "", nil, "data:write"); code != latchkey.CodeConditionFailed {
		t.Fatalf("data:write: %s", code)
	}
}

// The condition is checked after the resource and before the limits: a
// refused condition spends nothing of a single-use key.
func TestConditionCheckedAfterResourceBeforeLimits(t *testing.T) {
	f := newFixture(t)
	_, key := f.conditioned(t, `request.method == "GET"`, func(s *keys.Settings) {
		s.Uses = ptr(int64(1))
		s.Resources = &[]string{"report:*"}
	})
	v, err := f.svc.Verify(context.Background(), keys.VerifyRequest{Key: key, Resource: "ledger:1", Cost: 1, Request: reqInfo("POST", "/")})
	if err != nil || v.Code != latchkey.CodeResourceNotAllowed {
		t.Fatalf("wrong resource: %s %v, want RESOURCE_NOT_ALLOWED first", v.Code, err)
	}
	for range 3 {
		if code := f.verifyReq(t, key, "", reqInfo("POST", "/")); code != latchkey.CodeConditionFailed {
			t.Fatalf("POST: %s", code)
		}
	}
	v, err = f.svc.Verify(context.Background(), keys.VerifyRequest{Key: key, Cost: 1, Request: get("/")})
	if err != nil || v.Code != latchkey.CodeValid {
		t.Fatalf("GET after refusals: %s %v (the refusals must not use the key up)", v.Code, err)
	}
}

func TestPolicyConditionAndKeyConditionCombine(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.svc.CreatePolicy(ctx, f.admin, "readers", keys.PolicyParams{
		Condition: ptr(`request.method in ["GET", "HEAD"]`),
	}); err != nil {
		t.Fatal(err)
	}
	k, key := f.conditioned(t, `request.path.startsWith("/reports/")`, func(s *keys.Settings) { s.Policy = ptr("readers") })
	for _, c := range []struct {
		ri   *keys.RequestInfo
		want string
	}{
		{get("/reports/1"), latchkey.CodeValid},
		{reqInfo("POST", "/reports/1"), latchkey.CodeConditionFailed}, // the policy's
		{get("/admin"), latchkey.CodeConditionFailed},                 // the key's
	} {
		if code := f.verifyReq(t, key, "", c.ri); code != c.want {
			t.Errorf("%s %s: %s, want %s", c.ri.Method, c.ri.Path, code, c.want)
		}
	}
	// A policy change reaches the key at once.
	if _, err := f.svc.UpdatePolicy(ctx, f.admin, "readers", keys.PolicyParams{Condition: ptr(`request.method == "POST"`)}); err != nil {
		t.Fatal(err)
	}
	if code := f.verifyReq(t, key, "", get("/reports/1")); code != latchkey.CodeConditionFailed {
		t.Errorf("GET after the policy allows only POST: %s", code)
	}
	if code := f.verifyReq(t, key, "", reqInfo("POST", "/reports/1")); code != latchkey.CodeValid {
		t.Errorf("POST after the policy allows it: %s", code)
	}
	// Removing the key's own leaves the policy's.
	if _, err := f.svc.UpdateKey(ctx, f.admin, k.ID, keys.Settings{Condition: ptr("")}); err != nil {
		t.Fatal(err)
	}
	if code := f.verifyReq(t, key, "", reqInfo("POST", "/admin")); code != latchkey.CodeValid {
		t.Errorf("POST /admin without the key's condition: %s", code)
	}
	got, err := f.svc.GetKey(ctx, f.admin, k.ID)
	if err != nil || got.Condition != "" {
		t.Fatalf("condition after removal: %q %v", got.Condition, err)
	}
}

func TestBadConditionIsRefusedAtSave(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i, bad := range []string{
		`request.method ==`,                   // syntax
		`request.method == "GET" &&`,          // syntax at the end
		`nosuch.var == 1`,                     // undeclared
		`1 + 2`,                               // not a bool
		`now.getHours() < "eighteen"`,         // type
		`cidr(1)`,                             // no such overload
		strings.Repeat("true && ", 600) + "x", // too long
	} {
		_, _, err := f.svc.CreateKey(ctx, f.admin, keys.CreateParams{Settings: keys.Settings{Name: ptr("k"), Condition: ptr(bad)}})
		if latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("create with %.40q: %v, want invalid", bad, err)
		}
		_, err = f.svc.CreatePolicy(ctx, f.admin, fmt.Sprintf("p%d", i), keys.PolicyParams{Condition: ptr(bad)})
		if latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("policy with %.40q: %v, want invalid", bad, err)
		}
	}
	// The position is in the message: line 2, column 17 of a two-line
	// expression.
	err := keys.CheckCondition("condition", "request.method == \"GET\" &&\n  request.path ==")
	if latchkey.ErrorCode(err) != latchkey.EInvalid || !strings.Contains(latchkey.ErrorMessage(err), "2:") {
		t.Errorf("a syntax error on line 2: %v", err)
	}
	k, _ := f.conditioned(t, `request.method == "GET"`)
	if _, err := f.svc.UpdateKey(ctx, f.admin, k.ID, keys.Settings{Condition: ptr(`request.method = "GET"`)}); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Errorf("update with a bad condition: %v", err)
	}
	got, err := f.svc.GetKey(ctx, f.admin, k.ID)
	if err != nil || got.Condition != `request.method == "GET"` {
		t.Errorf("after a refused update the condition is %q (%v)", got.Condition, err)
	}
}

func TestPathologicalConditionHitsTheCostLimitAndDenies(t *testing.T) {
	f := newFixture(t)
	// Compiles and type-checks, but would visit 200^3 elements.
	big := "[" + strings.Repeat("1,", 199) + "1]"
	cond := big + `.all(x, ` + big + `.all(y, ` + big + `.all(z, x + y + z > 0)))`
	_, key := f.conditioned(t, cond)
	start := time.Now()
	if code := f.verifyReq(t, key, "", nil); code != latchkey.CodeConditionFailed {
		t.Fatalf("pathological condition: %s, want CONDITION_FAILED", code)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the cost limit took %v to stop it", d)
	}
	// A cheap condition over the same list is fine.
	_, ok := f.conditioned(t, big+`.all(x, x > 0)`)
	if code := f.verifyReq(t, ok, "", nil); code != latchkey.CodeValid {
		t.Fatalf("one pass over 200 elements: %s", code)
	}
}

func TestConditionRuntimeErrorDenies(t *testing.T) {
	f := newFixture(t)
	// A header that is absent is an error, not false: denied either way.
	_, key := f.conditioned(t, `request.headers["x-team"] == "payments"`)
	if code := f.verifyReq(t, key, "", get("/")); code != latchkey.CodeConditionFailed {
		t.Fatalf("absent header: %s", code)
	}
	_, bad := f.conditioned(t, `request.ip in cidr(request.headers["x-range"])`)
	if code := f.verifyReq(t, bad, "10.1.2.3", get("/", "X-Range", "not a range")); code != latchkey.CodeConditionFailed {
		t.Fatalf("bad cidr at run time: %s", code)
	}
	if code := f.verifyReq(t, bad, "10.1.2.3", get("/", "X-Range", "10.0.0.0/8")); code != latchkey.CodeValid {
		t.Fatalf("good cidr at run time: %s", code)
	}
}

// BenchmarkVerifyCacheHitCondition is BenchmarkVerifyCacheHit for keys
// with a condition: a simple one on the method, one on the path and the
// address, and one that reads the key.
func BenchmarkVerifyCacheHitCondition(b *testing.B) {
	for _, c := range []struct{ name, cond string }{
		{"method", `request.method == "GET"`},
		{"path_and_cidr", `request.method in ["GET","HEAD"] && request.path.startsWith("/reports/") && request.ip in cidr("10.0.0.0/8")`},
		{"key", `key.environment == "" && scope == "data:read"`},
	} {
		b.Run(c.name, func(b *testing.B) {
			f := newFixture(b)
			_, key := f.conditioned(b, c.cond, func(s *keys.Settings) { s.IPAllow = &[]string{"10.0.0.0/8"} })
			ctx := context.Background()
			req := keys.VerifyRequest{Key: key, Scopes: []string{"data:read"}, IP: netip.MustParseAddr("10.1.2.3"),
				Request: &keys.RequestInfo{Method: "GET", Path: "/reports/q1", Host: "api.example.com",
					Headers: http.Header{"Accept": {"application/json"}, "User-Agent": {"bench"}}}}
			if v, _ := f.svc.Verify(ctx, req); v.Code != latchkey.CodeValid {
				b.Fatal(v.Code)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				v, err := f.svc.Verify(ctx, req)
				if err != nil || v.Code != latchkey.CodeValid {
					b.Fatal(v.Code, err)
				}
			}
		})
	}
}

// A rotated key keeps its condition, and a derived key cannot shed its
// parent's: the child's own is added to it.
func TestConditionFollowsRotationAndDerivation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	k, _ := f.conditioned(t, `request.method == "GET"`, func(s *keys.Settings) {
		s.Scopes = &[]string{"data:read", "keys:derive"}
	})
	succ, tok, err := f.svc.RotateKey(ctx, f.admin, k.ID, keys.RotateParams{})
	if err != nil {
		t.Fatal(err)
	}
	if succ.Condition != k.Condition {
		t.Fatalf("successor's condition %q, want %q", succ.Condition, k.Condition)
	}
	if code := f.verifyReq(t, tok.Reveal(), "", reqInfo("POST", "/")); code != latchkey.CodeConditionFailed {
		t.Fatalf("successor, POST: %s", code)
	}
	for _, own := range []string{"", `request.path == "/a"`} {
		child, ctok, err := f.svc.DeriveKey(ctx, f.admin, succ.ID, keys.CreateParams{Settings: keys.Settings{Condition: &own}})
		if err != nil {
			t.Fatal(err)
		}
		if code := f.verifyReq(t, ctok.Reveal(), "", reqInfo("POST", "/a")); code != latchkey.CodeConditionFailed {
			t.Errorf("child with %q, POST /a: %s (escaped its parent's condition)", own, code)
		}
		if code := f.verifyReq(t, ctok.Reveal(), "", get("/a")); code != latchkey.CodeValid {
			t.Errorf("child with %q, GET /a: %s", own, code)
		}
		// Removing the child's condition keeps the parent's.
		if _, err := f.svc.UpdateKey(ctx, f.admin, child.ID, keys.Settings{Condition: ptr("")}); err != nil {
			t.Fatal(err)
		}
		if code := f.verifyReq(t, ctok.Reveal(), "", reqInfo("POST", "/a")); code != latchkey.CodeConditionFailed {
			t.Errorf("child with its condition removed, POST: %s", code)
		}
	}
}
