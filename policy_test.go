package latchkey_test

import (
	"testing"

	"github.com/latchkeyhq/latchkey"
)

// An owner's quota id never looks like a key id, and splits back into
// its tenant and owner, whatever the owner holds.
func TestOwnerQuotaIDRoundTrips(t *testing.T) {
	for _, c := range []struct{ tenant, owner string }{{"acme", "client-1"}, {"t", "a:b:c"}, {"operator", " x "}} {
		id := latchkey.OwnerQuotaID(c.tenant, c.owner)
		tenant, owner, ok := latchkey.ParseOwnerQuotaID(id)
		if !ok || tenant != c.tenant || owner != c.owner {
			t.Errorf("ParseOwnerQuotaID(%q) = %q, %q, %v", id, tenant, owner, ok)
		}
	}
	for _, id := range []string{"key_01H", "owner:", "owner:acme", "owner:Bad Tenant:x", "ownerx:acme:y"} {
		if _, _, ok := latchkey.ParseOwnerQuotaID(id); ok {
			t.Errorf("ParseOwnerQuotaID(%q) is ok", id)
		}
	}
}

func TestRateLimitApplyIsAlwaysOrOnRequest(t *testing.T) {
	ok := []latchkey.RateLimit{{Name: "tokens", Limit: 10_000, Window: latchkey.Duration(3600e9), Apply: latchkey.ApplyOnRequest}, {Limit: 5, Window: 1e9}, {Limit: 9, Window: 2e9, Apply: "always"}}
	if err := latchkey.ValidateRateLimits(ok); err != nil {
		t.Fatal(err)
	}
	if ok[2].Apply != latchkey.ApplyAlways {
		t.Fatalf(`"always" stays %q; want it stored as the default`, ok[2].Apply)
	}
	bad := []latchkey.RateLimit{{Name: "tokens", Limit: 10, Window: 1e9, Apply: "sometimes"}}
	if err := latchkey.ValidateRateLimits(bad); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("apply sometimes: %v", err)
	}
}
