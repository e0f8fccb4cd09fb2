package testenv

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeAuth answers like API.md's GET /v1/auth, for a fixed set of keys, and
// records what the last auth subrequest carried. The real Latchkey server
// replaces it in the end-to-end test; the assertions below hold for both.
type fakeAuth struct {
	mu   sync.Mutex
	last authSeen
}

// authSeen is what nginx sent in one auth subrequest.
type authSeen struct {
	method, uri, origMethod, origURI string
	scopeHeader                      string
	proxyMode                        string
	bodyLen                          int
}

// fakeKey is how fakeAuth answers for one key. A limit code is answered with
// 429, or with 403 under ?proxy=nginx, exactly as API.md prescribes.
type fakeKey struct {
	id, tenant, owner string
	scopes            []string
	denyCode          string // a verify code that denies regardless of scope
	retryAfter        string
	status            int // answer this status verbatim (a broken server)
}

var fakeKeys = map[string]fakeKey{
	"lk_good":    {id: "key_good", tenant: "acme", owner: "acme_corp", scopes: []string{"data:read", "data:write"}},
	"lk_writer":  {id: "key_writer", tenant: "acme", owner: "acme_corp", scopes: []string{"data:write"}},
	"lk_revoked": {denyCode: "REVOKED"},
	"lk_limited": {denyCode: "RATE_LIMITED", retryAfter: "7"},
	"lk_quota":   {denyCode: "QUOTA_EXCEEDED", retryAfter: "3600"},
	"lk_busy":    {denyCode: "CONCURRENCY_EXCEEDED", retryAfter: "1"},
	"lk_crash":   {status: http.StatusInternalServerError},
}

func (f *fakeAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	q := r.URL.Query()
	f.mu.Lock()
	f.last = authSeen{
		method:      r.Method,
		uri:         r.URL.RequestURI(),
		origMethod:  r.Header.Get("X-Original-Method"),
		origURI:     r.Header.Get("X-Original-URI"),
		scopeHeader: r.Header.Get("X-Latchkey-Scope"),
		proxyMode:   q.Get("proxy"),
		bodyLen:     len(body),
	}
	f.mu.Unlock()

	deny := func(status int, code, retry string) {
		if retry != "" {
			w.Header().Set("Retry-After", retry)
			w.Header().Set("RateLimit-Limit", "100")
			w.Header().Set("RateLimit-Remaining", "0")
			w.Header().Set("RateLimit-Reset", retry)
		}
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="latchkey"`)
		}
		w.Header().Set("X-Latchkey-Code", code)
		w.WriteHeader(status)
	}

	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		key = r.Header.Get("X-API-Key")
	}
	if key == "" {
		deny(http.StatusUnauthorized, "MALFORMED", "")
		return
	}
	k, ok := fakeKeys[key]
	switch {
	case !ok:
		deny(http.StatusUnauthorized, "NOT_FOUND", "")
		return
	case k.status != 0:
		w.WriteHeader(k.status)
		return
	case k.denyCode == "RATE_LIMITED" || k.denyCode == "QUOTA_EXCEEDED" || k.denyCode == "CONCURRENCY_EXCEEDED":
		status := http.StatusTooManyRequests
		if q.Get("proxy") == "nginx" {
			status = http.StatusForbidden
		}
		deny(status, k.denyCode, k.retryAfter)
		return
	case k.denyCode != "":
		deny(http.StatusUnauthorized, k.denyCode, "")
		return
	}
	scopes := q.Get("scope")
	if scopes == "" {
		scopes = r.Header.Get("X-Latchkey-Scope")
	}
	for _, s := range strings.Split(scopes, ",") {
		if s != "" && !contains(k.scopes, s) {
			deny(http.StatusForbidden, "INSUFFICIENT_SCOPE", "")
			return
		}
	}
	h := w.Header()
	h.Set("X-Latchkey-Key-Id", k.id)
	h.Set("X-Latchkey-Tenant", k.tenant)
	h.Set("X-Latchkey-Owner", k.owner)
	h.Set("X-Latchkey-Scopes", strings.Join(k.scopes, ","))
	h.Set("RateLimit-Limit", "100")
	h.Set("RateLimit-Remaining", "99")
	h.Set("RateLimit-Reset", "60")
	w.WriteHeader(http.StatusOK)
}

func (f *fakeAuth) seen() authSeen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// upstreamEcho is what the fake application reports about a request.
type upstreamEcho struct {
	Method, URI, Body, Host      string
	KeyID, Tenant, Owner, Scopes string
	HasAuthorization             bool
}

// fakeApp echoes what it received as JSON; /forbidden answers its own 403.
func fakeApp(hits *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/forbidden" {
			http.Error(w, "app says no", http.StatusForbidden)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(upstreamEcho{
			Method: r.Method, URI: r.URL.RequestURI(), Body: string(body), Host: r.Host,
			KeyID:            r.Header.Get("X-Latchkey-Key-Id"),
			Tenant:           r.Header.Get("X-Latchkey-Tenant"),
			Owner:            r.Header.Get("X-Latchkey-Owner"),
			Scopes:           r.Header.Get("X-Latchkey-Scopes"),
			HasAuthorization: r.Header.Get("Authorization") != "",
		})
	})
}

// newLoopbackServer starts an httptest server on 127.0.0.1 explicitly:
// httptest may pick [::1] where IPv4 is missing, and nothing here may listen
// beyond loopback.
func newLoopbackServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func TestStartNginxForwardAuth(t *testing.T) {
	auth := &fakeAuth{}
	authSrv := newLoopbackServer(t, auth)
	var appHits atomic.Int64
	appSrv := newLoopbackServer(t, fakeApp(&appHits))

	ngx := StartNginx(t, NginxConfig{
		AuthURL:        authSrv.URL + "/v1/auth?scope=data:read",
		UpstreamURL:    appSrv.URL,
		ExtraLocations: "location = /public {\n    return 200 \"public\\n\";\n}",
	})
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)

	tests := []struct {
		name   string
		method string
		path   string
		header map[string]string
		body   string

		wantStatus   int
		wantUpstream bool              // the request reached the application
		wantHeader   map[string]string // response headers; "" means absent
		wantEcho     *upstreamEcho     // compared field by field when set
		wantAuth     *authSeen         // the auth subrequest, when set
		wantBody     string            // substring of the response body
	}{
		{
			name: "ValidBearerKeyReachesUpstreamWithIdentity", method: "GET", path: "/hello?x=1",
			header:     map[string]string{"Authorization": "Bearer lk_good"},
			wantStatus: 200, wantUpstream: true,
			wantHeader: map[string]string{
				"X-Latchkey-Code": "", "Retry-After": "",
				"RateLimit-Limit": "100", "RateLimit-Remaining": "99", "RateLimit-Reset": "60",
			},
			wantEcho: &upstreamEcho{Method: "GET", URI: "/hello?x=1", KeyID: "key_good", Tenant: "acme",
				Owner: "acme_corp", Scopes: "data:read,data:write", HasAuthorization: true},
			wantAuth: &authSeen{method: "GET", uri: "/v1/auth?scope=data:read&proxy=nginx",
				origMethod: "GET", origURI: "/hello?x=1", proxyMode: "nginx"},
		},
		{
			name: "ValidXAPIKeyReachesUpstream", method: "GET", path: "/v1/data",
			header:     map[string]string{"X-API-Key": "lk_good"},
			wantStatus: 200, wantUpstream: true,
			wantEcho: &upstreamEcho{Method: "GET", URI: "/v1/data", KeyID: "key_good", Tenant: "acme",
				Owner: "acme_corp", Scopes: "data:read,data:write"},
		},
		{
			name: "ClientCannotSpoofIdentityOrScope", method: "GET", path: "/whoami",
			header: map[string]string{
				"Authorization":     "Bearer lk_good",
				"X-Latchkey-Tenant": "evil", "X-Latchkey-Key-Id": "key_evil",
				"X-Latchkey-Scope": "nothing:here",
			},
			wantStatus: 200, wantUpstream: true,
			wantEcho: &upstreamEcho{Method: "GET", URI: "/whoami", KeyID: "key_good", Tenant: "acme",
				Owner: "acme_corp", Scopes: "data:read,data:write", HasAuthorization: true},
			wantAuth: &authSeen{method: "GET", uri: "/v1/auth?scope=data:read&proxy=nginx",
				origMethod: "GET", origURI: "/whoami", proxyMode: "nginx", scopeHeader: ""},
		},
		{
			name: "BodyReachesUpstreamButNotAuth", method: "POST", path: "/v1/items",
			header:     map[string]string{"Authorization": "Bearer lk_good", "Content-Type": "text/plain"},
			body:       "hello body",
			wantStatus: 200, wantUpstream: true,
			wantEcho: &upstreamEcho{Method: "POST", URI: "/v1/items", Body: "hello body", KeyID: "key_good",
				Tenant: "acme", Owner: "acme_corp", Scopes: "data:read,data:write", HasAuthorization: true},
			// nginx sends every auth subrequest as a GET: the original
			// method only travels in X-Original-Method.
			wantAuth: &authSeen{method: "GET", uri: "/v1/auth?scope=data:read&proxy=nginx",
				origMethod: "POST", origURI: "/v1/items", proxyMode: "nginx", bodyLen: 0},
		},
		{
			name: "MissingKeyIs401", method: "GET", path: "/",
			wantStatus: 401,
			wantHeader: map[string]string{"X-Latchkey-Code": "MALFORMED", "WWW-Authenticate": `Bearer realm="latchkey"`, "Retry-After": ""},
		},
		{
			name: "UnknownKeyIs401", method: "GET", path: "/",
			header:     map[string]string{"Authorization": "Bearer lk_nobody"},
			wantStatus: 401,
			wantHeader: map[string]string{"X-Latchkey-Code": "NOT_FOUND", "WWW-Authenticate": `Bearer realm="latchkey"`},
		},
		{
			name: "RevokedKeyIs401", method: "GET", path: "/",
			header:     map[string]string{"X-API-Key": "lk_revoked"},
			wantStatus: 401,
			wantHeader: map[string]string{"X-Latchkey-Code": "REVOKED"},
		},
		{
			name: "InsufficientScopeIs403", method: "GET", path: "/",
			header:     map[string]string{"Authorization": "Bearer lk_writer"},
			wantStatus: 403,
			wantHeader: map[string]string{"X-Latchkey-Code": "INSUFFICIENT_SCOPE", "Retry-After": ""},
		},
		{
			name: "RateLimitedIs429", method: "GET", path: "/",
			header:     map[string]string{"Authorization": "Bearer lk_limited"},
			wantStatus: 429,
			wantHeader: map[string]string{"X-Latchkey-Code": "RATE_LIMITED", "Retry-After": "7",
				"RateLimit-Limit": "100", "RateLimit-Remaining": "0", "RateLimit-Reset": "7"},
			wantAuth: &authSeen{method: "GET", uri: "/v1/auth?scope=data:read&proxy=nginx",
				origMethod: "GET", origURI: "/", proxyMode: "nginx"},
		},
		{
			name: "QuotaExceededIs429", method: "POST", path: "/v1/items", body: "x",
			header:     map[string]string{"Authorization": "Bearer lk_quota"},
			wantStatus: 429,
			wantHeader: map[string]string{"X-Latchkey-Code": "QUOTA_EXCEEDED", "Retry-After": "3600"},
		},
		{
			name: "ConcurrencyExceededIs429", method: "GET", path: "/",
			header:     map[string]string{"X-API-Key": "lk_busy"},
			wantStatus: 429,
			wantHeader: map[string]string{"X-Latchkey-Code": "CONCURRENCY_EXCEEDED", "Retry-After": "1"},
		},
		{
			name: "ApplicationForbiddenPassesThroughUntouched", method: "GET", path: "/forbidden",
			header:     map[string]string{"Authorization": "Bearer lk_good"},
			wantStatus: 403, wantUpstream: true,
			wantHeader: map[string]string{"X-Latchkey-Code": ""},
			wantBody:   "app says no",
		},
		{
			// nginx's documented behaviour; Latchkey must never answer 5xx
			// for a bad key, and this shows why.
			name: "AuthServerErrorIs500", method: "GET", path: "/",
			header:     map[string]string{"Authorization": "Bearer lk_crash"},
			wantStatus: 500,
		},
		{
			name: "AuthLocationIsNotReachableFromOutside", method: "GET", path: "/_latchkey_auth",
			header:     map[string]string{"Authorization": "Bearer lk_good"},
			wantStatus: 404,
		},
		{
			name: "ExtraLocationsAreServed", method: "GET", path: "/public",
			wantStatus: 200, wantBody: "public",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := appHits.Load()
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequest(tc.method, ngx.URL+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			respBody, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}

			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d; headers %v; body %q", resp.StatusCode, tc.wantStatus, resp.Header, respBody)
			}
			if reached := appHits.Load() > before; reached != tc.wantUpstream {
				t.Errorf("reached upstream = %v, want %v", reached, tc.wantUpstream)
			}
			for k, want := range tc.wantHeader {
				if got := resp.Header.Values(k); (want == "" && len(got) != 0) || (want != "" && (len(got) != 1 || got[0] != want)) {
					t.Errorf("response header %s = %q, want %q", k, got, want)
				}
			}
			if tc.wantBody != "" && !strings.Contains(string(respBody), tc.wantBody) {
				t.Errorf("body = %q, want it to contain %q", respBody, tc.wantBody)
			}
			if tc.wantEcho != nil {
				var got upstreamEcho
				if err := json.Unmarshal(respBody, &got); err != nil {
					t.Fatalf("upstream answer %q: %v", respBody, err)
				}
				got.Host = "" // nginx passes the client's Host; not part of the contract
				if got != *tc.wantEcho {
					t.Errorf("upstream saw\n %+v\nwant\n %+v", got, *tc.wantEcho)
				}
			}
			if tc.wantAuth != nil {
				if got := auth.seen(); got != *tc.wantAuth {
					t.Errorf("auth subrequest was\n %+v\nwant\n %+v", got, *tc.wantAuth)
				}
			}
		})
	}
}

// TestFakeAuthAnswersLimitsWith429WithoutProxyMode pins the half of the
// contract that the nginx test cannot see: outside ?proxy=nginx a limit is a
// plain 429, which is why NginxSnippet insists on proxy=nginx.
func TestFakeAuthAnswersLimitsWith429WithoutProxyMode(t *testing.T) {
	srv := newLoopbackServer(t, &fakeAuth{})
	req, _ := http.NewRequest("GET", srv.URL+"/v1/auth?scope=data:read", nil)
	req.Header.Set("Authorization", "Bearer lk_limited")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "7" {
		t.Fatalf("status %d Retry-After %q, want 429 and 7", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestStartNginxStopsWhenTestEnds(t *testing.T) {
	app := newLoopbackServer(t, http.NotFoundHandler())
	var ngx *Nginx
	t.Run("Start", func(t *testing.T) {
		ngx = StartNginx(t, NginxConfig{AuthURL: app.URL + "/v1/auth", UpstreamURL: app.URL})
	})
	if ngx == nil {
		t.Skip("nginx did not start (see the subtest)")
	}
	select {
	case <-ngx.done:
	default:
		t.Fatal("nginx still running after its test ended")
	}
	addr := strings.TrimPrefix(ngx.URL, "http://")
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after nginx stopped", addr)
	}
}

func TestNginxSnippet(t *testing.T) {
	tests := []struct {
		name, authURL, appURL string
		want                  []string // lines the snippet must contain
	}{
		{
			name:    "AddsProxyModeAndKeepsScopes",
			authURL: "http://127.0.0.1:8080/v1/auth?scope=data:read", appURL: "http://127.0.0.1:9000",
			want: []string{
				"proxy_pass http://latchkey_auth/v1/auth?scope=data:read&proxy=nginx;",
				"server 127.0.0.1:8080;", "server 127.0.0.1:9000;",
				"proxy_pass http://latchkey_app;", "listen 80;",
				"RATE_LIMITED         429;", "error_page 403 = @latchkey_denied;",
			},
		},
		{
			name:    "KeepsExplicitProxyMode",
			authURL: "http://auth.internal/v1/auth?proxy=nginx&scope=a,b&resource=agent:x", appURL: "https://app.internal/base/",
			want: []string{
				"proxy_pass http://latchkey_auth/v1/auth?proxy=nginx&scope=a,b&resource=agent:x;",
				"server auth.internal:80;", "proxy_set_header Host              auth.internal;",
				"server app.internal:443;", "proxy_pass https://latchkey_app/base/;", "proxy_ssl_name app.internal;",
			},
		},
		{
			name:    "NoQuery",
			authURL: "http://[::1]:8080/v1/auth", appURL: "http://127.0.0.1:9000",
			want: []string{"server [::1]:8080;", "proxy_pass http://latchkey_auth/v1/auth?proxy=nginx;"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NginxSnippet(tc.authURL, tc.appURL)
			for _, w := range tc.want {
				if !strings.Contains(s, w) {
					t.Errorf("snippet lacks %q:\n%s", w, s)
				}
			}
		})
	}
}

func TestNginxSnippetRejectsUnusableURLs(t *testing.T) {
	tests := []struct{ name, authURL, appURL string }{
		{"RelativeAuthURL", "/v1/auth", "http://127.0.0.1:9000"},
		{"OtherProxyMode", "http://127.0.0.1:8080/v1/auth?proxy=traefik", "http://127.0.0.1:9000"},
		{"UpstreamWithQuery", "http://127.0.0.1:8080/v1/auth", "http://127.0.0.1:9000/?a=b"},
		{"VariableInURL", "http://127.0.0.1:8080/v1/auth?scope=$x", "http://127.0.0.1:9000"},
		{"SemicolonInURL", "http://127.0.0.1:8080/v1/auth?scope=a;b", "http://127.0.0.1:9000"},
		{"NotHTTP", "ftp://127.0.0.1/v1/auth", "http://127.0.0.1:9000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("NginxSnippet(%q, %q) did not panic", tc.authURL, tc.appURL)
				}
			}()
			NginxSnippet(tc.authURL, tc.appURL)
		})
	}
}

func TestFreePortIsBindable(t *testing.T) {
	port := FreePort(t)
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("port %d from FreePort: %v", port, err)
	}
	ln.Close()
}

// recordTB stands in for a test so that Require's Fatalf and Skipf can be
// observed; like the real ones, they end the calling goroutine.
type recordTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordTB) Helper() {}
func (r *recordTB) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recordTB) Skipf(format string, args ...any) {
	r.skip = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestRequire(t *testing.T) {
	tests := []struct {
		name, env           string
		wantFatal, wantSkip bool
	}{
		{name: "FailsWhenRequired", env: "1", wantFatal: true},
		{name: "SkipsByDefault", env: "", wantSkip: true},
		{name: "SkipsUnlessExactlyOne", env: "true", wantSkip: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(RequireEnv, tc.env)
			rec := &recordTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Require(rec, "frobnicator (apt-get install -y frob)")
			}()
			<-done
			if (rec.fatal != "") != tc.wantFatal || (rec.skip != "") != tc.wantSkip {
				t.Fatalf("fatal %q, skip %q; want fatal %v, skip %v", rec.fatal, rec.skip, tc.wantFatal, tc.wantSkip)
			}
			if msg := rec.fatal + rec.skip; !strings.Contains(msg, "frobnicator (apt-get install -y frob)") {
				t.Errorf("message %q does not say what is missing", msg)
			}
		})
	}
}

// TestDocsShipTheTestedSnippet keeps docs/forward-auth.md true: the nginx
// configuration it shows is exactly what the forward-auth tests run.
func TestDocsShipTheTestedSnippet(t *testing.T) {
	b, err := os.ReadFile("../../docs/forward-auth.md")
	if err != nil {
		t.Fatal(err)
	}
	want := NginxSnippet("http://127.0.0.1:8080/v1/auth?scope=data:read", "http://127.0.0.1:3000")
	if !strings.Contains(string(b), "```nginx\n"+strings.TrimRight(want, "\n")+"\n```") {
		t.Fatal("docs/forward-auth.md does not contain NginxSnippet's output for its example addresses; regenerate the block between the nginx-snippet markers")
	}
}

// TestDocsShipTheTestedCaddySnippet: the Caddy site block the docs show is
// exactly what TestE2ECaddyForwardAuth runs.
func TestDocsShipTheTestedCaddySnippet(t *testing.T) {
	b, err := os.ReadFile("../../docs/forward-auth.md")
	if err != nil {
		t.Fatal(err)
	}
	want := CaddySnippet("api.example.com", "127.0.0.1:8080", "/v1/auth?scope=data:read", "127.0.0.1:3000")
	if !strings.Contains(string(b), "```caddyfile\n"+want+"```") {
		t.Fatal("docs/forward-auth.md does not contain CaddySnippet's output for its example addresses; regenerate the block between the caddy-snippet markers")
	}
}

// CaddySnippet refuses what a Caddyfile cannot hold rather than writing a
// configuration that means something else.
func TestCaddySnippetRejectsWhatACaddyfileCannotHold(t *testing.T) {
	for _, bad := range []string{"", "a b", "x{", "a\nb", "a#b", "a\"b"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("CaddySnippet accepted %q", bad)
				}
			}()
			CaddySnippet("api.example.com", bad, "/v1/auth", "127.0.0.1:3000")
		}()
	}
}

// TestNginxConf: the whole nginx.conf for programs outside tests
// (scripts/bench) carries the documented snippet with its listen address
// and extra locations, keeps nginx's files in dir, and nginx accepts it.
func TestNginxConf(t *testing.T) {
	dir := t.TempDir()
	auth, app := "http://127.0.0.1:8080/v1/auth?scope=data:read", "http://127.0.0.1:9000"
	conf, err := NginxConf(dir, "127.0.0.1:18080", NginxConfig{
		AuthURL: auth, UpstreamURL: app, ExtraLocations: "location /direct/ { proxy_pass http://latchkey_app; }", NoAccessLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	snippet := strings.Replace(NginxSnippet(auth, app), "listen 80;", "listen 127.0.0.1:18080;", 1)
	for _, line := range strings.Split(snippet, "\n") {
		if !strings.Contains(conf, strings.TrimSpace(line)) {
			t.Errorf("nginx.conf lacks the snippet's line %q", line)
		}
	}
	for _, want := range []string{"location /direct/ {", "access_log off;", `pid "` + filepath.Join(dir, "nginx.pid") + `";`} {
		if !strings.Contains(conf, want) {
			t.Errorf("nginx.conf lacks %q:\n%s", want, conf)
		}
	}
	if _, err := NginxConf(dir, "127.0.0.1:1; evil", NginxConfig{AuthURL: auth, UpstreamURL: app}); err == nil {
		t.Error("NginxConf took a listen address nginx.conf cannot hold")
	}

	bin := findNginx()
	if bin == "" {
		Require(t, "nginx at "+nginxBin+" (apt-get install -y nginx)")
		return
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-p", dir, "-c", path).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}
