// Package webhook delivers a tenant's events to its webhook endpoints: it
// signs each request per the Standard Webhooks scheme, fans events out into
// a durable outbox in the store, and sends and retries deliveries from
// there (see Dispatcher). Sign and Verify are exported for receivers
// written in Go.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// The headers of a signed request, as the Standard Webhooks specification
// names them.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// DefaultTolerance is how far a request's timestamp may be from the
// receiver's clock before Verify refuses it, against replays.
const DefaultTolerance = 5 * time.Minute

// maxSignatures bounds the signatures one header may list (a sender rotating
// secrets lists a few).
const maxSignatures = 16

// Sign returns the webhook-signature header value for a request: "v1," and
// the base64 HMAC-SHA256, keyed with the secret's bytes, of
// "{id}.{unix seconds}.{body}". Errors: EInvalid if secret is not a
// whsec_ secret.
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := latchkey.ParseWebhookSecret(secret)
	if err != nil {
		return "", err
	}
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, id, ts.Unix(), body)), nil
}

func mac(key []byte, id string, ts int64, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a received request: its webhook-id, webhook-timestamp
// (within tolerance of now; DefaultTolerance if tolerance is 0) and one of
// the v1 signatures in webhook-signature, which may list several separated
// by spaces. Errors: EInvalid for a bad secret or a missing or malformed
// header, EUnauthenticated for a timestamp out of tolerance or no matching
// signature.
func Verify(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := latchkey.ParseWebhookSecret(secret)
	if err != nil {
		return err
	}
	id := h.Get(HeaderID)
	if id == "" {
		return latchkey.Errorf(latchkey.EInvalid, "no %s header", HeaderID)
	}
	ts, err := ParseTimestamp(h.Get(HeaderTimestamp))
	if err != nil {
		return err
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return latchkey.Errorf(latchkey.EUnauthenticated, "%s is %s away from now, beyond the tolerance of %s", HeaderTimestamp, d.Abs().Round(time.Second), tolerance)
	}
	sigs, err := ParseSignatures(h.Get(HeaderSignature))
	if err != nil {
		return err
	}
	want := mac(key, id, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return latchkey.Errorf(latchkey.EUnauthenticated, "no signature in %s matches", HeaderSignature)
}

// ParseTimestamp reads a webhook-timestamp header: unix seconds, in
// decimal. Errors: EInvalid.
func ParseTimestamp(v string) (int64, error) {
	if v == "" {
		return 0, latchkey.Errorf(latchkey.EInvalid, "no %s header", HeaderTimestamp)
	}
	if len(v) > 12 {
		return 0, latchkey.Errorf(latchkey.EInvalid, "%s must be unix seconds", HeaderTimestamp)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, latchkey.Errorf(latchkey.EInvalid, "%s must be unix seconds", HeaderTimestamp)
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, latchkey.Errorf(latchkey.EInvalid, "%s must be unix seconds", HeaderTimestamp)
	}
	return n, nil
}

// ParseSignatures reads a webhook-signature header: space-separated
// "version,base64" entries. It returns the v1 signatures (HMAC-SHA256,
// 32 bytes) and skips entries of other versions, as the specification
// asks. Errors: EInvalid if there is no v1 entry or one is malformed.
func ParseSignatures(v string) ([][]byte, error) {
	if v == "" {
		return nil, latchkey.Errorf(latchkey.EInvalid, "no %s header", HeaderSignature)
	}
	var out [][]byte
	n := 0
	for entry := range strings.FieldsSeq(v) {
		if n++; n > maxSignatures {
			return nil, latchkey.Errorf(latchkey.EInvalid, "%s lists more than %d signatures", HeaderSignature, maxSignatures)
		}
		ver, sig, ok := strings.Cut(entry, ",")
		if !ok {
			return nil, latchkey.Errorf(latchkey.EInvalid, "%s entries are version,signature", HeaderSignature)
		}
		if ver != "v1" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(sig)
		if err != nil || len(b) != sha256.Size {
			return nil, latchkey.Errorf(latchkey.EInvalid, "a v1 signature is the base64 of 32 bytes")
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, latchkey.Errorf(latchkey.EInvalid, "%s holds no v1 signature", HeaderSignature)
	}
	return out, nil
}
