package latchkey

import (
	"slices"
	"strings"
)

// Scopes are "resource:action" strings such as "agent:activate" or
// "data:read": exactly two segments of [a-z0-9_.-] joined by ':'. A granted
// scope may use '*' for a whole segment ("agent:*", "*:read"). A lone "*" is
// the same as "*:*". Resources are "kind:name" ("agent:report-generator"),
// exactly two segments too, or a lone "*".
//
// Latchkey's own admin scopes (AdminScopes) are never reached through a
// wildcard first segment: "*:*" gives every product permission but not
// "keys:write". Grant them by naming their namespace ("keys:*").

// AdminScopes are the scopes Latchkey itself checks on its admin routes.
var AdminScopes = []string{
	"keys:read", "keys:write", "keys:derive",
	"secrets:read", "secrets:write",
	"audit:read", "webhooks:write",
	"policies:read", "policies:write",
	"tenants:admin",
}

// TenantAdminScopes are held by a tenant's first admin key.
var TenantAdminScopes = []string{"keys:*", "secrets:*", "audit:read", "webhooks:write", "policies:*"}

// OperatorScopes are held by the operator's root key.
var OperatorScopes = append(slices.Clone(TenantAdminScopes), "tenants:admin")

var adminScopeSet = func() map[string]bool {
	m := make(map[string]bool, len(AdminScopes))
	for _, s := range AdminScopes {
		m[s] = true
	}
	return m
}()

// Presets expand to scope sets when a key is created or updated, so that a
// stored key always lists what it may do.
var Presets = map[string][]string{
	"read":    {"*:read"},
	"execute": {"*:read", "*:execute", "*:activate"},
	"manage":  {"*:read", "*:execute", "*:activate", "*:write", "*:manage"},
	"full":    {"*:*"},
}

// segments is how many ':'-separated parts a scope and a resource have.
const segments = 2

// ValidateScope reports whether s is a well-formed scope (wildcards allowed).
func ValidateScope(s string) error {
	if s == "*" {
		return nil
	}
	if err := validateSegments(s, isScopeChar, false); err != "" {
		return Errorf(EInvalid, "scope %q: %s", s, err)
	}
	return nil
}

// ValidateResource reports whether r is a well-formed resource pattern such
// as "agent:report-generator", "agent:*", "agent:nlp-*" or "*".
func ValidateResource(r string) error {
	if r == "*" {
		return nil
	}
	if err := validateSegments(r, isResourceChar, true); err != "" {
		return Errorf(EInvalid, "resource %q: %s", r, err)
	}
	return nil
}

func validateSegments(s string, ok func(byte) bool, prefixGlob bool) string {
	if len(s) > 200 {
		return "longer than 200 characters"
	}
	n := 0
	for seg := range strings.SplitSeq(s, ":") {
		n++
		if seg == "" {
			return "empty segment"
		}
		if seg == "*" {
			continue
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if c == '*' && prefixGlob && i == len(seg)-1 {
				continue
			}
			if !ok(c) {
				return "character " + quoteByte(c) + " not allowed"
			}
		}
	}
	if n != segments {
		return "expected two parts joined by ':', such as data:read or agent:name"
	}
	return ""
}

func quoteByte(c byte) string {
	if c < 0x20 || c >= 0x7f {
		return "(non-printing)"
	}
	return "'" + string(c) + "'"
}

func isScopeChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

func isResourceChar(c byte) bool {
	return isScopeChar(c) || c >= 'A' && c <= 'Z' || c == '/' || c == '@'
}

// ExpandScopes validates scopes, expands presets and drops duplicates,
// keeping the first occurrence's order.
func ExpandScopes(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, s := range in {
		s = strings.TrimSpace(s)
		exp, ok := Presets[s]
		if !ok {
			if err := ValidateScope(s); err != nil {
				return nil, err
			}
			exp = []string{s}
		}
		for _, e := range exp {
			if !slices.Contains(out, e) {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// NormalizeResources validates resource patterns and drops duplicates.
func NormalizeResources(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, r := range in {
		r = strings.TrimSpace(r)
		if err := ValidateResource(r); err != nil {
			return nil, err
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

// ScopeCovers reports whether a granted scope covers a required one. A '*'
// segment in grant matches any segment; a required scope is taken literally.
func ScopeCovers(grant, required string) bool {
	if grant == required {
		return true
	}
	if grant == "*" {
		return !adminScopeSet[required]
	}
	if adminScopeSet[required] && strings.HasPrefix(grant, "*") {
		return false
	}
	return segmentsMatch(grant, required, false)
}

// ScopesAllow reports whether any of grants covers required.
func ScopesAllow(grants []string, required string) bool {
	for _, g := range grants {
		if ScopeCovers(g, required) {
			return true
		}
	}
	return false
}

// ResourceCovers reports whether a resource pattern covers a requested
// resource. Segments match whole ("agent:*") or by prefix ("agent:nlp-*").
func ResourceCovers(pattern, resource string) bool {
	if pattern == "*" || pattern == resource {
		return true
	}
	return segmentsMatch(pattern, resource, true)
}

// ResourcesAllow reports whether a key holding patterns may touch resource.
// An empty pattern list means the whole tenant.
func ResourcesAllow(patterns []string, resource string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ResourceCovers(p, resource) {
			return true
		}
	}
	return false
}

// segmentsMatch walks both strings segment by segment without allocating.
func segmentsMatch(pattern, value string, prefixGlob bool) bool {
	for {
		pi := strings.IndexByte(pattern, ':')
		vi := strings.IndexByte(value, ':')
		if (pi < 0) != (vi < 0) {
			return false
		}
		ps, vs := pattern, value
		if pi >= 0 {
			ps, vs = pattern[:pi], value[:vi]
		}
		switch {
		case ps == "*" || ps == vs:
		case prefixGlob && len(ps) > 0 && ps[len(ps)-1] == '*' && strings.HasPrefix(vs, ps[:len(ps)-1]):
		default:
			return false
		}
		if pi < 0 {
			return true
		}
		pattern, value = pattern[pi+1:], value[vi+1:]
	}
}

// GrantableBy reports which of the requested scopes an actor holding
// actorScopes may not hand out: any scope that reaches an admin scope the
// actor does not hold itself. Product scopes are free to grant.
func GrantableBy(actorScopes, requested []string) (denied string, ok bool) {
	for _, s := range requested {
		for _, a := range AdminScopes {
			if ScopeCovers(s, a) && !ScopesAllow(actorScopes, a) {
				return s, false
			}
		}
	}
	return "", true
}

// ScopesWithin reports whether every scope in child is covered by some scope
// in parent (for derived keys).
func ScopesWithin(parent, child []string) (string, bool) {
	for _, c := range child {
		if !ScopesAllow(parent, c) {
			return c, false
		}
	}
	return "", true
}

// ResourcesWithin reports whether every resource a child may touch is
// covered by the parent's resources (for derived keys).
func ResourcesWithin(parent, child []string) (string, bool) {
	if len(parent) == 0 {
		return "", true
	}
	if len(child) == 0 {
		return "(all resources)", false
	}
	for _, c := range child {
		if !ResourcesAllow(parent, c) {
			return c, false
		}
	}
	return "", true
}
