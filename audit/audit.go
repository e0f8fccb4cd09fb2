package audit

import (
	"context"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// auditPage is how many events one read transaction of a chain check
// covers, so a long log is checked without one huge read.
const auditPage = 1000

// ListAudit lists the actor's tenant's audit events in seq order,
// after writing the secret reads this node has queued, so that the log
// read here holds every read answered here. Errors: EInvalid.
func (s *Service) ListAudit(ctx context.Context, actor *latchkey.Actor, f latchkey.AuditFilter) ([]*latchkey.AuditEvent, error) {
	if f.Limit <= 0 || f.Limit > latchkey.MaxListLimit {
		f.Limit = latchkey.MaxListLimit
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

// Verdict is the result of checking a tenant's hash chain.
type Verdict struct {
	OK       bool   `json:"ok"`
	Events   int64  `json:"events"`
	BrokenAt int64  `json:"broken_seq,omitempty"`
	Finding  string `json:"finding,omitempty"` // one of latchkey.AuditFindings
	Reason   string `json:"reason,omitempty"`
	// Signed says whether the log's end was checked against a signed
	// checkpoint (false: no keyring, or a log not yet checkpointed).
	Signed bool `json:"signed"`
}

// VerifyAudit walks the actor's tenant's whole chain, after writing the
// secret reads this node has queued, and reports the first thing wrong:
// an event changed, removed or reordered, events past the signed head, a
// log that ends before it, a head or checkpoint that does not match or
// does not verify, or a checkpoint older than the anchor outside the
// database. Tampering found is raised as a security event (once per
// finding) and reported by /readyz until a verify finds the log intact.
func (s *Service) VerifyAudit(ctx context.Context, actor *latchkey.Actor) (Verdict, error) {
	s.flushReadsBeforeAuditRead(ctx)
	v, err := s.verifyAudit(ctx, actor.Tenant)
	if err == nil && v.Finding == latchkey.AuditCheckpointForged {
		// A rewrap that committed between reading the checkpoint and
		// checking its MAC makes a genuine one look forged: look again.
		v, err = s.verifyAudit(ctx, actor.Tenant)
	}
	if err != nil {
		return Verdict{}, err
	}
	if s.anchor != nil {
		s.noteVerdict(ctx, actor.Tenant, v)
	}
	return v, nil
}

func (s *Service) verifyAudit(ctx context.Context, tenant string) (Verdict, error) {
	var c latchkey.ChainCheck
	var anch, cp *latchkey.AuditCheckpoint
	if s.anchor != nil {
		// Read before the database: the anchor only holds what was
		// committed, so it is never ahead of what is read next.
		anch = s.anchor.anchored(tenant)
	}
	var headSeq, lastSeq int64
	var headHash string
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		if headSeq, headHash, err = tx.AuditHead(tenant); err != nil {
			return err
		}
		if lastSeq, _, err = tx.AuditLast(tenant); err != nil {
			return err
		}
		if s.anchor != nil {
			cp, err = tx.AuditCheckpoint(tenant)
		}
		return err
	})
	if err != nil {
		return Verdict{}, err
	}
	macOK := cp != nil && s.anchor.Valid(cp)
	// The chain is walked to the signed head (the recorded one without a
	// valid checkpoint); events after it, up to the last one stored when
	// the walk began, are past the head.
	limit := headSeq
	if macOK {
		limit = cp.Seq
	}
	var after int64
walk:
	for {
		var page []*latchkey.AuditEvent
		err := s.store.View(ctx, func(tx Tx) error {
			var err error
			page, err = tx.AuditEvents(tenant, latchkey.AuditFilter{AfterSeq: after, Limit: auditPage})
			return err
		})
		if err != nil {
			return Verdict{}, err
		}
		for _, e := range page {
			if e.Seq > lastSeq {
				break walk // appended after the walk began
			}
			if e.Seq > limit {
				c.PastHead(e.Seq)
				break walk
			}
			if !c.Next(e) {
				break walk
			}
			after = e.Seq
		}
		if len(page) < auditPage {
			break
		}
	}
	if s.anchor != nil {
		c.Checkpoint(cp, macOK, anch, headSeq, headHash)
	} else {
		c.Head(headSeq, headHash)
	}
	return Verdict{OK: c.BrokenAt == 0, Events: c.Events, BrokenAt: c.BrokenAt, Finding: c.Kind, Reason: c.Reason, Signed: macOK}, nil
}

// noteVerdict remembers (for /readyz) what a verify found and raises a
// finding not raised before as a security event; an intact log clears it.
func (s *Service) noteVerdict(ctx context.Context, tenant string, v Verdict) {
	if v.OK {
		s.anchor.clear(tenant)
		return
	}
	f := AuditFinding{Kind: v.Finding, Seq: v.BrokenAt, Reason: v.Reason}
	if !s.anchor.found(tenant, f) {
		return
	}
	s.log.ErrorContext(ctx, "the audit log was tampered with", "tenant", tenant, "finding", f.Kind, "seq", f.Seq, "reason", f.Reason)
	if err := s.store.Update(ctx, func(tx Tx) error { return tx.AppendEvent(latchkey.AuditTamperEvent(tenant, f, s.now())) }); err != nil {
		s.log.ErrorContext(ctx, "recording audit tampering as a security event failed", "tenant", tenant, "err", err)
	}
}

// AuditTampered returns the tenants whose audit log was found tampered
// with since the start (by an append, a verify or the check at start),
// with what was found; /readyz reports them.
func (s *Service) AuditTampered() map[string]AuditFinding {
	if s.anchor == nil {
		return nil
	}
	return s.anchor.Findings()
}

// SyncAuditAnchor copies the committed audit checkpoints to the anchor
// file now rather than within its interval.
func (s *Service) SyncAuditAnchor(ctx context.Context) error {
	if s.anchor == nil {
		return nil
	}
	return s.anchor.Sync(ctx, s.store)
}

// CheckAuditAnchor compares every tenant's checkpoint with the anchor file
// at start (see Anchor.Check).
func (s *Service) CheckAuditAnchor(ctx context.Context) error {
	if s.anchor == nil {
		return nil
	}
	return s.anchor.Check(ctx, s.store, s.now())
}

// syncAnchorLoop copies new checkpoints to the anchor file every interval.
func (s *Service) syncAnchorLoop(interval time.Duration) {
	defer close(s.anchorDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.anchorStop:
			return
		case <-t.C:
		}
		if !s.anchor.dirty.Load() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.anchor.Sync(ctx, s.store); err != nil {
			s.log.Error("writing the audit anchor file failed; retrying", "err", err)
		}
		cancel()
	}
}

// flushReadsBeforeAuditRead writes the queued secret.read events
// (Options.BeforeRead) before the log is read. If that fails the log
// is still shown, as stored; the events stay queued for the next flush.
func (s *Service) flushReadsBeforeAuditRead(ctx context.Context) {
	if s.beforeRead == nil {
		return
	}
	if err := s.beforeRead(ctx); err != nil {
		s.log.WarnContext(ctx, "writing queued secret read audit events failed; they stay queued", "err", err)
	}
}
