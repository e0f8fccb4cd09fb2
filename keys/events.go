package keys

import (
	"strconv"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// eventTypeOf maps an audit action to the webhook event it also raises
// ("" for none). A derived key is a created key whose data names its
// parent.
func eventTypeOf(action string) string {
	switch action {
	case "key.created", "key.derived":
		return latchkey.EventKeyCreated
	case "key.rotated":
		return latchkey.EventKeyRotated
	case "key.revoked":
		return latchkey.EventKeyRevoked
	case "key.suspended":
		return latchkey.EventKeySuspended
	}
	return ""
}

// record appends the audit event e and, in the same transaction, the
// webhook event its action raises, and checks the change for a burst of
// creations or revocations. Every audited change goes through here.
func (s *Service) record(tx latchkey.RecordTx, e *latchkey.AuditEvent) error {
	if err := tx.AppendAudit(e); err != nil {
		return err
	}
	typ := eventTypeOf(e.Action)
	if typ == "" {
		return nil
	}
	data := make(map[string]string, len(e.Details)+3)
	for k, v := range e.Details {
		data[k] = v
	}
	data["action"] = e.Action
	data["audit_seq"] = strconv.FormatInt(e.Seq, 10)
	if e.ActorKeyID != "" {
		data["actor_key_id"] = e.ActorKeyID
	}
	if err := tx.AppendEvent(latchkey.NewEvent(e.Tenant, typ, e.TargetKeyID, e.At, data)); err != nil {
		return err
	}
	switch typ {
	case latchkey.EventKeyCreated:
		return s.checkBurst(tx, e, typ, latchkey.AnomalyMassCreation, "created")
	case latchkey.EventKeyRevoked:
		return s.checkBurst(tx, e, typ, latchkey.AnomalyMassRevocation, "revoked")
	}
	return nil
}

// checkBurst raises an anomaly when the tenant's events of type typ within
// the burst window reach the threshold: once when it is reached, and again
// at each further multiple, so a long burst is reported without a flood.
func (s *Service) checkBurst(tx latchkey.RecordTx, e *latchkey.AuditEvent, typ, kind, verb string) error {
	if s.burst.Threshold < 0 {
		return nil
	}
	n, err := tx.CountEvents(e.Tenant, typ, e.At.Add(-s.burst.Window))
	if err != nil {
		return err
	}
	if n < int64(s.burst.Threshold) || n%int64(s.burst.Threshold) != 0 {
		return nil
	}
	a := latchkey.Anomaly{
		Kind:     kind,
		Severity: latchkey.SeverityHigh,
		Summary:  strconv.FormatInt(n, 10) + " keys " + verb + " within " + s.burst.Window.String(),
		Details: map[string]string{
			"count":        strconv.FormatInt(n, 10),
			"window":       s.burst.Window.String(),
			"threshold":    strconv.Itoa(s.burst.Threshold),
			"actor_key_id": e.ActorKeyID,
			"last_key_id":  e.TargetKeyID,
		},
	}
	return tx.AppendEvent(latchkey.NewEvent(e.Tenant, latchkey.EventSecurityAnomaly, e.TargetKeyID, e.At, a))
}

// widenedScopes returns the scopes of after that before did not already
// grant: what a change added to a key's powers.
func widenedScopes(before, after []string) []string {
	var added []string
	for _, sc := range after {
		if !latchkey.ScopesAllow(before, sc) {
			added = append(added, sc)
		}
	}
	return added
}

// scopesWidened is the anomaly of a key given scopes it did not have.
func scopesWidened(actor *latchkey.Actor, k *latchkey.Key, before, added []string, now time.Time) *latchkey.Event {
	a := latchkey.Anomaly{
		Kind:     latchkey.AnomalyScopesWidened,
		Severity: latchkey.SeverityMedium,
		Summary:  "key " + k.ID + " was given scopes it did not have: " + strings.Join(added, ","),
		Details: map[string]string{
			"added":  strings.Join(added, ","),
			"before": strings.Join(before, ","),
			"after":  strings.Join(k.Scopes, ","),
		},
	}
	if actor != nil {
		a.Details["actor_key_id"] = actor.KeyID
	}
	return latchkey.NewEvent(k.Tenant, latchkey.EventSecurityAnomaly, k.ID, now, a)
}
