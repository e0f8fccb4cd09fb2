package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// TestE2EVerifyFastPathAnswersAsTheMuxDid: POST /v1/keys/verify is
// answered before the mux, with its body decoded and its answer encoded by
// hand, and a client cannot tell: the answer is byte for byte the one the
// mux path gives (an escaped path still takes it), a chunked body and one
// beyond --max-body are read as before, the caller's request id comes
// back in the header and in error bodies, failures are logged at info
// level as on every route (a 200 only at debug level, as forward-auth),
// and every answer is counted under the route's pattern.
func TestE2EVerifyFastPathAnswersAsTheMuxDid(t *testing.T) {
	ts := startServer(t)
	_, key := ts.mustCreate(t, ts.Root, map[string]any{"scopes": []string{"data:read"}, "meta": map[string]any{"team": "<core>"}})
	body := map[string]any{"key": key, "scopes": []string{"data:read"}, "cost": 1}
	before, _ := scrapeMetrics(t, ts.URL)

	fast := do(t, "POST", ts.URL+"/v1/keys/verify", map[string]string{"X-Request-Id": "proxy-verify-1"}, body)
	if fast.Status != http.StatusOK || fast.Body["valid"] != true || fast.Header.Get("X-Request-Id") != "proxy-verify-1" ||
		fast.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("fast path: %d %v %s", fast.Status, fast.Header, fast.Raw)
	}
	// An escaped path is not the fast path's: the mux answers it.
	mux := do(t, "POST", ts.URL+"/v1/keys/%76erify", map[string]string{"X-Request-Id": "proxy-verify-2"}, body)
	if mux.Status != http.StatusOK || !bytes.Equal(mux.Raw, fast.Raw) {
		t.Fatalf("through the mux: %d\n%s\nfast path:\n%s", mux.Status, mux.Raw, fast.Raw)
	}
	// A body without a Content-Length (chunked) is read as before.
	js, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", ts.URL+"/v1/keys/verify", io.MultiReader(bytes.NewReader(js)))
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	chunked, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !bytes.Equal(chunked, fast.Raw) {
		t.Fatalf("chunked body: %d %s", res.StatusCode, chunked)
	}
	// A refused body: the error names the caller's request id.
	bad := do(t, "POST", ts.URL+"/v1/keys/verify", map[string]string{"X-Request-Id": "proxy-verify-4"}, `{"key": "`+key+`", "scope": "data:read"}`)
	if e, _ := bad.Body["error"].(map[string]any); bad.Status != http.StatusBadRequest || e["code"] != "invalid" || e["request_id"] != "proxy-verify-4" {
		t.Fatalf("refused body: %d %s", bad.Status, bad.Raw)
	}
	big := do(t, "POST", ts.URL+"/v1/keys/verify", map[string]string{"X-Request-Id": "proxy-verify-5"}, `{"key": "`+strings.Repeat("k", 1<<20)+`"}`)
	if e, _ := big.Body["error"].(map[string]any); big.Status != http.StatusRequestEntityTooLarge || e["code"] != "too_large" {
		t.Fatalf("body beyond --max-body: %d %.200s", big.Status, big.Raw)
	}

	levels := map[string][]string{} // request id → levels of its "request" lines
	sc := bufio.NewScanner(strings.NewReader(ts.Log.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil || line["msg"] != "request" {
			continue
		}
		id, _ := line["request_id"].(string)
		level, _ := line["level"].(string)
		levels[id] = append(levels[id], level)
	}
	for id, want := range map[string]string{"proxy-verify-1": "DEBUG", "proxy-verify-2": "INFO", "proxy-verify-4": "INFO", "proxy-verify-5": "INFO"} {
		if got := levels[id]; len(got) != 1 || got[0] != want {
			t.Errorf("request %s logged at %v, want once at %s", id, got, want)
		}
	}

	after, _ := scrapeMetrics(t, ts.URL)
	for status, want := range map[string]float64{"200": 3, "400": 1, "413": 1} {
		if got := routeCount(after, status) - routeCount(before, status); got != want {
			t.Errorf("POST /v1/keys/verify answered %s counted %v times, want %v", status, got, want)
		}
	}
}

// routeCount is latchkey_http_requests_total for POST /v1/keys/verify
// with status (0 before the first).
func routeCount(fams map[string]*dto.MetricFamily, status string) float64 {
	for _, m := range fams["latchkey_http_requests_total"].GetMetric() {
		if hasLabel(m, "method", "POST") && hasLabel(m, "route", "/v1/keys/verify") && hasLabel(m, "status", status) {
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
