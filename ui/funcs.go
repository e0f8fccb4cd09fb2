package ui

import (
	"html/template"
	"strconv"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"when":   when,
	"scopes": scopeSummary,
	"deref":  func(p *int64) int64 { return *p },
	"join":   strings.Join,
	"rates":  rateList,
	"quota":  quotaText,
}

// rateList shows rate limits as the CLI writes them, "10/1s,1000/1h".
func rateList(rl []latchkey.RateLimit) string {
	parts := make([]string, len(rl))
	for i, r := range rl {
		parts[i] = itoa(int(r.Limit)) + "/" + r.Window.String()
	}
	return strings.Join(parts, ",")
}

// quotaText shows a quota as the CLI writes it: "10000/30d", or a credit
// balance "500"; "" for none.
func quotaText(q *latchkey.Quota) string {
	switch {
	case q == nil:
		return ""
	case q.Remaining != nil:
		return strconv.FormatInt(*q.Remaining, 10)
	}
	return strconv.FormatInt(q.Limit, 10) + "/" + q.Period
}

// when shows a time in UTC to the minute, "—" for none.
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// scopeSummary shows the first three scopes and how many more.
func scopeSummary(sc []string) string {
	if len(sc) == 0 {
		return "—"
	}
	if len(sc) <= 3 {
		return strings.Join(sc, " ")
	}
	return strings.Join(sc[:3], " ") + " +" + itoa(len(sc)-3)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}

// Methods the layout calls on the session.

// Admin reports whether the session opens the dashboard (keys:read).
func (s *session) Admin() bool { return s.admin }

// Portal reports whether the session opens the portal (self:manage).
func (s *session) Portal() bool { return s.portal }

// CanWrite reports whether the session's key may change keys.
func (s *session) CanWrite() bool { return s.canWrite() }

func (s *session) canWrite() bool { return latchkey.ScopesAllow(s.actor.Scopes, scopeWrite) }

// Tenant is the session's tenant.
func (s *session) Tenant() string { return s.actor.Tenant }

// KeyID is the id of the key that signed in.
func (s *session) KeyID() string { return s.actor.KeyID }

// Can reports whether the session's key holds scope (the layout shows a
// page's link only then).
func (s *session) Can(scope string) bool { return latchkey.ScopesAllow(s.actor.Scopes, scope) }
