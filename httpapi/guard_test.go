package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/guard"
	"github.com/latchkeyhq/latchkey/httpapi"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// TestGuardCountsWhomTheModelSays plays one failed verification per case
// against a guard that blocks at the first failure, and checks which
// network it blocked: the caller's, unless a trusted caller names the
// client in the body (docs/limits.md, "Brute-force guard").
func TestGuardCountsWhomTheModelSays(t *testing.T) {
	now := time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	svc := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](guardTestDB(t)), Now: clock})
	trusted, err := httpapi.ParseTrustedProxies("10.0.0.1, 2001:db8::/64")
	if err != nil {
		t.Fatal(err)
	}
	const badKey = `"lk_0000000000000000000000000000000000000000000"`
	for _, tc := range []struct {
		name, remote, xff, bodyIP, counted string
	}{
		{"untrusted caller, no body ip", "192.0.2.5:1", "", "", "192.0.2.5"},
		{"untrusted caller naming a client", "192.0.2.5:1", "", "198.51.100.7", "192.0.2.5"},
		{"untrusted caller forging X-Forwarded-For", "192.0.2.5:1", "198.51.100.7", "198.51.100.8", "192.0.2.5"},
		{"trusted caller, no body ip", "10.0.0.1:1", "", "", "10.0.0.1"},
		{"trusted caller naming a client", "10.0.0.1:1", "", "198.51.100.7", "198.51.100.7"},
		{"trusted IPv6 caller naming an IPv6 client", "[2001:db8::9]:1", "", "2001:db8:ff::1", "2001:db8:ff::1"},
		{"trusted proxy forwarding an untrusted caller", "10.0.0.1:1", "192.0.2.5", "198.51.100.7", "192.0.2.5"},
		{"trusted proxy forwarding a trusted caller", "10.0.0.1:1", "2001:db8::7", "198.51.100.7", "198.51.100.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := guard.New(guard.Options{Threshold: 1})
			if err != nil {
				t.Fatal(err)
			}
			srv := httpapi.New(httpapi.Config{Keys: svc, Guard: g, TrustedProxies: trusted, Now: clock})
			body := `{"key":` + badKey
			if tc.bodyIP != "" {
				body += `,"ip":"` + tc.bodyIP + `"`
			}
			req := httptest.NewRequest("POST", "/v1/keys/verify", strings.NewReader(body+"}"))
			req.RemoteAddr = tc.remote
			if tc.xff != "" {
				req.Header.Set("X-Forwarded-For", tc.xff)
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("verify: %d %s", rec.Code, rec.Body)
			}
			if _, blocked := g.Blocked(netip.MustParseAddr(tc.counted), now); !blocked {
				t.Errorf("the failure was not counted against %s", tc.counted)
			}
			if st := g.Stats(now); st.Tracked != 1 {
				t.Errorf("%d networks counted, want 1", st.Tracked)
			}
		})
	}
}

// A nil *guard.Guard (the guard turned off) is no guard: bad keys are
// answered, never held back, and nothing panics.
func TestNilGuardIsNoGuard(t *testing.T) {
	svc := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](guardTestDB(t))})
	var off *guard.Guard
	srv := httpapi.New(httpapi.Config{Keys: svc, Guard: off})
	for i := range 30 {
		req := httptest.NewRequest("GET", "/v1/auth", nil)
		req.Header.Set("Authorization", "Bearer lk_0000000000000000000000000000000000000000000")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("bad key %d answered %d, want 401", i, rec.Code)
		}
	}
}

// guardTestDB opens a store in t's temporary directory, closed when t ends.
func guardTestDB(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
