package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// usageTotals reads GET /v1/keys/{id}/usage's totals as code → count.
func usageTotals(r resp) map[string]int64 {
	out := map[string]int64{}
	m, _ := r.Body["totals"].(map[string]any)
	for c, v := range m {
		n, _ := v.(float64)
		out[c] = int64(n)
	}
	return out
}

// waitUsage polls a key's usage until its totals are want (the recorder
// flushes every second), for at most 10 s, and returns the last answer.
func waitUsage(t *testing.T, ts *testServer, admin, id, query string, want map[string]int64) resp {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := ts.call(t, "GET", "/v1/keys/"+id+"/usage"+query, admin, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("usage of %s: %d %s", id, r.Status, r.Raw)
		}
		got := usageTotals(r)
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage of %s after 10s: totals %v, want %v\n%s", id, got, want, r.Raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestE2EUsage(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	other := ts.mustTenant(t, "globex")
	aID, aKey := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	bID, bKey := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	const v4, v6 = "192.0.2.10", "2001:db8:5:6::1"

	// 500 verifications in all, from two client addresses, in parallel.
	verifyN := func(n int, body map[string]any, code string) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan string, n)
		work := make(chan struct{}, n)
		for range n {
			work <- struct{}{}
		}
		close(work)
		for range 4 {
			wg.Go(func() {
				for range work {
					r := do(t, "POST", ts.URL+"/v1/keys/verify", nil, body)
					if r.Status != http.StatusOK || r.str("code") != code {
						errs <- fmt.Sprintf("verify %v = %d %s, want %s", body["scopes"], r.Status, r.Raw, code)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Fatal(e)
		}
	}
	verifyN(150, map[string]any{"key": aKey, "scopes": []string{"data:read"}, "ip": v4}, latchkey.CodeValid)
	verifyN(100, map[string]any{"key": aKey, "scopes": []string{"data:write"}, "ip": v6}, latchkey.CodeInsufficientScope)
	verifyN(80, map[string]any{"key": bKey, "ip": v4}, latchkey.CodeValid)
	if r := ts.call(t, "POST", "/v1/keys/"+bID+"/revoke", admin, map[string]any{"reason": "done"}); r.Status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.Status, r.Raw)
	}
	ts.Clock.Advance(90 * time.Second) // into the next minute
	verifyN(50, map[string]any{"key": aKey, "scopes": []string{"data:read"}, "ip": v4}, latchkey.CodeValid)
	// Denials of a revoked or unknown key are failed key checks, which the
	// brute-force guard (on, as it ships) blocks at more than 20 a minute
	// from one network: fewer here, as a real client's.
	verifyN(12, map[string]any{"key": bKey, "ip": v6}, latchkey.CodeRevoked)
	// Verifications that found no key are nobody's usage.
	verifyN(5, map[string]any{"key": "lk_garbage"}, latchkey.CodeMalformed)
	now := ts.Clock.Now()

	ra := waitUsage(t, ts, admin, aID, "", map[string]int64{latchkey.CodeValid: 200, latchkey.CodeInsufficientScope: 100})
	rb := waitUsage(t, ts, admin, bID, "", map[string]int64{latchkey.CodeValid: 80, latchkey.CodeRevoked: 12})

	for _, c := range []struct {
		r     resp
		nets  string
		total float64
	}{
		{ra, "[192.0.2.0/24:200 2001:db8:5::/48:100]", 300},
		{rb, "[192.0.2.0/24:80 2001:db8:5::/48:12]", 92},
	} {
		var nets []string
		for _, n := range c.r.Body["networks"].([]any) {
			m := n.(map[string]any)
			nets = append(nets, fmt.Sprintf("%v:%v", m["network"], m["count"]))
		}
		if got := "[" + strings.Join(nets, " ") + "]"; got != c.nets {
			t.Errorf("networks of %s = %s, want %s", c.r.str("key_id"), got, c.nets)
		}
		if ph := c.r.Body["peak_hours"].([]any); len(ph) != 1 || ph[0].(map[string]any)["hour"] != float64(8) || ph[0].(map[string]any)["count"] != c.total {
			t.Errorf("peak_hours of %s = %v", c.r.str("key_id"), ph)
		}
		last, err := time.Parse(time.RFC3339Nano, c.r.str("last_used_at"))
		if err != nil || last.Sub(now).Abs() > time.Second {
			t.Errorf("last_used_at of %s = %q, want within 1s of %v", c.r.str("key_id"), c.r.str("last_used_at"), now)
		}
		if c.r.str("bucket") != "hour" || len(c.r.Body["series"].([]any)) != 25 {
			t.Errorf("default report: bucket %q, %d buckets; want hour, 25", c.r.str("bucket"), len(c.r.Body["series"].([]any)))
		}
	}
	// The key itself shows last_used_at too.
	if k := ts.call(t, "GET", "/v1/keys/"+aID, admin, nil); k.str("last_used_at") == "" {
		t.Errorf("GET key has no last_used_at: %s", k.Raw)
	}

	// By minute: the two minutes apart.
	from := now.Add(-5 * time.Minute).Format(time.RFC3339)
	rm := ts.call(t, "GET", "/v1/keys/"+aID+"/usage?bucket=minute&from="+from, admin, nil)
	var perMinute []string
	for _, b := range rm.Body["series"].([]any) {
		m := b.(map[string]any)
		if c := m["counts"].(map[string]any); len(c) > 0 {
			perMinute = append(perMinute, fmt.Sprintf("%v %v", m["start"], c))
		}
	}
	if want := "[2026-06-01T08:00:00Z map[INSUFFICIENT_SCOPE:100 VALID:150] 2026-06-01T08:01:00Z map[VALID:50]]"; fmt.Sprint(perMinute) != want {
		t.Errorf("per-minute series = %v, want %s", perMinute, want)
	}

	// By day: the default window follows the bucket, the last 30 days (31
	// UTC days begun), with the same totals.
	rd := ts.call(t, "GET", "/v1/keys/"+aID+"/usage?bucket=day", admin, nil)
	if got := usageTotals(rd); len(rd.Body["series"].([]any)) != 31 || got[latchkey.CodeValid] != 200 || got[latchkey.CodeInsufficientScope] != 100 {
		t.Errorf("daily report: %s", rd.Raw)
	}

	// Tenant isolation: another tenant's admin sees no such key.
	if r := ts.call(t, "GET", "/v1/keys/"+aID+"/usage", other, nil); r.Status != http.StatusNotFound || r.errCode() != latchkey.ENotFound {
		t.Errorf("another tenant's usage read: %d %s", r.Status, r.Raw)
	}
	// A key without keys:read may not read usage.
	if r := ts.call(t, "GET", "/v1/keys/"+aID+"/usage", aKey, nil); r.Status != http.StatusForbidden {
		t.Errorf("usage read with a data key: %d %s", r.Status, r.Raw)
	}
	for _, q := range []string{"?bucket=week", "?bucket=minute&from=" + now.Add(-48*time.Hour).Format(time.RFC3339), "?from=yesterday", "?from=" + now.Add(time.Hour).Format(time.RFC3339)} {
		if r := ts.call(t, "GET", "/v1/keys/"+aID+"/usage"+q, admin, nil); r.Status != http.StatusBadRequest || r.errCode() != latchkey.EInvalid {
			t.Errorf("usage%s: %d %s, want 400 invalid", q, r.Status, r.Raw)
		}
	}
}

func TestCLIKeysStats(t *testing.T) {
	n := startCLINode(t)
	id, key := n.createKey(t, "--name", "stats", "--scopes", "data:read")
	for range 3 {
		if c := n.verify(t, key, "--scope", "data:read"); c != latchkey.CodeValid {
			t.Fatalf("verify = %s", c)
		}
	}
	if c := n.verify(t, key, "--scope", "data:write"); c != latchkey.CodeInsufficientScope {
		t.Fatalf("verify = %s", c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := n.okJSON(t, "keys", "stats", id, "--bucket", "minute", "--since", "1h")
		if fmt.Sprint(m["totals"]) == "map[INSUFFICIENT_SCOPE:1 VALID:3]" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keys stats after 10s: %v", m)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out := n.ok(t, "keys", "stats", id).stdout
	for _, want := range []string{"key " + id, "total 4", "VALID", "INSUFFICIENT_SCOPE", "peak hours (UTC)", "START"} {
		if !strings.Contains(out, want) {
			t.Errorf("keys stats output lacks %q:\n%s", want, out)
		}
	}
}

// TestE2EUsageRollupsOutliveMinutes: once minute rows are pruned, hour and
// day reports still count what happened, from the roll-ups.
func TestE2EUsageRollupsOutliveMinutes(t *testing.T) {
	n := startFlushedNode(t)
	admin := n.mustTenant(t, "acme")
	id, key := n.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	start := n.Clock.Now()
	n.verifyFrom(t, key, "192.0.2.10", latchkey.CodeValid, 3)
	n.flush(t)
	n.Clock.Advance(40*24*time.Hour + 30*time.Second)
	n.verifyFrom(t, key, "198.51.100.1", latchkey.CodeValid, 2)
	n.flush(t)
	// What the recorder's hourly pruning does with the default retention.
	if err := n.rec.Prune(t.Context(), latchkey.GrainMinute, n.Clock.Now().Add(-30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	from := start.Add(-time.Hour).Format(time.RFC3339)
	minutes := n.call(t, "GET", "/v1/keys/"+id+"/usage?bucket=minute&from="+from+"&to="+start.Add(time.Hour).Format(time.RFC3339), admin, nil)
	if got := usageTotals(minutes); len(got) != 0 {
		t.Errorf("minute report of a pruned window = %v, want nothing", got)
	}
	days := n.call(t, "GET", "/v1/keys/"+id+"/usage?bucket=day&from="+from, admin, nil)
	if got := usageTotals(days); got[latchkey.CodeValid] != 5 {
		t.Fatalf("day report across 40 days = %v (%s), want VALID 5", got, days.Raw)
	}
	var nets []string
	for _, x := range days.Body["networks"].([]any) {
		m := x.(map[string]any)
		nets = append(nets, fmt.Sprintf("%v:%v", m["network"], m["count"]))
	}
	if fmt.Sprint(nets) != "[192.0.2.0/24:3 198.51.100.0/24:2]" {
		t.Errorf("day report networks = %v", nets)
	}
	if ph := days.Body["peak_hours"].([]any); len(ph) != 1 || ph[0].(map[string]any)["count"] != float64(5) {
		t.Errorf("day report peak hours = %v", ph)
	}
}
