package sqlite

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/latchkeyhq/latchkey"
)

// AppendAudit seals e after the tenant's chain head and stores it with the
// new head, in the caller's transaction; with an audit anchor set
// (SetAuditAnchor) it also checks the log's end against the signed
// checkpoint and signs the new head (latchkey.AppendAudit).
func (t *Tx) AppendAudit(e *latchkey.AuditEvent) error {
	var signer latchkey.AuditSigner // nil: no anchor
	if t.anchor != nil {
		signer = t.anchor.s
	}
	return latchkey.AppendAudit(t, signer, e)
}

// InsertAudit stores e, sealed, and moves the head onto it.
func (t *Tx) InsertAudit(e *latchkey.AuditEvent) error {
	details, err := json.Marshal(nonNilDetails(e.Details))
	if err != nil {
		return fmt.Errorf("sqlite: audit details: %w", err)
	}
	_, err = t.tx.StmtContext(t.ctx, t.stmts.auditInsert).ExecContext(t.ctx,
		e.Tenant, e.Seq, e.At.UnixMicro(), e.ActorKeyID, e.Action, e.TargetKeyID, e.IP, e.UserAgent, e.Result,
		string(details), e.PrevHash, e.Hash)
	if constraint(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", e.Tenant)
	}
	if err != nil {
		return fail(t.ctx, "append audit event", err)
	}
	return t.MoveAuditHead(e.Tenant, e.Seq, e.Hash)
}

// MoveAuditHead sets the tenant's head.
func (t *Tx) MoveAuditHead(tenant string, seq int64, hash string) error {
	_, err := t.tx.StmtContext(t.ctx, t.stmts.auditMoveHead).ExecContext(t.ctx, tenant, seq, hash)
	if err != nil {
		return fail(t.ctx, "move audit head", err)
	}
	return nil
}

// AuditLast returns the seq and hash of the tenant's last stored event.
func (t *Tx) AuditLast(tenant string) (int64, string, error) {
	var seq int64
	var hash string
	err := t.tx.StmtContext(t.ctx, t.stmts.auditLast).QueryRowContext(t.ctx, tenant).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fail(t.ctx, "last audit event", err)
	}
	return seq, hash, nil
}

// AuditCounter returns the highest checkpoint counter (0 for none).
func (t *Tx) AuditCounter() (int64, error) {
	var n sql.NullInt64
	if err := t.tx.StmtContext(t.ctx, t.stmts.auditCounter).QueryRowContext(t.ctx).Scan(&n); err != nil {
		return 0, fail(t.ctx, "audit checkpoint counter", err)
	}
	return n.Int64, nil
}

const checkpointCols = `tenant_id, seq, hash, counter, tamper_kind, tamper_seq, at, mac`

// The audit append's statements, prepared once per pool (stmts).
const (
	auditHeadQuery       = `SELECT seq, hash FROM audit_heads WHERE tenant_id = ?`
	auditLastQuery       = `SELECT seq, hash FROM audit_events WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1`
	auditCheckpointQuery = `SELECT ` + checkpointCols + ` FROM audit_checkpoints WHERE tenant_id = ?`
	auditCounterQuery    = `SELECT max(counter) FROM audit_checkpoints`
	auditInsertQuery     = `INSERT INTO audit_events
		(tenant_id, seq, at, actor_key_id, action, target_key_id, ip, user_agent, result, details, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	auditMoveHeadQuery = `INSERT INTO audit_heads (tenant_id, seq, hash) VALUES (?, ?, ?)
		ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`
	auditPutCheckpointQuery = `INSERT INTO audit_checkpoints (` + checkpointCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, counter = excluded.counter,
			tamper_kind = excluded.tamper_kind, tamper_seq = excluded.tamper_seq, at = excluded.at, mac = excluded.mac`
)

func scanCheckpoint(sc interface{ Scan(...any) error }) (*latchkey.AuditCheckpoint, error) {
	cp := &latchkey.AuditCheckpoint{}
	var at int64
	if err := sc.Scan(&cp.Tenant, &cp.Seq, &cp.Hash, &cp.Counter, &cp.TamperKind, &cp.TamperSeq, &at, &cp.MAC); err != nil {
		return nil, err
	}
	cp.At = fromMicros(sql.NullInt64{Int64: at, Valid: true})
	return cp, nil
}

// AuditCheckpoint returns the tenant's checkpoint; nil if none.
func (t *Tx) AuditCheckpoint(tenant string) (*latchkey.AuditCheckpoint, error) {
	cp, err := scanCheckpoint(t.tx.StmtContext(t.ctx, t.stmts.auditCheckpoint).QueryRowContext(t.ctx, tenant))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fail(t.ctx, "audit checkpoint", err)
	}
	return cp, nil
}

// AuditCheckpoints returns the checkpoints with a counter above after.
func (t *Tx) AuditCheckpoints(after int64) ([]*latchkey.AuditCheckpoint, error) {
	rows, err := t.tx.QueryContext(t.ctx, `SELECT `+checkpointCols+` FROM audit_checkpoints WHERE counter > ? ORDER BY counter`, after)
	if err != nil {
		return nil, fail(t.ctx, "audit checkpoints", err)
	}
	defer rows.Close()
	var out []*latchkey.AuditCheckpoint
	for rows.Next() {
		cp, err := scanCheckpoint(rows)
		if err != nil {
			return nil, fail(t.ctx, "audit checkpoints", err)
		}
		out = append(out, cp)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, "audit checkpoints", err)
	}
	return out, nil
}

// PutAuditCheckpoint stores cp as its tenant's checkpoint.
func (t *Tx) PutAuditCheckpoint(cp *latchkey.AuditCheckpoint) error {
	_, err := t.tx.StmtContext(t.ctx, t.stmts.auditPutCheckpoint).ExecContext(t.ctx,
		cp.Tenant, cp.Seq, cp.Hash, cp.Counter, cp.TamperKind, cp.TamperSeq, cp.At.UnixMicro(), cp.MAC)
	if constraint(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", cp.Tenant)
	}
	if err != nil {
		return fail(t.ctx, "put audit checkpoint", err)
	}
	return nil
}

func nonNilDetails(d map[string]string) map[string]string {
	if d == nil {
		return map[string]string{}
	}
	return d
}

// AuditHead returns the seq and hash of the tenant's last event.
func (t *Tx) AuditHead(tenant string) (int64, string, error) {
	var seq int64
	var hash string
	err := t.tx.StmtContext(t.ctx, t.stmts.auditHead).QueryRowContext(t.ctx, tenant).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fail(t.ctx, "audit head", err)
	}
	return seq, hash, nil
}

// AuditEvents lists a tenant's events in seq order.
func (t *Tx) AuditEvents(tenant string, f latchkey.AuditFilter) ([]*latchkey.AuditEvent, error) {
	q := strings.Builder{}
	q.WriteString(`SELECT seq, at, actor_key_id, action, target_key_id, ip, user_agent, result, details, prev_hash, hash
		FROM audit_events WHERE tenant_id = ? AND seq > ?`)
	args := []any{tenant, f.AfterSeq}
	if !f.Since.IsZero() {
		q.WriteString(` AND at >= ?`)
		args = append(args, f.Since.UnixMicro())
	}
	if !f.Until.IsZero() {
		q.WriteString(` AND at < ?`)
		args = append(args, f.Until.UnixMicro())
	}
	if f.Action != "" {
		q.WriteString(` AND action = ?`)
		args = append(args, f.Action)
	}
	if f.KeyID != "" {
		q.WriteString(` AND (actor_key_id = ? OR target_key_id = ?)`)
		args = append(args, f.KeyID, f.KeyID)
	}
	if f.Result != "" {
		q.WriteString(` AND result = ?`)
		args = append(args, f.Result)
	}
	q.WriteString(` ORDER BY seq`)
	if f.Limit > 0 {
		q.WriteString(` LIMIT ?`)
		args = append(args, f.Limit)
	}
	rows, err := t.tx.QueryContext(t.ctx, q.String(), args...)
	if err != nil {
		return nil, fail(t.ctx, "audit events", err)
	}
	defer rows.Close()
	out := []*latchkey.AuditEvent{}
	for rows.Next() {
		e := &latchkey.AuditEvent{Tenant: tenant}
		var at int64
		var details string
		if err := rows.Scan(&e.Seq, &at, &e.ActorKeyID, &e.Action, &e.TargetKeyID, &e.IP, &e.UserAgent, &e.Result,
			&details, &e.PrevHash, &e.Hash); err != nil {
			return nil, fail(t.ctx, "audit events", err)
		}
		e.At = fromMicros(sql.NullInt64{Int64: at, Valid: true})
		// A details column that no longer parses (tampered with) reads as
		// its raw text, so the chain check reports it rather than the read
		// failing.
		if err := json.Unmarshal([]byte(details), &e.Details); err != nil {
			e.Details = map[string]string{"unparsable": details}
		}
		if len(e.Details) == 0 {
			e.Details = nil
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, "audit events", err)
	}
	return out, nil
}
