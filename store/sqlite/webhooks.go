package sqlite

import (
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	sqlite3 "modernc.org/sqlite/lib"
)

const webhookColumns = `id, tenant_id, url, events, secret, created_at`

// CreateWebhook inserts w.
func (t *Tx) CreateWebhook(w *latchkey.Webhook) error {
	events, err := jsonArray(w.Events)
	if err != nil {
		return fail(t.ctx, "create webhook", err)
	}
	_, err = t.tx.ExecContext(t.ctx, `INSERT INTO webhooks (`+webhookColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
		w.ID, w.Tenant, w.URL, events, w.SealedSecret, micros(w.CreatedAt))
	switch {
	case isDuplicate(err):
		return latchkey.Errorf(latchkey.EConflict, "webhook %q already exists", w.ID)
	case constraint(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return latchkey.Errorf(latchkey.ENotFound, "tenant %q not found", w.Tenant)
	case err != nil:
		return fail(t.ctx, "create webhook", err)
	}
	return nil
}

// Webhook returns a tenant's webhook by id.
func (t *Tx) Webhook(tenant, id string) (*latchkey.Webhook, error) {
	w, err := scanWebhook(t.tx.QueryRowContext(t.ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE tenant_id = ? AND id = ?`, tenant, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "webhook %q not found", id)
	}
	if err != nil {
		return nil, fail(t.ctx, "webhook", err)
	}
	return w, nil
}

// Webhooks lists a tenant's webhooks by id.
func (t *Tx) Webhooks(tenant string, p latchkey.Page) ([]*latchkey.Webhook, error) {
	return t.webhooks("webhooks", `SELECT `+webhookColumns+` FROM webhooks WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?`,
		tenant, p.After, limit(p))
}

// WebhooksFor returns the tenant's webhooks that want typ and existed at at.
func (t *Tx) WebhooksFor(tenant, typ string, at time.Time) ([]*latchkey.Webhook, error) {
	all, err := t.webhooks("webhooks for event", `SELECT `+webhookColumns+` FROM webhooks WHERE tenant_id = ? AND created_at <= ? ORDER BY id`,
		tenant, at.UnixMicro())
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, w := range all {
		if w.Wants(typ) {
			out = append(out, w)
		}
	}
	return out, nil
}

// DeleteWebhook deletes a tenant's webhook; its deliveries go with it
// (ON DELETE CASCADE).
func (t *Tx) DeleteWebhook(tenant, id string) error {
	res, err := t.tx.ExecContext(t.ctx, `DELETE FROM webhooks WHERE tenant_id = ? AND id = ?`, tenant, id)
	if err != nil {
		return fail(t.ctx, "delete webhook", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail(t.ctx, "delete webhook", err)
	}
	if n == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "webhook %q not found", id)
	}
	return nil
}

func (t *Tx) webhooks(op, query string, args ...any) ([]*latchkey.Webhook, error) {
	rows, err := t.tx.QueryContext(t.ctx, query, args...)
	if err != nil {
		return nil, fail(t.ctx, op, err)
	}
	defer rows.Close()
	out := []*latchkey.Webhook{}
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, fail(t.ctx, op, err)
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, op, err)
	}
	return out, nil
}

func scanWebhook(row scanner) (*latchkey.Webhook, error) {
	var w latchkey.Webhook
	var events string
	var created sql.NullInt64
	if err := row.Scan(&w.ID, &w.Tenant, &w.URL, &events, &w.SealedSecret, &created); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(events), &w.Events); err != nil {
		return nil, err
	}
	if w.Events == nil {
		w.Events = []string{}
	}
	w.CreatedAt = fromMicros(created)
	return &w, nil
}

const deliveryColumns = `id, webhook_id, tenant_id, event_id, event_type, payload, status, attempts,
	next_attempt_at, lease_until, last_status_code, last_error, created_at, delivered_at`

// CreateDelivery inserts d.
func (t *Tx) CreateDelivery(d *latchkey.Delivery) error {
	payload := string(d.Payload)
	if payload == "" {
		payload = "{}"
	}
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO deliveries (`+deliveryColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.ID, d.WebhookID, d.Tenant, d.EventID, d.EventType, payload, d.Status, d.Attempts,
		micros(d.NextAttemptAt), leaseMicros(d.LeaseUntil), d.LastStatusCode, d.LastError, micros(d.CreatedAt), micros(d.DeliveredAt))
	switch {
	case isDuplicate(err):
		return latchkey.Errorf(latchkey.EConflict, "delivery %q, or one of event %q to webhook %q, already exists", d.ID, d.EventID, d.WebhookID)
	case constraint(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return latchkey.Errorf(latchkey.ENotFound, "webhook %q not found", d.WebhookID)
	case err != nil:
		return fail(t.ctx, "create delivery", err)
	}
	return nil
}

// Delivery returns a tenant's delivery by id.
func (t *Tx) Delivery(tenant, id string) (*latchkey.Delivery, error) {
	ds, err := t.deliveries("delivery", `SELECT `+deliveryColumns+` FROM deliveries WHERE tenant_id = ? AND id = ?`, tenant, id)
	if err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, latchkey.Errorf(latchkey.ENotFound, "delivery %q not found", id)
	}
	return ds[0], nil
}

// Deliveries lists a webhook's deliveries newest first.
func (t *Tx) Deliveries(tenant, webhookID string, f latchkey.DeliveryFilter) ([]*latchkey.Delivery, error) {
	var q strings.Builder
	q.WriteString(`SELECT ` + deliveryColumns + ` FROM deliveries WHERE tenant_id = ? AND webhook_id = ?`)
	args := []any{tenant, webhookID}
	if f.Before != "" {
		q.WriteString(` AND id < ?`)
		args = append(args, f.Before)
	}
	if f.Status != "" {
		q.WriteString(` AND status = ?`)
		args = append(args, f.Status)
	}
	q.WriteString(` ORDER BY id DESC LIMIT ?`)
	args = append(args, limit(latchkey.Page{Limit: f.Limit}))
	return t.deliveries("deliveries", q.String(), args...)
}

// ClaimDeliveries leases due pending deliveries.
func (t *Tx) ClaimDeliveries(now, leaseUntil time.Time, n int) ([]*latchkey.Delivery, error) {
	ds, err := t.deliveries("claim deliveries", `SELECT `+deliveryColumns+` FROM deliveries
		WHERE status = 'pending' AND next_attempt_at <= ? AND lease_until <= ?
		ORDER BY next_attempt_at, id LIMIT ?`, now.UnixMicro(), now.UnixMicro(), n)
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		if _, err := t.tx.ExecContext(t.ctx, `UPDATE deliveries SET lease_until = ? WHERE id = ?`, leaseMicros(leaseUntil), d.ID); err != nil {
			return nil, fail(t.ctx, "claim deliveries", err)
		}
		d.LeaseUntil = leaseUntil.UTC().Truncate(time.Microsecond)
	}
	return ds, nil
}

// UpdateDelivery stores the outcome of an attempt.
func (t *Tx) UpdateDelivery(d *latchkey.Delivery) error {
	res, err := t.tx.ExecContext(t.ctx, `UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?,
		last_status_code = ?, last_error = ?, delivered_at = ?, lease_until = ? WHERE id = ?`,
		d.Status, d.Attempts, micros(d.NextAttemptAt), d.LastStatusCode, d.LastError, micros(d.DeliveredAt), leaseMicros(d.LeaseUntil), d.ID)
	if err != nil {
		return fail(t.ctx, "update delivery", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail(t.ctx, "update delivery", err)
	}
	if n == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "delivery %q not found", d.ID)
	}
	return nil
}

// CountPendingDeliveries counts the outbox.
func (t *Tx) CountPendingDeliveries() (int64, error) {
	var n int64
	if err := t.tx.QueryRowContext(t.ctx, `SELECT count(*) FROM deliveries WHERE status = 'pending'`).Scan(&n); err != nil {
		return 0, fail(t.ctx, "count pending deliveries", err)
	}
	return n, nil
}

// PruneDeliveries deletes finished deliveries created before before.
func (t *Tx) PruneDeliveries(before time.Time) (int64, error) {
	res, err := t.tx.ExecContext(t.ctx, `DELETE FROM deliveries WHERE status != 'pending' AND created_at < ?`, before.UnixMicro())
	if err != nil {
		return 0, fail(t.ctx, "prune deliveries", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fail(t.ctx, "prune deliveries", err)
	}
	return n, nil
}

// ExpiringKeys returns live keys whose expiry falls in (From, To].
func (t *Tx) ExpiringKeys(f latchkey.ExpiringFilter) ([]*latchkey.Key, error) {
	q := `SELECT ` + keyColumns + ` FROM keys
		WHERE expires_at IS NOT NULL AND expires_at > ? AND expires_at <= ?
		AND state != 'revoked' AND grace_until IS NULL`
	args := []any{f.From.UnixMicro(), f.To.UnixMicro()}
	if f.AfterID != "" {
		q += ` AND (expires_at > ? OR (expires_at = ? AND id > ?))`
		ae := f.AfterExpires.UnixMicro()
		args = append(args, ae, ae, f.AfterID)
	}
	q += ` ORDER BY expires_at, id LIMIT ?`
	args = append(args, limit(latchkey.Page{Limit: f.Limit}))
	return t.keys("expiring keys", q, args...)
}

func (t *Tx) deliveries(op, query string, args ...any) ([]*latchkey.Delivery, error) {
	rows, err := t.tx.QueryContext(t.ctx, query, args...)
	if err != nil {
		return nil, fail(t.ctx, op, err)
	}
	defer rows.Close()
	out := []*latchkey.Delivery{}
	for rows.Next() {
		var d latchkey.Delivery
		var payload string
		var next, created, delivered sql.NullInt64
		var lease int64
		if err := rows.Scan(&d.ID, &d.WebhookID, &d.Tenant, &d.EventID, &d.EventType, &payload, &d.Status, &d.Attempts,
			&next, &lease, &d.LastStatusCode, &d.LastError, &created, &delivered); err != nil {
			return nil, fail(t.ctx, op, err)
		}
		d.Payload = json.RawMessage(payload)
		d.NextAttemptAt = fromMicros(next)
		if lease != 0 {
			d.LeaseUntil = time.UnixMicro(lease).UTC()
		}
		d.CreatedAt = fromMicros(created)
		d.DeliveredAt = fromMicros(delivered)
		out = append(out, &d)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, op, err)
	}
	return out, nil
}

// leaseMicros stores a lease time; 0 (not NULL) is "unclaimed", so that
// the claim query compares without a NULL case.
func leaseMicros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}
