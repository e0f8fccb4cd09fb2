package main

import (
	"net/http"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/testenv"
)

// TestE2ENginxCondition puts a real nginx (the configuration the docs
// ship, which passes X-Original-Method and X-Original-URI to the
// auth_request subrequest) in front of an app: a key whose condition
// allows only GET and HEAD under /reports/ passes a GET through and is
// refused for a POST, with CONDITION_FAILED, before the app sees it.
func TestE2ENginxCondition(t *testing.T) {
	ts := startServer(t, withTrustedProxies("127.0.0.1/32"))
	admin := ts.mustTenant(t, "acme")
	_, key := ts.mustCreate(t, admin, map[string]any{
		"scopes":    []string{"data:read"},
		"condition": `request.method in ["GET","HEAD"] && request.path.startsWith("/reports/") && request.ip in cidr("127.0.0.0/8")`,
	})
	_, elsewhere := ts.mustCreate(t, admin, map[string]any{
		"scopes":    []string{"data:read"},
		"condition": `request.ip in cidr("10.0.0.0/8")`,
	})
	reached := make(chan string, 16)
	app := loopbackApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached <- r.Method + " " + r.URL.Path
		w.Write([]byte("report"))
	}))
	defer app.Close()
	ngx := testenv.StartNginx(t, testenv.NginxConfig{
		AuthURL:     ts.URL + "/v1/auth?scope=data:read&proxy=nginx",
		UpstreamURL: app.URL,
	})
	for _, c := range []struct {
		name, method, path, key string
		status                  int
	}{
		{"GET passes", "GET", "/reports/today?format=csv", key, 200},
		{"HEAD passes", "HEAD", "/reports/today", key, 200},
		{"POST is refused", "POST", "/reports/today", key, 403},
		{"another path is refused", "GET", "/admin/reports/", key, 403},
		{"another network is refused", "GET", "/reports/today", elsewhere, 403},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, c.method, ngx.URL+c.path, map[string]string{"Authorization": bearer(c.key)}, nil)
			if r.Status != c.status {
				t.Fatalf("through nginx: %d %q, want %d", r.Status, r.Header.Get("X-Latchkey-Code"), c.status)
			}
			if c.status == 200 {
				if got := <-reached; got != c.method+" /reports/today" {
					t.Fatalf("the app saw %q", got)
				}
				return
			}
			if code := r.Header.Get("X-Latchkey-Code"); code != latchkey.CodeConditionFailed {
				t.Fatalf("X-Latchkey-Code %q, want %s", code, latchkey.CodeConditionFailed)
			}
			select {
			case s := <-reached:
				t.Fatalf("a refused request reached the app: %s", s)
			default:
			}
		})
	}
}
