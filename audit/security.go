package audit

import (
	"context"
	"encoding/json"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// SecurityEvent is a security.anomaly event as listings show it: the
// event's envelope with its anomaly data spread out.
type SecurityEvent struct {
	ID     string    `json:"id"`
	At     time.Time `json:"at"`
	Tenant string    `json:"tenant"`
	KeyID  string    `json:"key_id,omitempty"`
	latchkey.Anomaly
}

// SecurityEventOf unpacks a security.anomaly event.
func SecurityEventOf(e *latchkey.Event) SecurityEvent {
	se := SecurityEvent{ID: e.ID, At: e.At, Tenant: e.Tenant, KeyID: e.KeyID}
	if err := json.Unmarshal(e.Data, &se.Anomaly); err != nil {
		se.Kind, se.Summary = "unknown", "the event's data does not parse"
	}
	return se
}

// SecurityFilter narrows a listing of security events.
type SecurityFilter struct {
	Kind, KeyID  string
	Since, Until time.Time
	After        string // an event id
	Limit        int
}

// ListSecurityEvents lists the actor's tenant's security anomalies, oldest
// first, and the cursor of the next page ("" at the end). Errors:
// EInvalid.
func (s *Service) ListSecurityEvents(ctx context.Context, actor *latchkey.Actor, f SecurityFilter) ([]SecurityEvent, string, error) {
	if f.Kind != "" && !validKind(f.Kind) {
		return nil, "", latchkey.Errorf(latchkey.EInvalid, "kind %.40q is not an anomaly kind", f.Kind)
	}
	if f.After != "" && !latchkey.ValidID("evt", f.After) {
		return nil, "", latchkey.Errorf(latchkey.EInvalid, "after must be an event id")
	}
	limit := latchkey.ClampLimit(f.Limit)
	var evs []*latchkey.Event
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		evs, err = tx.Events(actor.Tenant, latchkey.EventFilter{
			Type: latchkey.EventSecurityAnomaly, Kind: f.Kind, KeyID: f.KeyID,
			Since: f.Since, Until: f.Until, After: f.After, Limit: limit + 1,
		})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(evs) > limit {
		evs = evs[:limit]
		next = evs[limit-1].ID
	}
	out := make([]SecurityEvent, len(evs))
	for i, e := range evs {
		out[i] = SecurityEventOf(e)
	}
	return out, next, nil
}

func validKind(k string) bool {
	for _, x := range latchkey.AnomalyKinds {
		if x == k {
			return true
		}
	}
	return false
}
