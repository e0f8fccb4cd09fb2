package identity

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"repo:acme/*", "repo:acme/api:ref:refs/heads/main", true},
		{"repo:acme/*", "repo:acme-evil/api", false},
		{"repo:acme/api:ref:refs/heads/main", "repo:acme/api:ref:refs/heads/main", true},
		{"repo:acme/api:ref:refs/heads/main", "repo:acme/api:ref:refs/heads/main2", false},
		{"repo:*:environment:production", "repo:acme/api:environment:production", true},
		{"repo:*:environment:production", "repo:acme/api:environment:staging", false},
		{"*", "", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbY", false},
		{"", "", true},
		{"", "x", false},
	} {
		if got := match(tc.pattern, tc.s); got != tc.want {
			t.Errorf("match(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

// FuzzMatch holds match to a regular expression doing the same.
func FuzzMatch(f *testing.F) {
	f.Add("repo:acme/*", "repo:acme/api:ref:refs/heads/main")
	f.Add("a*b*", "aab")
	f.Add("**x", "yx")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if len(pattern) > 64 || len(s) > 256 || !utf8.ValidString(pattern) || !utf8.ValidString(s) {
			return
		}
		parts := strings.Split(pattern, "*")
		for i, p := range parts {
			parts[i] = regexp.QuoteMeta(p)
		}
		re := regexp.MustCompile(`(?s)\A` + strings.Join(parts, ".*") + `\z`)
		if got, want := match(pattern, s), re.MatchString(s); got != want {
			t.Fatalf("match(%q, %q) = %v, the regexp says %v", pattern, s, got, want)
		}
	})
}
