package admin

import (
	"context"

	"github.com/latchkeyhq/latchkey"
)

// CreateWebhook registers an endpoint for the event types events (none:
// every type) (POST /v1/webhooks); its signing secret is in the answer
// only. Needs webhooks:write. Errors: invalid.
func (c *Client) CreateWebhook(ctx context.Context, url string, events []string, opts ...CallOption) (*NewWebhook, error) {
	body := struct {
		URL    string   `json:"url"`
		Events []string `json:"events,omitempty"`
	}{url, events}
	return do[NewWebhook](ctx, c, request{method: "POST", path: "/v1/webhooks", body: body}, opts)
}

// ListWebhooks lists the tenant's webhooks (GET /v1/webhooks). Needs
// webhooks:write. Errors: invalid.
func (c *Client) ListWebhooks(ctx context.Context, p Page, opts ...CallOption) (*WebhookList, error) {
	return do[WebhookList](ctx, c, request{method: "GET", path: "/v1/webhooks", query: p.query(nil)}, opts)
}

// GetWebhook reads one webhook (GET /v1/webhooks/{id}). Needs
// webhooks:write. Errors: not_found.
func (c *Client) GetWebhook(ctx context.Context, id string, opts ...CallOption) (*latchkey.Webhook, error) {
	return do[latchkey.Webhook](ctx, c, request{method: "GET", path: "/v1/webhooks/" + esc(id)}, opts)
}

// DeleteWebhook deletes a webhook and its delivery log (DELETE
// /v1/webhooks/{id}). Needs webhooks:write. Errors: not_found.
func (c *Client) DeleteWebhook(ctx context.Context, id string, opts ...CallOption) error {
	return c.call(ctx, request{method: "DELETE", path: "/v1/webhooks/" + esc(id)}, nil, opts)
}

// DeliveryFilter selects a page of a delivery log, of one Status
// (latchkey.DeliveryPending, …; "": all).
type DeliveryFilter struct {
	Status string
	Page
}

// ListDeliveries lists a webhook's deliveries, newest first (GET
// /v1/webhooks/{id}/deliveries). Needs webhooks:write. Errors: invalid,
// not_found.
func (c *Client) ListDeliveries(ctx context.Context, webhookID string, f DeliveryFilter, opts ...CallOption) (*DeliveryList, error) {
	q := f.Page.query(nil)
	setIf(q, "status", f.Status)
	return do[DeliveryList](ctx, c, request{method: "GET", path: "/v1/webhooks/" + esc(webhookID) + "/deliveries", query: q}, opts)
}

// RetryDelivery makes a delivered or failed delivery pending again, to be
// sent now with the same webhook-id (POST
// /v1/webhooks/{id}/deliveries/{delivery_id}/retry). Needs webhooks:write.
// Errors: not_found, conflict.
func (c *Client) RetryDelivery(ctx context.Context, webhookID, deliveryID string, opts ...CallOption) (*latchkey.Delivery, error) {
	return do[latchkey.Delivery](ctx, c, request{method: "POST", path: "/v1/webhooks/" + esc(webhookID) + "/deliveries/" + esc(deliveryID) + "/retry"}, opts)
}
