package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// The soak campaign (docs/reliability.md): a server process is driven at
// full speed for LATCHKEY_CAMPAIGN_SOAK_MEASURE to find its maximum, then
// at half that rate for LATCHKEY_CAMPAIGN_SOAK_DURATION with verifications
// (POST /v1/keys/verify) and forward-auth (GET /v1/auth) of
// LATCHKEY_CAMPAIGN_SOAK_KEYS keys in turn. It samples the process's
// resident memory (VmRSS in /proc/PID/status) and go_goroutines from
// /metrics; after the warm-up, the median of the last third of the samples
// may exceed that of the first third by at most
// LATCHKEY_CAMPAIGN_SOAK_TOLERANCE (10 % in the long run; looser in the
// short one, whose race-instrumented server is noisier), and not one
// request may fail.

func TestCampaignSoak(t *testing.T) {
	duration := campaignDuration(t, "SOAK_DURATION", 30*time.Second)
	measure := campaignDuration(t, "SOAK_MEASURE", 3*time.Second)
	warmup := campaignDuration(t, "SOAK_WARMUP", 5*time.Second)
	every := campaignDuration(t, "SOAK_SAMPLE", time.Second)
	nkeys := campaignInt(t, "SOAK_KEYS", 200)
	workers := campaignInt(t, "SOAK_CONNS", 8)
	tolerance := 0.25
	if v := os.Getenv("LATCHKEY_CAMPAIGN_SOAK_TOLERANCE"); v != "" {
		var err error
		if tolerance, err = strconv.ParseFloat(v, 64); err != nil {
			t.Fatal(err)
		}
	}

	dir, err := os.MkdirTemp(e2eRoot, "campaign-soak-")
	if err != nil {
		t.Fatal(err)
	}
	url, root, proc := startChildArgs(t, dir, filepath.Join(dir, "latchkey.db"), 1, "")
	defer proc.kill()
	registerKey(root)
	ts := &testServer{URL: url, Root: root}
	admin := ts.mustTenant(t, "acme")
	keys := make([]string, nkeys)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < nkeys; i += 4 {
				_, keys[i] = ts.mustCreate(t, admin, map[string]any{"name": fmt.Sprintf("soak-%d", i), "scopes": []string{"data:read"}})
			}
		})
	}
	wg.Wait()
	verifyBodies := make([]map[string]any, nkeys)
	for i, k := range keys {
		verifyBodies[i] = map[string]any{"key": k, "scopes": []string{"data:read"}}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}

	var errs, sent atomic.Int64
	var firstErr atomic.Value
	// one sends request n: three verifications, then a forward-auth.
	one := func(n int64) {
		i := int(n % int64(nkeys))
		var r resp
		var err error
		if n%4 == 3 {
			var req *http.Request
			req, err = http.NewRequest("GET", url+"/v1/auth", nil)
			if err == nil {
				req.Header.Set("Authorization", "Bearer "+keys[i])
				var res *http.Response
				if res, err = client.Do(req); err == nil {
					res.Body.Close()
					r.Status = res.StatusCode
					r.Body = map[string]any{"code": res.Header.Get("X-Latchkey-Code")}
				}
			}
		} else {
			r, err = callErr(client, "POST", url+"/v1/keys/verify", "", verifyBodies[i])
		}
		sent.Add(1)
		if err == nil && (r.Status != 200 || (n%4 != 3 && r.str("code") != latchkey.CodeValid)) {
			err = fmt.Errorf("request %d: %d %s", n, r.Status, r.Raw)
		}
		if err != nil {
			errs.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
		}
	}
	// run sends requests from the workers until the deadline, at most
	// rate a second (0: as fast as they go).
	run := func(d time.Duration, rate float64) {
		start := time.Now()
		deadline := start.Add(d)
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					n := next.Add(1) - 1
					if rate > 0 {
						at := start.Add(time.Duration(float64(n) / rate * float64(time.Second)))
						if at.After(deadline) {
							return
						}
						time.Sleep(time.Until(at))
					} else if time.Now().After(deadline) {
						return
					}
					one(n)
				}
			})
		}
		wg.Wait()
	}

	run(measure, 0)
	maxRate := float64(sent.Load()) / measure.Seconds()
	if errs.Load() != 0 {
		t.Fatalf("%d errors at full speed, the first: %v", errs.Load(), firstErr.Load())
	}
	rate := maxRate / 2
	sent.Store(0)

	type sample struct {
		rss        int64 // KiB
		goroutines float64
	}
	var samples []sample
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		time.Sleep(warmup)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			rss, err := vmRSS(proc.cmd.Process.Pid)
			g, err2 := goroutines(client, url)
			if err == nil && err2 == nil {
				samples = append(samples, sample{rss, g})
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()
	run(duration, rate)
	close(stopSampling)
	<-sampled
	achieved := float64(sent.Load()) / duration.Seconds()
	if n := errs.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed at half the maximum, the first: %v", n, sent.Load(), firstErr.Load())
	}
	if len(samples) < 6 {
		t.Fatalf("only %d samples after the warm-up; lengthen SOAK_DURATION", len(samples))
	}
	third := len(samples) / 3
	med := func(xs []sample, f func(sample) float64) float64 {
		v := make([]float64, len(xs))
		for i, x := range xs {
			v[i] = f(x)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	rssOf := func(s sample) float64 { return float64(s.rss) }
	gOf := func(s sample) float64 { return s.goroutines }
	rss0, rss1 := med(samples[:third], rssOf), med(samples[len(samples)-third:], rssOf)
	g0, g1 := med(samples[:third], gOf), med(samples[len(samples)-third:], gOf)
	campaignReport(t, "soak", "duration=%s max_rps=%.0f target_rps=%.0f achieved_rps=%.0f requests=%d errors=%d samples=%d rss_first_third_kib=%.0f rss_last_third_kib=%.0f rss_growth=%+.1f%% goroutines_first=%.0f goroutines_last=%.0f goroutines_growth=%+.1f%% tolerance=%.0f%%",
		duration, maxRate, rate, achieved, sent.Load(), errs.Load(), len(samples), rss0, rss1, 100*(rss1/rss0-1), g0, g1, 100*(g1/g0-1), 100*tolerance)
	if rss1 > rss0*(1+tolerance) {
		t.Errorf("resident memory grew from %.0f KiB to %.0f KiB (more than %.0f %%)", rss0, rss1, 100*tolerance)
	}
	if g1 > g0*(1+tolerance) {
		t.Errorf("goroutines grew from %.0f to %.0f (more than %.0f %%)", g0, g1, 100*tolerance)
	}
}

// vmRSS is a process's resident set size in KiB, from /proc/PID/status.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// goroutines is go_goroutines from the server's /metrics.
func goroutines(c *http.Client, url string) (float64, error) {
	res, err := c.Get(url + "/metrics")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("no go_goroutines in /metrics")
}
