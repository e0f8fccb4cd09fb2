-- Audit checkpoints: each tenant's chain head signed (HMAC-SHA256) with a
-- key derived from the keyring's master key, which the database does not
-- hold. Written in the transaction of every append; counter grows with
-- every checkpoint of any tenant, so an older checkpoint put back in place
-- of a newer one is caught by the copy kept outside the database (the
-- audit anchor file). tamper_kind/tamper_seq keep the first tampering the
-- server found, under the MAC. See docs/security.md.
CREATE TABLE audit_checkpoints (
	tenant_id   TEXT PRIMARY KEY REFERENCES tenants (id),
	seq         INTEGER NOT NULL,
	hash        TEXT NOT NULL,
	counter     INTEGER NOT NULL,
	tamper_kind TEXT NOT NULL,
	tamper_seq  INTEGER NOT NULL,
	at          INTEGER NOT NULL, -- unix microseconds
	mac         TEXT NOT NULL     -- hex HMAC-SHA256 of latchkey.AuditCheckpoint.Message
) STRICT;

CREATE INDEX audit_checkpoints_counter ON audit_checkpoints (counter);

-- Append-only covers INSERT too: an event must extend its tenant's head
-- (seq one past it, prev_hash its hash; seq 1 after the genesis hash).
-- The server moves the head in the same transaction. (Someone with the
-- file can drop these triggers; the signed checkpoint is what catches
-- that.)
CREATE TRIGGER audit_events_extend_head BEFORE INSERT ON audit_events
WHEN NEW.seq IS NOT coalesce((SELECT seq FROM audit_heads WHERE tenant_id = NEW.tenant_id), 0) + 1
	OR NEW.prev_hash IS NOT coalesce((SELECT hash FROM audit_heads WHERE tenant_id = NEW.tenant_id),
		'0000000000000000000000000000000000000000000000000000000000000000')
BEGIN SELECT RAISE(ABORT, 'audit events are append-only: an event must extend its tenant''s head'); END;

-- The head only moves forward, onto a stored event.
CREATE TRIGGER audit_heads_forward BEFORE UPDATE ON audit_heads
WHEN NEW.seq <= OLD.seq OR NEW.tenant_id IS NOT OLD.tenant_id
	OR NEW.hash IS NOT (SELECT hash FROM audit_events WHERE tenant_id = NEW.tenant_id AND seq = NEW.seq)
BEGIN SELECT RAISE(ABORT, 'the audit head only moves forward, onto a stored event'); END;
CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
BEGIN SELECT RAISE(ABORT, 'audit heads are never removed'); END;

-- Checkpoints only move forward (a rewrap signs them again in place).
CREATE TRIGGER audit_checkpoints_forward BEFORE UPDATE ON audit_checkpoints
WHEN NEW.counter < OLD.counter OR NEW.tenant_id IS NOT OLD.tenant_id
BEGIN SELECT RAISE(ABORT, 'audit checkpoints only move forward'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are never removed'); END;
