package keys

import (
	"context"

	"github.com/latchkeyhq/latchkey"
)

// auditPage is how many events one read transaction of a chain check
// covers, so a long log is checked without one huge read.
const auditPage = 1000

// ListAudit lists the actor's tenant's audit events in seq order,
// after writing the secret reads this node has queued, so that the log
// read here holds every read answered here. Errors: EInvalid.
func (s *Service) ListAudit(ctx context.Context, actor *Actor, f AuditFilter) ([]*latchkey.AuditEvent, error) {
	if f.Limit <= 0 || f.Limit > MaxListLimit {
		f.Limit = MaxListLimit
	}
	if f.AfterSeq < 0 {
		return nil, latchkey.Errorf(latchkey.EInvalid, "after must not be negative")
	}
	s.flushReadsBeforeAuditRead(ctx)
	var evs []*latchkey.AuditEvent
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		evs, err = tx.AuditEvents(actor.Tenant, f)
		return err
	})
	return evs, err
}

// AuditVerdict is the result of checking a tenant's hash chain.
type AuditVerdict struct {
	OK       bool   `json:"ok"`
	Events   int64  `json:"events"`
	BrokenAt int64  `json:"broken_seq,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// VerifyAudit walks the actor's tenant's whole chain, after writing the
// secret reads this node has queued, and reports the first event that
// breaks it: changed, removed, reordered, or missing from the end.
func (s *Service) VerifyAudit(ctx context.Context, actor *Actor) (AuditVerdict, error) {
	s.flushReadsBeforeAuditRead(ctx)
	var c latchkey.ChainCheck
	var headSeq int64
	var headHash string
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		headSeq, headHash, err = tx.AuditHead(actor.Tenant)
		return err
	})
	if err != nil {
		return AuditVerdict{}, err
	}
	var after int64
	for {
		var page []*latchkey.AuditEvent
		err := s.store.View(ctx, func(tx Tx) error {
			var err error
			page, err = tx.AuditEvents(actor.Tenant, AuditFilter{AfterSeq: after, Limit: auditPage})
			return err
		})
		if err != nil {
			return AuditVerdict{}, err
		}
		for _, e := range page {
			// Events appended after the head was read are not this check's.
			if e.Seq > headSeq {
				page = nil
				break
			}
			if !c.Next(e) {
				return verdict(c), nil
			}
			after = e.Seq
		}
		if len(page) < auditPage {
			break
		}
	}
	c.Head(headSeq, headHash)
	return verdict(c), nil
}

func verdict(c latchkey.ChainCheck) AuditVerdict {
	return AuditVerdict{OK: c.BrokenAt == 0, Events: c.Events, BrokenAt: c.BrokenAt, Reason: c.Reason}
}

// flushReadsBeforeAuditRead writes the queued secret.read events before
// the log is read. If that fails the log is still shown, as stored; the
// events stay queued for the next flush.
func (s *Service) flushReadsBeforeAuditRead(ctx context.Context) {
	if s.reads.queued() == 0 {
		return
	}
	if err := s.reads.flush(ctx); err != nil {
		s.log.WarnContext(ctx, "writing queued secret read audit events failed; they stay queued", "err", err)
	}
}
