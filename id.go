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
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails on supported platforms
	var sb strings.Builder
	sb.Grow(len(kind) + 27)
	sb.WriteString(kind)
	sb.WriteByte('_')
	// 128 bits as 26 base32 digits (the first carries 3 bits).
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	sb.Write(out[:])
	return sb.String()
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
