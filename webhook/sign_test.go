package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/webhook"
)

// The Standard Webhooks specification's published example.
const (
	specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTS     = 1614265330
	specBody   = `{"test": 2432232314}`
	specSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// independentSign computes the signature with nothing of the package: the
// receiver's side, written from the specification.
func independentSign(secret, id string, ts int64, body string) string {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		panic(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + strconv.FormatInt(ts, 10) + "." + body))
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func TestSignKnownVector(t *testing.T) {
	if got := independentSign(specSecret, specID, specTS, specBody); got != specSig {
		t.Fatalf("the independent computation gives %s, the specification %s", got, specSig)
	}
	got, err := webhook.Sign(specSecret, specID, time.Unix(specTS, 0), []byte(specBody))
	if err != nil || got != specSig {
		t.Fatalf("Sign = %s, %v; want %s", got, err, specSig)
	}
	secret, _ := latchkey.NewWebhookSecret(nil)
	body := `{"type":"key.revoked","data":{"id":"evt_1"}}`
	got, _ = webhook.Sign(secret, "dlv_1", time.Unix(1700000000, 0), []byte(body))
	if want := independentSign(secret, "dlv_1", 1700000000, body); got != want {
		t.Fatalf("Sign with a fresh secret = %s, independent = %s", got, want)
	}
}

func headers(id string, ts int64, sig string) http.Header {
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	h.Set("webhook-signature", sig)
	return h
}

func TestVerify(t *testing.T) {
	now := time.Unix(specTS, 0).Add(time.Minute)
	body := []byte(specBody)
	other, _ := latchkey.NewWebhookSecret(nil)
	otherSig := independentSign(other, specID, specTS, specBody)
	cases := []struct {
		name string
		h    http.Header
		body []byte
		now  time.Time
		code string
	}{
		{"valid", headers(specID, specTS, specSig), body, now, ""},
		{"one of several, others of unknown versions skipped", headers(specID, specTS, "v2,abc "+otherSig+" "+specSig), body, now, ""},
		{"changed body", headers(specID, specTS, specSig), []byte(`{"test": 2432232315}`), now, latchkey.EUnauthenticated},
		{"changed id", headers("msg_other", specTS, specSig), body, now, latchkey.EUnauthenticated},
		{"changed timestamp", headers(specID, specTS+1, specSig), body, now, latchkey.EUnauthenticated},
		{"another secret's signature", headers(specID, specTS, otherSig), body, now, latchkey.EUnauthenticated},
		{"too old", headers(specID, specTS, specSig), body, time.Unix(specTS, 0).Add(6 * time.Minute), latchkey.EUnauthenticated},
		{"from the future", headers(specID, specTS, specSig), body, time.Unix(specTS, 0).Add(-6 * time.Minute), latchkey.EUnauthenticated},
		{"no id", headers("", specTS, specSig), body, now, latchkey.EInvalid},
		{"no signature", headers(specID, specTS, ""), body, now, latchkey.EInvalid},
		{"only other versions", headers(specID, specTS, "v1a,xyz"), body, now, latchkey.EInvalid},
		{"malformed signature", headers(specID, specTS, "v1,not-base64"), body, now, latchkey.EInvalid},
		{"short signature", headers(specID, specTS, "v1,AAAA"), body, now, latchkey.EInvalid},
	}
	for _, c := range cases {
		err := webhook.Verify(specSecret, c.h, c.body, c.now, 0)
		if latchkey.ErrorCode(err) != c.code {
			t.Errorf("%s: Verify = %v, want code %q", c.name, err, c.code)
		}
	}
	h := headers(specID, specTS, specSig)
	h.Set("webhook-timestamp", "16142653a0")
	if err := webhook.Verify(specSecret, h, body, now, 0); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Errorf("a malformed timestamp: %v, want invalid", err)
	}
	if err := webhook.Verify("not-a-secret", headers(specID, specTS, specSig), body, now, 0); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Errorf("a malformed secret: %v, want invalid", err)
	}
	// A wider tolerance lets an old request through.
	if err := webhook.Verify(specSecret, headers(specID, specTS, specSig), body, time.Unix(specTS, 0).Add(time.Hour), 2*time.Hour); err != nil {
		t.Errorf("within a 2h tolerance: %v", err)
	}
}

func TestSignRefusesBadSecret(t *testing.T) {
	if _, err := webhook.Sign("whsec_short", "id", time.Now(), nil); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("Sign with a malformed secret: %v, want invalid", err)
	}
}

func FuzzParseSignatures(f *testing.F) {
	for _, s := range []string{"", specSig, "v1,", "v1", "v2,x " + specSig, strings.Repeat(specSig+" ", 20), "v1,====", " \t v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sigs, err := webhook.ParseSignatures(s)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("code %s, want invalid", latchkey.ErrorCode(err))
			}
			return
		}
		if len(sigs) == 0 || len(sigs) > 16 {
			t.Fatalf("%d signatures accepted", len(sigs))
		}
		for _, b := range sigs {
			if len(b) != 32 {
				t.Fatalf("a signature of %d bytes", len(b))
			}
		}
	})
}

func FuzzParseTimestamp(f *testing.F) {
	for _, s := range []string{"", "0", "1614265330", "-1", "1e9", "99999999999999999999", " 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := webhook.ParseTimestamp(s)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("code %s, want invalid", latchkey.ErrorCode(err))
			}
			return
		}
		if n < 0 || strconv.FormatInt(n, 10) != strings.TrimLeft(s, "0") && n != 0 {
			t.Fatalf("ParseTimestamp(%q) = %d", s, n)
		}
	})
}

// FuzzVerify: any secret, headers and body either verify or fail with
// invalid or unauthenticated, never panic; and what Sign produced always
// verifies.
func FuzzVerify(f *testing.F) {
	f.Add(specSecret, specID, "1614265330", specSig, specBody)
	f.Add("whsec_", "", "", "", "")
	f.Add("whsec_"+strings.Repeat("A", 40), "x", "1", "v1,"+strings.Repeat("A", 44), "{}")
	now := time.Unix(specTS, 0)
	f.Fuzz(func(t *testing.T, secret, id, ts, sig, body string) {
		h := http.Header{}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", ts)
		h.Set("webhook-signature", sig)
		err := webhook.Verify(secret, h, []byte(body), now, 0)
		if c := latchkey.ErrorCode(err); err != nil && c != latchkey.EInvalid && c != latchkey.EUnauthenticated {
			t.Fatalf("code %s", c)
		}
		if s, err := webhook.Sign(secret, id, now, []byte(body)); err == nil && id != "" && strings.TrimSpace(id) == id && !strings.ContainsAny(id, "\r\n") {
			h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
			h.Set("webhook-signature", s)
			if err := webhook.Verify(secret, h, []byte(body), now, 0); err != nil {
				t.Fatalf("a signature Sign made does not verify: %v", err)
			}
		}
	})
}
