package httpapi

import (
	"net/http"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/webhook"
)

// webhookWithSecret is the answer to POST /v1/webhooks: the only time the
// signing secret is shown.
type webhookWithSecret struct {
	*latchkey.Webhook
	Secret string `json:"secret"`
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	p, err := decodeCreateWebhook(body)
	if err != nil {
		return err
	}
	hook, secret, err := s.webhooks.CreateWebhook(r.Context(), a, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, webhookWithSecret{Webhook: hook, Secret: secret})
	return nil
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	q := r.URL.Query()
	limit, err := queryLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	ws, next, err := s.webhooks.ListWebhooks(r.Context(), a, q.Get("cursor"), limit)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Webhooks   []*latchkey.Webhook `json:"webhooks"`
		NextCursor string              `json:"next_cursor"`
	}{ws, next})
	return nil
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	hook, err := s.webhooks.GetWebhook(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, hook)
	return nil
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	if err := s.webhooks.DeleteWebhook(r.Context(), a, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listDeliveries answers a webhook's delivery log, newest first; ?status=
// narrows it to pending, delivered or failed.
func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	q := r.URL.Query()
	limit, err := queryLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	ds, next, err := s.webhooks.ListDeliveries(r.Context(), a, r.PathValue("id"), webhook.DeliveryListParams{
		Cursor: q.Get("cursor"), Limit: limit, Status: q.Get("status"),
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Deliveries []*latchkey.Delivery `json:"deliveries"`
		NextCursor string               `json:"next_cursor"`
	}{ds, next})
	return nil
}

// retryDelivery schedules one more attempt of a delivered or failed
// delivery, now.
func (s *Server) retryDelivery(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	if err := s.readEmptyBody(w, r); err != nil {
		return err
	}
	d, err := s.webhooks.RetryDelivery(r.Context(), a, r.PathValue("id"), r.PathValue("delivery_id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}
