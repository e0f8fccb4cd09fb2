package postgres

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/latchkeyhq/latchkey"
)

// AppendEvent stores e as pending dispatch; EConflict if its id exists,
// ENotFound if its tenant does not.
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
	tag, err := t.exec("append event", `INSERT INTO events (id, tenant_id, type, kind, at, key_id, data)
		SELECT $1, id, $3, $4, $5, $6, $7 FROM tenants WHERE id = $2 ON CONFLICT DO NOTHING`,
		e.ID, e.Tenant, e.Type, kind, e.At, e.KeyID, data)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		if _, err := t.Tenant(e.Tenant); err != nil {
			return err
		}
		return latchkey.Errorf(latchkey.EConflict, "event %s already exists", e.ID)
	}
	return nil
}

const eventColumns = `id, tenant_id, type, at, key_id, data`

// Events lists a tenant's events matching f in id order.
func (t *Tx) Events(tenant string, f latchkey.EventFilter) ([]*latchkey.Event, error) {
	var a args
	var q strings.Builder
	q.WriteString(`SELECT ` + eventColumns + ` FROM events WHERE tenant_id = ` + a.add(tenant) + ` AND id > ` + a.add(f.After))
	if f.Type != "" {
		q.WriteString(` AND type = ` + a.add(f.Type))
	}
	if f.Kind != "" {
		q.WriteString(` AND kind = ` + a.add(f.Kind))
	}
	if f.KeyID != "" {
		q.WriteString(` AND key_id = ` + a.add(f.KeyID))
	}
	if !f.Since.IsZero() {
		q.WriteString(` AND at >= ` + a.add(f.Since))
	}
	if !f.Until.IsZero() {
		q.WriteString(` AND at < ` + a.add(f.Until))
	}
	q.WriteString(` ORDER BY id LIMIT ` + a.add(limit(f.Limit)))
	return t.events("events", q.String(), a...)
}

// CountEvents counts a tenant's events of a type since a time.
func (t *Tx) CountEvents(tenant, typ string, since time.Time) (int64, error) {
	var n int64
	err := t.tx.QueryRow(t.ctx, `SELECT count(*) FROM events WHERE tenant_id = $1 AND type = $2 AND at >= $3`,
		tenant, typ, since).Scan(&n)
	if err != nil {
		return 0, t.fail("count events", err)
	}
	return n, nil
}

// PendingEvents returns undispatched events of every tenant in id order.
func (t *Tx) PendingEvents(n int) ([]*latchkey.Event, error) {
	return t.events("pending events", `SELECT `+eventColumns+` FROM events WHERE NOT dispatched ORDER BY id LIMIT $1`, limit(n))
}

// MarkEventsDispatched marks events dispatched, in one statement; ids that
// do not exist are skipped.
func (t *Tx) MarkEventsDispatched(ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := t.exec("mark events dispatched", `UPDATE events SET dispatched = true WHERE id = ANY($1)`, ids)
	return err
}

// PruneEvents deletes dispatched events older than before.
func (t *Tx) PruneEvents(before time.Time) (int64, error) {
	tag, err := t.exec("prune events", `DELETE FROM events WHERE dispatched AND at < $1`, before)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (t *Tx) events(op, sql string, args ...any) ([]*latchkey.Event, error) {
	return collect(t, op, sql, func(r pgx.Rows) (*latchkey.Event, error) {
		e := &latchkey.Event{}
		var at pgtype.Timestamptz
		var data string
		if err := r.Scan(&e.ID, &e.Tenant, &e.Type, &at, &e.KeyID, &data); err != nil {
			return nil, err
		}
		e.At = fromTS(at)
		e.Data = json.RawMessage(data)
		return e, nil
	}, args...)
}
