package latchkey_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

func TestScopeCovers(t *testing.T) {
	tests := []struct {
		grant, required string
		want            bool
	}{
		{"data:read", "data:read", true},
		{"data:read", "data:write", false},
		{"data:*", "data:write", true},
		{"*:read", "agent:read", true},
		{"*:read", "agent:write", false},
		{"*", "agent:activate", true},
		{"*:*", "agent:activate", true},
		{"agent:*", "agent", false},
		{"agent:*", "agent:x:y", false},
		{"*:*", "keys:write", false},          // wildcards never reach admin scopes
		{"*", "tenants:admin", false},         // not even a lone star
		{"*:write", "keys:write", false},      // nor a star in the first segment
		{"keys:*", "keys:write", true},        // naming the namespace does
		{"*:manage", "webhooks:manage", true}, // a product scope in an admin-looking namespace
		{"data:read", "data:*", false},        // a required wildcard is literal
		{"data:*", "data:*", true},
	}
	for _, tt := range tests {
		if got := latchkey.ScopeCovers(tt.grant, tt.required); got != tt.want {
			t.Errorf("ScopeCovers(%q, %q) = %v, want %v", tt.grant, tt.required, got, tt.want)
		}
	}
}

func TestResourceCovers(t *testing.T) {
	tests := []struct {
		patterns []string
		resource string
		want     bool
	}{
		{nil, "agent:anything", true},
		{[]string{"agent:report-generator"}, "agent:report-generator", true},
		{[]string{"agent:report-generator"}, "agent:other", false},
		{[]string{"agent:*"}, "agent:other", true},
		{[]string{"agent:*"}, "workflow:nightly", false},
		{[]string{"agent:nlp-*"}, "agent:nlp-summarise", true},
		{[]string{"agent:nlp-*"}, "agent:vision", false},
		{[]string{"workflow:nightly", "agent:a"}, "workflow:nightly", true},
		{[]string{"*"}, "secret:openai", true},
	}
	for _, tt := range tests {
		if got := latchkey.ResourcesAllow(tt.patterns, tt.resource); got != tt.want {
			t.Errorf("ResourcesAllow(%q, %q) = %v, want %v", tt.patterns, tt.resource, got, tt.want)
		}
	}
}

func TestExpandScopesPresets(t *testing.T) {
	got, err := latchkey.ExpandScopes([]string{"read", "data:write", "execute", "data:write"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"*:read", "data:write", "*:execute", "*:activate"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for _, bad := range []string{"", "Data:read", "a::b", "a:b:c:d:e", "data:re ad", "da*ta:read", "data", "data:read:all", "a:b:c:d", "*:*:*"} {
		if _, err := latchkey.ExpandScopes([]string{bad}); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("scope %q: err = %v, want invalid", bad, err)
		}
	}
}

func TestGrantableByKeepsAdminPowersWithTheirHolders(t *testing.T) {
	admin := latchkey.TenantAdminScopes
	if _, ok := latchkey.GrantableBy(admin, []string{"*:*", "agent:activate", "keys:read"}); !ok {
		t.Fatal("tenant admin should grant product scopes and keys:read")
	}
	if bad, ok := latchkey.GrantableBy(admin, []string{"tenants:admin"}); ok || bad != "tenants:admin" {
		t.Fatalf("tenant admin granted tenants:admin (bad=%q)", bad)
	}
	if _, ok := latchkey.GrantableBy([]string{"keys:write"}, []string{"secrets:read"}); ok {
		t.Fatal("a keys:write key handed out secrets:read")
	}
	if _, ok := latchkey.GrantableBy([]string{"keys:write"}, []string{"secrets:*"}); ok {
		t.Fatal("a keys:write key handed out secrets:* ")
	}
}

func TestParseDuration(t *testing.T) {
	day := 24 * time.Hour
	good := map[string]time.Duration{
		"90s": 90 * time.Second, "15m": 15 * time.Minute, "6h": 6 * time.Hour, "30d": 30 * day,
		"2w": 14 * day, "1y": 365 * day, "1d12h": 36 * time.Hour, "1.5h": 90 * time.Minute, "0": 0,
	}
	for in, want := range good {
		got, err := latchkey.ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
		if back, err := latchkey.ParseDuration(latchkey.FormatDuration(got)); err != nil || back != got {
			t.Errorf("FormatDuration(%v) = %q does not read back", got, latchkey.FormatDuration(got))
		}
	}
	for _, bad := range []string{"", "d", "5", "-5s", "5x", "1e9y", "101y", "5 s"} {
		if _, err := latchkey.ParseDuration(bad); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("ParseDuration(%q) err = %v, want invalid", bad, err)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"90s", "30d", "1d12h", "1.5h", "", "1y1y1y", "9999999999999999999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := latchkey.ParseDuration(s)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("code %s", latchkey.ErrorCode(err))
			}
			return
		}
		if d < 0 || d > latchkey.MaxDuration {
			t.Fatalf("ParseDuration(%q) = %v out of range", s, d)
		}
		back, err := latchkey.ParseDuration(latchkey.FormatDuration(d))
		if err != nil || back != d {
			t.Fatalf("format round trip of %v: %v, %v", d, back, err)
		}
	})
}

func TestIPAllow(t *testing.T) {
	allow, err := latchkey.ParseIPAllow([]string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::ffff:198.51.100.0/120"})
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{
		"10.1.2.3": true, "11.0.0.1": false, "192.0.2.7": true, "192.0.2.8": false,
		"2001:db8::1": true, "2001:db9::1": false, "::ffff:10.0.0.1": true, "198.51.100.9": true,
	} {
		if got := latchkey.IPAllowed(allow, netip.MustParseAddr(ip)); got != want {
			t.Errorf("IPAllowed(%s) = %v, want %v", ip, got, want)
		}
	}
	if !latchkey.IPAllowed(nil, netip.MustParseAddr("203.0.113.1")) {
		t.Error("an empty allowlist must allow every address")
	}
	for _, bad := range []string{"10.0.0.0/33", "host.example", "", "::ffff:1.2.3.4/64", "fe80::1%eth0", "fe80::1%eth0/64"} {
		if _, err := latchkey.ParseIPAllow([]string{bad}); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("ParseIPAllow(%q) err = %v, want invalid", bad, err)
		}
	}
}

func TestStateAt(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Second), now.Add(time.Second)
	tests := []struct {
		name string
		k    latchkey.Key
		want latchkey.State
	}{
		{"Active", latchkey.Key{State: latchkey.StateActive}, latchkey.StateActive},
		{"Expired", latchkey.Key{State: latchkey.StateActive, ExpiresAt: past}, latchkey.StateExpired},
		{"ExpiresExactlyNow", latchkey.Key{State: latchkey.StateActive, ExpiresAt: now}, latchkey.StateExpired},
		{"SuspendedUntilResumed", latchkey.Key{State: latchkey.StateSuspended}, latchkey.StateSuspended},
		{"SuspensionRunning", latchkey.Key{State: latchkey.StateSuspended, SuspendedUntil: future}, latchkey.StateSuspended},
		{"SuspensionOver", latchkey.Key{State: latchkey.StateSuspended, SuspendedUntil: past}, latchkey.StateActive},
		{"SuspendedBeatsExpired", latchkey.Key{State: latchkey.StateSuspended, ExpiresAt: past}, latchkey.StateSuspended},
		{"InGrace", latchkey.Key{State: latchkey.StateActive, GraceUntil: future}, latchkey.StateActive},
		{"GraceOver", latchkey.Key{State: latchkey.StateActive, GraceUntil: past}, latchkey.StateRevoked},
		{"RevokedBeatsAll", latchkey.Key{State: latchkey.StateRevoked, SuspendedUntil: future, ExpiresAt: past}, latchkey.StateRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.k.StateAt(now); got != tt.want {
				t.Fatalf("StateAt = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestIDsSortByTimeAndValidate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := latchkey.NewID("key", t0)
	b := latchkey.NewID("key", t0.Add(time.Millisecond))
	if !(a < b) || !latchkey.ValidID("key", a) || latchkey.ValidID("key", "key_short") || latchkey.ValidID("ten", a) {
		t.Fatalf("ids %s %s", a, b)
	}
}

func TestErrorTableRoundTrips(t *testing.T) {
	for _, c := range []string{latchkey.EInvalid, latchkey.EUnauthenticated, latchkey.EForbidden, latchkey.ENotFound,
		latchkey.EConflict, latchkey.ERateLimited, latchkey.ETooLarge, latchkey.EUnavailable, latchkey.EInternal} {
		if got := latchkey.CodeForStatus(latchkey.HTTPStatus(c)); got != c {
			t.Errorf("%s → %d → %s", c, latchkey.HTTPStatus(c), got)
		}
	}
}

func TestFormatDurationUsesTheLargestWholeUnit(t *testing.T) {
	for d, want := range map[time.Duration]string{
		30 * 24 * time.Hour: "30d", 365 * 24 * time.Hour: "1y", time.Hour: "1h", 90 * time.Second: "1m30s", 0: "0s",
	} {
		if got := latchkey.FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// FuzzValidateScope: an accepted scope or resource is "*" or exactly two
// non-empty parts; an error is invalid and never quotes more than 200 bytes.
func FuzzValidateScope(f *testing.F) {
	for _, s := range []string{"data:read", "*", "*:*", "agent:*", "data", "a:b:c", "agent:nlp-*", "a::b", ":", "Agent:X/y@z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for name, validate := range map[string]func(string) error{"scope": latchkey.ValidateScope, "resource": latchkey.ValidateResource} {
			err := validate(s)
			if err != nil {
				if latchkey.ErrorCode(err) != latchkey.EInvalid {
					t.Fatalf("%s %q: %v, want invalid", name, s, err)
				}
				continue
			}
			if s == "*" {
				continue
			}
			kind, rest, ok := strings.Cut(s, ":")
			if !ok || kind == "" || rest == "" || strings.Contains(rest, ":") {
				t.Fatalf("%s %q accepted; want exactly two parts", name, s)
			}
		}
	})
}

// FuzzParseIPAllow: every accepted entry is a masked prefix without a
// zone; errors are invalid.
func FuzzParseIPAllow(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::ffff:198.51.100.0/120", "fe80::1%eth0", "fe80::1%eth0/64", "", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := latchkey.ParseIPAllow([]string{s})
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("ParseIPAllow(%q): %v, want invalid", s, err)
			}
			return
		}
		for _, p := range ps {
			if !p.IsValid() || p.Addr().Zone() != "" || p != p.Masked() {
				t.Fatalf("ParseIPAllow(%q) = %v", s, p)
			}
		}
	})
}
