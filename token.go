package latchkey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
)

// The published key format (see docs/keys.md):
//
//	<prefix>_<random><check>
//
// random is 32 bytes from crypto/rand read as a big-endian integer and written
// in base62 (alphabet 0-9A-Za-z), left-padded with '0' to 43 characters; check
// is the CRC-32 (IEEE) of the bytes "<prefix>_<random>" in the same base62,
// left-padded to 6 characters. The prefix is 1–16 of [a-z0-9_], not ending in
// '_'; a key splits at its last '_'.
const (
	DefaultPrefix = "lk"
	// MaxPrefixLen is the longest prefix a key may carry.
	MaxPrefixLen = 16
	randomLen    = 43
	checkLen     = 6
	bodyLen      = randomLen + checkLen
	// MaxTokenLen is the length of the longest well-formed key.
	MaxTokenLen = MaxPrefixLen + 1 + bodyLen
	minTokenLen = 1 + 1 + bodyLen
	// startLen is how many body characters the display "start" keeps.
	startLen = 4
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// maxRandom is 2^256-1 in fixed-width base62. Because the alphabet is in
// ASCII order, fixed-width base62 strings compare like the numbers they
// encode, so a random part is in range iff it is <= maxRandom as a string.
var maxRandom = func() string {
	var b [32]byte
	for i := range b {
		b[i] = 0xff
	}
	return encodeBase62(b[:], randomLen)
}()

// Token errors, each a distinct *Error with code EInvalid; test them with
// errors.Is.
var (
	ErrTokenEmpty    = &Error{Code: EInvalid, Message: "key is empty"}
	ErrTokenLength   = &Error{Code: EInvalid, Message: fmt.Sprintf("key must be a prefix, '_' and %d base62 characters", bodyLen)}
	ErrTokenPrefix   = &Error{Code: EInvalid, Message: "key prefix must be 1-16 of a-z, 0-9 and '_', not ending in '_'"}
	ErrTokenCharset  = &Error{Code: EInvalid, Message: "key has a character outside 0-9, A-Z, a-z after its prefix"}
	ErrTokenRange    = &Error{Code: EInvalid, Message: "key random part is larger than 256 bits"}
	ErrTokenChecksum = &Error{Code: EInvalid, Message: "key checksum does not match: the key is mistyped or truncated"}
	// ErrTokenForeign refuses a key that is not shaped like a Latchkey key
	// and is not an acceptable imported key either.
	ErrTokenForeign   = &Error{Code: EInvalid, Message: fmt.Sprintf("key is neither in Latchkey's format nor %d-%d printable ASCII characters", MinForeignKeyLen, MaxForeignKeyLen)}
	errTokenNoEntropy = &Error{Code: EInternal, Message: "cannot read random bytes for a new key"}
)

// Token is a plaintext API key. It never prints itself: String, %v, %#v,
// JSON, text marshalling and slog all show a redacted form. Use Reveal to get
// the plaintext where it must be shown once, and Equal (constant time) to
// compare; == does not compile.
type Token struct {
	_ [0]func() // not comparable with ==
	s string
}

// GenerateToken returns a new key with the given prefix ("" means
// DefaultPrefix), reading 32 bytes from r (nil means crypto/rand).
func GenerateToken(prefix string, r io.Reader) (Token, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !ValidPrefix(prefix) {
		return Token{}, ErrTokenPrefix
	}
	if r == nil {
		r = rand.Reader
	}
	var raw [32]byte
	if _, err := io.ReadFull(r, raw[:]); err != nil {
		return Token{}, errTokenNoEntropy
	}
	head := prefix + "_" + encodeBase62(raw[:], randomLen)
	check := crc32.ChecksumIEEE([]byte(head))
	return Token{s: head + encodeUint32(check)}, nil
}

// ParseToken checks s against the key format, including its checksum, and
// returns it as a Token. It allocates nothing. Errors are the ErrToken* values.
func ParseToken(s string) (Token, error) {
	if s == "" {
		return Token{}, ErrTokenEmpty
	}
	if len(s) < minTokenLen || len(s) > MaxTokenLen || s[len(s)-bodyLen-1] != '_' {
		return Token{}, ErrTokenLength
	}
	cut := len(s) - bodyLen
	if !ValidPrefix(s[:cut-1]) {
		return Token{}, ErrTokenPrefix
	}
	body := s[cut:]
	var bad byte
	for i := 0; i < randomLen; i++ {
		bad |= base62Digit[body[i]] & 0x80
	}
	var want uint64
	for i := randomLen; i < bodyLen; i++ {
		d := base62Digit[body[i]]
		bad |= d & 0x80
		want = want*62 + uint64(d)
	}
	if bad != 0 {
		return Token{}, ErrTokenCharset
	}
	if body[:randomLen] > maxRandom {
		return Token{}, ErrTokenRange
	}
	if want > 0xffffffff || crc32String(s[:cut+randomLen]) != uint32(want) {
		return Token{}, ErrTokenChecksum
	}
	return Token{s: s}, nil
}

// ValidPrefix reports whether p is a legal key prefix.
func ValidPrefix(p string) bool {
	if len(p) == 0 || len(p) > MaxPrefixLen || p[len(p)-1] == '_' {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Reveal returns the plaintext key. Call it only to show a key once to the
// person who asked for it, or to send it as a credential.
func (t Token) Reveal() string { return t.s }

// IsZero reports whether t holds no key.
func (t Token) IsZero() bool { return t.s == "" }

// Prefix returns the part before the last '_'.
func (t Token) Prefix() string {
	if len(t.s) < minTokenLen {
		return ""
	}
	return t.s[:len(t.s)-bodyLen-1]
}

// Start returns the display form kept in the store: prefix, '_' and the first
// four characters of the random part. It identifies a key to people without
// weakening it.
func (t Token) Start() string {
	if len(t.s) < minTokenLen {
		return ""
	}
	return t.s[:len(t.s)-bodyLen+startLen]
}

// Hash returns SHA-256 of the whole key, the only form a store keeps.
func (t Token) Hash() [32]byte { return HashKey(t.s) }

// Bounds of a foreign key: one imported from another system (a `.env`
// list, a plaintext list) that is not in Latchkey's format.
const (
	MinForeignKeyLen = 16
	MaxForeignKeyLen = 256
)

// OwnShape reports whether s is shaped like a Latchkey key: a valid prefix,
// '_' and as many characters as a key's body. Such a string is held to the
// format, checksum included, and never looked up as a foreign key, so a
// mistyped Latchkey key is refused offline.
func OwnShape(s string) bool {
	if len(s) < minTokenLen || len(s) > MaxTokenLen || s[len(s)-bodyLen-1] != '_' {
		return false
	}
	return ValidPrefix(s[:len(s)-bodyLen-1])
}

// CheckForeignKey reports whether s may be a foreign key: 16-256 printable
// ASCII characters (0x20-0x7e). It does not check OwnShape.
func CheckForeignKey(s string) error {
	if s == "" {
		return ErrTokenEmpty
	}
	if len(s) < MinForeignKeyLen || len(s) > MaxForeignKeyLen {
		return ErrTokenForeign
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return ErrTokenForeign
		}
	}
	return nil
}

// PresentedKeyHash returns the hash a presented key is looked up by: a
// string shaped like a Latchkey key must pass ParseToken (its errors are
// returned), anything else must be an acceptable foreign key
// (ErrTokenEmpty, ErrTokenForeign). It allocates nothing.
func PresentedKeyHash(s string) ([32]byte, error) {
	if OwnShape(s) {
		if _, err := ParseToken(s); err != nil {
			return [32]byte{}, err
		}
		return HashKey(s), nil
	}
	if err := CheckForeignKey(s); err != nil {
		return [32]byte{}, err
	}
	return HashKey(s), nil
}

// HashKey returns SHA-256 of a plaintext key, without allocating for keys
// up to MaxForeignKeyLen bytes.
func HashKey(s string) [32]byte {
	var buf [MaxForeignKeyLen]byte
	if len(s) <= len(buf) {
		n := copy(buf[:], s)
		return sha256.Sum256(buf[:n])
	}
	return sha256.Sum256([]byte(s))
}

// HashHex is the lower-case hex form of a key hash, for import files.
func HashHex(h [32]byte) string { return hex.EncodeToString(h[:]) }

// Equal compares two tokens in constant time.
func (t Token) Equal(o Token) bool {
	return subtle.ConstantTimeCompare([]byte(t.s), []byte(o.s)) == 1
}

func (t Token) redacted() string {
	if t.s == "" {
		return ""
	}
	if s := t.Start(); s != "" {
		return s + "…[redacted]"
	}
	return "[redacted]"
}

// String returns a redacted form such as "lk_3xYz…[redacted]".
func (t Token) String() string { return t.redacted() }

// GoString keeps %#v redacted too.
func (t Token) GoString() string { return "latchkey.Token(" + t.redacted() + ")" }

// MarshalText keeps encoders that use text (JSON map keys, XML) redacted.
func (t Token) MarshalText() ([]byte, error) { return []byte(t.redacted()), nil }

// MarshalJSON writes the redacted form as a JSON string.
func (t Token) MarshalJSON() ([]byte, error) { return []byte(`"` + t.redacted() + `"`), nil }

// LogValue keeps slog output redacted.
func (t Token) LogValue() slog.Value { return slog.StringValue(t.redacted()) }

// base62Digit maps a byte to its base62 value, or 0xff for bytes outside
// the alphabet: one load per character on the verify path.
var base62Digit = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(base62); i++ {
		t[base62[i]] = byte(i)
	}
	return t
}()

func base62Value(c byte) int {
	if d := base62Digit[c]; d != 0xff {
		return int(d)
	}
	return -1
}

// encodeBase62 writes the big-endian integer b in base62, left-padded with
// '0' to width characters.
func encodeBase62(b []byte, width int) string {
	n := make([]byte, len(b))
	copy(n, b)
	out := make([]byte, width)
	for i := width - 1; i >= 0; i-- {
		var rem uint
		for j := range n { // n = n / 62, rem = n % 62
			cur := rem<<8 | uint(n[j])
			n[j] = byte(cur / 62)
			rem = cur % 62
		}
		out[i] = base62[rem]
	}
	return string(out)
}

func encodeUint32(v uint32) string {
	var out [checkLen]byte
	x := uint64(v)
	for i := checkLen - 1; i >= 0; i-- {
		out[i] = base62[x%62]
		x /= 62
	}
	return string(out[:])
}

// crc32String is CRC-32 (IEEE) over a string, walking the standard table
// itself. hash/crc32 would be faster, but it takes a []byte and dispatches
// through a function value, so whatever it is given escapes: a copy of the
// key would cost an allocation, and the key itself would make every
// VerifyRequest (and the caller's scope buffer) escape.
func crc32String(s string) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(s); i++ {
		crc = crc32.IEEETable[byte(crc)^s[i]] ^ crc>>8
	}
	return ^crc
}
