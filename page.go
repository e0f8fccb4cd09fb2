package latchkey

import "encoding/base64"

// Page limits for lists.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// ClampLimit is the page size a list asked for n items gets: the default
// for none, at most MaxListLimit.
func ClampLimit(n int) int {
	if n <= 0 {
		return DefaultListLimit
	}
	return min(n, MaxListLimit)
}

// Cursors are opaque to clients: the last id (or name) of a page,
// base64url-encoded.

// EncodeCursor is the cursor that continues a list after id.
func EncodeCursor(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// DecodeCursor reads a cursor from a list response; EInvalid if it is not one.
func DecodeCursor(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) > 200 {
		return "", Errorf(EInvalid, "cursor is not one this server returned")
	}
	return string(b), nil
}
