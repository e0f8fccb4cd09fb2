package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
)

// A path that is not clean (a doubled slash, a "." or ".." segment) is no
// route: it answers 404 not_found, and never a redirect that would repeat
// the path — a key pasted into it included — in Location and in the body.
// The seed routes keep their doubled-slash form (a client whose endpoint
// ends in '/').
func TestUncleanPathsAreNoRouteAndRepeatNothing(t *testing.T) {
	ts := startServer(t, withGuard(10_000))
	admin := ts.mustTenant(t, "acme")
	_, key := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, p := range []string{"//v1/keys/" + key, "/v1//keys/" + key, "/v1/./keys/" + key, "/v1/../keys/" + key, "/v1/keys/" + key + "/.."} {
		req, err := http.NewRequest("GET", ts.URL+p, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+admin)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"code":"`+latchkey.ENotFound+`"`) {
			t.Errorf("%s: %d %s, want 404 not_found", strings.ReplaceAll(p, key, "KEY"), res.StatusCode, strings.ReplaceAll(string(body), key, "KEY"))
		}
		if loc := res.Header.Get("Location"); loc != "" || strings.Contains(string(body), key) {
			t.Errorf("%s: the answer repeats the path (Location %q)", strings.ReplaceAll(p, key, "KEY"), strings.ReplaceAll(loc, key, "KEY"))
		}
	}
	// The seed route with a doubled slash still answers as the route.
	req, _ := http.NewRequest("GET", ts.URL+"//llm-keys", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusNotFound || res.StatusCode/100 == 3 {
		t.Errorf("//llm-keys answered %d", res.StatusCode)
	}
}
