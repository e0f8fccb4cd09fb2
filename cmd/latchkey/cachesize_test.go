package main

import (
	"io"
	"testing"

	"github.com/latchkeyhq/latchkey/keys"
)

// TestCacheSizeFlag: --cache-size takes a count of keys or a size in
// bytes, and the server refuses to start with a bound it cannot honour.
func TestCacheSizeFlag(t *testing.T) {
	parse := func(args ...string) (*serverConfig, error) {
		cfg, fs := serverFlags(&env{getenv: func(string) string { return "" }, stderr: io.Discard})
		fs.SetOutput(io.Discard)
		return cfg, fs.Parse(args)
	}
	cfg, err := parse()
	if err != nil || cfg.CacheSize != 0 {
		t.Fatalf("no flag: CacheSize %d, %v; want 0 (the key service's default)", cfg.CacheSize, err)
	}
	for in, want := range map[string]int{"250000": 250_000, "64MiB": 64 << 20 / keys.EntryBytes} {
		cfg, err := parse("--cache-size", in)
		if err != nil || cfg.CacheSize != want {
			t.Errorf("--cache-size %s: %d, %v; want %d", in, cfg.CacheSize, err, want)
		}
	}
	for _, in := range []string{"0", "10", "-1", "lots", "64 MiB", "1TiB", "1KiB"} {
		if _, err := parse("--cache-size", in); err == nil {
			t.Errorf("--cache-size %q was accepted", in)
		}
	}
}
