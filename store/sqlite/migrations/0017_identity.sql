-- Workload identity (package identity, docs/identity.md). A tenant's
-- trusted token issuers: body is the provider as JSON (issuer, keys,
-- audience, algorithms, claim rules, key template), so a new field of it
-- needs no migration. created_at is unix microseconds.
CREATE TABLE identity_providers (
	tenant_id  TEXT NOT NULL,
	name       TEXT NOT NULL,
	body       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, name)
) STRICT;

-- The jtis of the identity tokens already exchanged: a token is accepted
-- once. A row is kept until its token has expired (expires_at, unix
-- microseconds), then pruned.
CREATE TABLE identity_jtis (
	tenant_id  TEXT NOT NULL,
	issuer     TEXT NOT NULL,
	jti        TEXT NOT NULL,
	expires_at INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, issuer, jti)
) STRICT;

CREATE INDEX identity_jtis_expires ON identity_jtis (expires_at);
