package latchkey

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// AuditEvent is one entry of a tenant's audit log. Each tenant's events
// form a hash chain: Seq counts from 1 without gaps, PrevHash is the Hash of
// the event before (GenesisHash for the first), and Hash is SHA-256 over
// the event's canonical encoding, PrevHash included. Changing, removing or
// reordering any stored event breaks the chain at that event.
//
// An event never holds a plaintext key or secret value: keys appear by id.
type AuditEvent struct {
	Seq         int64             `json:"seq"`
	At          time.Time         `json:"at"`
	Tenant      string            `json:"tenant"`
	ActorKeyID  string            `json:"actor_key_id,omitempty"`
	Action      string            `json:"action"`
	TargetKeyID string            `json:"target_key_id,omitempty"`
	IP          string            `json:"ip,omitempty"`
	UserAgent   string            `json:"user_agent,omitempty"`
	Result      string            `json:"result"`
	Details     map[string]string `json:"details,omitempty"`
	PrevHash    string            `json:"prev_hash"`
	Hash        string            `json:"hash"`
}

// Audit results.
const (
	ResultSuccess = "success"
)

// GenesisHash is the PrevHash of a tenant's first event.
var GenesisHash = strings.Repeat("0", 64)

// canonicalAudit fixes the field order and forms that the hash covers.
// Details is a map of strings, which encoding/json writes with sorted keys,
// so the encoding is the same however the map was built.
type canonicalAudit struct {
	V           int               `json:"v"`
	Seq         int64             `json:"seq"`
	At          string            `json:"at"`
	Tenant      string            `json:"tenant"`
	ActorKeyID  string            `json:"actor_key_id"`
	Action      string            `json:"action"`
	TargetKeyID string            `json:"target_key_id"`
	IP          string            `json:"ip"`
	UserAgent   string            `json:"user_agent"`
	Result      string            `json:"result"`
	Details     map[string]string `json:"details"`
	PrevHash    string            `json:"prev_hash"`
}

// ComputeHash returns the hex SHA-256 of the event's canonical encoding
// (every field but Hash). Times count to the microsecond, as stores keep them.
func (e *AuditEvent) ComputeHash() string {
	d := e.Details
	if d == nil {
		d = map[string]string{}
	}
	b, err := json.Marshal(canonicalAudit{
		V: 1, Seq: e.Seq, At: e.At.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano),
		Tenant: e.Tenant, ActorKeyID: e.ActorKeyID, Action: e.Action, TargetKeyID: e.TargetKeyID,
		IP: e.IP, UserAgent: e.UserAgent, Result: e.Result, Details: d, PrevHash: e.PrevHash,
	})
	if err != nil {
		// Only strings and an int: Marshal cannot fail on this struct.
		panic("latchkey: encoding an audit event: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Seal places the event after the one with seq prevSeq and hash prevHash,
// and computes its hash.
func (e *AuditEvent) Seal(prevSeq int64, prevHash string) {
	e.Seq, e.PrevHash = prevSeq+1, prevHash
	e.At = e.At.UTC().Truncate(time.Microsecond)
	e.Hash = e.ComputeHash()
}

// What a chain check found: the Kind of a ChainCheck, the "finding" of
// audit verify, and the detail of an audit_tampered security event.
const (
	// AuditChanged: an event's hash does not match its contents.
	AuditChanged = "event_changed"
	// AuditLinkBroken: an event's prev_hash is not the previous event's hash.
	AuditLinkBroken = "link_broken"
	// AuditMissing: a seq is missing or out of order.
	AuditMissing = "event_missing"
	// AuditTruncated: the log ends before its head or its checkpoint.
	AuditTruncated = "truncated"
	// AuditHeadMismatch: the stored head (audit_heads) does not match the
	// log and its checkpoint.
	AuditHeadMismatch = "head_mismatch"
	// AuditPastHead: events were stored after the signed head.
	AuditPastHead = "rows_past_head"
	// AuditHeadForged: the chain checks out link by link, but its event at
	// the signed head has another hash: events were rewritten and every
	// hash after them recomputed.
	AuditHeadForged = "head_forged"
	// AuditCheckpointForged: the checkpoint's MAC does not verify (it was
	// written by someone without the keyring's master key).
	AuditCheckpointForged = "checkpoint_forged"
	// AuditCheckpointMissing: the log has events but no checkpoint, while
	// the anchor kept outside the database knows one.
	AuditCheckpointMissing = "checkpoint_missing"
	// AuditRewound: the checkpoint is older than the one kept outside the
	// database: the log was put back to an earlier state.
	AuditRewound = "rewound"
)

// AuditFindings lists every finding kind.
var AuditFindings = []string{
	AuditChanged, AuditLinkBroken, AuditMissing, AuditTruncated, AuditHeadMismatch, AuditPastHead,
	AuditHeadForged, AuditCheckpointForged, AuditCheckpointMissing, AuditRewound,
}

// AuditCheckpoint is a tenant's chain head signed with a key the database
// does not hold (derived from the keyring's master key), stored beside the
// log at every append and copied to a file outside the database. Counter
// grows with every checkpoint of any tenant, so an older checkpoint put
// back in place of a newer one is told apart from it. A checkpoint written
// after the server found the log tampered with carries the first finding
// (TamperKind at TamperSeq) under its MAC, so the evidence outlives the
// appends that continue the log.
type AuditCheckpoint struct {
	Tenant     string    `json:"tenant"`
	Seq        int64     `json:"seq"`
	Hash       string    `json:"hash"`
	Counter    int64     `json:"counter"`
	TamperKind string    `json:"tamper_kind,omitempty"`
	TamperSeq  int64     `json:"tamper_seq,omitempty"`
	At         time.Time `json:"at"`
	MAC        string    `json:"mac"`
}

// Message is the encoding the checkpoint's MAC covers: every field but
// MAC, each length-prefixed so no two checkpoints encode alike.
func (c *AuditCheckpoint) Message() []byte {
	b := make([]byte, 0, 160+len(c.Tenant))
	b = append(b, "latchkey audit checkpoint v1"...)
	for _, f := range []string{c.Tenant, c.Hash, c.TamperKind} {
		b = strconv.AppendInt(append(b, '|'), int64(len(f)), 10)
		b = append(append(b, ':'), f...)
	}
	for _, n := range []int64{c.Seq, c.Counter, c.TamperSeq, c.At.UTC().UnixMicro()} {
		b = strconv.AppendInt(append(b, '|'), n, 10)
	}
	return b
}

// ChainCheck walks a tenant's events in order and reports the first that
// breaks the chain, then what the head, the signed checkpoint and the
// anchor outside the database say about where the chain must end.
type ChainCheck struct {
	Events   int64  // events checked so far
	BrokenAt int64  // seq of the first bad event; 0 while the chain holds
	Kind     string // what is wrong: one of AuditFindings
	Reason   string // why it is bad, for people
	lastSeq  int64
	lastHash string
}

func (c *ChainCheck) fail(seq int64, kind, reason string) {
	c.BrokenAt, c.Kind, c.Reason = seq, kind, reason
}

// Next checks the next event; it returns false once the chain is broken.
func (c *ChainCheck) Next(e *AuditEvent) bool {
	if c.BrokenAt != 0 {
		return false
	}
	if c.lastHash == "" {
		c.lastHash = GenesisHash
	}
	want := c.lastSeq + 1
	switch {
	case e.Seq != want:
		c.fail(want, AuditMissing, "event missing or out of order (found seq "+itoa(e.Seq)+")")
	case e.PrevHash != c.lastHash:
		c.fail(e.Seq, AuditLinkBroken, "prev_hash does not match the previous event's hash")
	case e.ComputeHash() != e.Hash:
		c.fail(e.Seq, AuditChanged, "hash does not match the event's contents")
	default:
		c.Events++
		c.lastSeq, c.lastHash = e.Seq, e.Hash
		return true
	}
	return false
}

// Head checks that the chain ends where the store's head says it does, so
// that events removed from the end are noticed too. It is the whole end
// check of a log without a checkpoint (no keyring).
func (c *ChainCheck) Head(seq int64, hash string) {
	if c.BrokenAt != 0 || seq == c.lastSeq && (seq == 0 || hash == c.lastHash) {
		return
	}
	if seq <= c.lastSeq {
		c.fail(seq, AuditHeadMismatch, "the recorded head does not match the log")
		return
	}
	c.fail(c.lastSeq+1, AuditTruncated, "the log ends before its recorded head (seq "+itoa(seq)+")")
}

// Seed makes the check continue after the event (seq, hash), as if it had
// walked the chain to it: to check only the end of a log.
func (c *ChainCheck) Seed(seq int64, hash string) {
	c.lastSeq, c.lastHash = seq, hash
	if seq == 0 {
		c.lastHash = GenesisHash
	}
}

// PastHead reports an event stored after the head the chain was walked to
// (the first such seq).
func (c *ChainCheck) PastHead(seq int64) {
	if c.BrokenAt == 0 {
		c.fail(seq, AuditPastHead, "events stored after the signed head, from seq "+itoa(seq)+": not written by Latchkey")
	}
}

// Checkpoint checks the walked chain's end against the tenant's signed
// checkpoint cp (nil if the database holds none; macOK whether its MAC
// verifies), the anchor kept outside the database (nil if it knows none
// for the tenant), and the store's head (headSeq, headHash). Call it after
// Next has seen every event up to cp's seq, and PastHead for any after.
func (c *ChainCheck) Checkpoint(cp *AuditCheckpoint, macOK bool, anchor *AuditCheckpoint, headSeq int64, headHash string) {
	if c.BrokenAt != 0 {
		return
	}
	if cp == nil {
		if anchor != nil {
			c.fail(anchor.Seq, AuditCheckpointMissing, "the log has no checkpoint, but the anchor outside the database holds one at seq "+itoa(anchor.Seq))
			return
		}
		c.Head(headSeq, headHash)
		return
	}
	switch {
	case !macOK:
		c.fail(cp.Seq, AuditCheckpointForged, "the checkpoint's MAC does not verify with the keyring's key")
	case anchor != nil && cp.Counter < anchor.Counter:
		c.fail(cp.Seq+1, AuditRewound, "the log was put back to an older checkpoint (seq "+itoa(cp.Seq)+", counter "+itoa(cp.Counter)+
			") than the anchor outside the database holds (seq "+itoa(anchor.Seq)+", counter "+itoa(anchor.Counter)+")")
	case anchor != nil && cp.Counter == anchor.Counter && (cp.Seq != anchor.Seq || cp.Hash != anchor.Hash):
		c.fail(cp.Seq, AuditCheckpointForged, "the checkpoint differs from the anchor outside the database at the same counter")
	case c.lastSeq < cp.Seq:
		c.fail(c.lastSeq+1, AuditTruncated, "the log ends before its signed head (seq "+itoa(cp.Seq)+")")
	case c.lastHash != cp.Hash && cp.Seq > 0:
		c.fail(cp.Seq, AuditHeadForged, "the event at the signed head has another hash: events before it were rewritten")
	case headSeq != cp.Seq || headHash != cp.Hash:
		c.fail(cp.Seq, AuditHeadMismatch, "the stored head (seq "+itoa(headSeq)+") does not match the signed head")
	case cp.TamperKind != "":
		c.fail(cp.TamperSeq, cp.TamperKind, "found by the server at an append and kept in the signed checkpoint since")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
