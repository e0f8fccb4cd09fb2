package manifest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/manifest"
)

// FuzzParse checks what callers rely on for any input: Parse does not
// panic, refuses with EInvalid naming the file, and what it accepts is
// complete enough to apply.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yml")
	if err != nil {
		f.Fatal(err)
	}
	json, err := filepath.Glob("testdata/*.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range append(files, json...) {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"app:",
		"app: {name: a}\nagents:\n  - name: x\n    api_key: {generate: true}\n",
		"app: {name: a, agents: [{name: x, api_key: {generate: true, environment: production}}]}\n",
		"app: {name: a}\nagents: x: y\n",
		"app: {name: a}\nagents:\n  - name: x\n    api_key: {generate: true, scopes: [a:b\n",
		"app:\n\tname: a\n",
		"app: &a {name: a, agents: [*a]}\n",
		"app: {name: a}\nagents:\n  - &x {name: x, api_key: {generate: true, meta: {m: *x}}}\n",
		"app: {name: a}\n---\napp: {name: b}\n",
		"{\"app\": {\"name\": \"a\"}, \"agents\": [{\"name\": \"x\", \"api_key\": {\"generate\": true, \"expires_after\": \"9x\"}}]}",
		"app: {name: a}\nagents:\n  - name: x\n    api_key: {generate: true, auto_rotate: true}\n",
		"app: {name: a}\nagents:\n  - name: x\n    api_key:\n      generate: true\n      <<: {scopes: [a:b]}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, env := range []string{"", "production"} {
			m, err := manifest.Parse(file, data, env)
			if err != nil {
				if code := latchkey.ErrorCode(err); code != latchkey.EInvalid {
					t.Fatalf("env %q: code %s: %v", env, code, err)
				}
				if msg := latchkey.ErrorMessage(err); !strings.HasPrefix(msg, file+":") {
					t.Fatalf("env %q: message %q does not start with the file name", env, msg)
				}
				continue
			}
			if m.App == "" {
				t.Fatalf("env %q: accepted a manifest without an app name", env)
			}
			for i, k := range m.Keys {
				if k.App == "" || k.Agent == "" || k.Name == "" || !strings.HasPrefix(k.Source, file+":") {
					t.Fatalf("env %q: key %d incomplete: %+v", env, i, k)
				}
				if env != "" && k.Environment != env {
					t.Fatalf("env %q: key %d is for environment %q", env, i, k.Environment)
				}
			}
		}
	})
}
