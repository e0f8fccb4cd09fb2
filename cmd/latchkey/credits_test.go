package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// creditBurst sends verifications of key from workers goroutines until n
// have been answered or stop is closed, and returns how many were VALID.
// Requests cut off by a killed server count as not admitted: the test
// cannot know whether the server admitted them.
func creditBurst(t *testing.T, url, key string, workers, n int, stop <-chan struct{}, valid *atomic.Int64) {
	t.Helper()
	var sent atomic.Int64
	var wg sync.WaitGroup
	body := []byte(`{"key":"` + key + `"}`)
	for range workers {
		wg.Go(func() {
			for sent.Add(1) <= int64(n) {
				select {
				case <-stop:
					return
				default:
				}
				code, ok := postVerify(url, body)
				if !ok {
					return // the server is gone
				}
				if code == latchkey.CodeValid {
					valid.Add(1)
				}
			}
		})
	}
	wg.Wait()
}

// postVerify sends one verify body and returns the code, or false when the
// server did not answer (killed).
func postVerify(url string, body []byte) (string, bool) {
	req, err := http.NewRequest("POST", url+"/v1/keys/verify", bytes.NewReader(body))
	if err != nil {
		return "", false
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", false
	}
	defer res.Body.Close()
	var v struct {
		Code string `json:"code"`
	}
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&v) != nil {
		return "", false
	}
	return v.Code, true
}

// TestE2ECreditsSurviveKillDuringBurst kills a server process with
// SIGKILL in the middle of a burst against a 500-credit key, restarts it
// and bursts again: a crash may forfeit credits that were reserved but not
// spent, but it never grants a credit twice.
func TestE2ECreditsSurviveKillDuringBurst(t *testing.T) {
	dir, err := os.MkdirTemp(e2eRoot, "credits-")
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "latchkey.db")
	url, root, proc := startChild(t, dir, db, 1)
	registerKey(root)
	ts := &testServer{URL: url, Root: root}
	admin := ts.mustTenant(t, "acme")
	_, key := ts.mustCreate(t, admin, map[string]any{"quota": map[string]any{"remaining": 500}})

	var first atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		creditBurst(t, url, key, 8, 10_000, stop, &first)
	}()
	// Kill while requests are being admitted: after 200, well before the
	// balance runs out.
	for deadline := time.Now().Add(20 * time.Second); first.Load() < 200; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d VALID before the deadline", first.Load())
		}
	}
	proc.kill()
	close(stop)
	<-done

	url2, _, proc2 := startChild(t, dir, db, 2)
	defer proc2.kill()
	var second atomic.Int64
	creditBurst(t, url2, key, 8, 1000, nil, &second)
	total := first.Load() + second.Load()
	t.Logf("VALID before the kill: %d, after the restart: %d", first.Load(), second.Load())
	if total > 500 {
		t.Fatalf("a 500-credit key admitted %d requests across a crash (%d before, %d after)", total, first.Load(), second.Load())
	}
}

// TestE2ECreditsSurviveGracefulRestart spends part of a balance, stops the
// server with SIGTERM and spends the rest on a new process: a graceful
// shutdown returns what was reserved but not spent, so nothing is lost.
func TestE2ECreditsSurviveGracefulRestart(t *testing.T) {
	dir, err := os.MkdirTemp(e2eRoot, "credits-term-")
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "latchkey.db")
	url, root, proc := startChild(t, dir, db, 1)
	registerKey(root)
	ts := &testServer{URL: url, Root: root}
	admin := ts.mustTenant(t, "acme")
	_, key := ts.mustCreate(t, admin, map[string]any{"quota": map[string]any{"remaining": 300}})
	var first atomic.Int64
	creditBurst(t, url, key, 8, 137, nil, &first)
	if first.Load() != 137 {
		t.Fatalf("first process admitted %d of 137", first.Load())
	}
	if err := proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := proc.wait(15 * time.Second); err != nil {
		t.Fatalf("server after SIGTERM: %v", err)
	}

	url2, _, proc2 := startChild(t, dir, db, 2)
	defer proc2.kill()
	var second atomic.Int64
	creditBurst(t, url2, key, 8, 400, nil, &second)
	if second.Load() != 300-137 {
		t.Fatalf("after a graceful restart %d of the %d credits left were admitted", second.Load(), 300-137)
	}
}

// TestE2EKeyShowsLiveQuota: GET /v1/keys/{id} (and `keys show`) tells the
// balance and the period's consumption as they are now, before any flush
// could have written them.
func TestE2EKeyShowsLiveQuota(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	creditID, credit := ts.mustCreate(t, admin, map[string]any{"quota": map[string]any{"remaining": 10}})
	monthlyID, monthly := ts.mustCreate(t, admin, map[string]any{"quota": map[string]any{"limit": 100, "period": "monthly"}})
	plainID, _ := ts.mustCreate(t, admin, map[string]any{})
	if c := ts.verifyCode(t, map[string]any{"key": credit, "cost": 3}); c != latchkey.CodeValid {
		t.Fatal(c)
	}
	for range 5 {
		if c := ts.verifyCode(t, map[string]any{"key": monthly}); c != latchkey.CodeValid {
			t.Fatal(c)
		}
	}
	usage := func(id string) map[string]any {
		t.Helper()
		r := ts.call(t, "GET", "/v1/keys/"+id, admin, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("GET key: %d %s", r.Status, r.Raw)
		}
		u, _ := r.Body["quota_usage"].(map[string]any)
		return u
	}
	if u := usage(creditID); u == nil || u["limit"] != float64(10) || u["remaining"] != float64(7) || u["reset_at"] != nil {
		t.Fatalf("a balance of 10 after spending 3: quota_usage %v", u)
	}
	if u := usage(monthlyID); u == nil || u["limit"] != float64(100) || u["remaining"] != float64(95) || u["reset_at"] != "2026-07-01T00:00:00Z" {
		t.Fatalf("a monthly quota of 100 after 5: quota_usage %v", u)
	}
	if u := usage(plainID); u != nil {
		t.Fatalf("a key without a quota: quota_usage %v", u)
	}
	// Reading it consumes nothing.
	if u := usage(creditID); u["remaining"] != float64(7) {
		t.Fatalf("read twice: %v", u)
	}
}

// TestE2ECreditDenialHasNoReset: a balance never refills, so neither the
// verify answer nor forward-auth's headers name a reset time.
func TestE2ECreditDenialHasNoReset(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	_, credit := ts.mustCreate(t, admin, map[string]any{"quota": map[string]any{"remaining": 1}})
	auth := func() resp {
		return do(t, "GET", ts.URL+"/v1/auth", map[string]string{"X-API-Key": credit}, nil)
	}
	if r := auth(); r.Status != http.StatusOK || r.Header.Get("RateLimit-Remaining") != "0" {
		t.Fatalf("the one use: %d %v", r.Status, r.Header)
	} else if r.Header.Get("RateLimit-Reset") != "" || r.Header.Get("X-RateLimit-Reset") != "" {
		t.Fatalf("an admitted credit use names a reset: %v", r.Header)
	}
	r := ts.call(t, "POST", "/v1/keys/verify", "", map[string]any{"key": credit})
	q, _ := r.Body["quota"].(map[string]any)
	if codeOf(r) != latchkey.CodeQuotaExceeded || q == nil || q["limit"] != float64(1) || q["remaining"] != float64(0) {
		t.Fatalf("an empty balance: %s", r.Raw)
	}
	if _, ok := q["reset_at"]; ok {
		t.Fatalf("a credit denial names a reset: %s", r.Raw)
	}
	a := auth()
	if a.Status != http.StatusTooManyRequests || a.Header.Get("X-Latchkey-Code") != latchkey.CodeQuotaExceeded || a.Header.Get("RateLimit-Limit") != "1" {
		t.Fatalf("forward-auth with an empty balance: %d %v", a.Status, a.Header)
	}
	if a.Header.Get("RateLimit-Reset") != "" || a.Header.Get("X-RateLimit-Reset") != "" {
		t.Fatalf("a credit denial names a reset: %v", a.Header)
	}
	// Waiting does not refill a balance: no Retry-After invites retries.
	if ra := a.Header.Get("Retry-After"); ra != "" {
		t.Fatalf("a credit denial says to retry after %s s", ra)
	}
}

// TestCLIShowsLiveBalance: `latchkey keys show` prints the balance left.
func TestCLIShowsLiveBalance(t *testing.T) {
	n := startCLINode(t)
	id, key := n.createKey(t, "--name", "metered", "--quota", "500")
	for range 2 {
		if c := n.verify(t, key); c != latchkey.CodeValid {
			t.Fatal(c)
		}
	}
	if out := n.ok(t, "keys", "show", id).stdout; !strings.Contains(out, "498 of 500 left\n") {
		t.Fatalf("keys show of a balance of 500 after 2 uses:\n%s", out)
	}
}
