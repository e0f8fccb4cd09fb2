package metrics

import "testing"

func TestCodeIndexFollowsCodes(t *testing.T) {
	for i, c := range codes {
		if got := codeIndex(c); got != i {
			t.Errorf("codeIndex(%s) = %d, want %d", c, got, i)
		}
	}
	if got := codeIndex("valid"); got != -1 {
		t.Errorf("codeIndex of an unknown code = %d", got)
	}
}

func TestLabels(t *testing.T) {
	for pattern, want := range map[string]string{
		"GET /v1/keys/{id}":          "/v1/keys/{id}",
		"POST /v1/keys/{id}/revoke":  "/v1/keys/{id}/revoke",
		"/":                          "/",
		"":                           "unmatched",
		"GET example.com/v1/tenants": "/v1/tenants",
	} {
		if got := routeLabel(pattern); got != want {
			t.Errorf("routeLabel(%q) = %q, want %q", pattern, got, want)
		}
	}
	for method, want := range map[string]string{"GET": "GET", "PATCH": "PATCH", "get": "OTHER", "BREW": "OTHER", "": "OTHER"} {
		if got := methodLabel(method); got != want {
			t.Errorf("methodLabel(%q) = %q, want %q", method, got, want)
		}
	}
}
