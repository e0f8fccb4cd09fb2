package ui

import (
	"testing"
	"testing/fstest"
)

// A broken template is an error of New (the server does not start), not
// of a request.
func TestBrokenTemplateRefusedAtStart(t *testing.T) {
	layout := &fstest.MapFile{Data: []byte(`{{define "layout"}}<title>{{.Title}}</title>{{template "content" .}}{{end}}`)}
	tests := []struct {
		name    string
		page    string
		wantErr bool
	}{
		{"Good", `{{define "content"}}<p>{{.Title}}</p>{{end}}`, false},
		{"Unclosed", `{{define "content"}}<p>{{.Title</p>{{end}}`, true},
		{"UnknownFunction", `{{define "content"}}{{nosuch .Title}}{{end}}`, true},
		{"NoContent", `<p>hello</p>`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parsePages(fstest.MapFS{"templates/layout.html": layout, "templates/page.html": {Data: []byte(tt.page)}})
			if (err != nil) != tt.wantErr {
				t.Fatalf("parsePages: %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

// Every embedded page parses (New would fail otherwise) and has a title
// block through the layout.
func TestEmbeddedTemplatesParse(t *testing.T) {
	pages, err := parsePages(templateFiles)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"login", "error", "overview", "keys", "key", "new", "secret", "confirm", "batch",
		"audit", "verify", "security", "webhooks", "webhook", "secrets", "secretinfo", "policies", "policy", "owners", "owner", "apply", "once", "tenants"} {
		if pages[want] == nil {
			t.Errorf("page %s is missing", want)
		}
	}
}
