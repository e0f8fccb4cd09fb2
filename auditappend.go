package latchkey

import (
	"strconv"
	"time"
)

// AuditFinding is tampering found in a tenant's audit log.
type AuditFinding struct {
	Kind   string `json:"kind"` // one of latchkey.AuditFindings
	Seq    int64  `json:"seq"`
	Reason string `json:"reason"`
}

// AuditSigner signs the checkpoints of the tenants' audit chains with a
// key the database does not hold, and keeps its own copy of their heads
// (keys.AuditAnchor).
type AuditSigner interface {
	// Anchored returns the head held outside the database for tenant, nil
	// if none.
	Anchored(tenant string) *AuditCheckpoint
	// Valid reports whether cp's MAC verifies.
	Valid(cp *AuditCheckpoint) bool
	// MaxCounter is the highest checkpoint counter seen.
	MaxCounter() int64
	// Sign sets cp's MAC.
	Sign(cp *AuditCheckpoint)
	// FoundOnAppend is told of tampering an append found in tenant's log.
	FoundOnAppend(tenant string, f AuditFinding)
}

// AuditLog is a backend's raw audit storage, in one write transaction:
// what AppendAudit needs.
type AuditLog interface {
	AuditHead(tenant string) (int64, string, error)
	AuditLast(tenant string) (int64, string, error)
	AuditCheckpoint(tenant string) (*AuditCheckpoint, error)
	// AuditCounter is the highest checkpoint counter stored.
	AuditCounter() (int64, error)
	// MoveAuditHead sets the tenant's head.
	MoveAuditHead(tenant string, seq int64, hash string) error
	// InsertAudit stores the sealed e and moves the head onto it.
	InsertAudit(e *AuditEvent) error
	PutAuditCheckpoint(cp *AuditCheckpoint) error
	AppendEvent(e *Event) error
}

// AppendAudit is a transaction's AppendAudit for backends: it seals e
// after the tenant's head and stores it. Events stored after the head by
// someone else are kept, and e follows the last of them, so an append
// never fails because the log was tampered with. With a signer (a != nil:
// the audit anchor, which holds a key the database does not) it first
// checks the log's end against the signed checkpoint; tampering found
// there is raised as a security.anomaly event (kind audit_tampered) in the
// same transaction and kept in the new checkpoint, which signs e's place.
func AppendAudit(l AuditLog, a AuditSigner, e *AuditEvent) error {
	headSeq, headHash, err := l.AuditHead(e.Tenant)
	if err != nil {
		return err
	}
	lastSeq, lastHash, err := l.AuditLast(e.Tenant)
	if err != nil {
		return err
	}
	var f *AuditFinding
	var cp, anch *AuditCheckpoint
	macOK := false
	if a != nil {
		if cp, err = l.AuditCheckpoint(e.Tenant); err != nil {
			return err
		}
		anch = a.Anchored(e.Tenant)
		macOK = cp != nil && a.Valid(cp)
		f = appendFinding(cp, macOK, anch, headSeq, headHash, lastSeq, lastHash)
	}
	prevSeq, prevHash := headSeq, headHash
	if lastSeq > headSeq {
		// Events past the head: continue after them, keeping them as
		// evidence (the checkpoint names them).
		if err := l.MoveAuditHead(e.Tenant, lastSeq, lastHash); err != nil {
			return err
		}
		prevSeq, prevHash = lastSeq, lastHash
	}
	if prevSeq == 0 {
		prevHash = GenesisHash
	}
	e.Seal(prevSeq, prevHash)
	if err := l.InsertAudit(e); err != nil {
		return err
	}
	if a == nil {
		return nil
	}
	counter, err := l.AuditCounter()
	if err != nil {
		return err
	}
	next := &AuditCheckpoint{Tenant: e.Tenant, Seq: e.Seq, Hash: e.Hash, Counter: max(counter, a.MaxCounter()) + 1, At: e.At}
	switch {
	case macOK && cp.TamperKind != "":
		next.TamperKind, next.TamperSeq = cp.TamperKind, cp.TamperSeq
	case anch != nil && anch.TamperKind != "":
		next.TamperKind, next.TamperSeq = anch.TamperKind, anch.TamperSeq
	case f != nil:
		next.TamperKind, next.TamperSeq = f.Kind, f.Seq
	}
	a.Sign(next)
	if err := l.PutAuditCheckpoint(next); err != nil {
		return err
	}
	if f != nil {
		a.FoundOnAppend(e.Tenant, *f)
		return l.AppendEvent(AuditTamperEvent(e.Tenant, *f, e.At))
	}
	return nil
}

// appendFinding is what an append sees wrong at the log's end (nil if
// nothing): the same checks as ChainCheck.Checkpoint without walking the
// chain.
func appendFinding(cp *AuditCheckpoint, macOK bool, anch *AuditCheckpoint, headSeq int64, headHash string, lastSeq int64, lastHash string) *AuditFinding {
	if cp == nil && anch == nil {
		// The tenant's first event, or a log from before checkpoints:
		// this append signs it (trust on first use).
		return nil
	}
	// Checkpoint checks the end of a walked chain; the last stored event
	// stands in for it.
	var c ChainCheck
	c.Seed(lastSeq, lastHash)
	if cp != nil && macOK && lastSeq > cp.Seq && (anch == nil || cp.Counter >= anch.Counter) {
		c.PastHead(cp.Seq + 1)
	}
	c.Checkpoint(cp, macOK, anch, headSeq, headHash)
	if c.BrokenAt == 0 || macOK && c.Kind == cp.TamperKind && c.BrokenAt == cp.TamperSeq {
		return nil // intact, or only the finding the checkpoint already keeps
	}
	return &AuditFinding{Kind: c.Kind, Seq: c.BrokenAt, Reason: c.Reason}
}

// AuditTamperEvent is the security event of tampering found in tenant's log.
func AuditTamperEvent(tenant string, f AuditFinding, at time.Time) *Event {
	return NewEvent(tenant, EventSecurityAnomaly, "", at, Anomaly{
		Kind:     AnomalyAuditTampered,
		Severity: SeverityHigh,
		Summary:  "the audit log was changed outside Latchkey (" + f.Kind + " at seq " + strconv.FormatInt(f.Seq, 10) + ")",
		Details:  map[string]string{"finding": f.Kind, "seq": strconv.FormatInt(f.Seq, 10), "reason": f.Reason},
	})
}

// AuditReader reads the tenants' audit chains (the audit service lists and
// verifies them).
type AuditReader interface {
	// AuditEvents lists a tenant's events in seq order, those matching f.
	AuditEvents(tenant string, f AuditFilter) ([]*AuditEvent, error)
	// AuditHead returns the seq and hash of a tenant's last event (0, "" for
	// an empty log), kept apart from the events so that removing events
	// from the end of the log is noticed.
	AuditHead(tenant string) (seq int64, hash string, err error)
	// AuditLast returns the seq and hash of the tenant's last stored event
	// (0, "" for none), whatever the head says.
	AuditLast(tenant string) (seq int64, hash string, err error)
	// AuditCheckpoint returns the tenant's signed checkpoint; nil if none.
	AuditCheckpoint(tenant string) (*AuditCheckpoint, error)
}
