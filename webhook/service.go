package webhook

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Service manages the tenants' webhooks and their delivery logs: the
// admin side of what the Dispatcher delivers. Every change is audited in
// its own transaction.
type Service struct {
	store   latchkey.Store[Tx]
	sealer  latchkey.Sealer
	rand    io.Reader
	clock   func() time.Time
	targets latchkey.WebhookTargets
}

// ServiceOptions configures a Service.
type ServiceOptions struct {
	Store latchkey.Store[Tx]
	// Sealer seals the webhooks' signing secrets (package keyring);
	// without one, creating a webhook fails.
	Sealer latchkey.Sealer
	// Rand is the source of signing secrets (default crypto/rand).
	Rand io.Reader
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Targets refuses, at creation, URLs whose host is an address
	// deliveries may not reach (the Dispatcher checks every address it
	// connects to as well).
	Targets latchkey.WebhookTargets
}

// NewService returns a Service.
func NewService(o ServiceOptions) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{store: o.Store, sealer: o.Sealer, rand: o.Rand, clock: o.Now, targets: o.Targets}
}

// now is the clock in the store's resolution.
func (s *Service) now() time.Time { return s.clock().UTC().Truncate(time.Microsecond) }

// MaxWebhooksPerTenant bounds a tenant's webhooks: every event is fanned
// out to each of them.
const MaxWebhooksPerTenant = 100

// Params are a new webhook's settings.
type Params struct {
	URL string
	// Events are the event types to deliver; none means every type.
	Events []string
}

// CreateWebhook registers an endpoint for the actor's tenant's events and
// returns its signing secret, the only time it is shown; the store keeps
// it sealed. A URL whose host is an address webhooks may not reach
// (ServiceOptions.Targets) is EInvalid. Errors: EInvalid, EConflict (the tenant has
// MaxWebhooksPerTenant), EUnavailable (no Sealer is configured, or the
// store is down).
func (s *Service) CreateWebhook(ctx context.Context, actor *latchkey.Actor, p Params) (*latchkey.Webhook, string, error) {
	if err := latchkey.ValidateWebhookURL(p.URL); err != nil {
		return nil, "", err
	}
	if err := s.targets.CheckURL(p.URL); err != nil {
		return nil, "", err
	}
	events, err := latchkey.NormalizeWebhookEvents(p.Events)
	if err != nil {
		return nil, "", err
	}
	if s.sealer == nil {
		return nil, "", latchkey.Errorf(latchkey.EUnavailable, "webhooks are not available: this node has no keyring to seal their signing secrets")
	}
	secret, err := latchkey.NewWebhookSecret(s.rand)
	if err != nil {
		return nil, "", err
	}
	now := s.now()
	w := &latchkey.Webhook{ID: latchkey.NewID("whk", now), Tenant: actor.Tenant, URL: p.URL, Events: events, CreatedAt: now}
	if w.SealedSecret, err = s.sealer.Seal(latchkey.WebhookSecretAAD(w.Tenant, w.ID), []byte(secret)); err != nil {
		return nil, "", fmt.Errorf("sealing a webhook secret: %w", err)
	}
	err = s.store.Update(ctx, func(tx Tx) error {
		existing, err := tx.Webhooks(actor.Tenant, latchkey.Page{Limit: MaxWebhooksPerTenant})
		if err != nil {
			return err
		}
		if len(existing) >= MaxWebhooksPerTenant {
			return latchkey.Errorf(latchkey.EConflict, "this tenant has %d webhooks, the most allowed; delete one first", MaxWebhooksPerTenant)
		}
		if err := tx.CreateWebhook(w); err != nil {
			return err
		}
		return tx.AppendAudit(latchkey.NewAuditEvent(actor, actor.Tenant, "webhook.created", "", now, webhookDetails(w)))
	})
	if err != nil {
		return nil, "", err
	}
	return w, secret, nil
}

// webhookDetails describes a webhook for the audit log: its URL without the
// query, which may hold a receiver's token.
func webhookDetails(w *latchkey.Webhook) map[string]string {
	shown := w.URL
	if u, err := url.Parse(w.URL); err == nil {
		u.RawQuery, u.ForceQuery = "", false
		shown = u.String()
	}
	events := "*"
	if len(w.Events) > 0 {
		events = strings.Join(w.Events, ",")
	}
	return map[string]string{"webhook_id": w.ID, "url": shown, "events": events}
}

func webhookNotFound(id string) error {
	return latchkey.Errorf(latchkey.ENotFound, "no webhook %.60q in this tenant", id)
}

// GetWebhook returns one of the actor's tenant's webhooks. Errors:
// ENotFound.
func (s *Service) GetWebhook(ctx context.Context, actor *latchkey.Actor, id string) (*latchkey.Webhook, error) {
	if !latchkey.ValidID("whk", id) {
		return nil, webhookNotFound(id)
	}
	var w *latchkey.Webhook
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		w, err = tx.Webhook(actor.Tenant, id)
		return err
	})
	if latchkey.ErrorCode(err) == latchkey.ENotFound {
		return nil, webhookNotFound(id)
	}
	return w, err
}

// ListWebhooks lists the actor's tenant's webhooks by id, with a cursor for
// the next page ("" on the last). Errors: EInvalid.
func (s *Service) ListWebhooks(ctx context.Context, actor *latchkey.Actor, cursor string, limit int) ([]*latchkey.Webhook, string, error) {
	after, err := latchkey.DecodeCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	limit = latchkey.ClampLimit(limit)
	var ws []*latchkey.Webhook
	err = s.store.View(ctx, func(tx Tx) error {
		var err error
		ws, err = tx.Webhooks(actor.Tenant, latchkey.Page{After: after, Limit: limit + 1})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(ws) > limit {
		ws = ws[:limit]
		next = latchkey.EncodeCursor(ws[limit-1].ID)
	}
	return ws, next, nil
}

// DeleteWebhook removes a webhook and its pending and past deliveries.
// Errors: ENotFound.
func (s *Service) DeleteWebhook(ctx context.Context, actor *latchkey.Actor, id string) error {
	if !latchkey.ValidID("whk", id) {
		return webhookNotFound(id)
	}
	now := s.now()
	err := s.store.Update(ctx, func(tx Tx) error {
		w, err := tx.Webhook(actor.Tenant, id)
		if err != nil {
			return err
		}
		if err := tx.DeleteWebhook(actor.Tenant, id); err != nil {
			return err
		}
		return tx.AppendAudit(latchkey.NewAuditEvent(actor, actor.Tenant, "webhook.deleted", "", now, webhookDetails(w)))
	})
	if latchkey.ErrorCode(err) == latchkey.ENotFound {
		return webhookNotFound(id)
	}
	return err
}

// DeliveryListParams narrow a webhook's delivery log.
type DeliveryListParams struct {
	Cursor string
	Limit  int
	Status string // pending, delivered or failed; "" for all
}

// ListDeliveries lists a webhook's deliveries, newest first, with a cursor
// for the next (older) page. Errors: EInvalid, ENotFound.
func (s *Service) ListDeliveries(ctx context.Context, actor *latchkey.Actor, webhookID string, p DeliveryListParams) ([]*latchkey.Delivery, string, error) {
	if !latchkey.ValidID("whk", webhookID) {
		return nil, "", webhookNotFound(webhookID)
	}
	if p.Status != "" && !latchkey.ValidDeliveryStatus(p.Status) {
		return nil, "", latchkey.Errorf(latchkey.EInvalid, "status must be pending, delivered or failed")
	}
	before, err := latchkey.DecodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	limit := latchkey.ClampLimit(p.Limit)
	var ds []*latchkey.Delivery
	err = s.store.View(ctx, func(tx Tx) error {
		if _, err := tx.Webhook(actor.Tenant, webhookID); err != nil {
			return err
		}
		var err error
		ds, err = tx.Deliveries(actor.Tenant, webhookID, latchkey.DeliveryFilter{Before: before, Limit: limit + 1, Status: p.Status})
		return err
	})
	if latchkey.ErrorCode(err) == latchkey.ENotFound {
		return nil, "", webhookNotFound(webhookID)
	}
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(ds) > limit {
		ds = ds[:limit]
		next = latchkey.EncodeCursor(ds[limit-1].ID)
	}
	return ds, next, nil
}

// RetryDelivery schedules one more attempt, now, of a delivered or failed
// delivery of the webhook (the same webhook-id and body; receivers that
// saw it may skip it). A failed delivery past the give-up age gets exactly
// that one attempt. Errors: ENotFound, EConflict (the delivery is still
// pending: it is retried already).
func (s *Service) RetryDelivery(ctx context.Context, actor *latchkey.Actor, webhookID, deliveryID string) (*latchkey.Delivery, error) {
	if !latchkey.ValidID("whk", webhookID) {
		return nil, webhookNotFound(webhookID)
	}
	if !latchkey.ValidID("dlv", deliveryID) {
		return nil, deliveryNotFound(deliveryID)
	}
	now := s.now()
	var d *latchkey.Delivery
	err := s.store.Update(ctx, func(tx Tx) error {
		if _, err := tx.Webhook(actor.Tenant, webhookID); err != nil {
			if latchkey.ErrorCode(err) == latchkey.ENotFound {
				return webhookNotFound(webhookID)
			}
			return err
		}
		var err error
		if d, err = tx.Delivery(actor.Tenant, deliveryID); err != nil || d.WebhookID != webhookID {
			if err == nil || latchkey.ErrorCode(err) == latchkey.ENotFound {
				return deliveryNotFound(deliveryID)
			}
			return err
		}
		if d.Status == latchkey.DeliveryPending {
			return latchkey.Errorf(latchkey.EConflict, "delivery %s is pending; its next attempt is at %s", d.ID, d.NextAttemptAt.Format(time.RFC3339))
		}
		before := d.Status
		d.Status, d.NextAttemptAt, d.DeliveredAt, d.LeaseUntil = latchkey.DeliveryPending, now, time.Time{}, time.Time{}
		if err := tx.UpdateDelivery(d); err != nil {
			return err
		}
		return tx.AppendAudit(latchkey.NewAuditEvent(actor, actor.Tenant, "webhook.redelivered", "", now, map[string]string{
			"webhook_id": webhookID, "delivery_id": d.ID, "event_id": d.EventID, "was": before,
		}))
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

func deliveryNotFound(id string) error {
	return latchkey.Errorf(latchkey.ENotFound, "no delivery %.60q of this webhook", id)
}
