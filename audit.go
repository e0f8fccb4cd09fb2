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

// ChainCheck walks a tenant's events in order and reports the first that
// breaks the chain.
type ChainCheck struct {
	Events   int64  // events checked so far
	BrokenAt int64  // seq of the first bad event; 0 while the chain holds
	Reason   string // why it is bad
	lastSeq  int64
	lastHash string
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
		c.BrokenAt, c.Reason = want, "event missing or out of order (found seq "+itoa(e.Seq)+")"
	case e.PrevHash != c.lastHash:
		c.BrokenAt, c.Reason = e.Seq, "prev_hash does not match the previous event's hash"
	case e.ComputeHash() != e.Hash:
		c.BrokenAt, c.Reason = e.Seq, "hash does not match the event's contents"
	default:
		c.Events++
		c.lastSeq, c.lastHash = e.Seq, e.Hash
		return true
	}
	return false
}

// Head checks that the chain ends where the store's head says it does, so
// that events removed from the end are noticed too.
func (c *ChainCheck) Head(seq int64, hash string) {
	if c.BrokenAt != 0 || seq == c.lastSeq && (seq == 0 || hash == c.lastHash) {
		return
	}
	c.BrokenAt, c.Reason = c.lastSeq+1, "the log ends before its recorded head (seq "+itoa(seq)+")"
	if seq <= c.lastSeq {
		c.BrokenAt, c.Reason = seq, "the recorded head does not match the log"
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
