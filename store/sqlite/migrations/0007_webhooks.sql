-- Webhook endpoints and the outbox of deliveries to them. A webhook's
-- signing secret is stored sealed by the keyring, never in plaintext.
-- events is a JSON array of event types ([] means every type).
CREATE TABLE webhooks (
	id         TEXT PRIMARY KEY,
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	url        TEXT NOT NULL,
	events     TEXT NOT NULL,
	secret     BLOB NOT NULL, -- sealed with aad "webhook:<tenant>:<id>"
	created_at INTEGER NOT NULL -- unix microseconds
) STRICT;

CREATE INDEX webhooks_tenant ON webhooks (tenant_id, id);

-- One row per (webhook, event): the durable outbox. lease_until is when a
-- node's claim on a row lapses (0: unclaimed), so two nodes, or a node and
-- its restarted self, never send one delivery at once. payload is the body
-- every attempt sends.
CREATE TABLE deliveries (
	id               TEXT PRIMARY KEY,
	webhook_id       TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
	tenant_id        TEXT NOT NULL,
	event_id         TEXT NOT NULL,
	event_type       TEXT NOT NULL,
	payload          TEXT NOT NULL,
	status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
	attempts         INTEGER NOT NULL,
	next_attempt_at  INTEGER,
	lease_until      INTEGER NOT NULL DEFAULT 0,
	last_status_code INTEGER NOT NULL DEFAULT 0,
	last_error       TEXT NOT NULL DEFAULT '',
	created_at       INTEGER NOT NULL,
	delivered_at     INTEGER,
	UNIQUE (webhook_id, event_id)
) STRICT;

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_webhook ON deliveries (tenant_id, webhook_id, id);
CREATE INDEX deliveries_created ON deliveries (created_at) WHERE status != 'pending';

-- key.expiring scans look for keys by expiry across tenants.
CREATE INDEX keys_expires ON keys (expires_at) WHERE expires_at IS NOT NULL;
