package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/identity"
	"github.com/latchkeyhq/latchkey/internal/testenv"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/limit"
	"github.com/latchkeyhq/latchkey/secrets"
	"github.com/latchkeyhq/latchkey/store/sqlite"
	"github.com/latchkeyhq/latchkey/webhook"
	"github.com/pb33f/jsonschema/v6"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"
)

// TestEveryRouteIsDescribed holds the route table and the document's
// descriptions to each other: a route added without a description fails
// here, and so does a description of a route that is not served.
func TestEveryRouteIsDescribed(t *testing.T) {
	served := map[string]Route{}
	for _, rt := range Routes() {
		k := rt.Method + " " + rt.Pattern
		served[k] = rt
		op, ok := operations[k]
		if !ok {
			t.Errorf("route %s has no description in operations (httpapi/openapi.go)", k)
			continue
		}
		names, _ := pathParams(rt.Pattern)
		for _, n := range names {
			if op.path[n].description == "" {
				t.Errorf("%s: path parameter %s is not described", k, n)
			}
		}
		for n := range op.path {
			if !slices.Contains(names, n) {
				t.Errorf("%s describes path parameter %s, which its pattern does not have", k, n)
			}
		}
	}
	ids := map[string]string{forwardAuthOp.id: "forward-auth", "forwardAuthPath": "forward-auth"}
	for k, op := range operations {
		if _, ok := served[k]; !ok {
			t.Errorf("operations describes %s, which the route table does not serve", k)
		}
		if op.id == "" || op.summary == "" || op.status == 0 {
			t.Errorf("%s: the description lacks an id, a summary or a status", k)
		}
		if other, dup := ids[op.id]; dup {
			t.Errorf("operationId %s is both %s's and %s's", op.id, k, other)
		}
		ids[op.id] = k
	}
}

// TestOpenAPIDocumentIsValid checks the served document with a maintained
// OpenAPI library: it parses as OpenAPI 3.1, every reference resolves and
// it validates against the specification's own schema; and every schema
// of its components compiles as JSON Schema 2020-12. It is also the same
// bytes on every build.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	b := openAPIJSON()
	var again bytes.Buffer
	enc := json.NewEncoder(&again)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(openAPIDocument()); err != nil || !bytes.Equal(b, again.Bytes()) {
		t.Fatalf("two builds of the document differ (err %v)", err)
	}
	v := openAPIValidator(t, false)
	if ok, errs := v.ValidateDocument(); !ok {
		for _, e := range errs {
			t.Errorf("document: %s: %s", e.Message, e.Reason)
			for _, se := range e.SchemaValidationErrors {
				t.Errorf("  at %s: %s", se.FieldPath, se.Reason)
			}
		}
	}
	raw, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("openapi.json", raw); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI    string                               `json:"openapi"`
		Paths      map[string]map[string]map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for name := range doc.Components.Schemas {
		if _, err := c.Compile("openapi.json#/components/schemas/" + name); err != nil {
			t.Errorf("schema %s does not compile: %v", name, err)
		}
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	for _, rt := range Routes() {
		_, p := pathParams(rt.Pattern)
		if doc.Paths[p][strings.ToLower(rt.Method)] == nil {
			t.Errorf("the document lacks %s %s", rt.Method, p)
		}
	}
	for _, p := range []string{"/v1/auth", "/v1/auth/{path}"} {
		if doc.Paths[p]["get"] == nil {
			t.Errorf("the document lacks forward-auth at %s", p)
		}
	}
}

// openAPIValidator is a validator of the served document; building it
// compiles every schema, and fails on a reference that does not resolve.
// A strict one also reports a field an object's schema does not list
// (the document's answer objects are open, for clients to tolerate new
// fields, but the server's answers must not hold fields it does not
// describe), except in the objects of free form (maps such as meta).
func openAPIValidator(t *testing.T, strict bool) validator.Validator {
	t.Helper()
	doc, err := libopenapi.NewDocument(openAPIJSON())
	if err != nil {
		t.Fatalf("the document does not parse: %v", err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("the document does not build: %v", err)
	}
	for _, e := range m.Index.GetReferenceIndexErrors() {
		t.Errorf("reference: %v", e)
	}
	for _, e := range m.Index.GetResolver().GetResolvingErrors() {
		t.Errorf("resolving: %v", e)
	}
	opts := []config.Option{config.WithFormatAssertions()}
	if strict {
		var free []string
		for _, name := range []string{"meta", "details", "totals", "counts", "codes", "by_kind", "by_severity", "claims", "jwks"} {
			free = append(free, "$.body."+name+".*", "$.body.**."+name+".*")
		}
		opts = append(opts, config.WithStrictMode(), config.WithStrictIgnorePaths(free...))
	}
	v, errs := validator.NewValidator(doc, opts...)
	if len(errs) > 0 {
		t.Fatalf("no validator for the document: %v", errs)
	}
	return v
}

// traffic sends requests to a test server and checks each request and
// its answer against the served document.
type traffic struct {
	t *testing.T
	// strict checks every exchange, loose the answers of free form.
	strict, loose validator.Validator
	base          string
	// mux finds the route a request reaches, to count what was covered.
	mux     *http.ServeMux
	covered map[string]bool
}

// exchange is one request of the traffic check and what it must get.
type exchange struct {
	method, path string
	key          string // sent as Authorization: Bearer
	apiKey       string // sent as X-API-Key
	header       map[string]string
	body         string
	ctype        string // default application/json when there is a body
	want         int
	// refused: the document itself refuses the request (an unknown
	// field, say); only the answer is checked against it.
	refused bool
	// free: the answer is an object of free form (a map, the document
	// itself), which strict checking would call all undeclared.
	free bool
}

// do sends e, checks it and its answer against the document, and returns
// the answer's body.
func (tr *traffic) do(e exchange) []byte {
	t := tr.t
	t.Helper()
	build := func(base string) *http.Request {
		var body io.Reader
		if e.body != "" {
			body = strings.NewReader(e.body)
		}
		r, err := http.NewRequest(e.method, base+e.path, body)
		if err != nil {
			t.Fatal(err)
		}
		if e.body != "" {
			ct := e.ctype
			if ct == "" {
				ct = "application/json"
			}
			r.Header.Set("Content-Type", ct)
		}
		if e.key != "" {
			r.Header.Set("Authorization", "Bearer "+e.key)
		}
		if e.apiKey != "" {
			r.Header.Set("X-API-Key", e.apiKey)
		}
		for k, v := range e.header {
			r.Header.Set(k, v)
		}
		return r
	}
	resp, err := http.DefaultClient.Do(build(tr.base))
	if err != nil {
		t.Fatalf("%s %s: %v", e.method, e.path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	name := e.method + " " + e.path
	if resp.StatusCode != e.want {
		t.Errorf("%s: %d %s, want %d", name, resp.StatusCode, body, e.want)
	}
	if _, pattern := tr.mux.Handler(build("http://x")); pattern != "" {
		tr.covered[pattern] = true
	}

	req := build("http://x")
	ok, errs := tr.strict.ValidateHttpRequestSync(req)
	switch {
	case e.refused && ok:
		t.Errorf("%s: the document takes a request the server refuses", name)
	case !e.refused && !ok:
		tr.report(name+": request", errs)
	}
	// ndjson answers are checked line by line: the document's schema is
	// each line's.
	parts := [][]byte{body}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-ndjson") {
		parts = bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
	}
	v := tr.strict
	if e.free {
		v = tr.loose
	}
	for _, part := range parts {
		r := *resp
		r.Body = io.NopCloser(bytes.NewReader(part))
		if ok, errs := v.ValidateHttpResponse(build("http://x"), &r); !ok {
			tr.report(name+": answer "+clip(string(part), 300), errs)
		}
	}
	return body
}

func (tr *traffic) report(what string, errs []*verrors.ValidationError) {
	tr.t.Helper()
	for _, e := range errs {
		tr.t.Errorf("%s: %s: %s", what, e.Message, e.Reason)
		for _, se := range e.SchemaValidationErrors {
			tr.t.Errorf("    at %s: %s", se.FieldPath, se.Reason)
		}
	}
}

// field reads a string field of a JSON object.
func field(t *testing.T, body []byte, path ...string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	s, _ := v.(string)
	if s == "" {
		t.Fatalf("no %s in %s", strings.Join(path, "."), body)
	}
	return s
}

// TestTrafficMatchesOpenAPIDocument makes real requests of every kind
// against a server with every service, and checks each request and its
// answer (status, headers, JSON body) against the served document.
func TestTrafficMatchesOpenAPIDocument(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "o.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	master, _ := keyring.GenerateMasterKey()
	kr, err := keyring.Open(ctx, latchkey.Narrow[keyring.Tx](db), master, keyring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sec := secrets.New(secrets.Options{Store: latchkey.Narrow[secrets.Tx](db), Sealer: kr})
	aud := audit.New(audit.Options{Store: latchkey.Narrow[audit.Tx](db), BeforeRead: sec.FlushReadAudits})
	hooks := webhook.NewService(webhook.ServiceOptions{Store: latchkey.Narrow[webhook.Tx](db), Sealer: kr})
	lim := limit.NewMemory(limit.Options{Store: latchkey.Narrow[latchkey.QuotaStore](db)})
	svc := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db), Limiter: lim, Sealer: kr})
	t.Cleanup(func() { sec.Close(ctx); aud.Close(ctx); lim.Close(ctx) })
	rootTok, _, _, err := svc.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	root := rootTok.Reveal()
	ids := identity.New(identity.Options{Store: latchkey.Narrow[identity.Tx](db), Keys: svc, Dial: testenv.LoopbackDialer(t)})
	ts := httptest.NewServer(New(Config{Keys: svc, Secrets: sec, Audit: aud, Webhooks: hooks, Keyring: kr, Identity: ids}))
	t.Cleanup(ts.Close)

	tr := &traffic{t: t, strict: openAPIValidator(t, true), loose: openAPIValidator(t, false), base: ts.URL, mux: http.NewServeMux(), covered: map[string]bool{}}
	for _, rt := range Routes() {
		tr.mux.Handle(rt.Method+" "+rt.Pattern, http.NotFoundHandler())
	}
	const unknownKey = "lk_0000000000000000000000000000000000000000000"
	const missingKey = "key_01JZZZZZZZZZZZZZZZZZZZZZZZ"

	// Open routes.
	tr.do(exchange{method: "GET", path: "/health", want: 200})
	tr.do(exchange{method: "GET", path: "/healthz", want: 200})
	tr.do(exchange{method: "GET", path: "/readyz", want: 200})
	tr.do(exchange{method: "GET", path: "/metrics", want: 404}) // no metrics on this server
	tr.do(exchange{method: "GET", path: "/openapi.json", want: 200, free: true})

	// Tenants, as the operator.
	created := tr.do(exchange{method: "POST", path: "/v1/tenants", key: root, body: `{"id": "acme", "name": "Acme Corp"}`, want: 201})
	admin := field(t, created, "key")
	tr.do(exchange{method: "POST", path: "/v1/tenants", key: root, body: `{"id": "acme"}`, want: 409})
	tr.do(exchange{method: "GET", path: "/v1/tenants?limit=10", key: root, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/tenants", key: admin, want: 403})

	// A key's life.
	created = tr.do(exchange{method: "POST", path: "/v1/keys", key: admin, want: 201, body: `{"name": "billing", "owner": "team-a",
		"environment": "production", "scopes": ["data:read"], "resources": ["agent:*"], "meta": {"team": "a"},
		"ip_allow": ["0.0.0.0/0", "::/0"], "expires_in": "30d", "ratelimits": [{"name": "per_minute", "limit": 100, "window": "1m"}],
		"quota": {"limit": 1000, "period": "30d"}, "time_windows": [{"start": "00:00", "end": "23:59"}]}`})
	id, plain := field(t, created, "id"), field(t, created, "key")
	bare := tr.do(exchange{method: "POST", path: "/v1/keys", key: admin, body: `{"name": "bare"}`, want: 201})
	bareID := field(t, bare, "id")
	tr.do(exchange{method: "GET", path: "/v1/keys?limit=10&owner=team-a", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/keys?state=active&resource=agent:x", apiKey: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/keys/" + id, key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/keys/" + bareID, key: admin, want: 200})
	tr.do(exchange{method: "PATCH", path: "/v1/keys/" + bareID, key: admin, body: `{"owner": "team-b", "expires_at": null, "quota": {"remaining": 5}}`, want: 200})

	tr.do(exchange{method: "POST", path: "/v1/keys/verify", body: `{"key": "` + plain + `", "scopes": ["data:read"], "resource": "agent:x"}`, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/keys/verify", body: `{"key": "` + plain + `", "scopes": ["data:write"]}`, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/keys/verify", body: `{"key": "` + unknownKey + `"}`, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/keys/verify", body: `{"key": "x", "scope": "data:read"}`, want: 400, refused: true})
	tr.do(exchange{method: "GET", path: "/v1/auth?scope=data:read", key: plain, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/auth/upstream?scope=data:read", apiKey: plain, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/auth?scope=data:write", key: plain, want: 403})
	tr.do(exchange{method: "GET", path: "/v1/auth?scope=data:read", key: unknownKey, want: 401})
	tr.do(exchange{method: "GET", path: "/v1/auth?scope=data", key: plain, want: 400})

	child := tr.do(exchange{method: "POST", path: "/v1/keys/" + id + "/derive", key: admin, body: `{"name": "child", "scopes": ["data:read"]}`, want: 201})
	childID := field(t, child, "id")
	tr.do(exchange{method: "GET", path: "/v1/keys/" + childID + "/rotation", key: admin, want: 404})
	tr.do(exchange{method: "PUT", path: "/v1/keys/" + childID + "/rotation", key: admin, body: `{"interval": "30d", "grace_period": "2h"}`, want: 200})
	tr.do(exchange{method: "PUT", path: "/v1/keys/" + childID + "/rotation", key: admin, body: `{"interval": "1m"}`, want: 400})
	tr.do(exchange{method: "GET", path: "/v1/keys/" + childID + "/rotation", key: admin, want: 200})
	tr.do(exchange{method: "DELETE", path: "/v1/keys/" + childID + "/rotation", key: admin, want: 204})
	tr.do(exchange{method: "POST", path: "/v1/keys/" + id + "/suspend", key: admin, body: `{"duration": "1h", "reason": "incident"}`, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/keys/" + childID, key: admin, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/keys/" + id + "/resume", key: admin, want: 200})
	rotated := tr.do(exchange{method: "POST", path: "/v1/keys/" + id + "/rotate", key: admin, body: `{"grace_period": "1h"}`, want: 201})
	tr.do(exchange{method: "POST", path: "/v1/keys/" + id + "/rotate", key: admin, want: 409})
	tr.do(exchange{method: "GET", path: "/v1/keys/" + id, key: admin, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/keys/" + field(t, rotated, "id") + "/revoke", key: admin, body: `{"reason": "done"}`, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/keys/" + bareID + "/revoke", key: admin, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/keys/" + bareID + "/resume", key: admin, want: 409})
	tr.do(exchange{method: "GET", path: "/v1/keys/" + id + "/usage?bucket=minute", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/keys/" + id + "/usage?bucket=week", key: admin, want: 400, refused: true})

	// Errors of every kind.
	tr.do(exchange{method: "GET", path: "/v1/keys", key: unknownKey, want: 401})
	reader := tr.do(exchange{method: "POST", path: "/v1/keys", key: admin, body: `{"name": "reader", "scopes": ["keys:read"]}`, want: 201})
	tr.do(exchange{method: "POST", path: "/v1/keys", key: field(t, reader, "key"), body: `{"name": "x"}`, want: 403})
	tr.do(exchange{method: "GET", path: "/v1/keys/" + missingKey, key: admin, want: 404})
	tr.do(exchange{method: "POST", path: "/v1/keys", key: admin, body: `{"name": "x", "scopes": ["data"]}`, want: 400})
	tr.do(exchange{method: "POST", path: "/v1/keys", key: admin, body: `{"name": "x", "colour": "red"}`, want: 400, refused: true})
	tr.do(exchange{method: "GET", path: "/v1/keys?limit=0", key: admin, want: 400, refused: true})

	// Leases.
	conc := tr.do(exchange{method: "POST", path: "/v1/keys", key: admin, body: `{"name": "conc", "scopes": ["data:read"], "max_concurrent": 2, "lease_ttl": "1m"}`, want: 201})
	concKey := field(t, conc, "key")
	verdict := tr.do(exchange{method: "POST", path: "/v1/keys/verify", body: `{"key": "` + concKey + `", "scopes": ["data:read"]}`, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/leases/" + field(t, verdict, "lease_id") + "/release", key: concKey, want: 204})
	tr.do(exchange{method: "POST", path: "/v1/leases/" + field(t, verdict, "lease_id") + "/release", key: concKey, body: "{}", want: 404})

	// Import, export and apply.
	tr.do(exchange{method: "GET", path: "/v1/keys/export", key: admin, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/keys/import?format=plaintext&owner=legacy&scopes=data:read", key: admin, ctype: "text/plain",
		body: "# legacy keys\nforeign-key-0123456789abcdef\nshort\n", want: 200})
	tr.do(exchange{method: "POST", path: "/v1/keys/import?format=xml", key: admin, ctype: "text/plain", body: "x\n", want: 400, refused: true})
	manifest := `{"app": {"name": "Workspace"}, "agents": [{"name": "dataProcessor", "api_key": {"generate": true, "scopes": ["data:read"], "expires_after": "180d"}}]}`
	tr.do(exchange{method: "POST", path: "/v1/apply?dry_run=true", key: admin, body: manifest, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/apply", key: admin, body: manifest, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/apply?env=production&prune=true", key: admin, ctype: "application/yaml",
		body: "app:\n  name: Workspace\nagents:\n  - name: dataProcessor\n    api_key:\n      generate: true\n      scopes: [data:read]\n      expires_after: 180d\n", want: 200})
	tr.do(exchange{method: "POST", path: "/v1/apply", key: admin, body: `{"app": {"name": "W"}, "agents": [{"name": "a", "api_key": {"generate": true, "expires_after": "9x"}}]}`, want: 400})
	tr.do(exchange{method: "POST", path: "/v1/keys/batch", key: admin, body: `{"op": "revoke", "ids": ["` + childID + `", "` + missingKey + `"], "dry_run": true}`, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/keys/batch", key: admin, body: `{"op": "suspend", "filter": {"owner": "team-a"}, "duration": "1h", "reason": "drill"}`, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/keys/batch", key: admin, body: `{"op": "resume", "filter": {"all": true}}`, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/keys/batch", key: admin, body: `{"op": "rotate", "ids": ["` + childID + `"], "grace_period": "0s"}`, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/keys/batch", key: admin, body: `{"op": "revoke", "filter": {}}`, want: 400})
	tr.do(exchange{method: "POST", path: "/v1/keys/batch", key: admin, body: `{"op": "explode", "ids": []}`, want: 400, refused: true})
	tr.do(exchange{method: "POST", path: "/v1/keys/batch", key: admin, body: `{"op": "resume", "ids": [], "filter": {"all": true}}`, want: 400, refused: true})
	tr.do(exchange{method: "POST", path: "/v1/keys/batch", key: admin, body: `{"op": "resume"}`, want: 400, refused: true})

	// Policies, owners and named costs.
	tr.do(exchange{method: "POST", path: "/v1/policies", key: admin, want: 201, body: `{"name": "llm-svc", "description": "LLM callers",
		"scopes": ["data:read"], "resources": ["agent:*"], "ip_allow": ["0.0.0.0/0"], "time_windows": [{"start": "00:00", "end": "23:59"}],
		"ratelimits": [{"name": "tokens", "limit": 10000, "window": "1h", "apply": "on_request"}], "quota": {"limit": 100000, "period": "30d"},
		"max_concurrent": 4, "expires_after": "90d"}`})
	tr.do(exchange{method: "POST", path: "/v1/policies", key: admin, body: `{"name": "llm-svc"}`, want: 409})
	tr.do(exchange{method: "POST", path: "/v1/policies", key: admin, body: `{"name": "Bad Name"}`, want: 400})
	tr.do(exchange{method: "POST", path: "/v1/policies", key: admin, body: `{"name": "x", "colour": "red"}`, want: 400, refused: true})
	tr.do(exchange{method: "GET", path: "/v1/policies?limit=10", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/policies/production", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/policies/missing", key: admin, want: 404})
	tr.do(exchange{method: "PATCH", path: "/v1/policies/llm-svc", key: admin, body: `{"description": "LLM callers, no quota", "quota": null}`, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/policies/llm-svc", key: admin, want: 200})
	polKey := tr.do(exchange{method: "POST", path: "/v1/keys", key: admin, body: `{"name": "llm", "owner": "acme-llm", "resources": ["agent:x"], "policy": "llm-svc"}`, want: 201})
	tr.do(exchange{method: "POST", path: "/v1/keys/verify", body: `{"key": "` + field(t, polKey, "key") + `", "scopes": ["data:read"], "limits": [{"name": "tokens", "cost": 1200}]}`, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/keys/verify", body: `{"key": "x", "limits": [{"name": "tokens", "cost": -1}]}`, want: 400, refused: true})
	tr.do(exchange{method: "GET", path: "/v1/auth?scope=data:read", key: field(t, polKey, "key"), header: map[string]string{"X-Latchkey-Cost-Tokens": "1200"}, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/auth?scope=data:read", key: field(t, polKey, "key"), header: map[string]string{"X-Latchkey-Cost-Tokens": "lots"}, want: 400, refused: true})
	tr.do(exchange{method: "DELETE", path: "/v1/policies/llm-svc", key: admin, want: 409})
	tr.do(exchange{method: "POST", path: "/v1/keys/batch", key: admin, body: `{"op": "set_policy", "filter": {"policy": "llm-svc"}, "policy": "production", "dry_run": true}`, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/keys/batch", key: admin, body: `{"op": "set_policy", "ids": ["` + field(t, polKey, "id") + `"], "policy": ""}`, want: 200})
	tr.do(exchange{method: "DELETE", path: "/v1/policies/llm-svc", key: admin, want: 204})
	tr.do(exchange{method: "PUT", path: "/v1/owners/acme-llm", key: admin, body: `{"ratelimits": [{"name": "1m", "limit": 100, "window": "1m"}],
		"quota": {"limit": 100000, "period": "30d"}, "meta": {"plan": "pro"}}`, want: 200})
	tr.do(exchange{method: "PUT", path: "/v1/owners/acme-llm", key: admin, body: `{"ratelimits": [{"limit": 0, "window": "1m"}]}`, want: 400, refused: true})
	tr.do(exchange{method: "GET", path: "/v1/owners?limit=10", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/owners/acme-llm?bucket=day", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/owners/acme-llm/usage?bucket=minute", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/owners/nobody%2Fhere", key: admin, want: 404})
	tr.do(exchange{method: "GET", path: "/v1/owners/nobody%2Fhere/usage", key: admin, want: 200})
	tr.do(exchange{method: "DELETE", path: "/v1/owners/acme-llm", key: admin, want: 204})

	// Workload identity.
	identityTraffic(tr, admin)

	// Secrets and the seed routes.
	tr.do(exchange{method: "PUT", path: "/v1/secrets/openai", key: admin, body: `{"value": "sk-proj-0123456789abcdef", "expires_in": 1800, "meta": {"team": "a"}}`, want: 200})
	tr.do(exchange{method: "PUT", path: "/v1/secrets/openai", key: admin, body: `{"value": "sk-proj-fedcba9876543210"}`, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/secrets", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/secrets/openai?version=1", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/secrets/openai/versions", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/keys/openai", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/llm-keys", apiKey: admin, want: 200, free: true})
	tr.do(exchange{method: "GET", path: "/v1/secrets/anthropic", key: admin, want: 404})
	tr.do(exchange{method: "PUT", path: "/v1/secrets/openai", key: admin, body: `{"expires_in": 5}`, want: 400, refused: true})
	tr.do(exchange{method: "DELETE", path: "/v1/secrets/openai", key: admin, want: 204})

	// Webhooks.
	hook := tr.do(exchange{method: "POST", path: "/v1/webhooks", key: admin, body: `{"url": "https://hooks.example.com/latchkey", "events": ["key.created", "key.revoked"]}`, want: 201})
	hookID := field(t, hook, "id")
	tr.do(exchange{method: "POST", path: "/v1/webhooks", key: admin, body: `{"url": "http://127.0.0.1/hook"}`, want: 400})
	tr.do(exchange{method: "GET", path: "/v1/webhooks", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/webhooks/" + hookID, key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/webhooks/" + hookID + "/deliveries?status=failed", key: admin, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/webhooks/" + hookID + "/deliveries/dlv_01JZZZZZZZZZZZZZZZZZZZZZZZ/retry", key: admin, want: 404})
	tr.do(exchange{method: "DELETE", path: "/v1/webhooks/" + hookID, key: admin, want: 204})

	// Audit, security events and reports.
	tr.do(exchange{method: "GET", path: "/v1/audit?limit=50&action=key.created", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/audit/export", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/audit/verify", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/audit?since=yesterday", key: admin, want: 400, refused: true})
	tr.do(exchange{method: "GET", path: "/v1/security-events?limit=10", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/reports/access", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/reports/usage?from=2026-01-01", key: admin, want: 200})
	tr.do(exchange{method: "GET", path: "/v1/reports/security?format=csv", key: admin, want: 200})

	// The keyring, the operator's.
	tr.do(exchange{method: "GET", path: "/v1/keyring", key: root, want: 200})
	tr.do(exchange{method: "POST", path: "/v1/keyring/rotate", key: root, body: "{}", want: 200})
	tr.do(exchange{method: "POST", path: "/v1/keyring/rewrap", key: root, body: `{"new_master_key_file": "relative/path"}`, want: 400})
	tr.do(exchange{method: "GET", path: "/v1/keyring", key: admin, want: 403})

	var missed []string
	for _, rt := range Routes() {
		if k := rt.Method + " " + rt.Pattern; !tr.covered[k] {
			missed = append(missed, k)
		}
	}
	if len(missed) > 0 {
		t.Logf("routes the traffic check does not reach: %s", strings.Join(missed, ", "))
	}
}

// TestTrafficCheckRefusesWhatTheDocumentDoes keeps the traffic check from
// passing vacuously: answers and requests the document does not allow
// are refused by the validator it uses.
func TestTrafficCheckRefusesWhatTheDocumentDoes(t *testing.T) {
	v := openAPIValidator(t, true)
	const key = `{"id": "key_01JZZZZZZZZZZZZZZZZZZZZZZZ", "tenant": "acme", "name": "n", "owner": "", "environment": "",
		"prefix": "lk", "start": "lk_abcd", "scopes": [], "resources": [], "meta": {}, "ip_allow": [], "countries": [],
		"time_windows": [], "ratelimits": [], "state": "active", "created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-01-02T03:04:05Z"`
	get := func() *http.Request {
		r, _ := http.NewRequest("GET", "http://x/v1/keys/key_01JZZZZZZZZZZZZZZZZZZZZZZZ", nil)
		r.Header.Set("Authorization", "Bearer lk_x")
		return r
	}
	answer := func(status int, body string, requestID bool) *http.Response {
		h := http.Header{"Content-Type": {"application/json"}}
		if requestID {
			h.Set("X-Request-Id", "r1")
		}
		return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body))}
	}
	if ok, errs := v.ValidateHttpResponse(get(), answer(200, key+"}", true)); !ok {
		t.Fatalf("a well-formed key answer is refused: %v", errs)
	}
	for name, resp := range map[string]*http.Response{
		"an undescribed field":      answer(200, key+`, "hash": "ab"}`, true),
		"a missing required field":  answer(200, `{"id": "key_01JZZZZZZZZZZZZZZZZZZZZZZZ"}`, true),
		"a state that is none":      answer(200, strings.Replace(key, `"active"`, `"paused"`, 1)+"}", true),
		"no X-Request-Id":           answer(200, key+"}", false),
		"an undescribed status":     answer(418, `{}`, true),
		"a 404 with another code":   answer(404, `{"error": {"code": "invalid", "message": "m", "request_id": "r1"}}`, true),
		"an error body of no shape": answer(404, `{"message": "not found"}`, true),
	} {
		if ok, _ := v.ValidateHttpResponse(get(), resp); ok {
			t.Errorf("an answer with %s is taken", name)
		}
	}
	noKey := get()
	noKey.Header.Del("Authorization")
	if ok, _ := v.ValidateHttpRequestSync(noKey); ok {
		t.Errorf("an admin request without a key is taken")
	}
}
