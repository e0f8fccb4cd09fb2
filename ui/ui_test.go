package ui_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

func TestSignIn(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	_, reader := f.createKey("reader", "ops", "keys:read")
	_, product := f.createKey("product", "ops", "orders:read")
	_, self := f.createKey("alice-self", "alice", "self:manage")
	_, ownerless := f.createKey("nobody-self", "", "self:manage")
	revokedKey, revoked := f.createKey("gone", "ops", "keys:read")
	if _, err := f.keys.RevokeKey(context.Background(), f.admin, revokedKey.ID, "test"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		key      string
		wantCode int
		wantLoc  string
	}{
		{"AdminKeyOpensTheDashboard", f.adminKey, http.StatusSeeOther, "/ui/"},
		{"ReadOnlyAdminKeyOpensTheDashboard", reader, http.StatusSeeOther, "/ui/"},
		{"SelfManageKeyOpensThePortal", self, http.StatusSeeOther, "/ui/portal/keys"},
		{"UnknownKeyRefused", "lk_notakeyatall0000000000000000000000000000", http.StatusUnauthorized, ""},
		{"EmptyKeyRefused", "", http.StatusUnauthorized, ""},
		{"RevokedKeyRefused", revoked, http.StatusUnauthorized, ""},
		{"ProductKeyForbidden", product, http.StatusForbidden, ""},
		{"SelfManageWithoutOwnerForbidden", ownerless, http.StatusForbidden, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := f.browser()
			code, loc, _ := b.post("/ui/login", url.Values{"key": {tt.key}})
			if code != tt.wantCode || loc != tt.wantLoc {
				t.Fatalf("sign-in = %d → %q, want %d → %q", code, loc, tt.wantCode, tt.wantLoc)
			}
			home := "/ui/"
			if tt.wantLoc != "" {
				home = tt.wantLoc
			}
			code, _, _ = b.get(home)
			if want := map[bool]int{true: http.StatusOK, false: http.StatusSeeOther}[tt.wantLoc != ""]; code != want {
				t.Errorf("GET %s after sign-in = %d, want %d", home, code, want)
			}
		})
	}
}

func TestFailedSignInsCountInTheGuard(t *testing.T) {
	f := newFixture(t, fixtureOptions{guard: newGuard(t)})
	b := f.browser()
	for i := range 3 {
		if code, _, _ := b.post("/ui/login", url.Values{"key": {"lk_wrong" + strings.Repeat("x", i+30)}}); code != http.StatusUnauthorized {
			t.Fatalf("bad sign-in %d = %d, want 401", i, code)
		}
	}
	// The network is now held back: even the right key cannot sign in.
	if code, _, _ := b.post("/ui/login", url.Values{"key": {f.adminKey}}); code != http.StatusTooManyRequests {
		t.Fatalf("sign-in from a blocked network = %d, want 429", code)
	}
}

func TestPostWithoutCSRFTokenRefused(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	target, _ := f.createKey("target", "ops")
	b := f.browser()
	b.signIn(f.adminKey)
	token := b.csrf()
	tests := []struct {
		name     string
		path     string
		form     url.Values
		wantCode int
	}{
		{"CreateWithoutToken", "/ui/keys/new", url.Values{"name": {"x"}}, http.StatusForbidden},
		{"CreateWithWrongToken", "/ui/keys/new", url.Values{"name": {"x"}, "csrf": {token + "x"}}, http.StatusForbidden},
		{"RevokeWithoutToken", "/ui/keys/" + target.ID + "/revoke", url.Values{"confirm": {"yes"}}, http.StatusForbidden},
		{"BatchWithoutToken", "/ui/keys/batch", url.Values{"op": {"revoke"}, "id": {target.ID}, "confirm": {"yes"}}, http.StatusForbidden},
		{"SignOutWithoutToken", "/ui/logout", url.Values{}, http.StatusForbidden},
		{"CreateWithToken", "/ui/keys/new", url.Values{"name": {"x"}, "csrf": {token}}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, _, _ := b.post(tt.path, tt.form); code != tt.wantCode {
				t.Fatalf("POST %s = %d, want %d", tt.path, code, tt.wantCode)
			}
		})
	}
	k, err := f.keys.GetKey(context.Background(), f.admin, target.ID)
	if err != nil || k.StateAt(f.clock.Now()) != latchkey.StateActive {
		t.Fatalf("the target key after refused posts: %v, %v; want it active", k, err)
	}
	// A POST from another origin is refused even with the token.
	req, _ := http.NewRequest("POST", f.srv.URL+"/ui/keys/new", strings.NewReader(url.Values{"name": {"y"}, "csrf": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if code, _, _ := b.do(req); code != http.StatusForbidden {
		t.Errorf("cross-origin POST = %d, want 403", code)
	}
}

func TestPortalSeesOnlyItsOwnersKeys(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	_, self := f.createKey("alice-self", "alice", "self:manage")
	mine, _ := f.createKey("alice-app", "alice", "orders:read")
	theirs, _ := f.createKey("bob-app", "bob", "orders:read")
	strong, _ := f.createKey("alice-admin", "alice", "keys:write")
	b := f.browser()
	b.signIn(self)
	token := b.csrf()

	code, _, body := b.get("/ui/portal/keys")
	if code != http.StatusOK || !strings.Contains(body, mine.ID) || strings.Contains(body, theirs.ID) {
		t.Fatalf("portal list = %d, has own key %v, has bob's %v; want 200, true, false", code, strings.Contains(body, mine.ID), strings.Contains(body, theirs.ID))
	}
	tests := []struct {
		name     string
		method   string
		path     string
		wantCode int
	}{
		{"OwnKeyShown", "GET", "/ui/portal/keys/" + mine.ID, http.StatusOK},
		{"OtherOwnersKeyNotFound", "GET", "/ui/portal/keys/" + theirs.ID, http.StatusNotFound},
		{"MissingKeyNotFound", "GET", "/ui/portal/keys/key_00000000000000000000000000", http.StatusNotFound},
		{"OtherOwnersKeyCannotBeRevoked", "POST", "/ui/portal/keys/" + theirs.ID + "/revoke", http.StatusNotFound},
		{"OtherOwnersKeyCannotBeRotated", "POST", "/ui/portal/keys/" + theirs.ID + "/rotate", http.StatusNotFound},
		{"AdminPagesForbidden", "GET", "/ui/keys/" + theirs.ID, http.StatusForbidden},
		{"AdminListForbidden", "GET", "/ui/keys", http.StatusForbidden},
		{"StrongerKeyCannotBeRotated", "POST", "/ui/portal/keys/" + strong.ID + "/rotate", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			if tt.method == "GET" {
				code, _, _ = b.get(tt.path)
			} else {
				code, _, _ = b.post(tt.path, url.Values{"csrf": {token}, "confirm": {"yes"}})
			}
			if code != tt.wantCode {
				t.Fatalf("%s %s = %d, want %d", tt.method, tt.path, code, tt.wantCode)
			}
		})
	}
	if k, _ := f.keys.GetKey(context.Background(), f.admin, theirs.ID); k.StateAt(f.clock.Now()) != latchkey.StateActive {
		t.Errorf("bob's key is %s after the portal's refused posts, want active", k.StateAt(f.clock.Now()))
	}
	// Its own key: rotate with a grace period shows the successor once.
	code, _, body = b.post("/ui/portal/keys/"+mine.ID+"/rotate", url.Values{"csrf": {token}, "confirm": {"yes"}, "grace": {"2h"}})
	if code != http.StatusOK || !strings.Contains(body, `id="plaintext"`) {
		t.Fatalf("portal rotate = %d, want 200 with the successor's key", code)
	}
	old, _ := f.keys.GetKey(context.Background(), f.admin, mine.ID)
	if old.RotatedTo == "" || !old.GraceUntil.Equal(f.clock.Now().Add(2*time.Hour)) {
		t.Errorf("rotated key: successor %q, grace until %v; want a successor and grace of 2h", old.RotatedTo, old.GraceUntil)
	}
	code, loc, _ := b.post("/ui/portal/keys/"+old.RotatedTo+"/revoke", url.Values{"csrf": {token}, "confirm": {"yes"}})
	if code != http.StatusSeeOther || loc != "/ui/portal/keys/"+old.RotatedTo {
		t.Fatalf("portal revoke = %d → %q", code, loc)
	}
	if k, _ := f.keys.GetKey(context.Background(), f.admin, old.RotatedTo); k.State != latchkey.StateRevoked {
		t.Errorf("successor after the portal's revoke is %s", k.State)
	}
}

func TestSignOutEndsTheSession(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	b := f.browser()
	b.signIn(f.adminKey)
	u, _ := url.Parse(f.srv.URL + "/ui/")
	cookies := b.c.Jar.Cookies(u)
	if len(cookies) != 1 {
		t.Fatalf("cookies after sign-in: %d, want 1", len(cookies))
	}
	token := b.csrf()
	if code, loc, _ := b.post("/ui/logout", url.Values{"csrf": {token}}); code != http.StatusSeeOther || loc != "/ui/login" {
		t.Fatalf("sign-out = %d → %q", code, loc)
	}
	if code, loc, _ := b.get("/ui/keys"); code != http.StatusSeeOther || loc != "/ui/login" {
		t.Fatalf("GET /ui/keys after sign-out = %d → %q, want the sign-in page", code, loc)
	}
	// The old cookie, replayed, is worth nothing: the session is gone
	// from the store.
	replay := f.browser()
	replay.c.Jar.SetCookies(u, cookies)
	if code, _, _ := replay.get("/ui/keys"); code != http.StatusSeeOther {
		t.Fatalf("replayed cookie after sign-out = %d, want 303 to sign in", code)
	}
}

func TestSessionEndsWithItsKey(t *testing.T) {
	ctx := context.Background()
	for _, end := range []string{"revoke", "suspend"} {
		t.Run(end, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{})
			k, plain := f.createKey("ops-admin", "ops", "keys:read")
			b := f.browser()
			b.signIn(plain)
			if code, _, _ := b.get("/ui/keys"); code != http.StatusOK {
				t.Fatalf("GET /ui/keys = %d", code)
			}
			var err error
			if end == "revoke" {
				_, err = f.keys.RevokeKey(ctx, f.admin, k.ID, "left")
			} else {
				_, err = f.keys.SuspendKey(ctx, f.admin, k.ID, 0, "paused")
			}
			if err != nil {
				t.Fatal(err)
			}
			if code, loc, _ := b.get("/ui/keys"); code != http.StatusSeeOther || loc != "/ui/login" {
				t.Fatalf("GET /ui/keys after the key's %s = %d → %q, want the sign-in page", end, code, loc)
			}
		})
	}
}

func TestSessionExpires(t *testing.T) {
	t.Run("Idle", func(t *testing.T) {
		f := newFixture(t, fixtureOptions{})
		b := f.browser()
		b.signIn(f.adminKey)
		f.clock.Advance(29 * time.Minute)
		if code, _, _ := b.get("/ui/"); code != http.StatusOK {
			t.Fatalf("after 29 idle minutes: %d, want 200", code)
		}
		f.clock.Advance(29 * time.Minute) // 29 minutes since the last use
		if code, _, _ := b.get("/ui/"); code != http.StatusOK {
			t.Fatalf("29 minutes after the last use: %d, want 200 (use moves the idle end)", code)
		}
		f.clock.Advance(31 * time.Minute)
		if code, loc, _ := b.get("/ui/"); code != http.StatusSeeOther || loc != "/ui/login" {
			t.Fatalf("after 31 idle minutes: %d → %q, want the sign-in page", code, loc)
		}
	})
	t.Run("Absolute", func(t *testing.T) {
		f := newFixture(t, fixtureOptions{maxAge: 2 * time.Hour})
		b := f.browser()
		b.signIn(f.adminKey)
		for range 5 { // used every 20 minutes: 1h40m
			f.clock.Advance(20 * time.Minute)
			if code, _, _ := b.get("/ui/"); code != http.StatusOK {
				t.Fatalf("at %v: %d, want 200", f.clock.Now().Sub(t0), code)
			}
		}
		f.clock.Advance(20 * time.Minute) // 2h after sign-in
		if code, _, _ := b.get("/ui/"); code != http.StatusSeeOther {
			t.Fatalf("2h after sign-in, though in use: %d, want 303 to sign in", code)
		}
	})
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	k, _ := f.createKey("app", "ops")
	b := f.browser()
	code, _, _ := b.post("/ui/login", url.Values{"key": {f.adminKey}})
	if code != http.StatusSeeOther {
		t.Fatal(code)
	}
	resp := b.pages[len(b.pages)-1]
	cookie := resp.header.Get("Set-Cookie")
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/ui/"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("session cookie %q lacks %s", cookie, want)
		}
	}
	if strings.Contains(cookie, "Secure") {
		t.Errorf("session cookie %q is Secure on plain HTTP (the browser would drop it)", cookie)
	}
	for _, p := range []string{"/ui/login", "/ui/", "/ui/keys", "/ui/keys/" + k.ID, "/ui/keys/new", "/ui/nowhere"} {
		b.get(p)
		h := b.pages[len(b.pages)-1].header
		want := map[string]string{
			"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "same-origin",
			"Cache-Control":           "no-store",
		}
		for name, v := range want {
			if got := h.Get(name); got != v {
				t.Errorf("%s: %s = %q, want %q", p, name, got, v)
			}
		}
	}
	// Pages have no inline script or style for the CSP to block.
	for _, pg := range b.pages {
		for _, bad := range []string{"<script>", " style=", "<style", "onclick=", "onsubmit="} {
			if strings.Contains(pg.body, bad) {
				t.Errorf("%s holds %q, which the CSP forbids", pg.path, bad)
			}
		}
	}
}

func TestSecureCookieUnderTLS(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	tlsSrv := newTLSServer(t, f)
	c := tlsSrv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.PostForm(tlsSrv.URL+"/ui/login", url.Values{"key": {f.adminKey}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cookie := resp.Header.Get("Set-Cookie"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(cookie, "Secure") {
		t.Fatalf("sign-in over TLS = %d with cookie %q, want 303 and a Secure cookie", resp.StatusCode, cookie)
	}
}

// TestNoPageShowsAPlaintextKeyButTheResult walks every page of a session
// that creates, rotates and derives keys, and scans all HTML served: a
// plaintext key appears only on the answer to the POST that made it,
// which is not cached.
func TestNoPageShowsAPlaintextKeyButTheResult(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	parent, parentKey := f.createKey("parent", "ops", "orders:read", "orders:write")
	b := f.browser()
	b.signIn(f.adminKey)
	token := b.csrf()
	secrets := []string{f.adminKey, parentKey}
	results := map[int]bool{} // indexes of b.pages allowed to show one
	post := func(path string, form url.Values) string {
		form.Set("csrf", token)
		code, _, body := b.post(path, form)
		if code != http.StatusOK {
			t.Fatalf("POST %s = %d: %.300s", path, code, body)
		}
		m := plaintextField.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("POST %s shows no key", path)
		}
		secrets = append(secrets, m[1])
		results[len(b.pages)-1] = true
		return m[1]
	}
	post("/ui/keys/new", url.Values{"name": {"fresh"}, "owner": {"ops"}, "scopes": {"orders:read"}, "expires_in": {"3d"}, "rate": {"10/s"}})
	post("/ui/keys/"+parent.ID+"/rotate", url.Values{"confirm": {"yes"}, "grace": {"1h"}})
	old, _ := f.keys.GetKey(context.Background(), f.admin, parent.ID)
	post("/ui/keys/"+old.RotatedTo+"/derive", url.Values{"confirm": {"yes"}, "name": {"child"}, "scopes": {"orders:read"}})
	// Confirmation pages, lists, details, the overview.
	b.post("/ui/keys/"+old.RotatedTo+"/revoke", url.Values{"csrf": {token}})
	b.post("/ui/keys/batch", url.Values{"csrf": {token}, "op": {"suspend"}, "id": {parent.ID, old.RotatedTo}})
	for _, p := range []string{"/ui/", "/ui/keys", "/ui/keys/" + parent.ID, "/ui/keys/" + old.RotatedTo, "/ui/keys/new", "/ui/login"} {
		if code, _, _ := b.get(p); code != http.StatusOK {
			t.Errorf("GET %s = %d", p, code)
		}
	}
	for i, pg := range b.pages {
		for _, s := range secrets {
			if strings.Contains(pg.body, s) && !results[i] {
				t.Errorf("%s shows a plaintext key", pg.path)
			}
		}
		if results[i] && pg.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s shows a key with Cache-Control %q, want no-store", pg.path, pg.header.Get("Cache-Control"))
		}
	}
}

func TestStaticFilesServedWithoutSession(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	b := f.browser()
	tests := []struct {
		path     string
		wantCode int
		wantType string
	}{
		{"/ui/static/app.css", http.StatusOK, "text/css; charset=utf-8"},
		{"/ui/static/app.js", http.StatusOK, "text/javascript; charset=utf-8"},
		{"/ui/static/", http.StatusNotFound, ""},
		{"/ui/static/nothing.js", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		code, _, _ := b.get(tt.path)
		ct := b.pages[len(b.pages)-1].header.Get("Content-Type")
		if code != tt.wantCode || (tt.wantType != "" && ct != tt.wantType) {
			t.Errorf("GET %s = %d %q, want %d %q", tt.path, code, ct, tt.wantCode, tt.wantType)
		}
	}
}
