package postgres

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/latchkeyhq/latchkey"
)

const webhookColumns = `id, tenant_id, url, events, secret, created_at`

// CreateWebhook inserts w; EConflict if its id exists, ENotFound if its
// tenant does not.
func (t *Tx) CreateWebhook(w *latchkey.Webhook) error {
	tag, err := t.exec("create webhook", `INSERT INTO webhooks (`+webhookColumns+`)
		SELECT $1, id, $3, $4, $5, $6 FROM tenants WHERE id = $2 ON CONFLICT DO NOTHING`,
		w.ID, w.Tenant, w.URL, orEmpty(w.Events), w.SealedSecret, ts(w.CreatedAt))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		if _, err := t.Tenant(w.Tenant); err != nil {
			return err
		}
		return latchkey.Errorf(latchkey.EConflict, "webhook %q already exists", w.ID)
	}
	return nil
}

func scanWebhook(row scanner) (*latchkey.Webhook, error) {
	var w latchkey.Webhook
	var created pgtype.Timestamptz
	if err := row.Scan(&w.ID, &w.Tenant, &w.URL, &w.Events, &w.SealedSecret, &created); err != nil {
		return nil, err
	}
	w.Events = orEmpty(w.Events)
	w.CreatedAt = fromTS(created)
	return &w, nil
}

// Webhook returns a tenant's webhook by id; ENotFound if there is none
// there.
func (t *Tx) Webhook(tenant, id string) (*latchkey.Webhook, error) {
	w, err := scanWebhook(t.tx.QueryRow(t.ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE tenant_id = $1 AND id = $2`, tenant, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "webhook %q not found", id)
	}
	if err != nil {
		return nil, t.fail("webhook", err)
	}
	return w, nil
}

// Webhooks lists a tenant's webhooks by id.
func (t *Tx) Webhooks(tenant string, p latchkey.Page) ([]*latchkey.Webhook, error) {
	return t.webhooks("webhooks", `SELECT `+webhookColumns+` FROM webhooks WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`,
		tenant, p.After, limit(p.Limit))
}

// WebhooksFor returns the tenant's webhooks that want typ and existed at at.
func (t *Tx) WebhooksFor(tenant, typ string, at time.Time) ([]*latchkey.Webhook, error) {
	all, err := t.webhooks("webhooks for event", `SELECT `+webhookColumns+` FROM webhooks WHERE tenant_id = $1 AND created_at <= $2 ORDER BY id`,
		tenant, at)
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
// (ON DELETE CASCADE). ENotFound if there is none there.
func (t *Tx) DeleteWebhook(tenant, id string) error {
	tag, err := t.exec("delete webhook", `DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2`, tenant, id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "webhook %q not found", id)
	}
	return nil
}

func (t *Tx) webhooks(op, sql string, args ...any) ([]*latchkey.Webhook, error) {
	return collect(t, op, sql, func(r pgx.Rows) (*latchkey.Webhook, error) { return scanWebhook(r) }, args...)
}

const deliveryColumns = `id, webhook_id, tenant_id, event_id, event_type, payload, status, attempts,
	next_attempt_at, lease_until, last_status_code, last_error, created_at, delivered_at`

// CreateDelivery inserts d; EConflict if its id, or a delivery of its event
// to its webhook, exists; ENotFound if its webhook does not.
func (t *Tx) CreateDelivery(d *latchkey.Delivery) error {
	payload := string(d.Payload)
	if payload == "" {
		payload = "{}"
	}
	tag, err := t.exec("create delivery", `INSERT INTO deliveries (`+deliveryColumns+`)
		SELECT $1, id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM webhooks WHERE id = $2
		ON CONFLICT DO NOTHING`,
		d.ID, d.WebhookID, d.Tenant, d.EventID, d.EventType, payload, d.Status, d.Attempts,
		ts(d.NextAttemptAt), ts(d.LeaseUntil), d.LastStatusCode, d.LastError, ts(d.CreatedAt), ts(d.DeliveredAt))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	if ok, err := t.exists("create delivery", `SELECT EXISTS (SELECT 1 FROM webhooks WHERE id = $1)`, d.WebhookID); err != nil {
		return err
	} else if !ok {
		return latchkey.Errorf(latchkey.ENotFound, "webhook %q not found", d.WebhookID)
	}
	return latchkey.Errorf(latchkey.EConflict, "delivery %q, or one of event %q to webhook %q, already exists", d.ID, d.EventID, d.WebhookID)
}

// Delivery returns a tenant's delivery by id; ENotFound if there is none
// there.
func (t *Tx) Delivery(tenant, id string) (*latchkey.Delivery, error) {
	ds, err := t.deliveries("delivery", `SELECT `+deliveryColumns+` FROM deliveries WHERE tenant_id = $1 AND id = $2`, tenant, id)
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
	var a args
	var q strings.Builder
	q.WriteString(`SELECT ` + deliveryColumns + ` FROM deliveries WHERE tenant_id = ` + a.add(tenant) + ` AND webhook_id = ` + a.add(webhookID))
	if f.Before != "" {
		q.WriteString(` AND id < ` + a.add(f.Before))
	}
	if f.Status != "" {
		q.WriteString(` AND status = ` + a.add(f.Status))
	}
	q.WriteString(` ORDER BY id DESC LIMIT ` + a.add(limit(f.Limit)))
	return t.deliveries("deliveries", q.String(), a...)
}

// ClaimDeliveries leases up to n due pending deliveries until leaseUntil,
// the earliest due first, and returns them. Rows another node has locked
// to claim them are skipped, not waited for.
func (t *Tx) ClaimDeliveries(now, leaseUntil time.Time, n int) ([]*latchkey.Delivery, error) {
	ds, err := t.deliveries("claim deliveries", `UPDATE deliveries SET lease_until = $3 WHERE id IN (
			SELECT id FROM deliveries
			WHERE status = 'pending' AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
			ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
		RETURNING `+deliveryColumns, now, limit(n), ts(leaseUntil))
	if err != nil {
		return nil, err
	}
	// RETURNING has no order of its own.
	slices.SortFunc(ds, func(a, b *latchkey.Delivery) int {
		if c := a.NextAttemptAt.Compare(b.NextAttemptAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return ds, nil
}

// UpdateDelivery stores the outcome of an attempt; ENotFound if the
// delivery does not exist.
func (t *Tx) UpdateDelivery(d *latchkey.Delivery) error {
	tag, err := t.exec("update delivery", `UPDATE deliveries SET status = $1, attempts = $2, next_attempt_at = $3,
		last_status_code = $4, last_error = $5, delivered_at = $6, lease_until = $7 WHERE id = $8`,
		d.Status, d.Attempts, ts(d.NextAttemptAt), d.LastStatusCode, d.LastError, ts(d.DeliveredAt), ts(d.LeaseUntil), d.ID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return latchkey.Errorf(latchkey.ENotFound, "delivery %q not found", d.ID)
	}
	return nil
}

// CountPendingDeliveries counts the outbox.
func (t *Tx) CountPendingDeliveries() (int64, error) {
	var n int64
	if err := t.tx.QueryRow(t.ctx, `SELECT count(*) FROM deliveries WHERE status = 'pending'`).Scan(&n); err != nil {
		return 0, t.fail("count pending deliveries", err)
	}
	return n, nil
}

// PruneDeliveries deletes finished deliveries created before before.
func (t *Tx) PruneDeliveries(before time.Time) (int64, error) {
	tag, err := t.exec("prune deliveries", `DELETE FROM deliveries WHERE status <> 'pending' AND created_at < $1`, before)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// ExpiringKeys returns live keys whose expiry falls in (From, To], by
// expiry then id.
func (t *Tx) ExpiringKeys(f latchkey.ExpiringFilter) ([]*latchkey.Key, error) {
	var a args
	q := `SELECT ` + keyColumns + ` FROM keys
		WHERE expires_at IS NOT NULL AND expires_at > ` + a.add(f.From) + ` AND expires_at <= ` + a.add(f.To) + `
		AND state <> 'revoked' AND grace_until IS NULL`
	if f.AfterID != "" {
		ae := a.add(f.AfterExpires)
		q += ` AND (expires_at > ` + ae + ` OR (expires_at = ` + ae + ` AND id > ` + a.add(f.AfterID) + `))`
	}
	q += ` ORDER BY expires_at, id LIMIT ` + a.add(limit(f.Limit))
	return t.keys("expiring keys", q, a...)
}

func (t *Tx) deliveries(op, sql string, args ...any) ([]*latchkey.Delivery, error) {
	return collect(t, op, sql, func(r pgx.Rows) (*latchkey.Delivery, error) {
		var d latchkey.Delivery
		var payload string
		var next, lease, created, delivered pgtype.Timestamptz
		var attempts, status int32
		if err := r.Scan(&d.ID, &d.WebhookID, &d.Tenant, &d.EventID, &d.EventType, &payload, &d.Status, &attempts,
			&next, &lease, &status, &d.LastError, &created, &delivered); err != nil {
			return nil, err
		}
		d.Attempts, d.LastStatusCode = int(attempts), int(status)
		d.Payload = json.RawMessage(payload)
		d.NextAttemptAt = fromTS(next)
		d.LeaseUntil = fromTS(lease)
		d.CreatedAt = fromTS(created)
		d.DeliveredAt = fromTS(delivered)
		return &d, nil
	}, args...)
}
