package ui

import "net/http"

// routes registers the whole dashboard: every page, in one place. Each
// page needs the scope its JSON API route needs (httpapi/routes.go), on
// top of keys:read, which opens the dashboard.
func (h *Handler) routes() {
	m := http.NewServeMux()
	admin := func(s *session) bool { return s.admin }
	write := func(s *session) bool { return s.admin && s.canWrite() }
	portal := func(s *session) bool { return s.portal }

	m.Handle("GET /ui/static/", h.static)
	m.HandleFunc("GET /ui/login", h.loginPage)
	m.HandleFunc("POST /ui/login", h.login)
	m.HandleFunc("POST /ui/logout", h.authed(nil, h.logout))

	m.HandleFunc("GET /ui/{$}", h.authed(nil, h.overview))
	m.HandleFunc("GET /ui/keys", h.authed(admin, h.keyList))
	m.HandleFunc("POST /ui/keys/batch", h.authed(write, h.batch))
	m.HandleFunc("GET /ui/keys/new", h.authed(write, h.newKeyPage))
	m.HandleFunc("POST /ui/keys/new", h.authed(write, h.createKey))
	m.HandleFunc("GET /ui/keys/{id}", h.authed(admin, h.keyDetail))
	m.HandleFunc("POST /ui/keys/{id}/{action}", h.authed(admin, h.keyAction))

	auditRead := scoped(scopeAudit)
	m.HandleFunc("GET /ui/audit", h.authed(auditRead, h.auditLog))
	m.HandleFunc("GET /ui/audit/verify", h.authed(auditRead, h.auditVerify))
	m.HandleFunc("GET /ui/security", h.authed(auditRead, h.securityEvents))

	hooks := scoped(scopeWebhooks)
	m.HandleFunc("GET /ui/webhooks", h.authed(hooks, h.webhookList))
	m.HandleFunc("POST /ui/webhooks", h.authed(hooks, h.createWebhook))
	m.HandleFunc("GET /ui/webhooks/{id}", h.authed(hooks, h.webhookDetail))
	m.HandleFunc("POST /ui/webhooks/{id}/delete", h.authed(hooks, h.deleteWebhook))
	m.HandleFunc("POST /ui/webhooks/{id}/deliveries/{did}/retry", h.authed(hooks, h.retryDelivery))

	m.HandleFunc("GET /ui/secrets", h.authed(scoped(scopeSecretsRead), h.secretList))
	m.HandleFunc("GET /ui/secrets/{name}", h.authed(scoped(scopeSecretsRead), h.secretDetail))

	polRead, polWrite := scoped(scopePoliciesRead), scoped(scopePoliciesWrite)
	m.HandleFunc("GET /ui/policies", h.authed(polRead, h.policyList))
	m.HandleFunc("GET /ui/policies/new", h.authed(polWrite, h.newPolicyPage))
	m.HandleFunc("POST /ui/policies/new", h.authed(polWrite, h.createPolicy))
	m.HandleFunc("GET /ui/policies/{name}", h.authed(polRead, h.policyDetail))
	m.HandleFunc("POST /ui/policies/{name}/edit", h.authed(polWrite, h.editPolicy))
	m.HandleFunc("POST /ui/policies/{name}/delete", h.authed(polWrite, h.deletePolicy))

	m.HandleFunc("GET /ui/owners", h.authed(admin, h.ownerList))
	m.HandleFunc("GET /ui/owners/{id}", h.authed(admin, h.ownerDetail))
	m.HandleFunc("POST /ui/owners/{id}", h.authed(write, h.putOwner))
	m.HandleFunc("POST /ui/owners/{id}/delete", h.authed(write, h.deleteOwner))

	m.HandleFunc("GET /ui/apply", h.authed(write, h.applyPage))
	m.HandleFunc("POST /ui/apply", h.authed(write, h.applyManifest))

	m.HandleFunc("GET /ui/tenants", h.authed(scoped(scopeTenants), h.tenantList))
	m.HandleFunc("POST /ui/tenants", h.authed(scoped(scopeTenants), h.createTenant))

	m.HandleFunc("GET /ui/portal/{$}", h.authed(portal, func(w http.ResponseWriter, r *http.Request, _ *session) {
		http.Redirect(w, r, "/ui/portal/keys", http.StatusSeeOther)
	}))
	m.HandleFunc("GET /ui/portal/keys", h.authed(portal, h.portalList))
	m.HandleFunc("GET /ui/portal/keys/{id}", h.authed(portal, h.portalKey))
	m.HandleFunc("POST /ui/portal/keys/{id}/{action}", h.authed(portal, h.portalAction))

	m.HandleFunc("/ui/", h.authed(nil, func(w http.ResponseWriter, r *http.Request, s *session) {
		h.fail(w, r, s, errPageNotFound)
	}))
	h.mux = m
}
