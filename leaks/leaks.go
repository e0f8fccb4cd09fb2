// Package leaks reads reports of leaked keys: GitHub's secret-scanning
// partner alerts (their signature, their public keys, their body and the
// token analysis answered to them) and the keys a file holds, found by
// Latchkey's key format and checksum. It decides nothing about keys: the
// key service revokes what a report names, the HTTP API and the CLI wire
// the two together.
package leaks

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"

	"github.com/latchkeyhq/latchkey"
)

// Bounds of a report. GitHub batches matches; a body is bounded by the
// server's --max-body before it gets here, and these keep what one
// report may hold sane whatever that limit is.
const (
	// MaxMatches is the most matches one report may carry.
	MaxMatches = 10_000
	// MaxURLLen and MaxFieldLen bound what of a match is kept for the
	// audit log: a longer URL, type or source is cut, not refused.
	MaxURLLen   = 2048
	MaxFieldLen = 64
)

// Match is one secret GitHub found: the token, the type name our pattern
// is registered under, where it was found (may be empty) and what kind of
// place that is ("content", "commit", "issue_comment", …).
type Match struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// ParseReport reads the body of a partner alert: a JSON array of matches.
// Fields GitHub may add later are ignored; a missing type, url or source
// is empty; a long url, type or source is cut to its bound (the token is
// kept whole: the key service refuses what cannot be a key). Call it only on a body whose signature was
// verified. Errors: EInvalid (not a JSON array of objects, a token that is
// not a string, more than MaxMatches).
func ParseReport(body []byte) ([]Match, error) {
	t := bytes.TrimLeft(body, " \t\r\n")
	if len(t) == 0 || t[0] != '[' {
		return nil, latchkey.Errorf(latchkey.EInvalid, "body must be a JSON array of matches")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil { // '['
		return nil, latchkey.Errorf(latchkey.EInvalid, "body must be a JSON array of matches")
	}
	var out []Match
	for dec.More() {
		if len(out) == MaxMatches {
			return nil, latchkey.Errorf(latchkey.EInvalid, "a report may hold at most %d matches", MaxMatches)
		}
		var raw struct {
			Token  *string `json:"token"`
			Type   string  `json:"type"`
			URL    string  `json:"url"`
			Source string  `json:"source"`
		}
		if err := dec.Decode(&raw); err != nil {
			return nil, latchkey.Errorf(latchkey.EInvalid, "match %d: expected an object with token, type, url and source", len(out))
		}
		if raw.Token == nil {
			return nil, latchkey.Errorf(latchkey.EInvalid, "match %d: token is required", len(out))
		}
		m := Match{Token: *raw.Token, Type: cut(raw.Type, MaxFieldLen), URL: cut(raw.URL, MaxURLLen), Source: cut(raw.Source, MaxFieldLen)}
		out = append(out, m)
	}
	if _, err := dec.Token(); err != nil { // ']'
		return nil, latchkey.Errorf(latchkey.EInvalid, "body must be a JSON array of matches")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, latchkey.Errorf(latchkey.EInvalid, "body must hold exactly one JSON array")
	}
	if out == nil {
		out = []Match{}
	}
	return out, nil
}

// cut bounds s to n bytes without splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}

// Labels of the token analysis.
const (
	TruePositive  = "true_positive"
	FalsePositive = "false_positive"
)

// Analysis is one entry of the answer to a partner alert, GitHub's
// "token analysis": whether a reported token is a real credential. It
// names the token by its SHA-256 (GitHub's token_hash form), so the
// answer, like everything else Latchkey writes, never holds a plaintext
// key.
type Analysis struct {
	TokenHash string `json:"token_hash"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

// Analyze is the analysis entry of match m: true_positive when it is a
// key this server issued or imported (real says so), false_positive
// otherwise.
func Analyze(m Match, real bool) Analysis {
	h := sha256.Sum256([]byte(m.Token))
	a := Analysis{TokenHash: latchkey.HashHex(h), TokenType: m.Type, Label: FalsePositive}
	if real {
		a.Label = TruePositive
	}
	return a
}
