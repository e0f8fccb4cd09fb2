package ui

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/webhook"
)

var errNoWebhooks = latchkey.Errorf(latchkey.ENotFound, "this server has no webhook service")

type webhooksView struct {
	Hooks      []*latchkey.Webhook
	EventTypes []string
	F          webhookForm
	Error      string
	pager
}

type webhookForm struct {
	URL    string
	Events []string
}

// Has reports whether the form chose event type e (the template ticks
// its box).
func (f webhookForm) Has(e string) bool { return contains(f.Events, e) }

// webhookList lists the tenant's webhooks, with the form that adds one.
func (h *Handler) webhookList(w http.ResponseWriter, r *http.Request, s *session) {
	h.renderWebhooks(w, r, s, http.StatusOK, webhookForm{}, "")
}

func (h *Handler) renderWebhooks(w http.ResponseWriter, r *http.Request, s *session, status int, f webhookForm, msg string) {
	if h.webhooks == nil {
		h.fail(w, r, s, errNoWebhooks)
		return
	}
	cursor := r.URL.Query().Get("cursor")
	hooks, next, err := h.webhooks.ListWebhooks(r.Context(), s.actor, cursor, listLimit)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	v := webhooksView{Hooks: hooks, EventTypes: latchkey.EventTypes, F: f, Error: msg,
		pager: newPager("/ui/webhooks", nil, "cursor", cursor, next)}
	h.render(w, status, "webhooks", &page{Title: "Webhooks", S: s, Nav: "webhooks", Data: v})
}

// createWebhook adds a webhook and shows its signing secret once, on the
// answer to the POST (no-store), as a new key's plaintext.
func (h *Handler) createWebhook(w http.ResponseWriter, r *http.Request, s *session) {
	if h.webhooks == nil {
		h.fail(w, r, s, errNoWebhooks)
		return
	}
	f := webhookForm{URL: strings.TrimSpace(r.PostFormValue("url")), Events: r.PostForm["events"]}
	hook, secret, err := h.webhooks.CreateWebhook(r.Context(), s.actor, webhook.Params{URL: f.URL, Events: f.Events})
	if err != nil {
		if code := latchkey.ErrorCode(err); code == latchkey.EInvalid || code == latchkey.EConflict {
			h.renderWebhooks(w, r, s, statusOf(code), f, latchkey.ErrorMessage(err))
			return
		}
		h.fail(w, r, s, err)
		return
	}
	h.showOnce(w, s, "webhooks", onceView{Heading: "Webhook added",
		Warning: "Copy the signing secret now. It is shown only once: Latchkey keeps it sealed and cannot show it again. Receivers check each delivery's signature with it.",
		Items:   []onceItem{{Label: "Signing secret for " + hook.URL, Value: secret}},
		Back:    "/ui/webhooks/" + hook.ID, BackText: "Go to the webhook"})
}

type webhookView struct {
	Hook       *latchkey.Webhook
	Deliveries []*latchkey.Delivery
	Status     string
	Statuses   []string
	pager
}

// webhookDetail shows a webhook and its deliveries, newest first, 50 a
// page, filtered by status.
func (h *Handler) webhookDetail(w http.ResponseWriter, r *http.Request, s *session) {
	if h.webhooks == nil {
		h.fail(w, r, s, errNoWebhooks)
		return
	}
	ctx := r.Context()
	id := r.PathValue("id")
	hook, err := h.webhooks.GetWebhook(ctx, s.actor, id)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	q := r.URL.Query()
	status, cursor := q.Get("status"), q.Get("cursor")
	ds, next, err := h.webhooks.ListDeliveries(ctx, s.actor, id, webhook.DeliveryListParams{Cursor: cursor, Limit: listLimit, Status: status})
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	v := webhookView{Hook: hook, Deliveries: ds, Status: status,
		Statuses: []string{latchkey.DeliveryPending, latchkey.DeliveryDelivered, latchkey.DeliveryFailed},
		pager:    newPager("/ui/webhooks/"+url.PathEscape(id), [][2]string{{"status", status}}, "cursor", cursor, next)}
	h.render(w, http.StatusOK, "webhook", &page{Title: "Webhook " + hook.URL, S: s, Nav: "webhooks", Data: v})
}

// deleteWebhook removes a webhook after a confirmation.
func (h *Handler) deleteWebhook(w http.ResponseWriter, r *http.Request, s *session) {
	if h.webhooks == nil {
		h.fail(w, r, s, errNoWebhooks)
		return
	}
	id := r.PathValue("id")
	back := "/ui/webhooks/" + url.PathEscape(id)
	if !confirmed(r) {
		h.confirm(w, r, s, confirmView{Heading: "Remove webhook", Question: "Remove this webhook? Its endpoint gets no more events, and its delivery log goes with it.",
			Button: "Remove", Action: back + "/delete", Back: back, IDs: []string{id}})
		return
	}
	if err := h.webhooks.DeleteWebhook(r.Context(), s.actor, id); err != nil {
		h.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/ui/webhooks", http.StatusSeeOther)
}

// retryDelivery schedules one more attempt of a delivered or failed
// delivery, after a confirmation.
func (h *Handler) retryDelivery(w http.ResponseWriter, r *http.Request, s *session) {
	if h.webhooks == nil {
		h.fail(w, r, s, errNoWebhooks)
		return
	}
	id, did := r.PathValue("id"), r.PathValue("did")
	back := "/ui/webhooks/" + url.PathEscape(id)
	if !confirmed(r) {
		h.confirm(w, r, s, confirmView{Heading: "Retry delivery", Question: "Send this delivery again, now? Receivers that saw it get the same event id and body.",
			Button: "Retry", Action: back + "/deliveries/" + url.PathEscape(did) + "/retry", Back: back, IDs: []string{did}})
		return
	}
	if _, err := h.webhooks.RetryDelivery(r.Context(), s.actor, id, did); err != nil {
		h.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}
