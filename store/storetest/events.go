package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

func init() {
	moreTests = append(moreTests, []conformanceTest{
		{"EventsRoundTripAndFilter", testEventsFilter},
		{"EventsPendingUntilDispatched", testEventsPending},
		{"EventsDuplicateIDConflicts", testEventsDuplicate},
		{"EventsRollBackWithTheirCause", testEventsRollback},
	}...)
}

func event(tenant, id, typ, keyID string, at time.Time, data any) *latchkey.Event {
	b, _ := json.Marshal(data)
	return &latchkey.Event{ID: id, Tenant: tenant, Type: typ, KeyID: keyID, At: at.UTC(), Data: b}
}

func appendEvents(t *testing.T, s keys.Store, evs ...*latchkey.Event) {
	t.Helper()
	update(t, s, func(tx keys.Tx) error {
		for _, e := range evs {
			if err := tx.AppendEvent(e); err != nil {
				return err
			}
		}
		return nil
	})
}

func eventIDs(evs []*latchkey.Event) []string {
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = e.ID
	}
	return ids
}

func sameIDs(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func testEventsFilter(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "beta")
	anomaly := latchkey.Anomaly{Kind: latchkey.AnomalyNewNetwork, Severity: latchkey.SeverityMedium, Network: "10.1.2.0/24", Summary: "new"}
	appendEvents(t, s,
		event("acme", "evt_1", latchkey.EventKeyCreated, "key_1", t0, map[string]string{"name": "a"}),
		event("acme", "evt_2", latchkey.EventSecurityAnomaly, "key_1", t0.Add(time.Minute), anomaly),
		event("acme", "evt_3", latchkey.EventKeyRevoked, "key_2", t0.Add(2*time.Minute), map[string]string{}),
		event("beta", "evt_4", latchkey.EventKeyCreated, "key_9", t0, map[string]string{}),
	)
	cases := []struct {
		name string
		f    latchkey.EventFilter
		want []string
	}{
		{"all of a tenant", latchkey.EventFilter{}, []string{"evt_1", "evt_2", "evt_3"}},
		{"type", latchkey.EventFilter{Type: latchkey.EventKeyCreated}, []string{"evt_1"}},
		{"kind", latchkey.EventFilter{Kind: latchkey.AnomalyNewNetwork}, []string{"evt_2"}},
		{"other kind", latchkey.EventFilter{Kind: latchkey.AnomalyUsageSpike}, []string{}},
		{"key", latchkey.EventFilter{KeyID: "key_2"}, []string{"evt_3"}},
		{"since", latchkey.EventFilter{Since: t0.Add(time.Minute)}, []string{"evt_2", "evt_3"}},
		{"until", latchkey.EventFilter{Until: t0.Add(time.Minute)}, []string{"evt_1"}},
		{"after and limit", latchkey.EventFilter{After: "evt_1", Limit: 1}, []string{"evt_2"}},
	}
	for _, c := range cases {
		var got []*latchkey.Event
		view(t, s, func(tx keys.Tx) (err error) {
			got, err = tx.Events("acme", c.f)
			return err
		})
		if !sameIDs(eventIDs(got), c.want) || got == nil {
			t.Errorf("%s: Events = %v, want %v", c.name, eventIDs(got), c.want)
		}
	}
	var got []*latchkey.Event
	view(t, s, func(tx keys.Tx) (err error) {
		got, err = tx.Events("acme", latchkey.EventFilter{Kind: latchkey.AnomalyNewNetwork})
		return err
	})
	if len(got) == 1 {
		e := got[0]
		var a latchkey.Anomaly
		if err := json.Unmarshal(e.Data, &a); err != nil || a.Kind != anomaly.Kind || a.Network != anomaly.Network || a.Summary != anomaly.Summary {
			t.Errorf("event data = %s (%v), want %+v", e.Data, err, anomaly)
		}
		if e.Tenant != "acme" || e.Type != latchkey.EventSecurityAnomaly || e.KeyID != "key_1" || !e.At.Equal(t0.Add(time.Minute)) || e.At.Location() != time.UTC {
			t.Errorf("event = %+v", e)
		}
	}
	view(t, s, func(tx keys.Tx) error {
		n, err := tx.CountEvents("acme", latchkey.EventKeyCreated, t0)
		if err == nil && n != 1 {
			t.Errorf("CountEvents = %d, want 1", n)
		}
		n, err = tx.CountEvents("acme", latchkey.EventKeyCreated, t0.Add(time.Second))
		if err == nil && n != 0 {
			t.Errorf("CountEvents since after the event = %d, want 0", n)
		}
		return err
	})
}

func testEventsPending(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "beta")
	appendEvents(t, s,
		event("acme", "evt_1", latchkey.EventKeyCreated, "key_1", t0, nil),
		event("beta", "evt_2", latchkey.EventKeyCreated, "key_2", t0, nil),
		event("acme", "evt_3", latchkey.EventKeyCreated, "key_3", t0.Add(48*time.Hour), nil),
	)
	pending := func() []string {
		var got []*latchkey.Event
		view(t, hooks(s), func(tx webhookTx) (err error) {
			got, err = tx.PendingEvents(10)
			return err
		})
		return eventIDs(got)
	}
	if got := pending(); !sameIDs(got, []string{"evt_1", "evt_2", "evt_3"}) {
		t.Fatalf("PendingEvents = %v, want all three across tenants", got)
	}
	update(t, hooks(s), func(tx webhookTx) error { return tx.MarkEventsDispatched([]string{"evt_1", "evt_3", "evt_missing"}) })
	if got := pending(); !sameIDs(got, []string{"evt_2"}) {
		t.Errorf("PendingEvents after marking = %v, want [evt_2]", got)
	}
	// Pruning removes only dispatched events older than the cut.
	update(t, hooks(s), func(tx webhookTx) error {
		n, err := tx.PruneEvents(t0.Add(time.Hour))
		if err == nil && n != 1 {
			t.Errorf("PruneEvents deleted %d, want 1 (evt_1)", n)
		}
		return err
	})
	var left []*latchkey.Event
	view(t, s, func(tx keys.Tx) (err error) {
		left, err = tx.Events("acme", latchkey.EventFilter{})
		return err
	})
	if !sameIDs(eventIDs(left), []string{"evt_3"}) {
		t.Errorf("acme's events after prune = %v, want [evt_3]", eventIDs(left))
	}
}

func testEventsDuplicate(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	appendEvents(t, s, event("acme", "evt_1", latchkey.EventKeyCreated, "", t0, nil))
	err := s.Update(t.Context(), func(tx keys.Tx) error {
		return tx.AppendEvent(event("acme", "evt_1", latchkey.EventKeyRevoked, "", t0, nil))
	})
	if latchkey.ErrorCode(err) != latchkey.EConflict {
		t.Errorf("duplicate event id: err = %v, want conflict", err)
	}
}

func testEventsRollback(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme")
	err := s.Update(t.Context(), func(tx keys.Tx) error {
		if err := tx.AppendEvent(event("acme", "evt_1", latchkey.EventKeyCreated, "", t0, nil)); err != nil {
			return err
		}
		return latchkey.Errorf(latchkey.EInvalid, "the cause failed")
	})
	if latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("Update err = %v", err)
	}
	var got []*latchkey.Event
	view(t, hooks(s), func(tx webhookTx) (err error) {
		got, err = tx.PendingEvents(10)
		return err
	})
	if len(got) != 0 {
		t.Errorf("an event of a rolled-back transaction was kept: %v", eventIDs(got))
	}
}
