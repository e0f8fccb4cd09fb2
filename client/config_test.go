package client_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey/client"
)

// TestParseDynamicKeyConfigReadsTheSeedSettings: a program's existing
// fastagent.config.yaml block configures the client unchanged.
func TestParseDynamicKeyConfigReadsTheSeedSettings(t *testing.T) {
	doc := `
default_model: haiku
dynamic_key:
  enabled: true
  endpoint_url: "http://127.0.0.1:8080/keys/"
  cache_duration_seconds: 1800
  timeout_seconds: 2.5
  auth_token: "lk_token"
  headers:
    X-Custom-Header: "value"
`
	cfg, err := client.ParseDynamicKeyConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.EndpointURL != "http://127.0.0.1:8080/keys" || cfg.CacheDuration != 30*time.Minute || cfg.Timeout != 2500*time.Millisecond ||
		cfg.AuthToken != "lk_token" || cfg.Headers["X-Custom-Header"] != "value" {
		t.Fatalf("config = %+v", cfg)
	}
	// The block's fields at the top level, in JSON, work too.
	cfg, err = client.ParseDynamicKeyConfig([]byte(`{"endpoint_url": "https://keys.example/keys", "auth_token": "t"}`))
	if err != nil || cfg.EndpointURL != "https://keys.example/keys" || cfg.CacheDuration != 0 {
		t.Fatalf("JSON config = %+v, %v", cfg, err)
	}
	// Disabled: only the fallbacks are read.
	cfg, err = client.ParseDynamicKeyConfig([]byte("dynamic_key:\n  enabled: false\n  endpoint_url: http://x\n"))
	if err != nil || cfg.EndpointURL != "" {
		t.Fatalf("disabled config = %+v, %v", cfg, err)
	}
	path := filepath.Join(t.TempDir(), "fastagent.config.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err := client.LoadDynamicKeyConfig(path); err != nil || cfg.AuthToken != "lk_token" {
		t.Fatalf("LoadDynamicKeyConfig = %+v, %v", cfg, err)
	}
}

func TestParseDynamicKeyConfigRefusesBadSettings(t *testing.T) {
	for _, doc := range []string{
		"dynamic_key:\n  endpoint_url: ftp://x\n",
		"dynamic_key:\n  enabled: true\n",
		"dynamic_key:\n  endpoint_url: http://x\n  cache_duration_seconds: -5\n",
		"dynamic_key:\n  endpoint_url: http://x\n  timeout_seconds: 1e12\n",
		"dynamic_key:\n  endpoint_url: http://x\n  timout_seconds: 5\n",
		"dynamic_key:\n  endpoint_url: http://x\n  enabled: maybe-secret-token\n",
		"dynamic_key: [1, 2]\n",
		"dynamic_key:\n  endpoint_url: http://x\n  headers: {\"a b\": c}\n",
		"{{{",
		"",
	} {
		_, err := client.ParseDynamicKeyConfig([]byte(doc))
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != client.CodeInvalid {
			t.Errorf("%q: err = %v, want invalid", doc, err)
		}
		if err != nil && strings.Contains(err.Error(), "maybe-secret-token") {
			t.Errorf("%q: the error quotes a value: %v", doc, err)
		}
	}
	if _, err := client.LoadDynamicKeyConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("a missing settings file loaded")
	}
}

func FuzzParseDynamicKeyConfig(f *testing.F) {
	f.Add([]byte("dynamic_key:\n  endpoint_url: http://127.0.0.1:8080/keys\n  cache_duration_seconds: 60\n  auth_token: lk_x\n"))
	f.Add([]byte(`{"endpoint_url": "https://k/keys", "headers": {"X": "y"}, "timeout_seconds": 0.5}`))
	f.Add([]byte("dynamic_key:\n  enabled: false\n"))
	// A credential pasted into a header's name, and a token beside a bad
	// setting: neither may come back in the error.
	f.Add([]byte(`{"endpoint_url": "http://127.0.0.1:8080/keys", "headers": {"Authorization: Bearer lk_0123456789abcdefghijkl": "x"}}`))
	f.Add([]byte("dynamic_key:\n  endpoint_url: http://127.0.0.1:8080/keys\n  auth_token: lk_0123456789abcdefghijkl\n  timeout_seconds: -1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := client.ParseDynamicKeyConfig(data)
		if err != nil {
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Code != client.CodeInvalid {
				t.Fatalf("err = %v, want an invalid client.Error", err)
			}
			client.ErrTellsNoSecret(t, err, data)
			return
		}
		if cfg.CacheDuration < 0 || cfg.Timeout < 0 {
			t.Fatalf("negative durations accepted: %+v", cfg)
		}
		if cfg.EndpointURL != "" && !strings.HasPrefix(cfg.EndpointURL, "http") {
			t.Fatalf("endpoint %q accepted", cfg.EndpointURL)
		}
	})
}
