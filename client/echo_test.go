package client

import (
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Parsers' errors are shown to users and logged; what they parse holds
// keys (an /llm-keys answer holds every provider's, a keys file or a
// settings file holds them too). These are the rules errTellsNoSecret
// checks, for the fuzz targets of every parser here.
const (
	// secretMin: a value (not a name) at least this long is treated as a
	// secret and may not appear in an error at all.
	secretMin = 8
	// echoMax: a quoted part of an error may echo at most this much of
	// the input, unless it is a name (a mapping key that is a valid
	// provider name, such as a field or provider the error is about).
	echoMax = 16
)

var quoted = regexp.MustCompile(`"([^"]*)"`)

// errTellsNoSecret fails t if err, an error from parsing data, holds one of
// data's values of secretMin bytes or more, or quotes more than echoMax
// bytes of data that are not a name.
func errTellsNoSecret(t testing.TB, err error, data []byte) {
	t.Helper()
	msg := err.Error()
	values, names := scalars(data)
	// A name the error is about (a misspelt field) is quoted on purpose;
	// a value that happens to be part of that name is not being leaked,
	// so values are looked for in the rest of the message.
	rest := quoted.ReplaceAllStringFunc(msg, func(m string) string {
		if q := strings.TrimSuffix(m[1:len(m)-1], "…"); q != "" && isNamePrefix(names, q) {
			return `""`
		}
		return m
	})
	for _, v := range values {
		if len(v) >= secretMin && strings.Contains(rest, v) {
			t.Fatalf("error %q holds the value %q of its input", msg, v)
		}
	}
	for _, m := range quoted.FindAllStringSubmatch(msg, -1) {
		q := strings.TrimSuffix(m[1], "…")
		if len(q) <= echoMax || !strings.Contains(string(data), q) || names[q] && ValidProvider(q) {
			continue
		}
		t.Fatalf("error %q quotes %d bytes of its input", msg, len(q))
	}
}

// isNamePrefix reports whether q is one of names or the start of one (an
// error clips the names it quotes).
func isNamePrefix(names map[string]bool, q string) bool {
	if names[q] {
		return true
	}
	for n := range names {
		if strings.HasPrefix(n, q) {
			return true
		}
	}
	return false
}

// scalars returns the value scalars (mapping values, sequence items,
// documents) and the mapping keys of data read as YAML (JSON is YAML).
// Input that is neither gives none: its error must then be constant,
// which FuzzParseKeyAnswer checks where it matters.
func scalars(data []byte) (values []string, names map[string]bool) {
	names = map[string]bool{}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return nil, names
	}
	var walk func(n *yaml.Node, isKey bool, depth int)
	walk = func(n *yaml.Node, isKey bool, depth int) {
		if n == nil || depth > 64 {
			return
		}
		switch n.Kind {
		case yaml.ScalarNode:
			if isKey {
				names[n.Value] = true
			} else {
				values = append(values, n.Value)
			}
		case yaml.MappingNode:
			for i, c := range n.Content {
				walk(c, i%2 == 0, depth+1)
			}
		default:
			for _, c := range n.Content {
				walk(c, false, depth+1)
			}
		}
	}
	walk(&root, false, 0)
	return values, names
}
