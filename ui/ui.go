// Package ui is the web dashboard and the self-service portal: pages
// rendered on the server with html/template, served at /ui/ by the same
// binary as the JSON API and calling the same services (keys, audit,
// webhook, secrets).
// Templates, CSS and a small script are embedded and parsed by New, so a
// broken template stops the server at start, not a request.
//
// An admin signs in with a key holding keys:read; a key holder signs in
// to the portal with its own key holding self:manage and sees only the
// keys of its own owner. Sessions live in the database (SessionStore), so
// any node behind a load balancer serves them; see docs/ui.md.
package ui

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/secrets"
	"github.com/latchkeyhq/latchkey/webhook"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// The scopes that open the dashboard and the portal.
const (
	scopeAdmin  = "keys:read"
	scopeWrite  = "keys:write"
	scopeDerive = "keys:derive"
	scopeAudit  = "audit:read"
	scopePortal = "self:manage"
	// The scopes of the other pages, as the JSON API's routes have them
	// (httpapi/routes.go).
	scopeWebhooks      = "webhooks:write"
	scopeSecretsRead   = "secrets:read"
	scopePoliciesRead  = "policies:read"
	scopePoliciesWrite = "policies:write"
	scopeTenants       = "tenants:admin"
)

// Defaults of Config.
const (
	DefaultIdle   = 30 * time.Minute
	DefaultMaxAge = 12 * time.Hour
)

// Guard is the brute-force guard as the dashboard uses it, the same
// methods httpapi.Guard has (package guard's *Guard): failed sign-ins
// count as failed API authentications, and a blocked network cannot sign
// in.
type Guard interface {
	// Blocked reports whether ip's network is held back, and for how long.
	Blocked(ip netip.Addr, now time.Time) (retryAfter time.Duration, blocked bool)
	// Fail counts a bad key from ip; true when that starts a hold.
	Fail(ip netip.Addr, now time.Time) (blockedNow bool)
	// Network is the client network ip is counted in.
	Network(ip netip.Addr) netip.Prefix
}

// Config is what the dashboard needs. Keys and Sessions are required.
type Config struct {
	Keys *keys.Service
	// Audit, when set, gives usage charts, audit and security events;
	// without it those parts of the pages are left out.
	Audit *audit.Service
	// Webhooks and Secrets, when set, open the webhook and secret pages;
	// without them those pages answer 404.
	Webhooks *webhook.Service
	Secrets  *secrets.Service
	Sessions SessionStore
	// Guard (nil: none) counts failed sign-ins; OnBlock is told when one
	// starts a hold, as httpapi.Config.OnBlock.
	Guard   Guard
	OnBlock func(network netip.Prefix, at time.Time)
	// TrustedProxies are believed about the client's address
	// (X-Forwarded-For), as the API believes them.
	TrustedProxies []netip.Prefix
	// Idle and MaxAge end a session after this long unused, and this long
	// after sign-in (defaults DefaultIdle, DefaultMaxAge).
	Idle, MaxAge time.Duration
	Now          func() time.Time
	Logger       *slog.Logger
}

// Handler serves the dashboard under /ui/.
type Handler struct {
	keys     *keys.Service
	audit    *audit.Service
	webhooks *webhook.Service
	secrets  *secrets.Service
	sessions SessionStore
	guard    Guard
	onBlock  func(netip.Prefix, time.Time)
	trusted  []netip.Prefix
	idle     time.Duration
	maxAge   time.Duration
	clock    func() time.Time
	log      *slog.Logger
	pages    map[string]*template.Template
	static   http.Handler
	mux      *http.ServeMux
	// counts caches each tenant's overview counts for a few seconds.
	counts *countCache
}

// New parses every template and returns the dashboard. Errors: EInvalid
// (a required service is missing), or the template's parse error: the
// server refuses to start rather than fail a request later.
func New(cfg Config) (*Handler, error) {
	if cfg.Keys == nil || cfg.Sessions == nil {
		return nil, latchkey.Errorf(latchkey.EInvalid, "ui: the key service and the session store are required")
	}
	h := &Handler{keys: cfg.Keys, audit: cfg.Audit, webhooks: cfg.Webhooks, secrets: cfg.Secrets, sessions: cfg.Sessions, counts: newCountCache(), guard: latchkey.OrNil(cfg.Guard),
		onBlock: cfg.OnBlock, trusted: cfg.TrustedProxies, idle: cfg.Idle, maxAge: cfg.MaxAge, clock: cfg.Now, log: cfg.Logger}
	if h.idle <= 0 {
		h.idle = DefaultIdle
	}
	if h.maxAge <= 0 {
		h.maxAge = DefaultMaxAge
	}
	if h.clock == nil {
		h.clock = time.Now
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	pages, err := parsePages(templateFiles)
	if err != nil {
		return nil, err
	}
	h.pages = pages
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		return nil, err
	}
	files := http.StripPrefix("/ui/static/", http.FileServerFS(sub))
	h.static = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
	h.routes()
	return h, nil
}

// parsePages parses the layout with each page into a template set of its
// own, named after the page's file.
func parsePages(files fs.FS) (map[string]*template.Template, error) {
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(files, "templates/layout.html", n)
		if err != nil {
			return nil, err
		}
		if t.Lookup("layout") == nil || t.Lookup("content") == nil {
			return nil, errors.New("ui: template " + n + " defines no content, or the layout is missing")
		}
		pages[base] = t
	}
	return pages, nil
}

// ServeHTTP serves a dashboard request: every answer carries the security
// headers (a strict Content-Security-Policy that allows no inline script
// or style, no framing, no sniffing, no caching).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
		hd.Set("Cache-Control", "no-store")
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) now() time.Time { return h.clock().UTC().Truncate(time.Microsecond) }

// page is what every template gets: the page's title and data, and the
// session (nil on the sign-in page).
type page struct {
	Title string
	S     *session
	// Nav names the section the page is in, for the menu.
	Nav  string
	Data any
}

// CSRF is the session's form token (templates call .CSRF).
func (p *page) CSRF() string {
	if p.S == nil {
		return ""
	}
	return p.S.csrf
}

// render executes a page into a buffer first, so a failing template
// answers a clean 500 instead of half a page.
func (h *Handler) render(w http.ResponseWriter, status int, name string, p *page) {
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		h.log.Error("ui: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// fail answers an error as a page with the status its code maps to.
// Anything that is not a *latchkey.Error is internal: its detail goes to
// the log, not the page.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code := latchkey.ErrorCode(err)
	status := statusOf(code)
	msg := latchkey.ErrorMessage(err)
	if code == latchkey.EInternal || code == "" {
		h.log.Error("ui: request failed", "path", r.URL.Path, "err", err)
		msg = "Something went wrong on the server; the log has the details."
	}
	h.render(w, status, "error", &page{Title: httpTitle(status), S: s, Data: errorView{Status: status, Code: string(code), Message: msg}})
}

type errorView struct {
	Status  int
	Code    string
	Message string
}

func statusOf(code string) int {
	switch code {
	case latchkey.EInvalid:
		return http.StatusBadRequest
	case latchkey.EUnauthenticated:
		return http.StatusUnauthorized
	case latchkey.EForbidden:
		return http.StatusForbidden
	case latchkey.ENotFound:
		return http.StatusNotFound
	case latchkey.EConflict:
		return http.StatusConflict
	case latchkey.ERateLimited:
		return http.StatusTooManyRequests
	case latchkey.EUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func httpTitle(status int) string { return http.StatusText(status) }

// authed wraps a page that needs a session: without one a GET goes to the
// sign-in page and anything else is refused; a POST must carry the
// session's CSRF token and come from this origin (403 otherwise).
func (h *Handler) authed(need func(*session) bool, fn func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := h.loadSession(r)
		if errors.Is(err, errNoSession) {
			clearCookie(w, r)
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
				return
			}
			h.fail(w, r, nil, err)
			return
		}
		if err != nil {
			h.fail(w, r, nil, err)
			return
		}
		if r.Method == http.MethodPost {
			if !sameOrigin(r) || !csrfOK(s, r) {
				h.fail(w, r, s, latchkey.Errorf(latchkey.EForbidden, "the form's security token is missing or stale: reload the page and try again"))
				return
			}
		}
		if need != nil && !need(s) {
			h.fail(w, r, s, latchkey.Errorf(latchkey.EForbidden, "your key does not hold the scope this page needs"))
			return
		}
		fn(w, r, s)
		if r.Method == http.MethodPost {
			// A change made here may change the overview's counts.
			h.counts.forget(s.actor.Tenant)
		}
	}
}

// sameOrigin reports whether a POST comes from a page of this server: a
// browser sends Origin on every POST; one naming another host is refused.
// A request without Origin (old browsers, tools) relies on the CSRF token
// alone.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	if o == "null" {
		return false
	}
	_, host, ok := strings.Cut(o, "://")
	return ok && strings.EqualFold(host, r.Host)
}

// clientIP is the request's client: the peer, or what trusted proxies say
// in X-Forwarded-For (read from the right, skipping trusted hops), as the
// API resolves it.
func (h *Handler) clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	found := ap.Addr().Unmap()
	if !h.isTrusted(found) {
		return found
	}
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return found
			}
			found = a.Unmap()
			if !h.isTrusted(found) {
				return found
			}
		}
	}
	return found
}

func (h *Handler) isTrusted(a netip.Addr) bool {
	for _, p := range h.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ownerOf is the owner of the actor's own key ("" if it cannot be read).
func (h *Handler) ownerOf(ctx context.Context, a *latchkey.Actor) string {
	k, err := h.keys.GetKey(ctx, a, a.KeyID)
	if err != nil {
		return ""
	}
	return k.Owner
}
