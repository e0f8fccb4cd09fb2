package latchkey

import (
	"testing"
	"time"
)

func chain(n int) []*AuditEvent {
	var evs []*AuditEvent
	prev, at := GenesisHash, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range n {
		e := &AuditEvent{At: at, Tenant: "a", Action: "key.updated", Result: ResultSuccess}
		e.Seal(int64(i), prev)
		prev = e.Hash
		evs = append(evs, e)
	}
	return evs
}

// Each way the end of a log can disagree with its signed checkpoint, the
// anchor outside the database and the stored head has its own finding.
func TestChainCheckpointFindings(t *testing.T) {
	evs := chain(5)
	cp := func(seq, counter int64) *AuditCheckpoint {
		return &AuditCheckpoint{Tenant: "a", Seq: seq, Hash: evs[seq-1].Hash, Counter: counter}
	}
	marked := cp(5, 9)
	marked.TamperKind, marked.TamperSeq = AuditPastHead, 4
	for _, c := range []struct {
		name     string
		walked   int // events walked
		past     int64
		cp       *AuditCheckpoint
		macOK    bool
		anchor   *AuditCheckpoint
		headSeq  int64
		wantKind string
		wantSeq  int64
	}{
		{"intact", 5, 0, cp(5, 9), true, cp(5, 9), 5, "", 0},
		{"anchor lags", 5, 0, cp(5, 9), true, cp(3, 7), 5, "", 0},
		{"rows past the head", 5, 6, cp(5, 9), true, nil, 5, AuditPastHead, 6},
		{"truncated", 3, 0, cp(5, 9), true, nil, 3, AuditTruncated, 4},
		{"forged head", 5, 0, &AuditCheckpoint{Tenant: "a", Seq: 5, Hash: "other", Counter: 9}, true, nil, 5, AuditHeadForged, 5},
		{"forged checkpoint", 5, 0, cp(5, 9), false, nil, 5, AuditCheckpointForged, 5},
		{"rewound", 3, 0, cp(3, 7), true, cp(5, 9), 3, AuditRewound, 4},
		{"same counter, other head", 3, 0, cp(3, 9), true, cp(5, 9), 3, AuditCheckpointForged, 3},
		{"checkpoint missing", 5, 0, nil, false, cp(5, 9), 5, AuditCheckpointMissing, 5},
		{"head moved", 5, 0, cp(5, 9), true, nil, 4, AuditHeadMismatch, 5},
		{"finding kept in the checkpoint", 5, 0, marked, true, nil, 5, AuditPastHead, 4},
		{"no checkpoint, no anchor: the head decides", 5, 0, nil, false, nil, 5, "", 0},
		{"no checkpoint, head beyond the log", 4, 0, nil, false, nil, 5, AuditTruncated, 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			var ch ChainCheck
			for _, e := range evs[:c.walked] {
				if !ch.Next(e) {
					t.Fatalf("chain broken at %d", ch.BrokenAt)
				}
			}
			if c.past != 0 {
				ch.PastHead(c.past)
			}
			ch.Checkpoint(c.cp, c.macOK, c.anchor, c.headSeq, evs[c.headSeq-1].Hash)
			if ch.Kind != c.wantKind || ch.BrokenAt != c.wantSeq {
				t.Fatalf("finding %q at %d (%s); want %q at %d", ch.Kind, ch.BrokenAt, ch.Reason, c.wantKind, c.wantSeq)
			}
		})
	}
}

// The chain's own findings carry their kinds too.
func TestChainNextFindings(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(evs []*AuditEvent) []*AuditEvent
		kind   string
	}{
		{"changed", func(evs []*AuditEvent) []*AuditEvent { evs[2].Action = "x"; return evs }, AuditChanged},
		{"link", func(evs []*AuditEvent) []*AuditEvent { evs[2].PrevHash = GenesisHash; return evs }, AuditLinkBroken},
		{"missing", func(evs []*AuditEvent) []*AuditEvent { return append(evs[:2:2], evs[3:]...) }, AuditMissing},
	} {
		var ch ChainCheck
		for _, e := range c.change(chain(5)) {
			if !ch.Next(e) {
				break
			}
		}
		if ch.Kind != c.kind || ch.BrokenAt != 3 {
			t.Errorf("%s: %q at %d", c.name, ch.Kind, ch.BrokenAt)
		}
	}
}

// Every field of a checkpoint is covered by its MAC, and fields cannot be
// shifted into one another.
func TestCheckpointMessageCoversEveryField(t *testing.T) {
	base := AuditCheckpoint{Tenant: "a", Seq: 1, Hash: "h", Counter: 2, TamperKind: "k", TamperSeq: 3, At: time.UnixMicro(4)}
	seen := map[string]string{string(base.Message()): "base"}
	for name, c := range map[string]AuditCheckpoint{
		"tenant": {Tenant: "b", Seq: 1, Hash: "h", Counter: 2, TamperKind: "k", TamperSeq: 3, At: time.UnixMicro(4)},
		"seq":    {Tenant: "a", Seq: 9, Hash: "h", Counter: 2, TamperKind: "k", TamperSeq: 3, At: time.UnixMicro(4)},
		"hash":   {Tenant: "a", Seq: 1, Hash: "i", Counter: 2, TamperKind: "k", TamperSeq: 3, At: time.UnixMicro(4)},
		"count":  {Tenant: "a", Seq: 1, Hash: "h", Counter: 9, TamperKind: "k", TamperSeq: 3, At: time.UnixMicro(4)},
		"kind":   {Tenant: "a", Seq: 1, Hash: "h", Counter: 2, TamperKind: "", TamperSeq: 3, At: time.UnixMicro(4)},
		"tseq":   {Tenant: "a", Seq: 1, Hash: "h", Counter: 2, TamperKind: "k", TamperSeq: 9, At: time.UnixMicro(4)},
		"at":     {Tenant: "a", Seq: 1, Hash: "h", Counter: 2, TamperKind: "k", TamperSeq: 3, At: time.UnixMicro(9)},
		"shift":  {Tenant: "a|1:h", Seq: 1, Hash: "", Counter: 2, TamperKind: "k", TamperSeq: 3, At: time.UnixMicro(4)},
	} {
		m := string(c.Message())
		if other, ok := seen[m]; ok {
			t.Errorf("%s encodes like %s", name, other)
		}
		seen[m] = name
	}
}
