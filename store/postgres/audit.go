package postgres

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/latchkeyhq/latchkey"
)

// AppendAudit seals e after the tenant's chain head and stores it with the
// new head, in the caller's transaction; with an audit anchor set
// (SetAuditAnchor) it also checks the log's end against the signed
// checkpoint and signs the new head (latchkey.AppendAudit).
//
// Two transactions appending to one tenant's chain at once both read the
// same head and both try to store the next seq: the serializable
// transaction, the head row and the (tenant_id, seq) key make one of them
// fail, and its Update runs it again after the other, so the chain stays
// one chain.
func (t *Tx) AppendAudit(e *latchkey.AuditEvent) error {
	var signer latchkey.AuditSigner // nil: no anchor
	if t.anchor != nil {
		signer = t.anchor.s
	}
	return latchkey.AppendAudit(t, signer, e)
}

// InsertAudit stores e, sealed, and moves the head onto it; ENotFound if
// its tenant does not exist.
func (t *Tx) InsertAudit(e *latchkey.AuditEvent) error {
	details, err := json.Marshal(nonNilDetails(e.Details))
	if err != nil {
		return fmt.Errorf("postgres: audit details: %w", err)
	}
	tag, err := t.tx.Exec(t.ctx, `INSERT INTO audit_events
		(tenant_id, seq, at, actor_key_id, action, target_key_id, ip, user_agent, result, details, prev_hash, hash)
		SELECT id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM tenants WHERE id = $1`,
		e.Tenant, e.Seq, e.At, e.ActorKeyID, e.Action, e.TargetKeyID, e.IP, e.UserAgent, e.Result,
		string(details), e.PrevHash, e.Hash)
	if sqlState(err) == codeUniqueViolation {
		// Another transaction stored this seq first (a commit this
		// snapshot does not see): run this one again after it.
		t.retry = true
		return unavailable("append audit event", err)
	}
	if err != nil {
		return t.fail("append audit event", err)
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", e.Tenant)
	}
	return t.MoveAuditHead(e.Tenant, e.Seq, e.Hash)
}

// MoveAuditHead sets the tenant's head.
func (t *Tx) MoveAuditHead(tenant string, seq int64, hash string) error {
	_, err := t.exec("move audit head", `INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, $2, $3)
		ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`, tenant, seq, hash)
	return err
}

// AuditHead returns the seq and hash of the tenant's last event (0, "" for
// an empty log).
func (t *Tx) AuditHead(tenant string) (int64, string, error) {
	return t.seqHash("audit head", `SELECT seq, hash FROM audit_heads WHERE tenant_id = $1`, tenant)
}

// AuditLast returns the seq and hash of the tenant's last stored event.
func (t *Tx) AuditLast(tenant string) (int64, string, error) {
	return t.seqHash("last audit event", `SELECT seq, hash FROM audit_events WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1`, tenant)
}

func (t *Tx) seqHash(op, sql, tenant string) (int64, string, error) {
	var seq int64
	var hash string
	err := t.tx.QueryRow(t.ctx, sql, tenant).Scan(&seq, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", t.fail(op, err)
	}
	return seq, hash, nil
}

// AuditCounter returns the highest checkpoint counter (0 for none).
func (t *Tx) AuditCounter() (int64, error) {
	var n pgtype.Int8
	if err := t.tx.QueryRow(t.ctx, `SELECT max(counter) FROM audit_checkpoints`).Scan(&n); err != nil {
		return 0, t.fail("audit checkpoint counter", err)
	}
	return n.Int64, nil
}

const checkpointCols = `tenant_id, seq, hash, counter, tamper_kind, tamper_seq, at, mac`

func scanCheckpoint(sc scanner) (*latchkey.AuditCheckpoint, error) {
	cp := &latchkey.AuditCheckpoint{}
	var at pgtype.Timestamptz
	if err := sc.Scan(&cp.Tenant, &cp.Seq, &cp.Hash, &cp.Counter, &cp.TamperKind, &cp.TamperSeq, &at, &cp.MAC); err != nil {
		return nil, err
	}
	cp.At = fromTS(at)
	return cp, nil
}

// AuditCheckpoint returns the tenant's checkpoint; nil if none.
func (t *Tx) AuditCheckpoint(tenant string) (*latchkey.AuditCheckpoint, error) {
	cp, err := scanCheckpoint(t.tx.QueryRow(t.ctx, `SELECT `+checkpointCols+` FROM audit_checkpoints WHERE tenant_id = $1`, tenant))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, t.fail("audit checkpoint", err)
	}
	return cp, nil
}

// AuditCheckpoints returns the checkpoints with a counter above after, in
// counter order.
func (t *Tx) AuditCheckpoints(after int64) ([]*latchkey.AuditCheckpoint, error) {
	return collect(t, "audit checkpoints", `SELECT `+checkpointCols+` FROM audit_checkpoints WHERE counter > $1 ORDER BY counter`,
		func(r pgx.Rows) (*latchkey.AuditCheckpoint, error) { return scanCheckpoint(r) }, after)
}

// PutAuditCheckpoint stores cp as its tenant's checkpoint; ENotFound if the
// tenant does not exist.
func (t *Tx) PutAuditCheckpoint(cp *latchkey.AuditCheckpoint) error {
	tag, err := t.exec("put audit checkpoint", `INSERT INTO audit_checkpoints (`+checkpointCols+`)
		SELECT id, $2, $3, $4, $5, $6, $7, $8 FROM tenants WHERE id = $1
		ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, counter = excluded.counter,
			tamper_kind = excluded.tamper_kind, tamper_seq = excluded.tamper_seq, at = excluded.at, mac = excluded.mac`,
		cp.Tenant, cp.Seq, cp.Hash, cp.Counter, cp.TamperKind, cp.TamperSeq, cp.At, cp.MAC)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", cp.Tenant)
	}
	return nil
}

func nonNilDetails(d map[string]string) map[string]string {
	if d == nil {
		return map[string]string{}
	}
	return d
}

// AuditEvents lists a tenant's events in seq order, those matching f.
func (t *Tx) AuditEvents(tenant string, f latchkey.AuditFilter) ([]*latchkey.AuditEvent, error) {
	var a args
	var q strings.Builder
	q.WriteString(`SELECT seq, at, actor_key_id, action, target_key_id, ip, user_agent, result, details, prev_hash, hash
		FROM audit_events WHERE tenant_id = ` + a.add(tenant) + ` AND seq > ` + a.add(f.AfterSeq))
	if !f.Since.IsZero() {
		q.WriteString(` AND at >= ` + a.add(f.Since))
	}
	if !f.Until.IsZero() {
		q.WriteString(` AND at < ` + a.add(f.Until))
	}
	if f.Action != "" {
		q.WriteString(` AND action = ` + a.add(f.Action))
	}
	if f.KeyID != "" {
		k := a.add(f.KeyID)
		q.WriteString(` AND (actor_key_id = ` + k + ` OR target_key_id = ` + k + `)`)
	}
	if f.Result != "" {
		q.WriteString(` AND result = ` + a.add(f.Result))
	}
	q.WriteString(` ORDER BY seq LIMIT ` + a.add(limit(f.Limit)))
	return collect(t, "audit events", q.String(), func(r pgx.Rows) (*latchkey.AuditEvent, error) {
		e := &latchkey.AuditEvent{Tenant: tenant}
		var at pgtype.Timestamptz
		var details []byte
		if err := r.Scan(&e.Seq, &at, &e.ActorKeyID, &e.Action, &e.TargetKeyID, &e.IP, &e.UserAgent, &e.Result,
			&details, &e.PrevHash, &e.Hash); err != nil {
			return nil, err
		}
		e.At = fromTS(at)
		// Details that are not an object of strings (changed outside
		// Latchkey) read as their raw text, so the chain check reports
		// them rather than the read failing.
		if err := json.Unmarshal(details, &e.Details); err != nil {
			e.Details = map[string]string{"unparsable": string(details)}
		}
		if len(e.Details) == 0 {
			e.Details = nil
		}
		return e, nil
	}, a...)
}
