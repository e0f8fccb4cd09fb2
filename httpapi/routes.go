package httpapi

// routes lists the whole HTTP surface. Forward-auth (GET /v1/auth, any
// method, and /v1/auth/… for Envoy's path prefix) is dispatched in ServeHTTP
// before the mux, because it is the hot path.
func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /health", s.health)
	m.HandleFunc("GET /healthz", s.healthz)
	m.HandleFunc("GET /readyz", s.readyz)
	m.HandleFunc("GET /metrics", s.serveMetrics)

	m.HandleFunc("POST /v1/keys/verify", s.verify)

	m.Handle("POST /v1/keys", s.admin("keys:write", s.createKey))
	m.Handle("GET /v1/keys", s.admin("keys:read", s.listKeys))
	m.Handle("GET /v1/keys/export", s.admin("keys:read", s.exportKeys))
	m.Handle("POST /v1/keys/import", s.admin("keys:write", s.importKeys))
	m.Handle("GET /v1/keys/{id}", s.keyPath(s.admin("keys:read", s.getKey)))
	m.Handle("PATCH /v1/keys/{id}", s.keyPath(s.admin("keys:write", s.updateKey)))
	m.Handle("POST /v1/keys/{id}/rotate", s.keyPath(s.admin("keys:write", s.rotateKey)))
	m.Handle("POST /v1/keys/{id}/suspend", s.keyPath(s.admin("keys:write", s.suspendKey)))
	m.Handle("POST /v1/keys/{id}/resume", s.keyPath(s.admin("keys:write", s.resumeKey)))
	m.Handle("POST /v1/keys/{id}/revoke", s.keyPath(s.admin("keys:write", s.revokeKey)))
	m.Handle("POST /v1/keys/{id}/derive", s.keyPath(s.admin("keys:derive", s.deriveKey)))
	m.Handle("GET /v1/keys/{id}/usage", s.keyPath(s.admin("keys:read", s.keyUsage)))

	m.HandleFunc("POST /v1/leases/{id}/release", s.releaseLease)

	m.Handle("GET /v1/audit", s.admin("audit:read", s.listAudit))
	m.Handle("GET /v1/audit/export", s.admin("audit:read", s.exportAudit))
	m.Handle("GET /v1/audit/verify", s.admin("audit:read", s.verifyAudit))
	m.Handle("GET /v1/security-events", s.admin("audit:read", s.listSecurityEvents))

	m.Handle("GET /v1/reports/access", s.admin("audit:read", s.accessReport))
	m.Handle("GET /v1/reports/usage", s.admin("audit:read", s.usageReport))
	m.Handle("GET /v1/reports/security", s.admin("audit:read", s.securityReport))

	m.Handle("POST /v1/webhooks", s.admin("webhooks:write", s.createWebhook))
	m.Handle("GET /v1/webhooks", s.admin("webhooks:write", s.listWebhooks))
	m.Handle("GET /v1/webhooks/{id}", s.admin("webhooks:write", s.getWebhook))
	m.Handle("DELETE /v1/webhooks/{id}", s.admin("webhooks:write", s.deleteWebhook))
	m.Handle("GET /v1/webhooks/{id}/deliveries", s.admin("webhooks:write", s.listDeliveries))
	m.Handle("POST /v1/webhooks/{id}/deliveries/{delivery_id}/retry", s.admin("webhooks:write", s.retryDelivery))

	m.Handle("POST /v1/tenants", s.admin("tenants:admin", s.createTenant))
	m.Handle("GET /v1/tenants", s.admin("tenants:admin", s.listTenants))

	m.Handle("PUT /v1/secrets/{name}", s.admin("secrets:write", s.putSecret))
	m.Handle("GET /v1/secrets", s.admin("secrets:read", s.listSecrets))
	m.Handle("GET /v1/secrets/{name}", s.admin("secrets:read", s.getSecret))
	m.Handle("GET /v1/secrets/{name}/versions", s.admin("secrets:read", s.secretVersions))
	m.Handle("DELETE /v1/secrets/{name}", s.admin("secrets:write", s.deleteSecret))

	// The seed services' contract (API.md): both accept Authorization:
	// Bearer and X-API-Key; a doubled leading slash is mapped in
	// ServeHTTP.
	m.Handle("GET /keys/{provider}", s.seed(s.admin("secrets:read", s.seedKey)))
	m.Handle("GET /llm-keys", s.seed(s.admin("secrets:read", s.seedKeys)))

	m.Handle("GET /v1/keyring", s.admin("tenants:admin", s.keyringStatus))
	m.Handle("POST /v1/keyring/rotate", s.admin("tenants:admin", s.rotateKeyring))
	m.Handle("POST /v1/keyring/rewrap", s.admin("tenants:admin", s.rewrapKeyring))

	m.HandleFunc("/", s.noRoute)
}
