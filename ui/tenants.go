package ui

import (
	"net/http"
	"strings"

	"github.com/latchkeyhq/latchkey"
)

type tenantsView struct {
	Tenants  []*latchkey.Tenant
	ID, Name string
	Error    string
	pager
}

// tenantList lists the tenants, for the operator (tenants:admin), with
// the form that creates one.
func (h *Handler) tenantList(w http.ResponseWriter, r *http.Request, s *session) {
	h.renderTenants(w, r, s, http.StatusOK, tenantsView{})
}

func (h *Handler) renderTenants(w http.ResponseWriter, r *http.Request, s *session, status int, v tenantsView) {
	cursor := r.URL.Query().Get("cursor")
	ts, next, err := h.keys.ListTenants(r.Context(), s.actor, cursor, listLimit)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	v.Tenants, v.pager = ts, newPager("/ui/tenants", nil, "cursor", cursor, next)
	h.render(w, status, "tenants", &page{Title: "Tenants", S: s, Nav: "tenants", Data: v})
}

// createTenant creates a tenant and shows its first admin key once, on
// the answer to the POST (no-store).
func (h *Handler) createTenant(w http.ResponseWriter, r *http.Request, s *session) {
	id, name := strings.TrimSpace(r.PostFormValue("id")), strings.TrimSpace(r.PostFormValue("name"))
	t, k, tok, err := h.keys.CreateTenant(r.Context(), s.actor, id, name)
	if err != nil {
		if code := latchkey.ErrorCode(err); code == latchkey.EInvalid || code == latchkey.EConflict {
			h.renderTenants(w, r, s, statusOf(code), tenantsView{ID: id, Name: name, Error: latchkey.ErrorMessage(err)})
			return
		}
		h.fail(w, r, s, err)
		return
	}
	h.showOnce(w, s, "tenants", onceView{Heading: "Tenant created",
		Warning: "Copy the tenant's admin key now. It is shown only once: Latchkey keeps only its hash and cannot show it again.",
		Items:   []onceItem{{Label: "Admin key of " + t.ID + " (" + k.ID + ")", Value: tok.Reveal()}},
		Back:    "/ui/tenants", BackText: "Back to the tenants"})
}
