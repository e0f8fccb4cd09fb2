package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// latchkey health exits 0 for a serving node (ready or degraded) and 1
// for one that is not ready or cannot be reached: a container's
// HEALTHCHECK runs it.
func TestHealthCommand(t *testing.T) {
	ts := startServer(t)
	run1 := func(server string, extra ...string) (string, error) {
		var out strings.Builder
		e := &env{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: &out, stderr: io.Discard}
		err := runHealth(context.Background(), e, append([]string{"--server", server}, extra...))
		return out.String(), err
	}
	if out, err := run1(ts.URL); err != nil || !strings.HasSuffix(out, ": ready\n") {
		t.Fatalf("a ready node: %q, %v", out, err)
	}
	if out, err := run1(ts.URL, "--json"); err != nil || !strings.Contains(out, `"status":"ready"`) {
		t.Fatalf("--json: %q, %v", out, err)
	}
	degraded := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status":"degraded","reasons":[{"code":"audit_tampered"}]}`))
	}))
	defer degraded.Close()
	if out, err := run1(degraded.URL); err != nil || !strings.HasSuffix(out, ": degraded\n") {
		t.Fatalf("a degraded node serves: %q, %v", out, err)
	}
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":{"code":"unavailable","message":"the store does not answer"}}`))
	}))
	defer down.Close()
	if out, err := run1(down.URL); !errors.Is(err, errAlreadyReported) || !strings.HasSuffix(out, ": unavailable\n") {
		t.Fatalf("a node whose store is down: %q, %v", out, err)
	}
	ts.Stop()
	if _, err := run1(ts.URL); err == nil || exitCode(err) != 1 {
		t.Fatalf("a stopped node: %v, want exit status 1", err)
	}
}
