package keys

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// LeakAction is what a reported leak does to a live key.
type LeakAction string

// Leak actions: revoke the key for good (the default), or suspend it
// until an admin resumes it, for operators who want a person to look
// before a key is gone.
const (
	LeakRevoke  LeakAction = "revoke"
	LeakSuspend LeakAction = "suspend"
)

// ParseLeakAction reads --leak-action ("" is LeakRevoke). Errors: EInvalid.
func ParseLeakAction(s string) (LeakAction, error) {
	switch LeakAction(s) {
	case "", LeakRevoke:
		return LeakRevoke, nil
	case LeakSuspend:
		return LeakSuspend, nil
	}
	return "", latchkey.Errorf(latchkey.EInvalid, "leak action %.30q: use revoke or suspend", s)
}

// Outcomes of a leak report, as LeakResult.Outcome says them.
const (
	// LeakRevoked and LeakSuspended: the key was live and now is not.
	LeakRevoked   = "revoked"
	LeakSuspended = "suspended"
	// LeakAlreadyRevoked: the key is ours but was revoked before; nothing
	// changed. LeakAlreadySuspended: the action is suspend and the key was
	// already suspended until resumed.
	LeakAlreadyRevoked   = "already_revoked"
	LeakAlreadySuspended = "already_suspended"
	// LeakUnknown: no key of ours (or, for a tenant's admin, of its
	// tenant) has this plaintext, or it cannot be a key at all; nothing
	// changed.
	LeakUnknown = "unknown"
)

// LeakReport is one leaked plaintext and where it was found.
type LeakReport struct {
	Token string
	// URL and Source say where it was found (GitHub's url and source, or
	// the file a scan found it in); they go to the audit log and the
	// key.leaked event. Type is the pattern name a scanner matched.
	URL, Source, Type string
	// Reporter names who reported it, for the audit log: "github" or
	// "scan".
	Reporter string
	// Action is what a live key gets (default LeakRevoke).
	Action LeakAction
}

// LeakResult says what a report did. Key is set only when the token is a
// key of ours the reporter may know of (Outcome is not LeakUnknown).
type LeakResult struct {
	Outcome string
	Key     *latchkey.Key
}

// Ours reports whether the reported token is a key this server issued or
// imported: the token analysis' true positive.
func (r LeakResult) Ours() bool { return r.Outcome != LeakUnknown }

// Bounds of what a report writes to the audit log.
const (
	maxLeakURL   = 2048
	maxLeakField = 64
)

// ReportLeak handles a key reported as leaked. It finds the key by the
// SHA-256 of token, across tenants when actor is nil (a report from
// outside: GitHub, authenticated by its signature) and in the actor's
// tenant otherwise (a key of another tenant is LeakUnknown, untouched).
// A key that is not revoked is revoked, with the keys derived from it and
// the key it replaced if that one is still in its grace period, or
// suspended with the keys derived from it (r.Action). In the same
// transaction the change is audited as key.revoked (key.suspended) and
// key.leaked, the latter with the URL and source, and raises the webhook
// events key.revoked (key.suspended) and key.leaked; the verify cache
// drops the changed keys before it returns, and on a shared store the
// change feed tells the other nodes. A token that is not a key of ours,
// not a key at all, or that of a revoked key changes nothing. The token
// is never logged or stored. Errors: EUnavailable, EInternal (the store).
func (s *Service) ReportLeak(ctx context.Context, actor *latchkey.Actor, r LeakReport) (LeakResult, error) {
	h, err := latchkey.PresentedKeyHash(r.Token)
	if err != nil {
		return LeakResult{Outcome: LeakUnknown}, nil
	}
	if r.Action == "" {
		r.Action = LeakRevoke
	}
	if _, err := ParseLeakAction(string(r.Action)); err != nil {
		return LeakResult{}, err
	}
	url, source, typ := clipText(r.URL, maxLeakURL), clipText(r.Source, maxLeakField), clipText(r.Type, maxLeakField)
	reporter := clipText(r.Reporter, maxLeakField)
	if reporter == "" {
		reporter = "a report"
	}
	// Most reports of a busy endpoint name nothing to change (false
	// positives, keys revoked before, GitHub's retries): a read settles
	// those without a write transaction.
	var seen *latchkey.Key
	err = s.store.View(ctx, func(tx Tx) error {
		var err error
		seen, err = tx.KeyByHash(h)
		return err
	})
	switch {
	case latchkey.ErrorCode(err) == latchkey.ENotFound, err == nil && actor != nil && seen.Tenant != actor.Tenant:
		return LeakResult{Outcome: LeakUnknown}, nil
	case err != nil:
		return LeakResult{}, err
	case seen.State == latchkey.StateRevoked:
		return LeakResult{Outcome: LeakAlreadyRevoked, Key: seen}, nil
	}
	now := s.now()
	var (
		res     LeakResult
		changed []*latchkey.Key
	)
	err = s.store.Update(ctx, func(tx Tx) error {
		// A store may run this again after a conflict: only what the last
		// run set counts.
		res, changed = LeakResult{Outcome: LeakUnknown}, nil
		found, err := tx.KeyByHash(h)
		if latchkey.ErrorCode(err) == latchkey.ENotFound {
			return nil
		}
		if err != nil {
			return err
		}
		if actor != nil && found.Tenant != actor.Tenant {
			return nil
		}
		k, err := tx.Key(found.Tenant, found.ID)
		if err != nil {
			return err
		}
		res.Key = k
		reason := "leaked: reported by " + reporter
		var action string
		switch {
		case k.State == latchkey.StateRevoked:
			res.Outcome = LeakAlreadyRevoked
			return nil
		case r.Action == LeakSuspend && k.State == latchkey.StateSuspended && k.SuspendedUntil.IsZero() && k.SuspendedBy == "":
			res.Outcome = LeakAlreadySuspended
			return nil
		case r.Action == LeakSuspend:
			res.Outcome, action = LeakSuspended, "key.suspended"
			changed, err = suspendLeaked(tx, k, reason)
		default:
			res.Outcome, action = LeakRevoked, "key.revoked"
			changed, err = revokeTree(tx, k, now, reason)
		}
		if err != nil {
			return err
		}
		var affected []string
		for _, c := range changed {
			c.UpdatedAt = now
			if err := tx.UpdateKey(c); err != nil {
				return err
			}
			if c.ID != k.ID {
				affected = append(affected, c.ID)
			}
		}
		details := map[string]string{"reason": reason}
		if action == "key.suspended" {
			details["duration"] = "until resumed"
		}
		if len(affected) > 0 {
			details["affected"] = strings.Join(affected, ",")
		}
		if err := s.record(tx, latchkey.NewAuditEvent(actor, k.Tenant, action, k.ID, now, details)); err != nil {
			return err
		}
		leak := map[string]string{"url": url, "source": source, "type": typ, "reporter": reporter, "outcome": res.Outcome}
		ev := latchkey.NewAuditEvent(actor, k.Tenant, "key.leaked", k.ID, now, leak)
		if err := tx.AppendAudit(ev); err != nil {
			return err
		}
		data := make(map[string]string, len(leak)+3)
		for name, v := range leak {
			data[name] = v
		}
		data["action"], data["audit_seq"] = "key.leaked", strconv.FormatInt(ev.Seq, 10)
		if len(affected) > 0 {
			data["affected"] = details["affected"]
		}
		return tx.AppendEvent(latchkey.NewEvent(k.Tenant, latchkey.EventKeyLeaked, k.ID, now, data))
	})
	if err != nil {
		return LeakResult{}, err
	}
	s.invalidate(changed)
	return res, nil
}

// suspendLeaked suspends k until resumed, as SuspendKey does, with every
// key derived from it that is not revoked and not already suspended
// until resumed in its own right.
func suspendLeaked(tx Tx, k *latchkey.Key, reason string) ([]*latchkey.Key, error) {
	tree, err := subtree(tx, k)
	if err != nil {
		return nil, err
	}
	k.State, k.SuspendedUntil, k.StateReason, k.SuspendedBy = latchkey.StateSuspended, time.Time{}, reason, ""
	changed := []*latchkey.Key{k}
	for _, c := range tree[1:] {
		if c.State == latchkey.StateRevoked || c.State == latchkey.StateSuspended && c.SuspendedUntil.IsZero() && c.SuspendedBy == "" {
			continue
		}
		c.State, c.SuspendedUntil, c.SuspendedBy = latchkey.StateSuspended, time.Time{}, k.ID
		c.StateReason = cascadeReason(k.ID, "suspended", reason)
		changed = append(changed, c)
	}
	return changed, nil
}

// clipText bounds s to n bytes, without splitting a UTF-8 sequence, and
// replaces control characters, so what a report says is safe to audit.
func clipText(s string, n int) string {
	if len(s) > n {
		for n > 0 && s[n]&0xc0 == 0x80 {
			n--
		}
		s = s[:n]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
