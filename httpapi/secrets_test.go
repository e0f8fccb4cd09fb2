package httpapi

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzDecodePutSecret(f *testing.F) {
	for _, s := range append(bodySeeds,
		`{"value": "sk-proj-abc", "expires_in": 1800, "meta": {"team": "ml"}}`,
		`{"value": "sk-proj-abc", "expires_in": "1800"}`,
		`{"value": 5}`, `{"value": ""}`, `{"meta": {"a": 1}}`) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePutSecret(b)
		checkDecoded(t, b, decodePutSecret, putSecretJSON, p, err)
		if err != nil {
			// No error message quotes the value it was given.
			if p.Value != "" {
				t.Fatal("a failed decode returned a value")
			}
			return
		}
		if p.Value == "" {
			t.Fatal("an empty value was accepted")
		}
	})
}

func TestDecodePutSecretNeverEchoesTheValue(t *testing.T) {
	const v = "sk-proj-SECRET-do-not-echo"
	for _, body := range []string{
		`{"value": "` + v + `", "expires_in": -5}`,
		`{"value": "` + v + `", "extra": 1}`,
		`{"value": "` + v + `", "meta": 7}`,
		`{"value": "` + v + `"`,
		`{"value": "` + v + `\x01"}`,
	} {
		_, err := decodePutSecret([]byte(body))
		if err == nil {
			t.Fatalf("%s decoded", body)
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Fatalf("error echoes the value: %v", err)
		}
	}
}

func FuzzDecodeRewrap(f *testing.F) {
	for _, s := range append(bodySeeds, `{"new_master_key_file": "/etc/latchkey/new.key"}`, `{"new_master_key_file": "rel"}`) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeRewrap(b)
		checkDecoded(t, b, decodeRewrap, rewrapJSON, p, err)
		if err == nil && !filepath.IsAbs(p) {
			t.Fatalf("relative path %q accepted", p)
		}
	})
}

func FuzzParseSecretVersion(f *testing.F) {
	for _, s := range []string{"", "1", "0", "-1", "99999999999999999999", "1e3", " 2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSecretVersion(s)
		checkDecode(t, err)
		if err == nil && (n < 0 || n == 0 && s != "") {
			t.Fatalf("%q parsed as %d", s, n)
		}
	})
}

func FuzzSeedPath(f *testing.F) {
	for _, s := range []string{"/llm-keys", "//llm-keys", "///keys/openai", "//v1/keys", "/", "//", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		q := seedPath(p)
		if q == p {
			return
		}
		// Only the seed routes are rewritten, and only by dropping slashes.
		if q != "/llm-keys" && !strings.HasPrefix(q, "/keys/") {
			t.Fatalf("%q mapped to %q", p, q)
		}
		if strings.TrimLeft(p, "/") != strings.TrimLeft(q, "/") {
			t.Fatalf("%q mapped to %q changes more than slashes", p, q)
		}
	})
}

func TestSeedPath(t *testing.T) {
	for in, want := range map[string]string{
		"//llm-keys":      "/llm-keys",
		"///llm-keys":     "/llm-keys",
		"//keys/openai":   "/keys/openai",
		"/llm-keys":       "/llm-keys",
		"//v1/keys":       "//v1/keys", // not a seed route: the mux decides
		"//llm-keys/more": "//llm-keys/more",
	} {
		if got := seedPath(in); got != want {
			t.Errorf("seedPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// The seed fast path's hand-written answer is byte for byte what
// encoding/json writes (without HTML escaping, as writeJSON).
func FuzzAppendSeedKey(f *testing.F) {
	for _, s := range []string{"sk-proj-abc", "", `quote " and \ backslash`, "tab\tnl\ncr\r\x00\x1f\x7f", "<>&", "é ✓ \u2028\u2029", "bad \xff\xfe utf8", "\xed\xa0\x80"} {
		f.Add(s, int64(3600))
	}
	f.Fuzz(func(t *testing.T, value string, expiresIn int64) {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(struct {
			APIKey    string `json:"api_key"`
			ExpiresIn int64  `json:"expires_in"`
		}{value, expiresIn}); err != nil {
			t.Fatal(err)
		}
		if got := appendSeedKey(nil, value, expiresIn); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("appendSeedKey(%q, %d) = %s, encoding/json writes %s", value, expiresIn, got, want.Bytes())
		}
	})
}
