package sqlite

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// AppendAudit seals e after the tenant's chain head and stores it with the
// new head, in the caller's transaction.
func (t *tx) AppendAudit(e *latchkey.AuditEvent) error {
	seq, hash, err := t.AuditHead(e.Tenant)
	if err != nil {
		return err
	}
	if seq == 0 {
		hash = latchkey.GenesisHash
	}
	e.Seal(seq, hash)
	details, err := json.Marshal(nonNilDetails(e.Details))
	if err != nil {
		return fmt.Errorf("sqlite: audit details: %w", err)
	}
	_, err = t.tx.ExecContext(t.ctx, `INSERT INTO audit_events
		(tenant_id, seq, at, actor_key_id, action, target_key_id, ip, user_agent, result, details, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Tenant, e.Seq, e.At.UnixMicro(), e.ActorKeyID, e.Action, e.TargetKeyID, e.IP, e.UserAgent, e.Result,
		string(details), e.PrevHash, e.Hash)
	if constraint(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", e.Tenant)
	}
	if err != nil {
		return fail(t.ctx, "append audit event", err)
	}
	_, err = t.tx.ExecContext(t.ctx, `INSERT INTO audit_heads (tenant_id, seq, hash) VALUES (?, ?, ?)
		ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`, e.Tenant, e.Seq, e.Hash)
	if err != nil {
		return fail(t.ctx, "append audit event", err)
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
func (t *tx) AuditHead(tenant string) (int64, string, error) {
	var seq int64
	var hash string
	err := t.tx.QueryRowContext(t.ctx, `SELECT seq, hash FROM audit_heads WHERE tenant_id = ?`, tenant).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fail(t.ctx, "audit head", err)
	}
	return seq, hash, nil
}

// AuditEvents lists a tenant's events in seq order.
func (t *tx) AuditEvents(tenant string, f keys.AuditFilter) ([]*latchkey.AuditEvent, error) {
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
