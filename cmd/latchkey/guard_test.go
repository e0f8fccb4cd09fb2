package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// The brute-force guard's model (docs/limits.md): failures count against
// the network a request comes from; a verify body's ip is believed only
// from a trusted caller; a valid key with an admin scope is never refused;
// exempt networks are never blocked.

// withGuard runs the guard with the shipped window and cool-off and the
// given threshold.
func withGuard(threshold int) serverOption {
	return withConfig(func(c *serverConfig) {
		c.GuardThreshold, c.GuardWindow, c.GuardCooloff = threshold, time.Minute, 5*time.Minute
	})
}

// unknownKey is a well-formed key no server knows.
func unknownKey() string {
	k, _ := latchkey.GenerateToken("", nil)
	return k.Reveal()
}

func (ts *testServer) forwardAuth(t *testing.T, key string) resp {
	t.Helper()
	return do(t, "GET", ts.URL+"/v1/auth", map[string]string{"X-API-Key": key}, nil)
}

func TestE2EGuardNeverLocksOutAdminKeys(t *testing.T) {
	ts := startServer(t, withGuard(20))
	admin := ts.mustTenant(t, "acme")
	_, product := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	ts.putSecret(t, admin, "openai", map[string]any{"value": secretValue("sk-proj-")})

	// 25 failed checks from 127.0.0.1 on every kind of route: anyone on
	// the operator's network can send them.
	for i := range 25 {
		switch i % 3 {
		case 0:
			ts.forwardAuth(t, unknownKey())
		case 1:
			ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": unknownKey()})
		default:
			ts.call(t, "GET", "/v1/keys", unknownKey(), nil)
		}
	}
	// The network is blocked for what the guard protects...
	if r := ts.forwardAuth(t, unknownKey()); r.Status != http.StatusTooManyRequests {
		t.Fatalf("forward-auth with an unknown key after 25 failures: %d, want 429", r.Status)
	}
	if r := ts.forwardAuth(t, product); r.Status != http.StatusTooManyRequests {
		t.Fatalf("forward-auth with a product key from the blocked network: %d, want 429", r.Status)
	}
	if r := ts.call(t, "GET", "/v1/keys", unknownKey(), nil); r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("admin route with an unknown key from the blocked network: %d, want 429 with Retry-After", r.Status)
	}
	// ...but never for its owners: the root key and the tenant's admin
	// key keep working on admin routes and the seed route.
	if r := ts.call(t, "GET", "/v1/tenants", ts.Root, nil); r.Status != http.StatusOK {
		t.Fatalf("root key on GET /v1/tenants after 25 failures: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "GET", "/v1/keys", admin, nil); r.Status != http.StatusOK {
		t.Fatalf("tenant admin key on GET /v1/keys after 25 failures: %d %s", r.Status, r.Raw)
	}
	ts.mustCreate(t, admin, map[string]any{"name": "after-the-block"})
	if r := ts.call(t, "GET", "/keys/openai", admin, nil); r.Status != http.StatusOK {
		t.Fatalf("tenant admin key on GET /keys/openai after 25 failures: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "GET", "/llm-keys", admin, nil); r.Status != http.StatusOK {
		t.Fatalf("tenant admin key on GET /llm-keys after 25 failures: %d %s", r.Status, r.Raw)
	}
	// An admin key without the route's scope is answered by the route
	// (403), not by the guard.
	r := ts.call(t, "POST", "/v1/keys", admin, map[string]any{"name": "reader", "scopes": []string{"keys:read"}})
	if r.Status != http.StatusCreated {
		t.Fatalf("create a keys:read key: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "POST", "/v1/keys", r.str("key"), map[string]any{"name": "x"}); r.Status != http.StatusForbidden {
		t.Fatalf("keys:read key creating a key from the blocked network: %d %s, want 403", r.Status, r.Raw)
	}
}

func TestE2EGuardBlocksAttackerRotatingBodyIP(t *testing.T) {
	ts := startServer(t, withGuard(20))
	admin := ts.mustTenant(t, "acme")
	_, good := ts.mustCreate(t, admin, map[string]any{})
	// 127.0.0.1 is no trusted proxy: the ip it names in the body is not
	// believed for the guard, so every guess counts against 127.0.0.0/24.
	blockedAt := 0
	for i := range 25 {
		r := ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": unknownKey(), "ip": fmt.Sprintf("203.0.%d.7", i)})
		if r.Status == http.StatusTooManyRequests {
			if r.errCode() != latchkey.ERateLimited || r.Header.Get("Retry-After") == "" {
				t.Fatalf("guess %d: 429 %s, Retry-After %q", i+1, r.Raw, r.Header.Get("Retry-After"))
			}
			blockedAt = i + 1
			break
		}
		if codeOf(r) != latchkey.CodeNotFound {
			t.Fatalf("guess %d: %d %s", i+1, r.Status, r.Raw)
		}
	}
	if blockedAt != 21 {
		t.Fatalf("an attacker rotating the body ip was blocked at guess %d, want 21 (0: never)", blockedAt)
	}
	// A fresh body ip does not get round the block either.
	if r := ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": good, "ip": "198.51.100.99"}); r.Status != http.StatusTooManyRequests {
		t.Fatalf("verify naming a fresh ip from the blocked caller: %d %s", r.Status, r.Raw)
	}
}

func TestE2EGuardExemptNetworksAreNeverBlocked(t *testing.T) {
	ts := startServer(t, withGuard(5), withConfig(func(c *serverConfig) { c.GuardExempt = "10.9.0.0/16, 127.0.0.0/8" }))
	admin := ts.mustTenant(t, "acme")
	_, good := ts.mustCreate(t, admin, map[string]any{})
	for i := range 30 {
		if r := ts.forwardAuth(t, unknownKey()); r.Status != http.StatusUnauthorized {
			t.Fatalf("forward-auth guess %d from an exempt network: %d, want 401", i+1, r.Status)
		}
		if c := ts.verifyCode(t, map[string]any{"key": unknownKey()}); c != latchkey.CodeNotFound {
			t.Fatalf("verify guess %d from an exempt network: %s", i+1, c)
		}
	}
	if r := ts.forwardAuth(t, good); r.Status != http.StatusOK {
		t.Fatalf("a good key from an exempt network after 60 failures: %d", r.Status)
	}
}

func TestE2EGuardExemptRefusesBadCIDRs(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "nonsense", "10.0.0.1/8", "fe80::/10%eth0", "10.0.0.0/8,,", "::ffff:10.0.0.0/8"} {
		t.Run(bad, func(t *testing.T) {
			var stderr strings.Builder
			db := filepath.Join(t.TempDir(), "x.db")
			err := run(context.Background(), []string{"server", "--addr", "127.0.0.1:0", "--db", db, "--guard-exempt", bad},
				func(string) string { return "" }, strings.NewReader(""), io.Discard, &stderr)
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("--guard-exempt %q: %v (%s), want invalid", bad, err, stderr.String())
			}
		})
	}
}

func TestE2EGuardTrustedServiceVerifiesForManyClients(t *testing.T) {
	ts := startServer(t, withGuard(5), withTrustedProxies("127.0.0.1"))
	admin := ts.mustTenant(t, "acme")
	_, good := ts.mustCreate(t, admin, map[string]any{})
	// The service, a trusted caller, verifies for 40 clients, each of
	// which fails once: 40 failures in all, far past the threshold, none
	// of them the service's.
	for i := range 40 {
		if c := ts.verifyCode(t, map[string]any{"key": unknownKey(), "ip": fmt.Sprintf("198.51.%d.7", i)}); c != latchkey.CodeNotFound {
			t.Fatalf("client %d: %s, want NOT_FOUND", i, c)
		}
	}
	// One client keeps failing: it is blocked, and its network with it.
	for i := range 5 {
		if c := ts.verifyCode(t, map[string]any{"key": unknownKey(), "ip": "203.0.113.9"}); c != latchkey.CodeNotFound {
			t.Fatalf("failing client, guess %d: %s", i+1, c)
		}
	}
	for _, ip := range []string{"203.0.113.9", "203.0.113.200"} {
		r := ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": good, "ip": ip})
		if r.Status != http.StatusTooManyRequests || r.errCode() != latchkey.ERateLimited {
			t.Fatalf("verify for %s in the blocked client network: %d %s", ip, r.Status, r.Raw)
		}
	}
	// The service itself and its other clients are not blocked.
	if c := ts.verifyCode(t, map[string]any{"key": good, "ip": "198.51.100.7"}); c != latchkey.CodeValid {
		t.Fatalf("verify for another client: %s", c)
	}
	if c := ts.verifyCode(t, map[string]any{"key": good}); c != latchkey.CodeValid {
		t.Fatalf("verify for the service itself: %s", c)
	}
	if r := ts.forwardAuth(t, good); r.Status != http.StatusOK {
		t.Fatalf("forward-auth from the service's network: %d", r.Status)
	}
	// A caller the trusted proxy forwards for is trusted only if its own
	// address is: this one is not, so the ips it names are not believed
	// and its guesses count against its own network.
	untrusted := map[string]string{"X-Forwarded-For": "192.0.2.50"}
	for i := range 6 {
		r := do(t, "POST", ts.URL+"/v1/keys/verify", untrusted, map[string]any{"key": unknownKey(), "ip": fmt.Sprintf("198.18.%d.1", i)})
		want := http.StatusOK
		if i == 5 {
			want = http.StatusTooManyRequests
		}
		if r.Status != want {
			t.Fatalf("untrusted caller behind the proxy, guess %d: %d %s, want %d", i+1, r.Status, r.Raw, want)
		}
	}
}
