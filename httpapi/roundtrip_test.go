package httpapi

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/secrets"
	"github.com/latchkeyhq/latchkey/webhook"
)

// A request decoder's fuzz target checks more than the code of its errors:
//
//   - a failed decode's error holds no secret of the body (a verify
//     request's "key", a secret's "value");
//   - a successful decode is lossless and stable: the value, written back
//     in the API's own shape, holds every field the body set (not null),
//     and decodes again, to a value that is written the same way. A field
//     the decoder dropped, mangled or read from the wrong place, or a value
//     it accepted that it would then refuse, fails.
func checkDecoded[T any](t *testing.T, body []byte, decode func([]byte) (T, error), encode func(T) any, v T, err error) {
	t.Helper()
	checkDecode(t, err)
	if err != nil {
		errTellsNoSecret(t, err, body)
		return
	}
	first := mustJSON(t, encode(v))
	var sent, kept map[string]json.RawMessage
	if json.Unmarshal(body, &sent) == nil {
		_ = json.Unmarshal(first, &kept)
		for name, raw := range sent {
			if string(raw) != "null" && !hasField(kept, name) {
				t.Fatalf("%s decoded to a value without its field %q: %s", body, name, first)
			}
		}
	}
	again, err := decode(first)
	if err != nil {
		t.Fatalf("%s decoded, but its value written back (%s) does not: %v", body, first, err)
	}
	if second := mustJSON(t, encode(again)); !bytes.Equal(first, second) {
		t.Fatalf("%s decoded to a value written as\n  %s\nwhich decodes to one written as\n  %s", body, first, second)
	}
}

// hasField says whether m has the field name as encoding/json matches
// names: ignoring case.
func hasField(m map[string]json.RawMessage, name string) bool {
	for k := range m {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding %#v: %v", v, err)
	}
	return b
}

// secretField finds the values of the body's secret fields, also in a body
// that is not valid JSON.
var secretField = regexp.MustCompile(`"(?:key|value|api_key)"\s*:\s*"([^"\\]{8,})`)

// errTellsNoSecret fails t if err holds the value of a secret field of
// body.
func errTellsNoSecret(t *testing.T, err error, body []byte) {
	t.Helper()
	for _, m := range secretField.FindAllSubmatch(body, -1) {
		if strings.Contains(err.Error(), string(m[1])) {
			t.Fatalf("error %q holds the secret %q of its body", err, m[1])
		}
	}
}

// The API's shape of each decoded value (what a client sends).

func durationJSON(d *time.Duration) any {
	if d == nil {
		return nil
	}
	return latchkey.Duration(*d).String()
}

func settingsJSON(s keys.Settings) map[string]any {
	m := map[string]any{}
	put := func(name string, present bool, v any) {
		if present {
			m[name] = v
		}
	}
	put("name", s.Name != nil, s.Name)
	put("owner", s.Owner != nil, s.Owner)
	put("environment", s.Environment != nil, s.Environment)
	put("scopes", s.Scopes != nil, s.Scopes)
	put("resources", s.Resources != nil, s.Resources)
	put("meta", s.Meta != nil, s.Meta)
	put("ip_allow", s.IPAllow != nil, s.IPAllow)
	if s.ExpiresAt != nil {
		if s.ExpiresAt.IsZero() {
			m["expires_at"] = nil
		} else {
			m["expires_at"] = s.ExpiresAt.Format(time.RFC3339Nano)
		}
	}
	put("expires_in", s.ExpiresIn != nil, durationJSON(s.ExpiresIn))
	put("countries", s.Countries != nil, s.Countries)
	put("time_windows", s.TimeWindows != nil, s.TimeWindows)
	put("ratelimits", s.RateLimits != nil, s.RateLimits)
	put("quota", s.Quota != nil || s.ClearQuota, s.Quota)
	put("max_concurrent", s.MaxConcurrent != nil, s.MaxConcurrent)
	put("lease_ttl", s.LeaseTTL != nil, durationJSON(s.LeaseTTL))
	put("policy", s.Policy != nil, s.Policy)
	return m
}

func createKeyJSON(p keys.CreateParams) any {
	m := settingsJSON(p.Settings)
	m["prefix"] = p.Prefix
	return m
}

func updateKeyJSON(s keys.Settings) any { return settingsJSON(s) }

func rotateJSON(p keys.RotateParams) any {
	m := map[string]any{}
	if p.Grace != nil {
		m["grace_period"] = durationJSON(p.Grace)
	}
	if p.ExpiresIn != nil {
		m["expires_in"] = durationJSON(p.ExpiresIn)
	}
	return m
}

// suspendJSON leaves out a zero duration: that is how "until resumed" is
// written (a zero duration sent is refused).
func suspendJSON(b suspendBody) any {
	m := map[string]any{"reason": b.Reason}
	if b.Duration != 0 {
		m["duration"] = b.Duration
	}
	return m
}

func revokeJSON(reason string) any { return map[string]string{"reason": reason} }

func tenantJSON(b tenantBody) any { return b }

func verifyJSON(r keys.VerifyRequest) any {
	m := map[string]any{"key": r.Key, "scopes": r.Scopes, "resource": r.Resource, "cost": r.Cost, "ip": "", "limits": r.Named}
	if r.IP.IsValid() {
		m["ip"] = r.IP.String()
	}
	return m
}

// policyJSON writes policy parameters back in the body's shape.
func policyJSON(p keys.PolicyParams) map[string]any {
	m := map[string]any{}
	put := func(name string, present bool, v any) {
		if present {
			m[name] = v
		}
	}
	put("description", p.Description != nil, p.Description)
	put("scopes", p.Scopes != nil, p.Scopes)
	put("resources", p.Resources != nil, p.Resources)
	put("ip_allow", p.IPAllow != nil, p.IPAllow)
	put("countries", p.Countries != nil, p.Countries)
	put("time_windows", p.TimeWindows != nil, p.TimeWindows)
	put("ratelimits", p.RateLimits != nil, p.RateLimits)
	put("quota", p.Quota != nil || p.ClearQuota, p.Quota)
	put("uses", p.Uses != nil, p.Uses)
	put("max_concurrent", p.MaxConcurrent != nil, p.MaxConcurrent)
	put("expires_after", p.ExpiresAfter != nil, durationJSON(p.ExpiresAfter))
	return m
}

type createdPolicy struct {
	name string
	p    keys.PolicyParams
}

func createPolicyJSON(c createdPolicy) any {
	m := policyJSON(c.p)
	m["name"] = c.name
	return m
}

func updatePolicyJSON(p keys.PolicyParams) any { return policyJSON(p) }

func ownerJSON(p keys.OwnerParams) any {
	return map[string]any{"ratelimits": p.RateLimits, "quota": p.Quota, "meta": p.Meta}
}

func webhookJSON(p webhook.Params) any {
	return map[string]any{"url": p.URL, "events": p.Events}
}

func putSecretJSON(p secrets.SecretParams) any {
	return map[string]any{"value": p.Value, "expires_in": p.ExpiresIn, "meta": p.Meta}
}

func rewrapJSON(path string) any { return map[string]string{"new_master_key_file": path} }
