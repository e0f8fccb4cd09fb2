package ui

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// listLimit is the rows one page of the audit log, the security events,
// the webhooks and their deliveries, the secrets, the policies, the
// owners and the tenants shows.
const listLimit = 50

// pageURL is base with the query values that are set (the filters) and
// the cursor under name, "" for the first page.
func pageURL(base string, filters [][2]string, name, cursor string) string {
	u := url.Values{}
	for _, f := range filters {
		if f[1] != "" {
			u.Set(f[0], f[1])
		}
	}
	if cursor != "" {
		u.Set(name, cursor)
	}
	if len(u) == 0 {
		return base
	}
	return base + "?" + u.Encode()
}

// pager is the links between the pages of a list.
type pager struct {
	First, Next string
	Paged       bool // not the first page
}

// newPager links the pages of a list at base, filtered by filters, whose
// cursor (query name) is cursor now and next on the next page ("" at the
// end).
func newPager(base string, filters [][2]string, name, cursor, next string) pager {
	p := pager{First: pageURL(base, filters, name, ""), Paged: cursor != ""}
	if next != "" {
		p.Next = pageURL(base, filters, name, next)
	}
	return p
}

// formTime reads a time typed into a filter: RFC 3339, or a date and
// time in UTC ("2026-01-02T15:04", "2026-01-02 15:04"), or a date.
// Errors: EInvalid naming the field.
func formTime(name, v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, latchkey.Errorf(latchkey.EInvalid, "%s must be a date such as 2026-01-02 or a time such as 2026-01-02T15:04 (UTC)", name)
}

// scoped is a page predicate: an admin session whose key holds scope.
func scoped(scope string) func(*session) bool {
	return func(s *session) bool { return s.admin && s.Can(scope) }
}

// onceItem is one value a "shown once" page shows: a key's plaintext, a
// webhook's signing secret.
type onceItem struct {
	Label, Value string
	KeyID        string // set for a key, to link it
}

type onceView struct {
	Heading, Warning string
	Items            []onceItem
	Back, BackText   string
	// Extra is the page's own part (the plan of an apply), rendered by
	// the "once" template when set.
	Plan []planRow
}

// showOnce is the answer to the POST that made a secret: the only page
// that shows it, not stored, not cached (no-store, as every page; Pragma
// for old caches), never reachable by a GET.
func (h *Handler) showOnce(w http.ResponseWriter, s *session, nav string, v onceView) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	h.render(w, http.StatusOK, "once", &page{Title: v.Heading, S: s, Nav: nav, Data: v})
}
