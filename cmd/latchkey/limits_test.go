package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/geo/geotest"
	"github.com/latchkeyhq/latchkey/keys"
)

func withConfig(f func(*serverConfig)) serverOption {
	return func(c *serverConfig, _ *serverHooks) { f(c) }
}

func codeOf(r resp) string { return r.str("code") }

func TestE2ERateWindowsOverHTTP(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	_, key := ts.mustCreate(t, admin, map[string]any{
		"scopes":     []string{"data:read"},
		"ratelimits": []map[string]any{{"name": "burst", "limit": 3, "window": "1m"}, {"name": "hourly", "limit": 5, "window": "1h"}},
	})
	verify := func() resp {
		return ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": key, "scopes": []string{"data:read"}})
	}
	for i := range 3 {
		if r := verify(); codeOf(r) != latchkey.CodeValid {
			t.Fatalf("request %d: %s", i+1, r.Raw)
		}
	}
	r := verify()
	rl, _ := r.Body["ratelimit"].(map[string]any)
	if codeOf(r) != latchkey.CodeRateLimited || rl["limit"] != float64(3) || rl["remaining"] != float64(0) {
		t.Fatalf("4th request: %s", r.Raw)
	}
	if ra, _ := r.Body["retry_after"].(float64); ra != 20 {
		t.Fatalf("retry_after = %v, want 20 (one emission interval of 3/min)", r.Body["retry_after"])
	}
	// Forward-auth says the same with headers.
	a := do(t, "GET", ts.URL+"/v1/auth?scope=data:read", map[string]string{"X-API-Key": key}, nil)
	if a.Status != 429 || a.Header.Get("X-Latchkey-Code") != latchkey.CodeRateLimited || a.Header.Get("Retry-After") != "20" ||
		a.Header.Get("RateLimit-Limit") != "3" || a.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("forward-auth while limited: %d %v", a.Status, a.Header)
	}
	// Hammering while limited consumes nothing: one interval later exactly
	// one more request passes.
	for range 10 {
		verify()
	}
	ts.Clock.Advance(20 * time.Second)
	if r := verify(); codeOf(r) != latchkey.CodeValid {
		t.Fatalf("after one interval: %s", r.Raw)
	}
	if r := verify(); codeOf(r) != latchkey.CodeRateLimited {
		t.Fatalf("second request after one interval: %s", r.Raw)
	}
	// The hourly window (5) now binds: after a full minute only one more.
	ts.Clock.Advance(time.Minute)
	if r := verify(); codeOf(r) != latchkey.CodeValid {
		t.Fatalf("5th admitted request: %s", r.Raw)
	}
	r = verify()
	rl, _ = r.Body["ratelimit"].(map[string]any)
	if codeOf(r) != latchkey.CodeRateLimited || rl["limit"] != float64(5) {
		t.Fatalf("hourly window should bind: %s", r.Raw)
	}
}

func TestE2ELeases(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	_, key := ts.mustCreate(t, admin, map[string]any{"max_concurrent": 3, "lease_ttl": "30s"})
	verify := func() resp { return ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": key}) }
	var leases []string
	for i := range 3 {
		r := verify()
		if codeOf(r) != latchkey.CodeValid || r.str("lease_id") == "" {
			t.Fatalf("request %d: %s", i+1, r.Raw)
		}
		leases = append(leases, r.str("lease_id"))
	}
	if r := verify(); codeOf(r) != latchkey.CodeConcurrencyExceeded {
		t.Fatalf("4th concurrent request: %s", r.Raw)
	}
	// Another key may not release it; the holder may, once.
	_, other := ts.mustCreate(t, admin, map[string]any{})
	if r := ts.call(t, "POST", "/v1/leases/"+leases[0]+"/release", other, nil); r.Status != 404 {
		t.Fatalf("release by another caller key: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "POST", "/v1/leases/"+leases[0]+"/release", key, nil); r.Status != 204 {
		t.Fatalf("release by the holder: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "POST", "/v1/leases/"+leases[0]+"/release", key, nil); r.Status != 404 {
		t.Fatalf("second release: %d", r.Status)
	}
	if r := verify(); codeOf(r) != latchkey.CodeValid {
		t.Fatalf("after a release: %s", r.Raw)
	}
	if r := verify(); codeOf(r) != latchkey.CodeConcurrencyExceeded {
		t.Fatalf("full again: %s", r.Raw)
	}
	// The tenant's admin key may release any lease of its tenant.
	if r := ts.call(t, "POST", "/v1/leases/"+leases[1]+"/release", admin, nil); r.Status != 204 {
		t.Fatalf("release by the admin: %d %s", r.Status, r.Raw)
	}
	if r := verify(); codeOf(r) != latchkey.CodeValid {
		t.Fatalf("after the admin's release: %s", r.Raw)
	}
	// Leases nobody releases end after lease_ttl.
	ts.Clock.Advance(30 * time.Second)
	for i := range 3 {
		if r := verify(); codeOf(r) != latchkey.CodeValid {
			t.Fatalf("after the TTL, request %d: %s", i+1, r.Raw)
		}
	}
	a := do(t, "GET", ts.URL+"/v1/auth", map[string]string{"X-API-Key": key}, nil)
	if a.Status != 429 || a.Header.Get("X-Latchkey-Code") != latchkey.CodeConcurrencyExceeded {
		t.Fatalf("forward-auth with every slot taken: %d %v", a.Status, a.Header)
	}
}

func TestE2EQuotaAndCredits(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	id, key := ts.mustCreate(t, admin, map[string]any{"quota": map[string]any{"remaining": 5}})
	spend := func(cost int) resp {
		return ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": key, "cost": cost})
	}
	for range 2 {
		if r := spend(2); codeOf(r) != latchkey.CodeValid {
			t.Fatalf("spend 2: %s", r.Raw)
		}
	}
	r := spend(2)
	q, _ := r.Body["quota"].(map[string]any)
	if codeOf(r) != latchkey.CodeQuotaExceeded || q["remaining"] != float64(1) {
		t.Fatalf("spend 2 with 1 left: %s", r.Raw)
	}
	if r := spend(1); codeOf(r) != latchkey.CodeValid {
		t.Fatalf("spend the last unit: %s", r.Raw)
	}
	if r := spend(1); codeOf(r) != latchkey.CodeQuotaExceeded {
		t.Fatalf("empty balance: %s", r.Raw)
	}
	// Topping up sets the balance again.
	if r := ts.call(t, "PATCH", "/v1/keys/"+id, admin, map[string]any{"quota": map[string]any{"remaining": 3}}); r.Status != 200 {
		t.Fatalf("top up: %d %s", r.Status, r.Raw)
	}
	for i := range 3 {
		if r := spend(1); codeOf(r) != latchkey.CodeValid {
			t.Fatalf("after top-up, unit %d: %s", i+1, r.Raw)
		}
	}
	if r := spend(1); codeOf(r) != latchkey.CodeQuotaExceeded {
		t.Fatalf("after spending the top-up: %s", r.Raw)
	}
	// A periodic quota refills at its period's end.
	_, monthly := ts.mustCreate(t, admin, map[string]any{"quota": map[string]any{"limit": 2, "period": "monthly"}})
	for range 2 {
		ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": monthly})
	}
	r = ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": monthly})
	q, _ = r.Body["quota"].(map[string]any)
	if codeOf(r) != latchkey.CodeQuotaExceeded || q["reset_at"] != "2026-07-01T00:00:00Z" {
		t.Fatalf("monthly quota used up: %s", r.Raw)
	}
	ts.Clock.Set(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC))
	if r := ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": monthly}); codeOf(r) != latchkey.CodeValid {
		t.Fatalf("in the next month: %s", r.Raw)
	}
	// Removing the quota lifts it.
	if r := ts.call(t, "PATCH", "/v1/keys/"+id, admin, map[string]any{"quota": nil}); r.Status != 200 || r.Body["quota"] != nil {
		t.Fatalf("remove quota: %d %s", r.Status, r.Raw)
	}
	if r := spend(100); codeOf(r) != latchkey.CodeValid {
		t.Fatalf("without a quota: %s", r.Raw)
	}
}

// TestE2EQuotaSurvivesKill consumes quota on a server process, waits for
// the flush (every 100 ms here), kills the process with SIGKILL and checks
// that a new process continues from what was consumed.
func TestE2EQuotaSurvivesKill(t *testing.T) {
	dir, err := os.MkdirTemp(e2eRoot, "quota-")
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "latchkey.db")
	extra := " --quota-flush 100ms"
	url, root, proc := startChildArgs(t, dir, db, 1, extra)
	registerKey(root)
	ts := &testServer{URL: url, Root: root}
	admin := ts.mustTenant(t, "acme")
	id, key := ts.mustCreate(t, admin, map[string]any{"quota": map[string]any{"limit": 10, "period": "30d"}})
	for range 4 {
		if c := ts.verifyCode(t, map[string]any{"key": key}); c != latchkey.CodeValid {
			t.Fatal(c)
		}
	}
	waitUsed(t, db, id, 4)
	proc.kill()

	url2, _, proc2 := startChildArgs(t, dir, db, 2, extra)
	defer proc2.kill()
	ts.URL = url2
	for i := range 6 {
		if c := ts.verifyCode(t, map[string]any{"key": key}); c != latchkey.CodeValid {
			t.Fatalf("after restart, unit %d: %s", i+5, c)
		}
	}
	if c := ts.verifyCode(t, map[string]any{"key": key}); c != latchkey.CodeQuotaExceeded {
		t.Fatalf("11th unit of 10 after a crash: %s", c)
	}
}

// waitUsed polls the database (bounded: 10 s) until the key's persisted
// quota consumption is want.
func waitUsed(t *testing.T, path, keyID string, want int64) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var used int64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		err := db.QueryRow(`SELECT used FROM quota_usage WHERE key_id = ?`, keyID).Scan(&used)
		if err == nil && used == want {
			return
		}
	}
	t.Fatalf("persisted usage of %s is %d, want %d", keyID, used, want)
}

func TestE2EBruteForceGuardStopsStoreLookups(t *testing.T) {
	var svc *keys.Service
	ts := startServer(t,
		withConfig(func(c *serverConfig) { c.GuardThreshold, c.GuardWindow, c.GuardCooloff = 5, time.Minute, 5*time.Minute }),
		withTrustedProxies("127.0.0.1"),
		func(_ *serverConfig, h *serverHooks) { h.Service = func(s *keys.Service) { svc = s } })
	admin := ts.mustTenant(t, "acme")
	_, good := ts.mustCreate(t, admin, map[string]any{})
	guess := func() resp {
		k, _ := latchkey.GenerateToken("", nil) // well-formed, unknown: each needs a lookup
		return do(t, "GET", ts.URL+"/v1/auth", map[string]string{"X-API-Key": k.Reveal()}, nil)
	}
	for i := range 5 {
		if r := guess(); r.Status != 401 {
			t.Fatalf("guess %d: %d", i+1, r.Status)
		}
	}
	before := svc.StoreReads()
	for range 50 {
		r := guess()
		if r.Status != 429 || r.Header.Get("Retry-After") != strconv.Itoa(300) {
			t.Fatalf("blocked network: %d Retry-After %q", r.Status, r.Header.Get("Retry-After"))
		}
	}
	if after := svc.StoreReads(); after != before {
		t.Fatalf("a blocked network caused %d store lookups", after-before)
	}
	// The verify endpoint and admin routes are closed to it too, even with
	// a good product key; only a valid admin key is never refused (see
	// guard_test.go).
	if r := ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": good}); r.Status != 429 || r.errCode() != latchkey.ERateLimited {
		t.Fatalf("verify from a blocked network: %d %s", r.Status, r.Raw)
	}
	if r := ts.call(t, "GET", "/v1/keys", good, nil); r.Status != 429 {
		t.Fatalf("admin route with a product key from a blocked network: %d", r.Status)
	}
	// Another network (here named by a trusted proxy) is not affected;
	// the cool-off ends by itself.
	if r := do(t, "GET", ts.URL+"/v1/auth", map[string]string{"X-API-Key": good, "X-Forwarded-For": "198.51.100.7"}, nil); r.Status != 200 {
		t.Fatalf("another network: %d", r.Status)
	}
	ts.Clock.Advance(5 * time.Minute)
	if r := do(t, "GET", ts.URL+"/v1/auth", map[string]string{"X-API-Key": good}, nil); r.Status != 200 {
		t.Fatalf("after the cool-off: %d", r.Status)
	}
}

func TestE2ETimeWindowsAcrossDST(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	_, key := ts.mustCreate(t, admin, map[string]any{
		"time_windows": []map[string]any{{"days": []string{"mon", "tue", "wed", "thu", "fri"}, "start": "09:00", "end": "17:00", "tz": "Europe/Berlin"}},
	})
	// Berlin moved from UTC+1 to UTC+2 on Sunday 29 March 2026.
	tests := []struct {
		name string
		at   time.Time
		want string
	}{
		{"FridayBeforeChangeOpensAt0900CET", time.Date(2026, 3, 27, 8, 0, 0, 0, time.UTC), latchkey.CodeValid},
		{"FridayBeforeChange0859CET", time.Date(2026, 3, 27, 7, 59, 0, 0, time.UTC), latchkey.CodeOutsideTimeWindow},
		{"MondayAfterChangeOpensAt0900CEST", time.Date(2026, 3, 30, 7, 0, 0, 0, time.UTC), latchkey.CodeValid},
		{"MondayAfterChange0800CEST", time.Date(2026, 3, 30, 6, 0, 0, 0, time.UTC), latchkey.CodeOutsideTimeWindow},
		{"MondayClosesAt1700CEST", time.Date(2026, 3, 30, 15, 0, 0, 0, time.UTC), latchkey.CodeOutsideTimeWindow},
		{"Saturday", time.Date(2026, 3, 28, 10, 0, 0, 0, time.UTC), latchkey.CodeOutsideTimeWindow},
		{"OctoberAfterChange0900CET", time.Date(2026, 10, 26, 8, 0, 0, 0, time.UTC), latchkey.CodeValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts.Clock.Set(tt.at)
			if c := ts.verifyCode(t, map[string]any{"key": key}); c != tt.want {
				t.Fatalf("at %s: %s, want %s", tt.at, c, tt.want)
			}
		})
	}
	ts.Clock.Set(time.Date(2026, 3, 28, 10, 0, 0, 0, time.UTC)) // a Saturday
	a := do(t, "GET", ts.URL+"/v1/auth", map[string]string{"X-API-Key": key}, nil)
	if a.Status != 403 || a.Header.Get("X-Latchkey-Code") != latchkey.CodeOutsideTimeWindow {
		t.Fatalf("forward-auth outside the window: %d %v", a.Status, a.Header)
	}
}

func TestE2ECountries(t *testing.T) {
	mmdb := filepath.Join(t.TempDir(), "countries.mmdb")
	geotest.WriteCountryDB(t, mmdb, map[string]string{"192.0.2.0/24": "DE", "198.51.100.0/24": "FR", "2001:db8:de::/48": "DE"})
	ts := startServer(t, withConfig(func(c *serverConfig) { c.GeoIPDB = mmdb }))
	admin := ts.mustTenant(t, "acme")
	_, key := ts.mustCreate(t, admin, map[string]any{"countries": []string{"de"}})
	for ip, want := range map[string]string{
		"192.0.2.10":       latchkey.CodeValid,
		"2001:db8:de::1":   latchkey.CodeValid,
		"198.51.100.10":    latchkey.CodeIPNotAllowed,
		"203.0.113.10":     latchkey.CodeIPNotAllowed, // no country known
		"::ffff:192.0.2.9": latchkey.CodeValid,
	} {
		if c := ts.verifyCode(t, map[string]any{"key": key, "ip": ip}); c != want {
			t.Errorf("from %s: %s, want %s", ip, c, want)
		}
	}
	// A server without a database refuses keys limited to countries.
	plain := startServer(t)
	padmin := plain.mustTenant(t, "acme")
	if r := plain.call(t, "POST", "/v1/keys", padmin, map[string]any{"name": "x", "countries": []string{"DE"}}); r.Status != 400 || r.errCode() != latchkey.EInvalid {
		t.Fatalf("countries without --geoip-db: %d %s", r.Status, r.Raw)
	}
}

func TestE2ECLIPoliciesRoundTrip(t *testing.T) {
	mmdb := filepath.Join(t.TempDir(), "countries.mmdb")
	geotest.WriteCountryDB(t, mmdb, map[string]string{"192.0.2.0/24": "DE"})
	ts := startServer(t, withConfig(func(c *serverConfig) { c.GeoIPDB = mmdb }))
	admin := ts.mustTenant(t, "acme")
	var out, errOut syncBuffer
	getenv := func(k string) string {
		return map[string]string{"LATCHKEY_ADDR": ts.URL, "LATCHKEY_KEY": admin}[k]
	}
	err := run(context.Background(), []string{"keys", "create", "--name", "limited", "--json",
		"--rate", "10/s,1000/h", "--quota", "10000/30d", "--max-concurrent", "5", "--lease-ttl", "1m",
		"--window", "mon-fri@09:00-17:00@Europe/Berlin", "--window", "sat,sun@10:00-14:00", "--countries", "DE,FR"},
		getenv, nil, &out, &errOut)
	if err != nil {
		t.Fatalf("keys create: %v\n%s", err, errOut.String())
	}
	var created map[string]any
	if err := json.Unmarshal(out.Bytes(), &created); err != nil {
		t.Fatal(err)
	}
	registerKey(fmt.Sprint(created["key"]))
	got := ts.call(t, "GET", "/v1/keys/"+fmt.Sprint(created["id"]), admin, nil)
	rls, _ := got.Body["ratelimits"].([]any)
	q, _ := got.Body["quota"].(map[string]any)
	tw, _ := got.Body["time_windows"].([]any)
	cs, _ := got.Body["countries"].([]any)
	if len(rls) != 2 || q["limit"] != float64(10000) || q["period"] != "30d" || got.Body["max_concurrent"] != float64(5) ||
		got.Body["lease_ttl"] != "1m0s" && got.Body["lease_ttl"] != "1m" || len(tw) != 2 || len(cs) != 2 {
		t.Fatalf("stored policies: %s", got.Raw)
	}
	// keys show presents them to people.
	var shown syncBuffer
	if err := run(context.Background(), []string{"keys", "show", fmt.Sprint(created["id"])}, getenv, nil, &shown, &errOut); err != nil {
		t.Fatalf("keys show: %v", err)
	}
	for _, want := range []string{"1s 10/1s; 1h 1000/1h", "10000 per 30d", "mon,tue,wed,thu,fri 09:00-17:00 Europe/Berlin", "DE,FR"} {
		if !strings.Contains(shown.String(), want) {
			t.Errorf("keys show lacks %q:\n%s", want, shown.String())
		}
	}
	// keys update can remove them again.
	var out2 syncBuffer
	if err := run(context.Background(), []string{"keys", "update", fmt.Sprint(created["id"]), "--rate", "", "--no-quota", "--window", "", "--countries", ""},
		getenv, nil, &out2, &errOut); err != nil {
		t.Fatalf("keys update: %v\n%s", err, errOut.String())
	}
	got = ts.call(t, "GET", "/v1/keys/"+fmt.Sprint(created["id"]), admin, nil)
	if rls, _ := got.Body["ratelimits"].([]any); len(rls) != 0 || got.Body["quota"] != nil {
		t.Fatalf("after removing: %s", got.Raw)
	}
}
