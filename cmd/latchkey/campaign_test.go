package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"
)

// The reliability campaigns (docs/reliability.md) run here in their short
// form, as part of go test; scripts/campaign runs the long forms by
// setting the knobs below.

// campaignInt is the knob LATCHKEY_CAMPAIGN_<name>, or def.
func campaignInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv("LATCHKEY_CAMPAIGN_" + name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("LATCHKEY_CAMPAIGN_%s=%q: want a positive integer", name, v)
	}
	return n
}

// campaignDuration is the knob LATCHKEY_CAMPAIGN_<name>, or def.
func campaignDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv("LATCHKEY_CAMPAIGN_" + name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("LATCHKEY_CAMPAIGN_%s=%q: want a positive duration", name, v)
	}
	return d
}

// campaignReport prints a result line scripts/campaign collects
// ("campaign NAME: k=v …") whether or not -v is given.
func campaignReport(t *testing.T, name, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf("campaign %s: %s", name, fmt.Sprintf(format, args...))
	t.Log(line)
	fmt.Fprintln(os.Stderr, line)
}

// callErr is one request of a campaign: it reports a transport error (the
// server was killed) instead of failing the test, registers any key in
// the answer with the leak check, and decodes a JSON object body.
func callErr(c *http.Client, method, url, key string, body any) (resp, error) {
	var rd io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			return resp{}, err
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return resp{}, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := c.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return resp{}, err
	}
	r := resp{Status: res.StatusCode, Header: res.Header, Raw: raw}
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &r.Body); err != nil {
			return r, fmt.Errorf("%s %s: %d, body is not JSON: %v", method, url, res.StatusCode, err)
		}
	}
	registerKey(r.str("key"))
	return r, nil
}
