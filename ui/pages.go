package ui

import (
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/keys"
)

var errPageNotFound = latchkey.Errorf(latchkey.ENotFound, "there is no such page")

// pageSize is the keys one list page shows.
const pageSize = 50

type loginView struct{ Error string }

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	h.render(w, http.StatusOK, "login", &page{Title: "Sign in", Data: loginView{}})
}

// login signs a key in. The key is authenticated as the API authenticates
// one (keys.Service.Authenticate: state, IP allowlist, countries, time
// windows, limits); a key that fails counts against the client's network
// in the brute-force guard exactly as a failed API call does, and a
// blocked network cannot sign in. The key itself is never stored, shown
// or logged.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		h.fail(w, r, nil, latchkey.Errorf(latchkey.EForbidden, "sign in from this server's own page"))
		return
	}
	ip := h.clientIP(r)
	now := h.now()
	if h.guard != nil {
		if retry, blocked := h.guard.Blocked(ip, now); blocked {
			w.Header().Set("Retry-After", itoa(int(retry/time.Second)+1))
			h.render(w, http.StatusTooManyRequests, "login", &page{Title: "Sign in",
				Data: loginView{Error: "Too many failed key checks from this network; try again later."}})
			return
		}
	}
	key := strings.TrimSpace(r.PostFormValue("key"))
	a, err := h.keys.Authenticate(r.Context(), key, ip, "")
	if err != nil {
		status := statusOf(latchkey.ErrorCode(err))
		msg := "That key was not accepted."
		switch latchkey.ErrorCode(err) {
		case latchkey.EUnauthenticated:
			h.failed(ip)
		case latchkey.EForbidden:
			msg = "That key may not be used from here or now."
		case latchkey.ERateLimited:
			msg = "That key is over its rate limit; try again later."
		default:
			h.fail(w, r, nil, err)
			return
		}
		h.render(w, status, "login", &page{Title: "Sign in", Data: loginView{Error: msg}})
		return
	}
	defer h.keys.Done(a)
	admin := latchkey.ScopesAllow(a.Scopes, scopeAdmin)
	portal := latchkey.ScopesAllow(a.Scopes, scopePortal) && h.ownerOf(r.Context(), a) != ""
	if !admin && !portal {
		h.render(w, http.StatusForbidden, "login", &page{Title: "Sign in",
			Data: loginView{Error: "That key holds neither keys:read nor self:manage (with an owner), so it cannot sign in here."}})
		return
	}
	token, err := h.startSession(r.Context(), a)
	if err != nil {
		h.fail(w, r, nil, err)
		return
	}
	setCookie(w, r, token)
	h.log.Info("ui: signed in", "tenant", a.Tenant, "key_id", a.KeyID, "ip", ip.String())
	if admin {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
	} else {
		http.Redirect(w, r, "/ui/portal/keys", http.StatusSeeOther)
	}
}

// failed counts a bad key from ip in the guard, telling OnBlock when that
// starts a hold.
func (h *Handler) failed(ip netip.Addr) {
	if h.guard == nil {
		return
	}
	now := h.now()
	if h.guard.Fail(ip, now) && h.onBlock != nil {
		h.onBlock(h.guard.Network(ip), now)
	}
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, s *session) {
	h.endSession(r.Context(), s.hash)
	clearCookie(w, r)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

type overviewView struct {
	keyCounts
	HasAudit, HasUsage bool
	Denied             int64
	Events             []audit.SecurityEvent
}

// keyCounts are the overview's figures of a tenant's keys, as of At.
type keyCounts struct {
	Active, Suspended, Revoked, Expiring int
	ExpiringKeys                         []*latchkey.Key
	Scanned                              int
	Truncated                            bool
	At                                   time.Time
}

// overviewScan bounds the keys the overview counts, so a huge tenant's
// overview stays quick; past it the page says it counted a part.
const overviewScan = 50_000

func (h *Handler) overview(w http.ResponseWriter, r *http.Request, s *session) {
	if !s.admin {
		http.Redirect(w, r, "/ui/portal/keys", http.StatusSeeOther)
		return
	}
	ctx := r.Context()
	now := h.now()
	v := overviewView{HasAudit: h.audit != nil && latchkey.ScopesAllow(s.actor.Scopes, scopeAudit)}
	kc, err := h.counts.keys(s.actor.Tenant, now, func() (keyCounts, error) { return h.countKeys(r, s, now) })
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	v.keyCounts = kc
	if v.HasAudit {
		evs, _, err := h.audit.ListSecurityEvents(ctx, s.actor, audit.SecurityFilter{Since: now.Add(-24 * time.Hour), Limit: latchkey.MaxListLimit})
		if err != nil {
			h.fail(w, r, s, err)
			return
		}
		v.Events = newestFirst(evs, 20)
		// Denials of the last 24 hours, from the hour roll-ups.
		denied, err := h.counts.denied(s.actor.Tenant, now, func() (int64, error) {
			to := now.Truncate(time.Hour).Add(time.Hour)
			rep, err := h.audit.ReportUsage(ctx, s.actor, audit.ReportWindow{From: to.Add(-24 * time.Hour), To: to})
			if err != nil {
				return 0, err
			}
			return rep.Totals.Denied, nil
		})
		if err == nil {
			v.HasUsage, v.Denied = true, denied
		} else {
			h.log.Warn("ui: overview usage", "err", err)
		}
	}
	h.render(w, http.StatusOK, "overview", &page{Title: "Overview", S: s, Nav: "overview", Data: v})
}

// countKeys counts the tenant's keys by state in one pass over them, in
// pages of MaxListLimit, up to overviewScan keys.
func (h *Handler) countKeys(r *http.Request, s *session, now time.Time) (keyCounts, error) {
	v := keyCounts{At: now}
	cursor := ""
	for v.Scanned < overviewScan {
		ks, next, err := h.keys.ListKeys(r.Context(), s.actor, keys.ListParams{Cursor: cursor, Limit: latchkey.MaxListLimit})
		if err != nil {
			return keyCounts{}, err
		}
		for _, k := range ks {
			switch k.StateAt(now) {
			case latchkey.StateActive:
				v.Active++
				if !k.ExpiresAt.IsZero() && k.ExpiresAt.Before(now.Add(7*24*time.Hour)) {
					v.Expiring++
					if len(v.ExpiringKeys) < 10 {
						v.ExpiringKeys = append(v.ExpiringKeys, k)
					}
				}
			case latchkey.StateSuspended:
				v.Suspended++
			case latchkey.StateRevoked:
				v.Revoked++
			}
		}
		v.Scanned += len(ks)
		if next == "" {
			break
		}
		cursor = next
		v.Truncated = v.Scanned >= overviewScan
	}
	return v, nil
}

// newestFirst is the last n of a list kept oldest first, newest first.
func newestFirst[T any](xs []T, n int) []T {
	if len(xs) > n {
		xs = xs[len(xs)-n:]
	}
	out := slices.Clone(xs)
	slices.Reverse(out)
	return out
}

type listFilter struct {
	State, Owner, Environment, Agent, Name string
}

type listView struct {
	Base             string
	Portal, CanWrite bool
	States           []latchkey.State
	F                listFilter
	Keys             []keyRow
	Cursor           string
	NextURL          string
	FirstURL         string
}

// keyRow is a key as a list shows it: with its state now.
type keyRow struct {
	*latchkey.Key
	State latchkey.State
}

func (h *Handler) keyList(w http.ResponseWriter, r *http.Request, s *session) {
	h.listKeys(w, r, s, "/ui/keys", "")
}

// listKeys serves one page of keys, paged on the server with ListKeys'
// cursor. owner, when set (the portal), fixes the owner filter.
func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request, s *session, base, owner string) {
	q := r.URL.Query()
	f := listFilter{State: q.Get("state"), Owner: q.Get("owner"), Environment: q.Get("environment"), Agent: q.Get("agent"), Name: q.Get("name")}
	p := keys.ListParams{State: latchkey.State(f.State), Owner: f.Owner, Environment: f.Environment, Name: f.Name,
		Cursor: q.Get("cursor"), Limit: pageSize}
	if owner != "" {
		f.Owner, p.Owner = "", owner
	}
	if f.Agent != "" {
		p.Resource = "agent:" + f.Agent
	}
	ks, next, err := h.keys.ListKeys(r.Context(), s.actor, p)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	now := h.now()
	v := listView{Base: base, Portal: owner != "", CanWrite: owner == "" && s.canWrite(), F: f, Cursor: p.Cursor,
		States: []latchkey.State{latchkey.StateActive, latchkey.StateSuspended, latchkey.StateRevoked, latchkey.StateExpired}}
	for _, k := range ks {
		v.Keys = append(v.Keys, keyRow{k, k.StateAt(now)})
	}
	link := func(cursor string) string {
		u := url.Values{}
		for name, val := range map[string]string{"state": f.State, "owner": f.Owner, "environment": f.Environment, "agent": f.Agent, "name": f.Name, "cursor": cursor} {
			if val != "" {
				u.Set(name, val)
			}
		}
		if len(u) == 0 {
			return base
		}
		return base + "?" + u.Encode()
	}
	if next != "" {
		v.NextURL = link(next)
	}
	v.FirstURL = link("")
	title := "Keys"
	if owner != "" {
		title = "My keys"
	}
	nav := "keys"
	if owner != "" {
		nav = "portal"
	}
	h.render(w, http.StatusOK, "keys", &page{Title: title, S: s, Nav: nav, Data: v})
}

type field struct{ Name, Value string }

type confirmView struct {
	Heading, Question, Button string
	Action, Back              string
	IDs                       []string
	Fields                    []field
}

// confirm shows the page that asks before a change, carrying the form's
// fields (names listed) to the real post; it is the confirmation that
// works without JavaScript.
func (h *Handler) confirm(w http.ResponseWriter, r *http.Request, s *session, v confirmView, names ...string) {
	for _, n := range names {
		for _, val := range r.PostForm[n] {
			v.Fields = append(v.Fields, field{n, val})
		}
	}
	h.render(w, http.StatusOK, "confirm", &page{Title: v.Heading, S: s, Data: v})
}

func confirmed(r *http.Request) bool { return r.PostFormValue("confirm") == "yes" }

type batchView struct {
	Op string
	keys.BatchResult
}

// batch revokes, suspends or resumes the selected keys of a list page
// (keys.Service.BatchKeys), after a confirmation.
func (h *Handler) batch(w http.ResponseWriter, r *http.Request, s *session) {
	op := r.PostFormValue("op")
	ids := r.PostForm["id"]
	if op != keys.BatchRevoke && op != keys.BatchSuspend && op != keys.BatchResume {
		h.fail(w, r, s, latchkey.Errorf(latchkey.EInvalid, "choose revoke, suspend or resume"))
		return
	}
	if len(ids) == 0 {
		h.fail(w, r, s, latchkey.Errorf(latchkey.EInvalid, "select at least one key"))
		return
	}
	if len(ids) > pageSize*4 {
		h.fail(w, r, s, latchkey.Errorf(latchkey.EInvalid, "select at most %d keys at once", pageSize*4))
		return
	}
	if !confirmed(r) {
		h.confirm(w, r, s, confirmView{Heading: "Bulk " + op, Question: "Really " + op + " these " + itoa(len(ids)) + " keys?",
			Button: strings.ToUpper(op[:1]) + op[1:] + " " + itoa(len(ids)) + " keys", Action: "/ui/keys/batch", Back: "/ui/keys", IDs: ids}, "op", "id")
		return
	}
	res, err := h.keys.BatchKeys(r.Context(), s.actor, keys.BatchParams{Op: op, IDs: ids, Reason: "bulk " + op + " in the dashboard"})
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	h.render(w, http.StatusOK, "batch", &page{Title: "Bulk " + op, S: s, Nav: "keys", Data: batchView{op, res}})
}

type newForm struct {
	Name, Owner, Environment, Scopes, Resources, ExpiresIn, Policy, Rate string
}

type newView struct {
	F     newForm
	Error string
}

func (h *Handler) newKeyPage(w http.ResponseWriter, r *http.Request, s *session) {
	h.render(w, http.StatusOK, "new", &page{Title: "New key", S: s, Nav: "new", Data: newView{}})
}

// fieldsOf splits a list typed into one field, by commas or spaces.
func fieldsOf(s string) []string {
	return strings.FieldsFunc(s, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r' })
}

// createKey issues a key and shows its plaintext once, on the answer to
// the POST itself (never in a URL, never after a redirect), with
// Cache-Control: no-store like every page.
func (h *Handler) createKey(w http.ResponseWriter, r *http.Request, s *session) {
	f := newForm{Name: r.PostFormValue("name"), Owner: r.PostFormValue("owner"), Environment: r.PostFormValue("environment"),
		Scopes: r.PostFormValue("scopes"), Resources: r.PostFormValue("resources"), ExpiresIn: r.PostFormValue("expires_in"),
		Policy: r.PostFormValue("policy"), Rate: r.PostFormValue("rate")}
	p, err := f.params()
	var k *latchkey.Key
	var tok latchkey.Token
	if err == nil {
		k, tok, err = h.keys.CreateKey(r.Context(), s.actor, p)
	}
	if err != nil {
		code := latchkey.ErrorCode(err)
		if code != latchkey.EInvalid && code != latchkey.EForbidden && code != latchkey.ENotFound && code != latchkey.EConflict {
			h.fail(w, r, s, err)
			return
		}
		h.render(w, statusOf(code), "new", &page{Title: "New key", S: s, Nav: "new", Data: newView{F: f, Error: latchkey.ErrorMessage(err)}})
		return
	}
	h.showSecret(w, s, "Key created", "/ui/keys", k, tok, "")
}

// params turns the form into the key service's parameters.
func (f *newForm) params() (keys.CreateParams, error) {
	var p keys.CreateParams
	name := strings.TrimSpace(f.Name)
	p.Name = &name
	if v := strings.TrimSpace(f.Owner); v != "" {
		p.Owner = &v
	}
	if v := strings.TrimSpace(f.Environment); v != "" {
		p.Environment = &v
	}
	if sc := fieldsOf(f.Scopes); len(sc) > 0 {
		p.Scopes = &sc
	}
	if rs := fieldsOf(f.Resources); len(rs) > 0 {
		p.Resources = &rs
	}
	if v := strings.TrimSpace(f.ExpiresIn); v != "" {
		d, err := latchkey.ParseDuration(v)
		if err != nil {
			return p, err
		}
		p.ExpiresIn = &d
	}
	if v := strings.TrimSpace(f.Policy); v != "" {
		p.Policy = &v
	}
	if v := strings.TrimSpace(f.Rate); v != "" {
		rl, err := latchkey.ParseRates(v)
		if err != nil {
			return p, err
		}
		p.RateLimits = &rl
	}
	return p, nil
}

type secretView struct {
	Heading   string
	Base      string
	Key       *latchkey.Key
	Plaintext string
	OldID     string
}

// showSecret is the one page that shows a plaintext key: the answer to
// the POST that made it, not stored, not cached (Cache-Control: no-store,
// set on every page), never reachable by a GET.
func (h *Handler) showSecret(w http.ResponseWriter, s *session, heading, base string, k *latchkey.Key, tok latchkey.Token, oldID string) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	h.render(w, http.StatusOK, "secret", &page{Title: heading, S: s, Data: secretView{Heading: heading, Base: base, Key: k, Plaintext: tok.Reveal(), OldID: oldID}})
}

type keyView struct {
	Base                string
	Portal              bool
	CanWrite, CanDerive bool
	Key                 *latchkey.Key
	State               latchkey.State
	Children            []keyRow
	HasUsage            bool
	Day, Month          chart
	Audit               []*latchkey.AuditEvent
	Security            []audit.SecurityEvent
}

func (h *Handler) keyDetail(w http.ResponseWriter, r *http.Request, s *session) {
	k, err := h.keys.GetKey(r.Context(), s.actor, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	v, err := h.keyPage(r, s, k, "/ui/keys", false)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	h.render(w, http.StatusOK, "key", &page{Title: k.Name, S: s, Nav: "keys", Data: v})
}

// keyPage gathers a key's page: children, usage charts (24 hours by
// hour, 30 days by day) and recent events.
func (h *Handler) keyPage(r *http.Request, s *session, k *latchkey.Key, base string, portal bool) (*keyView, error) {
	ctx := r.Context()
	now := h.now()
	v := &keyView{Base: base, Portal: portal, Key: k, State: k.StateAt(now)}
	if portal {
		v.CanWrite = true
	} else {
		v.CanWrite = s.canWrite()
		v.CanDerive = latchkey.ScopesAllow(s.actor.Scopes, scopeDerive) && v.State == latchkey.StateActive
		children, _, err := h.keys.ListKeys(ctx, s.actor, keys.ListParams{ParentID: k.ID, Limit: 100})
		if err != nil {
			return nil, err
		}
		for _, c := range children {
			v.Children = append(v.Children, keyRow{c, c.StateAt(now)})
		}
	}
	if h.audit == nil {
		return v, nil
	}
	day, err := h.audit.KeyUsage(ctx, s.actor, k.ID, audit.UsageParams{Bucket: "hour", From: now.Add(-23 * time.Hour)})
	if err != nil {
		return nil, err
	}
	month, err := h.audit.KeyUsage(ctx, s.actor, k.ID, audit.UsageParams{Bucket: "day", From: now.Add(-29 * 24 * time.Hour)})
	if err != nil {
		return nil, err
	}
	v.HasUsage = true
	v.Day = newChart("Last 24 hours, by hour", "hour", day, "Jan 2 15:00 UTC")
	v.Month = newChart("Last 30 days, by day", "day", month, "Jan 2")
	// The portal shows its keys' usage; the audit log and security
	// events are the admins' (audit:read).
	if portal || !latchkey.ScopesAllow(s.actor.Scopes, scopeAudit) {
		return v, nil
	}
	evs, err := h.audit.ListAudit(ctx, s.actor, latchkey.AuditFilter{KeyID: k.ID, Since: now.Add(-30 * 24 * time.Hour), Limit: latchkey.MaxListLimit})
	if err != nil {
		return nil, err
	}
	v.Audit = newestFirst(evs, 20)
	sec, _, err := h.audit.ListSecurityEvents(ctx, s.actor, audit.SecurityFilter{KeyID: k.ID, Since: now.Add(-30 * 24 * time.Hour), Limit: latchkey.MaxListLimit})
	if err != nil {
		return nil, err
	}
	v.Security = newestFirst(sec, 10)
	return v, nil
}

// keyAction rotates, suspends, resumes, revokes or derives a key, after a
// confirmation page (or the script's dialog, which sends confirm=yes).
func (h *Handler) keyAction(w http.ResponseWriter, r *http.Request, s *session) {
	id, action := r.PathValue("id"), r.PathValue("action")
	need := scopeWrite
	if action == "derive" {
		need = scopeDerive
	}
	if !latchkey.ScopesAllow(s.actor.Scopes, need) {
		h.fail(w, r, s, latchkey.Errorf(latchkey.EForbidden, "your key does not hold %s", need))
		return
	}
	h.act(w, r, s, "/ui/keys", id, action)
}

// act carries out one action on key id (already allowed), after its
// confirmation.
func (h *Handler) act(w http.ResponseWriter, r *http.Request, s *session, base, id, action string) {
	ctx := r.Context()
	back := base + "/" + id
	ask := func(question, button string, fields ...string) bool {
		if confirmed(r) {
			return false
		}
		h.confirm(w, r, s, confirmView{Heading: button + " key", Question: question, Button: button,
			Action: back + "/" + action, Back: back, IDs: []string{id}}, fields...)
		return true
	}
	var err error
	switch action {
	case "rotate":
		if ask("Rotate this key? A successor is issued and its secret shown once; the old key works until its grace period ends.", "Rotate", "grace") {
			return
		}
		var p keys.RotateParams
		if g := strings.TrimSpace(r.PostFormValue("grace")); g != "" {
			d, perr := latchkey.ParseDuration(g)
			if perr != nil {
				h.fail(w, r, s, perr)
				return
			}
			p.Grace = &d
		}
		succ, tok, rerr := h.keys.RotateKey(ctx, s.actor, id, p)
		if rerr != nil {
			h.fail(w, r, s, rerr)
			return
		}
		h.showSecret(w, s, "Key rotated", base, succ, tok, id)
		return
	case "derive":
		if ask("Derive a child key? Its secret is shown once.", "Derive", "name", "scopes", "expires_in") {
			return
		}
		f := newForm{Name: r.PostFormValue("name"), Scopes: r.PostFormValue("scopes"), ExpiresIn: r.PostFormValue("expires_in")}
		p, perr := f.params()
		if perr != nil {
			h.fail(w, r, s, perr)
			return
		}
		child, tok, derr := h.keys.DeriveKey(ctx, s.actor, id, p)
		if derr != nil {
			h.fail(w, r, s, derr)
			return
		}
		h.showSecret(w, s, "Child key derived", base, child, tok, "")
		return
	case "suspend":
		if ask("Suspend this key? It stops working until it is resumed or the suspension ends.", "Suspend", "duration", "reason") {
			return
		}
		var d time.Duration
		if v := strings.TrimSpace(r.PostFormValue("duration")); v != "" {
			if d, err = latchkey.ParseDuration(v); err != nil {
				h.fail(w, r, s, err)
				return
			}
		}
		_, err = h.keys.SuspendKey(ctx, s.actor, id, d, r.PostFormValue("reason"))
	case "resume":
		if ask("Resume this key?", "Resume") {
			return
		}
		_, err = h.keys.ResumeKey(ctx, s.actor, id)
	case "revoke":
		if ask("Revoke this key? It stops working at once, with the keys derived from it. This cannot be undone.", "Revoke", "reason") {
			return
		}
		_, err = h.keys.RevokeKey(ctx, s.actor, id, r.PostFormValue("reason"))
	default:
		err = errPageNotFound
	}
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}
