package ui_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/guard"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/secrets"
	"github.com/latchkeyhq/latchkey/store/sqlite"
	"github.com/latchkeyhq/latchkey/ui"
	"github.com/latchkeyhq/latchkey/webhook"
)

// fixture is a node's services on a SQLite file, the dashboard in front
// of them on an httptest server, and the tenant acme with its admin key.
type fixture struct {
	t        testing.TB
	clock    *fakeclock.Clock
	keys     *keys.Service
	store    keys.Store
	audit    *audit.Service
	hooks    *webhook.Service
	hookDB   latchkey.Store[webhook.Tx]
	secrets  *secrets.Service
	operator *latchkey.Actor // the operator's root key
	rootKey  string
	srv      *httptest.Server
	admin    *latchkey.Actor // acme's admin, as the service sees it
	adminKey string          // its plaintext
	mux      *http.ServeMux  // the dashboard and a tiny verify endpoint
}

var t0 = time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)

type fixtureOptions struct {
	guard  ui.Guard
	idle   time.Duration
	maxAge time.Duration
}

func newFixture(t testing.TB, o fixtureOptions) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "latchkey.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := fakeclock.New(t0)
	ks := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db), Now: clock.Now})
	aud := audit.New(audit.Options{Store: latchkey.Narrow[audit.Tx](db), Now: clock.Now})
	master, err := keyring.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.Open(ctx, latchkey.Narrow[keyring.Tx](db), master, keyring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hookDB := latchkey.Narrow[webhook.Tx](db)
	hooks := webhook.NewService(webhook.ServiceOptions{Store: hookDB, Sealer: kr, Now: clock.Now})
	sec := secrets.New(secrets.Options{Store: latchkey.Narrow[secrets.Tx](db), Sealer: kr, Now: clock.Now})
	t.Cleanup(func() { sec.Close(context.Background()) })
	root, _, _, err := ks.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	op, err := ks.Authenticate(ctx, root.Reveal(), netip.Addr{}, "tenants:admin")
	if err != nil {
		t.Fatal(err)
	}
	_, _, tok, err := ks.CreateTenant(ctx, op, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := ks.Authenticate(ctx, tok.Reveal(), netip.Addr{}, "keys:write")
	if err != nil {
		t.Fatal(err)
	}
	h, err := ui.New(ui.Config{Keys: ks, Audit: aud, Webhooks: hooks, Secrets: sec, Sessions: latchkey.Narrow[ui.SessionTx](db), Guard: o.guard,
		Idle: o.idle, MaxAge: o.maxAge, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &fixture{t: t, clock: clock, keys: ks, store: latchkey.Narrow[keys.Tx](db), audit: aud, hooks: hooks, hookDB: hookDB, secrets: sec, operator: op, rootKey: root.Reveal(), srv: srv, admin: admin, adminKey: tok.Reveal(), mux: mux}
}

// newGuard is a guard that blocks a network after three failures.
func newGuard(t testing.TB) *guard.Guard {
	g, err := guard.New(guard.Options{Threshold: 3, Window: time.Hour, Cooloff: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// createKey issues a key in acme as its admin and returns it with its
// plaintext.
func (f *fixture) createKey(name, owner string, scopes ...string) (*latchkey.Key, string) {
	f.t.Helper()
	p := keys.CreateParams{}
	p.Name, p.Owner = &name, &owner
	if scopes != nil {
		p.Scopes = &scopes
	}
	k, tok, err := f.keys.CreateKey(context.Background(), f.admin, p)
	if err != nil {
		f.t.Fatal(err)
	}
	return k, tok.Reveal()
}

// browser is a client with its own cookies that does not follow
// redirects, so a test sees each answer; pages holds every HTML body it
// was served, for the leak scan.
type browser struct {
	f     *fixture
	c     *http.Client
	pages []served
}

type served struct {
	path, body string
	header     http.Header
}

func (f *fixture) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{f: f, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request and returns the status, the location (for a
// redirect) and the body.
func (b *browser) do(req *http.Request) (int, string, string) {
	b.f.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	b.pages = append(b.pages, served{req.URL.Path, string(body), resp.Header})
	return resp.StatusCode, resp.Header.Get("Location"), string(body)
}

func (b *browser) get(path string) (int, string, string) {
	req, _ := http.NewRequest("GET", b.f.srv.URL+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) (int, string, string) {
	req, _ := http.NewRequest("POST", b.f.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the form token from a page of the session.
func (b *browser) csrf() string {
	b.f.t.Helper()
	_, _, body := b.get("/ui/keys/new")
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		_, _, body = b.get("/ui/portal/keys")
		if m = csrfField.FindStringSubmatch(body); m == nil {
			b.f.t.Fatal("no CSRF token on the page")
		}
	}
	return m[1]
}

// signIn signs in with key and fails the test unless it is let in.
func (b *browser) signIn(key string) {
	b.f.t.Helper()
	if code, _, body := b.post("/ui/login", url.Values{"key": {key}}); code != http.StatusSeeOther {
		b.f.t.Fatalf("sign-in = %d, want 303; page: %.300s", code, body)
	}
}

var plaintextField = regexp.MustCompile(`id="plaintext" class="plaintext" readonly value="([^"]+)"`)

// newTLSServer serves the fixture's dashboard over TLS too.
func newTLSServer(t testing.TB, f *fixture) *httptest.Server {
	s := httptest.NewTLSServer(f.mux)
	t.Cleanup(s.Close)
	return s
}
