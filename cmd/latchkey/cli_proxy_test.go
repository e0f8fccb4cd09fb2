package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// A proxy in front of the server that answers on its own, with a page and
// no API error body: the CLI names the code wire.CodeForStatus gives its
// status, as the Go client does (502 and 504 are unavailable: try again
// later; they were internal before the table was one), and exits 1.
func TestCLIProxyAnswersMapThroughTheWireTable(t *testing.T) {
	for status, want := range map[int]string{
		http.StatusBadGateway:          latchkey.EUnavailable,
		http.StatusServiceUnavailable:  latchkey.EUnavailable,
		http.StatusGatewayTimeout:      latchkey.EUnavailable,
		http.StatusInternalServerError: latchkey.EInternal,
		http.StatusForbidden:           latchkey.EForbidden,
	} {
		proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(status)
			_, _ = w.Write([]byte("<html><body>nginx</body></html>"))
		}))
		var stdout, stderr bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := run(ctx, []string{"keys", "list", "--server", proxy.URL}, func(k string) string {
			if k == "LATCHKEY_KEY" {
				return "lk_not_a_real_key_for_a_proxy"
			}
			return ""
		}, strings.NewReader(""), &stdout, &stderr)
		if got := latchkey.ErrorCode(err); got != want {
			t.Errorf("%d: the CLI says %q (%v), want %q", status, got, err, want)
		}
		if code := exitCode(err); code != 1 {
			t.Errorf("%d: exit status %d, want 1", status, code)
		}
		cancel()
		proxy.Close()
	}
}
