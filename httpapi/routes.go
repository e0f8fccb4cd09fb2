package httpapi

import (
	"net/http"

	"github.com/latchkeyhq/latchkey"
)

// Route is one route of the HTTP surface as Routes lists it.
type Route struct {
	Method  string // "GET", "POST", …
	Pattern string // the path, with {name} for its parameters
	// Scope is the admin scope the route requires of its key; "" for the
	// routes that take no admin key (health, metrics, verify, a lease's
	// release, which its own key may do).
	Scope string
}

// Routes lists every route the mux serves, from the same table that
// registers them (eachRoute), so a test that walks it (the isolation
// matrix in cmd/latchkey) covers a new route without being told.
// Forward-auth and the catch-all "/" are not in it: they are dispatched
// outside the table.
func Routes() []Route {
	var out []Route
	(&Server{}).eachRoute(func(rt Route, _ http.Handler) { out = append(out, rt) })
	return out
}

// routes registers the whole HTTP surface. Forward-auth (GET /v1/auth, any
// method, and /v1/auth/… for Envoy's path prefix) is dispatched in ServeHTTP
// before the mux, because it is the hot path.
func (s *Server) routes() {
	s.eachRoute(func(rt Route, h http.Handler) { s.mux.Handle(rt.Method+" "+rt.Pattern, h) })
	s.mux.HandleFunc("/", s.noRoute)
}

type adminHandler = func(http.ResponseWriter, *http.Request, *latchkey.Actor) error

// brokered is h on a server with a secret service (Config.Secrets),
// audited on one with an audit service (Config.Audit) and hooked on one
// with a webhook service (Config.Webhooks); on a server without, those
// routes answer not_found after the admin key's check.
func (s *Server) brokered(h adminHandler) adminHandler {
	return served(s.secrets != nil, "this server brokers no secrets", h)
}

func (s *Server) audited(h adminHandler) adminHandler {
	return served(s.audit != nil, "this server serves no audit log", h)
}

func (s *Server) hooked(h adminHandler) adminHandler {
	return served(s.webhooks != nil, "this server delivers no webhooks", h)
}

func served(present bool, missing string, h adminHandler) adminHandler {
	if present {
		return h
	}
	return func(http.ResponseWriter, *http.Request, *latchkey.Actor) error {
		return latchkey.Errorf(latchkey.ENotFound, "%s", missing)
	}
}

// eachRoute is the route table: it hands every route with its handler to
// add. open routes take no admin key; admin routes authenticate one with
// their scope, then run wrap (keyPath, seed) around that, if given.
func (s *Server) eachRoute(add func(Route, http.Handler)) {
	open := func(method, pattern string, h http.HandlerFunc) { add(Route{method, pattern, ""}, h) }
	admin := func(method, pattern, scope string, h adminHandler, wrap ...func(http.Handler) http.Handler) {
		hh := s.admin(scope, h)
		for _, w := range wrap {
			hh = w(hh)
		}
		add(Route{method, pattern, scope}, hh)
	}

	open("GET", "/health", s.health)
	open("GET", "/healthz", s.healthz)
	open("GET", "/readyz", s.readyz)
	open("GET", "/metrics", s.serveMetrics)
	open("GET", "/openapi.json", s.serveOpenAPI)

	open("POST", "/v1/keys/verify", s.verify)

	admin("POST", "/v1/keys", "keys:write", s.createKey)
	admin("GET", "/v1/keys", "keys:read", s.listKeys)
	admin("GET", "/v1/keys/export", "keys:read", s.exportKeys)
	admin("POST", "/v1/keys/import", "keys:write", s.importKeys)
	admin("POST", "/v1/apply", "keys:write", s.applyManifest)
	admin("POST", "/v1/keys/batch", "keys:write", s.batchKeys)
	admin("GET", "/v1/keys/{id}", "keys:read", s.getKey, s.keyPath)
	admin("PATCH", "/v1/keys/{id}", "keys:write", s.updateKey, s.keyPath)
	admin("POST", "/v1/keys/{id}/rotate", "keys:write", s.rotateKey, s.keyPath)
	admin("POST", "/v1/keys/{id}/suspend", "keys:write", s.suspendKey, s.keyPath)
	admin("POST", "/v1/keys/{id}/resume", "keys:write", s.resumeKey, s.keyPath)
	admin("POST", "/v1/keys/{id}/revoke", "keys:write", s.revokeKey, s.keyPath)
	admin("POST", "/v1/keys/{id}/derive", "keys:derive", s.deriveKey, s.keyPath)
	admin("PUT", "/v1/keys/{id}/rotation", "keys:write", s.putRotation, s.keyPath)
	admin("GET", "/v1/keys/{id}/rotation", "keys:read", s.getRotation, s.keyPath)
	admin("DELETE", "/v1/keys/{id}/rotation", "keys:write", s.deleteRotation, s.keyPath)
	admin("GET", "/v1/keys/{id}/usage", "keys:read", s.audited(s.keyUsage), s.keyPath)

	admin("POST", "/v1/policies", "policies:write", s.createPolicy)
	admin("GET", "/v1/policies", "policies:read", s.listPolicies)
	admin("GET", "/v1/policies/{name}", "policies:read", s.getPolicy)
	admin("PATCH", "/v1/policies/{name}", "policies:write", s.updatePolicy)
	admin("DELETE", "/v1/policies/{name}", "policies:write", s.deletePolicy)

	admin("PUT", "/v1/owners/{id}", "keys:write", s.putOwner)
	admin("GET", "/v1/owners", "keys:read", s.listOwners)
	admin("GET", "/v1/owners/{id}", "keys:read", s.getOwner)
	admin("GET", "/v1/owners/{id}/usage", "keys:read", s.audited(s.ownerUsage))
	admin("DELETE", "/v1/owners/{id}", "keys:write", s.deleteOwner)

	open("POST", "/v1/leases/{id}/release", s.releaseLease)

	// Workload identity: a tenant's trusted token issuers, and the
	// exchange of their tokens for short-lived keys (no key: the token is
	// the credential).
	admin("POST", "/v1/identity-providers", "keys:write", s.identified(s.createIdentityProvider))
	admin("GET", "/v1/identity-providers", "keys:read", s.identified(s.listIdentityProviders))
	admin("GET", "/v1/identity-providers/{name}", "keys:read", s.identified(s.getIdentityProvider))
	admin("DELETE", "/v1/identity-providers/{name}", "keys:write", s.identified(s.deleteIdentityProvider))
	open("POST", "/v1/token", s.exchangeToken)

	// Leaked keys: GitHub's partner alerts, signed (no admin key), and a
	// tenant admin's own reports (latchkey scan --revoke).
	open("POST", "/v1/leaks/github", s.githubLeaks)
	admin("POST", "/v1/leaks", "keys:write", s.reportLeaks)

	admin("GET", "/v1/audit", "audit:read", s.audited(s.listAudit))
	admin("GET", "/v1/audit/export", "audit:read", s.audited(s.exportAudit))
	admin("GET", "/v1/audit/verify", "audit:read", s.audited(s.verifyAudit))
	admin("GET", "/v1/security-events", "audit:read", s.audited(s.listSecurityEvents))

	admin("GET", "/v1/reports/access", "audit:read", s.audited(s.accessReport))
	admin("GET", "/v1/reports/usage", "audit:read", s.audited(s.usageReport))
	admin("GET", "/v1/reports/security", "audit:read", s.audited(s.securityReport))

	admin("POST", "/v1/webhooks", "webhooks:write", s.hooked(s.createWebhook))
	admin("GET", "/v1/webhooks", "webhooks:write", s.hooked(s.listWebhooks))
	admin("GET", "/v1/webhooks/{id}", "webhooks:write", s.hooked(s.getWebhook))
	admin("DELETE", "/v1/webhooks/{id}", "webhooks:write", s.hooked(s.deleteWebhook))
	admin("GET", "/v1/webhooks/{id}/deliveries", "webhooks:write", s.hooked(s.listDeliveries))
	admin("POST", "/v1/webhooks/{id}/deliveries/{delivery_id}/retry", "webhooks:write", s.hooked(s.retryDelivery))

	admin("POST", "/v1/tenants", "tenants:admin", s.createTenant)
	admin("GET", "/v1/tenants", "tenants:admin", s.listTenants)

	admin("PUT", "/v1/secrets/{name}", "secrets:write", s.brokered(s.putSecret))
	admin("GET", "/v1/secrets", "secrets:read", s.brokered(s.listSecrets))
	admin("GET", "/v1/secrets/{name}", "secrets:read", s.brokered(s.getSecret))
	admin("GET", "/v1/secrets/{name}/versions", "secrets:read", s.brokered(s.secretVersions))
	admin("DELETE", "/v1/secrets/{name}", "secrets:write", s.brokered(s.deleteSecret))

	// The seed services' contract (API.md): both accept Authorization:
	// Bearer and X-API-Key; a doubled leading slash is mapped in
	// ServeHTTP.
	admin("GET", "/keys/{provider}", "secrets:read", s.brokered(s.seedKey), s.seed)
	admin("GET", "/llm-keys", "secrets:read", s.brokered(s.seedKeys), s.seed)

	admin("GET", "/v1/keyring", "tenants:admin", s.keyringStatus)
	admin("POST", "/v1/keyring/rotate", "tenants:admin", s.rotateKeyring)
	admin("POST", "/v1/keyring/rewrap", "tenants:admin", s.rewrapKeyring)
}
