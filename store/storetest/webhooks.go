package storetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

func init() {
	moreTests = append(moreTests, []conformanceTest{
		{"WebhookRoundTripAndIsolation", testWebhookRoundTrip},
		{"WebhooksForFilterByTypeAndCreation", testWebhooksFor},
		{"WebhookDeleteTakesItsDeliveries", testWebhookDelete},
		{"DeliveryRoundTripNewestFirst", testDeliveries},
		{"DeliveryOnePerWebhookAndEvent", testDeliveryUnique},
		{"DeliveryClaimLeases", testDeliveryClaim},
		{"DeliveryPruneKeepsPending", testDeliveryPrune},
		{"ExpiringKeysWindow", testExpiringKeys},
	}...)
}

func webhook(tenant, id string, at time.Time, events ...string) *latchkey.Webhook {
	if events == nil {
		events = []string{}
	}
	return &latchkey.Webhook{ID: id, Tenant: tenant, URL: "https://hooks.example.com/" + id, Events: events,
		CreatedAt: at, SealedSecret: []byte("sealed\x00" + id)}
}

func createWebhooks(t *testing.T, s keys.Store, ws ...*latchkey.Webhook) {
	t.Helper()
	update(t, hooks(s), func(tx webhookTx) error {
		for _, w := range ws {
			if err := tx.CreateWebhook(w); err != nil {
				return fmt.Errorf("CreateWebhook(%s): %w", w.ID, err)
			}
		}
		return nil
	})
}

func delivery(w *latchkey.Webhook, id, eventID string, next time.Time) *latchkey.Delivery {
	return &latchkey.Delivery{ID: id, WebhookID: w.ID, Tenant: w.Tenant, EventID: eventID, EventType: latchkey.EventKeyCreated,
		Status: latchkey.DeliveryPending, NextAttemptAt: next, CreatedAt: t0, Payload: json.RawMessage(`{"type":"key.created"}`)}
}

func createDeliveries(t *testing.T, s keys.Store, ds ...*latchkey.Delivery) {
	t.Helper()
	update(t, hooks(s), func(tx webhookTx) error {
		for _, d := range ds {
			if err := tx.CreateDelivery(d); err != nil {
				return fmt.Errorf("CreateDelivery(%s): %w", d.ID, err)
			}
		}
		return nil
	})
}

func deliveryIDs(ds []*latchkey.Delivery) []string {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	return ids
}

func testWebhookRoundTrip(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "beta")
	w := webhook("acme", "whk_1", t0, latchkey.EventKeyRevoked, latchkey.EventKeyExpiring)
	createWebhooks(t, s, w, webhook("acme", "whk_2", t0), webhook("beta", "whk_3", t0))
	var got *latchkey.Webhook
	view(t, hooks(s), func(tx webhookTx) (err error) {
		got, err = tx.Webhook("acme", "whk_1")
		return err
	})
	if got.ID != w.ID || got.Tenant != "acme" || got.URL != w.URL || !sameIDs(got.Events, w.Events) ||
		!got.CreatedAt.Equal(t0) || got.CreatedAt.Location() != time.UTC || !bytes.Equal(got.SealedSecret, w.SealedSecret) {
		t.Errorf("Webhook = %+v, want %+v", got, w)
	}
	view(t, hooks(s), func(tx webhookTx) error {
		all, err := tx.Webhook("acme", "whk_2")
		if err == nil && (all.Events == nil || len(all.Events) != 0) {
			t.Errorf("a webhook for every type reads back events %#v, want []", all.Events)
		}
		if _, err := tx.Webhook("beta", "whk_1"); latchkey.ErrorCode(err) != latchkey.ENotFound {
			t.Errorf("another tenant's webhook: %v, want not_found", err)
		}
		list, err := tx.Webhooks("acme", latchkey.Page{})
		if err == nil && len(list) != 2 {
			t.Errorf("Webhooks(acme) = %d, want 2", len(list))
		}
		page, err := tx.Webhooks("acme", latchkey.Page{After: "whk_1", Limit: 5})
		if err == nil && (len(page) != 1 || page[0].ID != "whk_2") {
			t.Errorf("Webhooks after whk_1 = %d", len(page))
		}
		none, err := tx.Webhooks("nobody", latchkey.Page{})
		if err == nil && (none == nil || len(none) != 0) {
			t.Errorf("webhooks of an unknown tenant = %#v, want []", none)
		}
		return err
	})
	err := hooks(s).Update(t.Context(), func(tx webhookTx) error { return tx.CreateWebhook(webhook("beta", "whk_1", t0)) })
	if latchkey.ErrorCode(err) != latchkey.EConflict {
		t.Errorf("duplicate id: %v, want conflict", err)
	}
	err = hooks(s).Update(t.Context(), func(tx webhookTx) error { return tx.CreateWebhook(webhook("nobody", "whk_9", t0)) })
	if latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("missing tenant: %v, want not_found", err)
	}
}

func testWebhooksFor(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "beta")
	createWebhooks(t, s,
		webhook("acme", "whk_1", t0),
		webhook("acme", "whk_2", t0, latchkey.EventKeyRevoked),
		webhook("acme", "whk_3", t0.Add(time.Hour)),
		webhook("beta", "whk_4", t0),
	)
	cases := []struct {
		typ  string
		at   time.Time
		want []string
	}{
		{latchkey.EventKeyRevoked, t0, []string{"whk_1", "whk_2"}},
		{latchkey.EventKeyCreated, t0, []string{"whk_1"}},
		{latchkey.EventKeyCreated, t0.Add(time.Hour), []string{"whk_1", "whk_3"}},
		{latchkey.EventKeyCreated, t0.Add(-time.Microsecond), []string{}},
	}
	for _, c := range cases {
		view(t, hooks(s), func(tx webhookTx) error {
			ws, err := tx.WebhooksFor("acme", c.typ, c.at)
			ids := make([]string, len(ws))
			for i, w := range ws {
				ids[i] = w.ID
			}
			if err == nil && !sameIDs(ids, c.want) {
				t.Errorf("WebhooksFor(%s, %s) = %v, want %v", c.typ, c.at, ids, c.want)
			}
			return err
		})
	}
}

func testWebhookDelete(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "beta")
	w1, w2 := webhook("acme", "whk_1", t0), webhook("acme", "whk_2", t0)
	createWebhooks(t, s, w1, w2)
	createDeliveries(t, s, delivery(w1, "dlv_1", "evt_1", t0), delivery(w2, "dlv_2", "evt_1", t0))
	err := hooks(s).Update(t.Context(), func(tx webhookTx) error { return tx.DeleteWebhook("beta", "whk_1") })
	if latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("deleting another tenant's webhook: %v, want not_found", err)
	}
	update(t, hooks(s), func(tx webhookTx) error { return tx.DeleteWebhook("acme", "whk_1") })
	view(t, hooks(s), func(tx webhookTx) error {
		if _, err := tx.Webhook("acme", "whk_1"); latchkey.ErrorCode(err) != latchkey.ENotFound {
			t.Errorf("deleted webhook: %v, want not_found", err)
		}
		n, err := tx.CountPendingDeliveries()
		if err == nil && n != 1 {
			t.Errorf("pending deliveries after deleting a webhook = %d, want 1 (the other webhook's)", n)
		}
		return err
	})
	err = hooks(s).Update(t.Context(), func(tx webhookTx) error { return tx.DeleteWebhook("acme", "whk_1") })
	if latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("deleting twice: %v, want not_found", err)
	}
	err = hooks(s).Update(t.Context(), func(tx webhookTx) error {
		d := delivery(w1, "dlv_1", "evt_1", t0)
		d.Status = latchkey.DeliveryDelivered
		return tx.UpdateDelivery(d)
	})
	if latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("updating a deleted webhook's delivery: %v, want not_found", err)
	}
	err = hooks(s).Update(t.Context(), func(tx webhookTx) error { return tx.CreateDelivery(delivery(w1, "dlv_9", "evt_9", t0)) })
	if latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("a delivery to a deleted webhook: %v, want not_found", err)
	}
}

func testDeliveries(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "beta")
	w := webhook("acme", "whk_1", t0)
	createWebhooks(t, s, w, webhook("beta", "whk_2", t0))
	d1 := delivery(w, "dlv_1", "evt_1", t0)
	d2 := delivery(w, "dlv_2", "evt_2", t0)
	d3 := delivery(w, "dlv_3", "evt_3", t0)
	createDeliveries(t, s, d1, d2, d3)
	// An attempt's outcome reads back whole.
	d2.Status, d2.Attempts, d2.LastStatusCode, d2.LastError = latchkey.DeliveryDelivered, 3, 204, ""
	d2.NextAttemptAt, d2.DeliveredAt = time.Time{}, t0.Add(time.Minute)
	d1.Attempts, d1.LastStatusCode, d1.LastError, d1.NextAttemptAt = 1, 503, "HTTP 503", t0.Add(5*time.Second)
	update(t, hooks(s), func(tx webhookTx) error {
		if err := tx.UpdateDelivery(d2); err != nil {
			return err
		}
		return tx.UpdateDelivery(d1)
	})
	var got []*latchkey.Delivery
	view(t, hooks(s), func(tx webhookTx) (err error) {
		got, err = tx.Deliveries("acme", "whk_1", latchkey.DeliveryFilter{})
		return err
	})
	if !sameIDs(deliveryIDs(got), []string{"dlv_3", "dlv_2", "dlv_1"}) {
		t.Fatalf("Deliveries = %v, want newest first", deliveryIDs(got))
	}
	g2, g1 := got[1], got[2]
	if g2.Status != latchkey.DeliveryDelivered || g2.Attempts != 3 || g2.LastStatusCode != 204 || !g2.NextAttemptAt.IsZero() ||
		!g2.DeliveredAt.Equal(t0.Add(time.Minute)) || g2.DeliveredAt.Location() != time.UTC {
		t.Errorf("delivered delivery reads back %+v", g2)
	}
	if g1.Status != latchkey.DeliveryPending || g1.Attempts != 1 || g1.LastError != "HTTP 503" || !g1.NextAttemptAt.Equal(t0.Add(5*time.Second)) ||
		g1.EventID != "evt_1" || g1.EventType != latchkey.EventKeyCreated || g1.Tenant != "acme" || g1.WebhookID != "whk_1" ||
		!g1.CreatedAt.Equal(t0) || string(g1.Payload) != `{"type":"key.created"}` || !g1.DeliveredAt.IsZero() {
		t.Errorf("pending delivery reads back %+v", g1)
	}
	view(t, hooks(s), func(tx webhookTx) error {
		page, err := tx.Deliveries("acme", "whk_1", latchkey.DeliveryFilter{Before: "dlv_3", Limit: 1})
		if err == nil && !sameIDs(deliveryIDs(page), []string{"dlv_2"}) {
			t.Errorf("page before dlv_3 = %v, want [dlv_2]", deliveryIDs(page))
		}
		st, err := tx.Deliveries("acme", "whk_1", latchkey.DeliveryFilter{Status: latchkey.DeliveryPending})
		if err == nil && !sameIDs(deliveryIDs(st), []string{"dlv_3", "dlv_1"}) {
			t.Errorf("pending deliveries = %v", deliveryIDs(st))
		}
		other, err := tx.Deliveries("beta", "whk_1", latchkey.DeliveryFilter{})
		if err == nil && (other == nil || len(other) != 0) {
			t.Errorf("another tenant sees deliveries %v", deliveryIDs(other))
		}
		one, err := tx.Delivery("acme", "dlv_2")
		if err == nil && (one.Status != latchkey.DeliveryDelivered || one.Attempts != 3 || one.WebhookID != "whk_1") {
			t.Errorf("Delivery(dlv_2) = %+v", one)
		}
		if _, err := tx.Delivery("beta", "dlv_2"); latchkey.ErrorCode(err) != latchkey.ENotFound {
			t.Errorf("another tenant's delivery: %v, want not_found", err)
		}
		n, err := tx.CountPendingDeliveries()
		if err == nil && n != 2 {
			t.Errorf("CountPendingDeliveries = %d, want 2", n)
		}
		return err
	})
}

func testDeliveryUnique(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	w := webhook("acme", "whk_1", t0)
	createWebhooks(t, s, w)
	createDeliveries(t, s, delivery(w, "dlv_1", "evt_1", t0))
	for name, d := range map[string]*latchkey.Delivery{
		"same id":                delivery(w, "dlv_1", "evt_2", t0),
		"same webhook and event": delivery(w, "dlv_2", "evt_1", t0),
	} {
		err := hooks(s).Update(t.Context(), func(tx webhookTx) error { return tx.CreateDelivery(d) })
		if latchkey.ErrorCode(err) != latchkey.EConflict {
			t.Errorf("%s: %v, want conflict", name, err)
		}
	}
}

func testDeliveryClaim(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "beta")
	wa, wb := webhook("acme", "whk_1", t0), webhook("beta", "whk_2", t0)
	createWebhooks(t, s, wa, wb)
	due1 := delivery(wa, "dlv_1", "evt_1", t0.Add(2*time.Second))
	due2 := delivery(wb, "dlv_2", "evt_2", t0.Add(time.Second))
	later := delivery(wa, "dlv_3", "evt_3", t0.Add(time.Hour))
	done := delivery(wa, "dlv_4", "evt_4", t0)
	done.Status, done.NextAttemptAt, done.DeliveredAt = latchkey.DeliveryDelivered, time.Time{}, t0
	createDeliveries(t, s, due1, due2, later, done)
	now := t0.Add(10 * time.Second)
	lease := now.Add(30 * time.Second)
	claim := func(at, until time.Time, n int) []*latchkey.Delivery {
		var got []*latchkey.Delivery
		update(t, hooks(s), func(tx webhookTx) (err error) {
			got, err = tx.ClaimDeliveries(at, until, n)
			return err
		})
		return got
	}
	first := claim(now, lease, 1)
	if !sameIDs(deliveryIDs(first), []string{"dlv_2"}) {
		t.Fatalf("first claim = %v, want the earliest due across tenants", deliveryIDs(first))
	}
	if !first[0].LeaseUntil.Equal(lease) {
		t.Errorf("claimed delivery's LeaseUntil = %v, want %v", first[0].LeaseUntil, lease)
	}
	if got := claim(now, lease, 10); !sameIDs(deliveryIDs(got), []string{"dlv_1"}) {
		t.Fatalf("second claim = %v, want only the unclaimed due one", deliveryIDs(got))
	}
	if got := claim(now.Add(29*time.Second), lease, 10); len(got) != 0 {
		t.Fatalf("claim while leased = %v, want none", deliveryIDs(got))
	}
	// A lease that lapsed (its node died) is claimed again.
	if got := claim(lease, lease.Add(time.Minute), 10); !sameIDs(deliveryIDs(got), []string{"dlv_2", "dlv_1"}) {
		t.Fatalf("claim after the lease lapsed = %v", deliveryIDs(got))
	}
	// Finishing an attempt releases the lease and reschedules.
	due1.Attempts, due1.NextAttemptAt, due1.LeaseUntil = 1, lease.Add(5*time.Second), time.Time{}
	update(t, hooks(s), func(tx webhookTx) error { return tx.UpdateDelivery(due1) })
	if got := claim(lease.Add(5*time.Second), lease.Add(time.Hour), 10); !sameIDs(deliveryIDs(got), []string{"dlv_1"}) {
		t.Fatalf("claim after the attempt was rescheduled = %v, want [dlv_1]", deliveryIDs(got))
	}
}

func testDeliveryPrune(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	w := webhook("acme", "whk_1", t0)
	createWebhooks(t, s, w)
	old := delivery(w, "dlv_1", "evt_1", t0)
	old.Status = latchkey.DeliveryDelivered
	failed := delivery(w, "dlv_2", "evt_2", t0)
	failed.Status = latchkey.DeliveryFailed
	pending := delivery(w, "dlv_3", "evt_3", t0)
	recent := delivery(w, "dlv_4", "evt_4", t0)
	recent.Status, recent.CreatedAt = latchkey.DeliveryDelivered, t0.Add(48*time.Hour)
	createDeliveries(t, s, old, failed, pending, recent)
	update(t, hooks(s), func(tx webhookTx) error {
		n, err := tx.PruneDeliveries(t0.Add(time.Hour))
		if err == nil && n != 2 {
			t.Errorf("PruneDeliveries = %d, want 2", n)
		}
		return err
	})
	view(t, hooks(s), func(tx webhookTx) error {
		left, err := tx.Deliveries("acme", "whk_1", latchkey.DeliveryFilter{})
		if err == nil && !sameIDs(deliveryIDs(left), []string{"dlv_4", "dlv_3"}) {
			t.Errorf("left after prune = %v", deliveryIDs(left))
		}
		return err
	})
}

func testExpiringKeys(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "beta")
	mk := func(tenant, id string, expires time.Time) *latchkey.Key {
		k := key(tenant, id)
		k.ExpiresAt = expires
		return k
	}
	soon := mk("acme", "key_soon", t0.Add(24*time.Hour))
	sooner := mk("beta", "key_sooner", t0.Add(time.Hour))
	edge := mk("acme", "key_edge", t0.Add(7*24*time.Hour))
	far := mk("acme", "key_far", t0.Add(8*24*time.Hour))
	past := mk("acme", "key_past", t0.Add(-time.Hour))
	never := key("acme", "key_never")
	revoked := mk("acme", "key_revoked", t0.Add(2*time.Hour))
	revoked.State, revoked.RevokedAt = latchkey.StateRevoked, t0
	rotated := mk("acme", "key_rotated", t0.Add(3*time.Hour))
	rotated.GraceUntil = t0.Add(time.Hour)
	suspended := mk("acme", "key_suspended", t0.Add(4*time.Hour))
	suspended.State = latchkey.StateSuspended
	createKeys(t, s, soon, sooner, edge, far, past, never, revoked, rotated, suspended)
	week := latchkey.ExpiringFilter{From: t0, To: t0.Add(7 * 24 * time.Hour)}
	var got []*latchkey.Key
	view(t, hooks(s), func(tx webhookTx) (err error) {
		got, err = tx.ExpiringKeys(week)
		return err
	})
	ids := make([]string, len(got))
	for i, k := range got {
		ids[i] = k.ID
	}
	want := []string{"key_sooner", "key_suspended", "key_soon", "key_edge"}
	if !sameIDs(ids, want) {
		t.Fatalf("ExpiringKeys = %v, want %v (by expiry, across tenants)", ids, want)
	}
	if got[0].Tenant != "beta" || !got[0].ExpiresAt.Equal(sooner.ExpiresAt) {
		t.Errorf("expiring key reads back %+v", got[0])
	}
	// Paging continues after the last key, also among keys that expire
	// at the same instant.
	tied := []*latchkey.Key{mk("acme", "key_t1", t0.Add(5*time.Hour)), mk("acme", "key_t2", t0.Add(5*time.Hour)), mk("beta", "key_t3", t0.Add(5*time.Hour))}
	createKeys(t, s, tied...)
	var paged []string
	f := week
	f.Limit = 2
	for range 10 {
		var page []*latchkey.Key
		view(t, hooks(s), func(tx webhookTx) (err error) {
			page, err = tx.ExpiringKeys(f)
			return err
		})
		for _, k := range page {
			paged = append(paged, k.ID)
		}
		if len(page) < f.Limit {
			break
		}
		last := page[len(page)-1]
		f.AfterExpires, f.AfterID = last.ExpiresAt, last.ID
	}
	want = []string{"key_sooner", "key_suspended", "key_t1", "key_t2", "key_t3", "key_soon", "key_edge"}
	if !sameIDs(paged, want) {
		t.Fatalf("paged by 2: %v, want %v", paged, want)
	}
}
