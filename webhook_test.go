package latchkey_test

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
)

func TestValidateWebhookURL(t *testing.T) {
	ok := []string{
		"https://hooks.example.com/latchkey",
		"http://127.0.0.1:8080/hook?channel=keys",
		"https://[::1]:9000/",
		"https://example.com",
		"https://example.com:1/",
		"https://example.com:65535/",
	}
	for _, u := range ok {
		if err := latchkey.ValidateWebhookURL(u); err != nil {
			t.Errorf("ValidateWebhookURL(%q) = %v, want nil", u, err)
		}
	}
	bad := []string{
		"",
		"/relative/path",
		"hooks.example.com/x",
		"ftp://example.com/x",
		"javascript:alert(1)",
		"mailto:ops@example.com",
		"https://",
		"https://user:pass@example.com/x",
		"https://example.com/x#frag",
		"https://example.com/a b",
		"https://example.com/\x00",
		"https://example.com/" + strings.Repeat("a", latchkey.MaxWebhookURLLen),
		"https://example.com:0/",
		"https://example.com:65536/",
		"https://example.com:99999999999999999999/",
		"https://example.com:/",
		"https://[::1]:0/",
	}
	for _, u := range bad {
		if err := latchkey.ValidateWebhookURL(u); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("ValidateWebhookURL(%.40q) = %v, want invalid", u, err)
		}
	}
}

func TestNormalizeWebhookEvents(t *testing.T) {
	got, err := latchkey.NormalizeWebhookEvents([]string{"key.revoked", "key.created", "key.revoked"})
	if err != nil || strings.Join(got, ",") != "key.revoked,key.created" {
		t.Fatalf("NormalizeWebhookEvents = %v, %v; want duplicates dropped in order", got, err)
	}
	if got, err := latchkey.NormalizeWebhookEvents(nil); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("no events = %v, %v; want an empty, non-nil list (all types)", got, err)
	}
	for _, e := range []string{"key.*", "KEY.CREATED", "", "key.deleted"} {
		if _, err := latchkey.NormalizeWebhookEvents([]string{e}); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("event %q: %v, want invalid", e, err)
		}
	}
}

func TestWebhookWants(t *testing.T) {
	all := &latchkey.Webhook{Events: []string{}}
	some := &latchkey.Webhook{Events: []string{latchkey.EventKeyRevoked}}
	for _, typ := range latchkey.EventTypes {
		if !all.Wants(typ) {
			t.Errorf("a webhook with no filter does not want %s", typ)
		}
		if some.Wants(typ) != (typ == latchkey.EventKeyRevoked) {
			t.Errorf("a key.revoked webhook: Wants(%s) = %v", typ, some.Wants(typ))
		}
	}
}

func TestWebhookSecretRoundTrip(t *testing.T) {
	s, err := latchkey.NewWebhookSecret(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s, "whsec_") {
		t.Fatalf("secret %q lacks the whsec_ prefix", s[:6])
	}
	b, err := latchkey.ParseWebhookSecret(s)
	if err != nil || len(b) != 32 {
		t.Fatalf("ParseWebhookSecret = %d bytes, %v; want 32", len(b), err)
	}
	s2, _ := latchkey.NewWebhookSecret(nil)
	if s2 == s {
		t.Fatal("two new secrets are equal")
	}
	// Unpadded base64 is accepted too (some tools strip the padding).
	raw := "whsec_" + base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 25))
	if b, err := latchkey.ParseWebhookSecret(raw); err != nil || len(b) != 25 {
		t.Fatalf("unpadded secret: %d bytes, %v", len(b), err)
	}
	for name, bad := range map[string]string{
		"no prefix":  base64.StdEncoding.EncodeToString(make([]byte, 32)),
		"too short":  "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 23)),
		"too long":   "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 65)),
		"not base64": "whsec_!!!!",
		"empty":      "whsec_",
	} {
		if _, err := latchkey.ParseWebhookSecret(bad); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("%s: %v, want invalid", name, err)
		} else if strings.Contains(latchkey.ErrorMessage(err), bad) && len(bad) > 8 {
			t.Errorf("%s: the error repeats the secret", name)
		}
	}
}

func FuzzParseWebhookSecret(f *testing.F) {
	for _, s := range []string{"", "whsec_", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_" + strings.Repeat("A", 44), "whsec_====", "whsec_" + strings.Repeat("/", 88)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := latchkey.ParseWebhookSecret(s)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("code %s, want invalid", latchkey.ErrorCode(err))
			}
			return
		}
		if len(b) < 24 || len(b) > 64 {
			t.Fatalf("accepted a secret of %d bytes", len(b))
		}
	})
}

func FuzzValidateWebhookURL(f *testing.F) {
	for _, s := range []string{"", "https://a.example/x", "http://127.0.0.1:1/", "https://u:p@h/", "h://x", "https://[::1", "https://a/#x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if err := latchkey.ValidateWebhookURL(s); err != nil && latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Fatalf("code %s, want invalid", latchkey.ErrorCode(err))
		}
	})
}
