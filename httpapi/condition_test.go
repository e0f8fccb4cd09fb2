package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
)

// conditionKey creates an acme key with the condition over HTTP and
// returns its plaintext.
func (p *policyServer) conditionKey(cond string) string {
	p.t.Helper()
	body := `{"name": "conditioned", "scopes": ["data:read"], "condition": ` + quoteJSON(cond) + `}`
	created := p.do(p.admin, "POST", "/v1/keys", body, 201)
	return str(p.t, created, "key")
}

func quoteJSON(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func TestVerifyWithRequestObjectAppliesTheCondition(t *testing.T) {
	p := newPolicyServer(t)
	key := p.conditionKey(`request.method in ["GET","HEAD"] && request.path.startsWith("/reports/") && request.headers["x-team"] == "payments"`)
	for _, c := range []struct {
		request, want string
	}{
		{`{"method": "GET", "path": "/reports/q1", "host": "api.example.com", "headers": {"X-Team": "payments"}}`, latchkey.CodeValid},
		{`{"method": "HEAD", "path": "/reports/", "headers": {"x-team": "payments"}}`, latchkey.CodeValid},
		{`{"method": "POST", "path": "/reports/q1", "headers": {"X-Team": "payments"}}`, latchkey.CodeConditionFailed},
		{`{"method": "GET", "path": "/admin", "headers": {"X-Team": "payments"}}`, latchkey.CodeConditionFailed},
		{`{"method": "GET", "path": "/reports/q1", "headers": {"X-Team": "growth"}}`, latchkey.CodeConditionFailed},
		{`{"method": "GET", "path": "/reports/q1"}`, latchkey.CodeConditionFailed},
		{`null`, latchkey.CodeConditionFailed},
	} {
		got := p.verify(`{"key": "` + key + `", "scopes": ["data:read"], "request": ` + c.request + `}`)
		if got["code"] != c.want || got["valid"] != (c.want == latchkey.CodeValid) {
			t.Errorf("request %s: %v, want %s", c.request, got, c.want)
		}
	}
	// Without a request object the condition sees empty strings.
	if got := p.verify(`{"key": "` + key + `"}`); got["code"] != latchkey.CodeConditionFailed {
		t.Errorf("no request: %v", got)
	}
	// A key without a condition ignores the request object.
	plain := str(t, p.do(p.admin, "POST", "/v1/keys", `{"name": "plain"}`, 201), "key")
	if got := p.verify(`{"key": "` + plain + `", "request": {"method": "DELETE"}}`); got["code"] != latchkey.CodeValid {
		t.Errorf("plain key with a request: %v", got)
	}
	// A malformed request object is invalid, as every malformed body.
	for _, bad := range []string{`{"method": 1}`, `{"headers": {"x": 1}}`, `{"nope": "x"}`, `"GET"`} {
		got := p.do("", "POST", "/v1/keys/verify", `{"key": "`+key+`", "request": `+bad+`}`, 400)
		if errCode(got) != latchkey.EInvalid {
			t.Errorf("request %s: %v, want invalid", bad, got)
		}
	}
}

func TestConditionIsRefusedAtSaveWithItsPosition(t *testing.T) {
	p := newPolicyServer(t)
	got := p.do(p.admin, "POST", "/v1/keys", `{"name": "bad", "condition": "request.method == \"GET\" &&\n request.path =="}`, 400)
	e, _ := got["error"].(map[string]any)
	if errCode(got) != latchkey.EInvalid || !strings.Contains(e["message"].(string), "2:") {
		t.Fatalf("bad condition: %v", got)
	}
	got = p.do(p.admin, "POST", "/v1/policies", `{"name": "readers", "condition": "request.method in"}`, 400)
	if errCode(got) != latchkey.EInvalid {
		t.Fatalf("bad policy condition: %v", got)
	}
	// A good one is kept and shown.
	pol := p.do(p.admin, "POST", "/v1/policies", `{"name": "readers", "condition": "request.method == \"GET\""}`, 201)
	if pol["condition"] != `request.method == "GET"` {
		t.Fatalf("policy: %v", pol)
	}
	created := p.do(p.admin, "POST", "/v1/keys", `{"name": "k", "policy": "readers", "condition": "request.path == \"/a\""}`, 201)
	id := str(t, created, "id")
	shown := p.do(p.admin, "GET", "/v1/keys/"+id, "", 200)
	if shown["condition"] != `request.path == "/a"` {
		t.Fatalf("key: %v", shown)
	}
	key := str(t, created, "key")
	for req, want := range map[string]string{
		`{"method": "GET", "path": "/a"}`:  latchkey.CodeValid,
		`{"method": "POST", "path": "/a"}`: latchkey.CodeConditionFailed,
		`{"method": "GET", "path": "/b"}`:  latchkey.CodeConditionFailed,
	} {
		if got := p.verify(`{"key": "` + key + `", "request": ` + req + `}`); got["code"] != want {
			t.Errorf("%s: %v, want %s", req, got, want)
		}
	}
	// PATCH removes the key's own; the policy's still holds.
	p.do(p.admin, "PATCH", "/v1/keys/"+id, `{"condition": ""}`, 200)
	if got := p.verify(`{"key": "` + key + `", "request": {"method": "GET", "path": "/b"}}`); got["code"] != latchkey.CodeValid {
		t.Errorf("after removing the key's condition: %v", got)
	}
}

// authWith sends a forward-auth request with key and the headers and
// returns the answer.
func (p *policyServer) authWith(key, method, path string, header ...string) *http.Response {
	p.t.Helper()
	req, err := http.NewRequest(method, p.base+path, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1] // net/http sends req.Host, not a Host header
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestForwardAuthPassesTheOriginalRequestToConditions(t *testing.T) {
	p := newPolicyServer(t)
	key := p.conditionKey(`request.method in ["GET","HEAD"] && request.path.startsWith("/reports/") && request.host == "app.example.com"`)
	for _, c := range []struct {
		name, method, path string
		header             []string
		want               int
	}{
		{"nginx GET", "GET", "/v1/auth?proxy=nginx", []string{"X-Original-Method", "GET", "X-Original-URI", "/reports/q1?x=1", "Host", "app.example.com"}, 200},
		{"nginx POST", "GET", "/v1/auth?proxy=nginx", []string{"X-Original-Method", "POST", "X-Original-URI", "/reports/q1", "Host", "app.example.com"}, 403},
		{"nginx other path", "GET", "/v1/auth", []string{"X-Original-Method", "GET", "X-Original-URI", "/admin/reports/", "Host", "app.example.com"}, 403},
		{"Traefik GET", "GET", "/v1/auth", []string{"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/reports/x", "X-Forwarded-Host", "app.example.com"}, 200},
		{"Traefik DELETE", "GET", "/v1/auth", []string{"X-Forwarded-Method", "DELETE", "X-Forwarded-Uri", "/reports/x", "X-Forwarded-Host", "app.example.com"}, 403},
		{"Envoy HEAD", "HEAD", "/v1/auth/reports/q1", []string{"Host", "app.example.com"}, 200},
		{"Envoy POST", "POST", "/v1/auth/reports/q1", []string{"Host", "app.example.com"}, 403},
		{"Envoy other host", "GET", "/v1/auth/reports/q1", []string{"Host", "evil.example.com"}, 403},
	} {
		resp := p.authWith(key, c.method, c.path, c.header...)
		code := resp.Header.Get("X-Latchkey-Code")
		if resp.StatusCode != c.want || c.want == 403 && code != latchkey.CodeConditionFailed {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, code, c.want)
		}
	}
}
