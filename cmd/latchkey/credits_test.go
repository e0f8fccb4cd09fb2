package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
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
