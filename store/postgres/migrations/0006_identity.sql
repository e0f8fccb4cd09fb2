-- Workload identity, as store/sqlite's 0017. A tenant's trusted token
-- issuers: body is the provider as JSON (issuer, keys, audience,
-- algorithms, claim rules, key template), so a new field of it needs no
-- migration.
CREATE TABLE identity_providers (
	tenant_id  TEXT COLLATE "C" NOT NULL,
	name       TEXT COLLATE "C" NOT NULL,
	body       JSONB NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, name)
);

-- The jtis of the identity tokens already exchanged, shared by every
-- node: a token is accepted once. A row is kept until its token has
-- expired, then pruned.
CREATE TABLE identity_jtis (
	tenant_id  TEXT COLLATE "C" NOT NULL,
	issuer     TEXT COLLATE "C" NOT NULL,
	jti        TEXT COLLATE "C" NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, issuer, jti)
);

CREATE INDEX identity_jtis_expires ON identity_jtis (expires_at);
