package sqlite

import (
	"database/sql"
	"encoding/json"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// AppendEvent stores e as pending dispatch.
func (t *Tx) AppendEvent(e *latchkey.Event) error {
	kind := ""
	if e.Type == latchkey.EventSecurityAnomaly {
		var a struct {
			Kind string `json:"kind"`
		}
		if err := json.Unmarshal(e.Data, &a); err != nil {
			return latchkey.Errorf(latchkey.EInvalid, "event %s: data is not a JSON object", e.ID)
		}
		kind = a.Kind
	}
	data := string(e.Data)
	if data == "" {
		data = "{}"
	}
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO events (id, tenant_id, type, kind, at, key_id, data) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		e.ID, e.Tenant, e.Type, kind, e.At.UnixMicro(), e.KeyID, data)
	if isDuplicate(err) {
		return latchkey.Errorf(latchkey.EConflict, "event %s already exists", e.ID)
	}
	if err != nil {
		return fail(t.ctx, "append event", err)
	}
	return nil
}

const eventColumns = `id, tenant_id, type, at, key_id, data`

// Events lists a tenant's events matching f in id order.
func (t *Tx) Events(tenant string, f latchkey.EventFilter) ([]*latchkey.Event, error) {
	var q strings.Builder
	q.WriteString(`SELECT ` + eventColumns + ` FROM events WHERE tenant_id = ? AND id > ?`)
	args := []any{tenant, f.After}
	add := func(cond string, v any) {
		q.WriteString(cond)
		args = append(args, v)
	}
	if f.Type != "" {
		add(` AND type = ?`, f.Type)
	}
	if f.Kind != "" {
		add(` AND kind = ?`, f.Kind)
	}
	if f.KeyID != "" {
		add(` AND key_id = ?`, f.KeyID)
	}
	if !f.Since.IsZero() {
		add(` AND at >= ?`, f.Since.UnixMicro())
	}
	if !f.Until.IsZero() {
		add(` AND at < ?`, f.Until.UnixMicro())
	}
	q.WriteString(` ORDER BY id`)
	if f.Limit > 0 {
		add(` LIMIT ?`, f.Limit)
	}
	return t.events("events", q.String(), args...)
}

// CountEvents counts a tenant's events of a type since a time.
func (t *Tx) CountEvents(tenant, typ string, since time.Time) (int64, error) {
	var n int64
	err := t.tx.QueryRowContext(t.ctx, `SELECT count(*) FROM events WHERE tenant_id = ? AND type = ? AND at >= ?`,
		tenant, typ, since.UnixMicro()).Scan(&n)
	if err != nil {
		return 0, fail(t.ctx, "count events", err)
	}
	return n, nil
}

// PendingEvents returns undispatched events of every tenant in id order.
func (t *Tx) PendingEvents(limit int) ([]*latchkey.Event, error) {
	return t.events("pending events", `SELECT `+eventColumns+` FROM events WHERE dispatched = 0 ORDER BY id LIMIT ?`, limit)
}

// MarkEventsDispatched marks events dispatched.
func (t *Tx) MarkEventsDispatched(ids []string) error {
	for _, id := range ids {
		if _, err := t.tx.ExecContext(t.ctx, `UPDATE events SET dispatched = 1 WHERE id = ?`, id); err != nil {
			return fail(t.ctx, "mark events dispatched", err)
		}
	}
	return nil
}

// PruneEvents deletes dispatched events older than before.
func (t *Tx) PruneEvents(before time.Time) (int64, error) {
	res, err := t.tx.ExecContext(t.ctx, `DELETE FROM events WHERE dispatched = 1 AND at < ?`, before.UnixMicro())
	if err != nil {
		return 0, fail(t.ctx, "prune events", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fail(t.ctx, "prune events", err)
	}
	return n, nil
}

func (t *Tx) events(op, query string, args ...any) ([]*latchkey.Event, error) {
	rows, err := t.tx.QueryContext(t.ctx, query, args...)
	if err != nil {
		return nil, fail(t.ctx, op, err)
	}
	defer rows.Close()
	out := []*latchkey.Event{}
	for rows.Next() {
		e := &latchkey.Event{}
		var at int64
		var data string
		if err := rows.Scan(&e.ID, &e.Tenant, &e.Type, &at, &e.KeyID, &data); err != nil {
			return nil, fail(t.ctx, op, err)
		}
		e.At = fromMicros(sql.NullInt64{Int64: at, Valid: true})
		e.Data = json.RawMessage(data)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, op, err)
	}
	return out, nil
}
