package latchkey

import (
	"crypto/rand"
	"encoding/binary"
	"strings"
	"time"
)

// crockford is Crockford's base32 alphabet, in ASCII order so that ids sort
// by creation time.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewID returns "<kind>_" followed by 26 characters: 48 bits of milliseconds
// since the Unix epoch and 80 random bits, so ids sort by creation time.
func NewID(kind string, now time.Time) string {
	hi, lo := randomID(now)
	return formatID(kind, hi, lo)
}

// randomID returns an id's 128 bits: 48 bits of now's milliseconds, then
// 80 random bits.
func randomID(now time.Time) (hi, lo uint64) {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails on supported platforms
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// formatID writes kind, '_' and the 128 bits as 26 base32 digits (the
// first carries 3 bits).
func formatID(kind string, hi, lo uint64) string {
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	var sb strings.Builder
	sb.Grow(len(kind) + 27)
	sb.WriteString(kind)
	sb.WriteByte('_')
	sb.Write(out[:])
	return sb.String()
}

// IDSequence hands out ids of one kind and one millisecond in increasing
// order: the first is random as NewID's, each next one is the previous plus one
// in its 80 random bits. Rows written in the order of their ids land at
// the end of every index on id instead of at random places in it, which
// makes a large import several times cheaper for the store. The ids are
// as hard to guess as the first (they name no secret either way: every
// lookup by id also names the tenant). Not safe for concurrent use.
type IDSequence struct {
	kind   string
	hi, lo uint64 // the id's 128 bits: 48 of time, then 80 counted from a random start
}

// NewIDSequence starts a sequence at a random point of now's millisecond.
func NewIDSequence(kind string, now time.Time) *IDSequence {
	hi, lo := randomID(now)
	// The top random bit is cleared, so that counting from the start
	// never carries into the time (it would take 2^79 ids).
	hi &^= 1 << 15
	return &IDSequence{kind: kind, hi: hi, lo: lo}
}

// Next returns the sequence's next id.
func (s *IDSequence) Next() string {
	id := formatID(s.kind, s.hi, s.lo)
	s.lo++
	if s.lo == 0 {
		s.hi++
	}
	return id
}

// ValidID reports whether s looks like an id of the given kind, so that a
// malformed id in a URL is a not_found without a store lookup.
func ValidID(kind, s string) bool {
	if len(s) != len(kind)+27 || !strings.HasPrefix(s, kind) || s[len(kind)] != '_' {
		return false
	}
	for i := len(kind) + 1; i < len(s); i++ {
		if strings.IndexByte(crockford, s[i]) < 0 {
			return false
		}
	}
	return true
}
