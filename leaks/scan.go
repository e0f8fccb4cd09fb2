package leaks

import (
	"github.com/latchkeyhq/latchkey"
)

// bodyLen is what follows a key's last '_': 43 random and 6 checksum
// characters of base62 (docs/key-format.md).
const bodyLen = 49

// Found is a Latchkey key found in text, with the line it is on
// (counting from 1). The token prints redacted; Reveal it only to report
// it to the server.
type Found struct {
	Line  int
	Token latchkey.Token
}

// FindKeys returns the Latchkey keys in text, in order: a prefix, '_' and
// 49 base62 characters that pass latchkey.ParseToken, checksum included,
// so random text yields none (a look-alike passes the 32-bit checksum
// once in four billion). A key may stand anywhere a word may: after '=',
// a quote or a space, and even glued to letters before it ("xlk_…" holds
// the key "lk_…" when that checksum matches), but not followed by another
// base62 character, which would make it part of a longer string.
func FindKeys(text []byte) []Found {
	var out []Found
	line, counted := 1, 0 // text[:counted] has line-1 newlines
	for i := 0; i < len(text); i++ {
		if text[i] != '_' || i == 0 || i+1+bodyLen > len(text) {
			continue
		}
		end := i + 1 + bodyLen
		if !allBase62(text[i+1:end]) || end < len(text) && isBase62(text[end]) {
			continue
		}
		start := keyStart(text, i, end)
		if start < 0 {
			continue
		}
		for ; counted < start; counted++ {
			if text[counted] == '\n' {
				line++
			}
		}
		tok, _ := latchkey.ParseToken(string(text[start:end]))
		out = append(out, Found{Line: line, Token: tok})
		i = end - 1
	}
	return out
}

// keyStart returns where the key whose '_' is at text[us] and which ends
// at end begins: the longest prefix before us for which the whole passes
// ParseToken, or -1 if none does.
func keyStart(text []byte, us, end int) int {
	if text[us-1] == '_' {
		return -1 // a prefix does not end in '_'
	}
	lo := us
	for lo > 0 && us-lo < latchkey.MaxPrefixLen && isPrefixChar(text[lo-1]) {
		lo--
	}
	for s := lo; s < us; s++ {
		if _, err := latchkey.ParseToken(string(text[s:end])); err == nil {
			return s
		}
	}
	return -1
}

func isPrefixChar(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' }

func isBase62(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

func allBase62(b []byte) bool {
	for _, c := range b {
		if !isBase62(c) {
			return false
		}
	}
	return true
}
