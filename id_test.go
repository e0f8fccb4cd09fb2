package latchkey

import (
	"testing"
	"time"
)

// A sequence's ids are valid, strictly increasing as strings (the order
// the store's indexes keep), stay in their millisecond and carry from the
// low 64 bits into the high ones.
func TestIDSequenceIncreases(t *testing.T) {
	now := time.Date(2026, 12, 6, 1, 2, 3, 4_000_000, time.UTC)
	s := NewIDSequence("key", now)
	s.lo = ^uint64(0) - 2 // a few steps before the carry
	prev := ""
	for i := range 10 {
		id := s.Next()
		if !ValidID("key", id) {
			t.Fatalf("id %d %q is not valid", i, id)
		}
		if id <= prev {
			t.Fatalf("id %d %q does not follow %q", i, id, prev)
		}
		// The first 10 digits hold the time: the millisecond's, as NewID's.
		if id[4:14] != NewID("key", now)[4:14] {
			t.Fatalf("id %q left its millisecond (NewID gives %q)", id, NewID("key", now))
		}
		prev = id
	}
	if a, b := NewIDSequence("key", now).Next(), NewIDSequence("key", now).Next(); a == b {
		t.Errorf("two sequences started at the same id %q", a)
	}
}
