package client

import (
	"testing"

	"github.com/latchkeyhq/latchkey/wire"
)

// The fuzz targets check that no input makes a parser panic, and that no
// error quotes the input (which holds keys).

func FuzzParseKeysFile(f *testing.F) {
	for _, s := range []string{`{"openai": "sk-1"}`, `{"openai": {"api_key": "sk-1"}}`, `{"a/b": "x"}`, `[]`, `{"x": 1}`, `{} {}`, `null`,
		// A key pasted where the provider's name goes (base64, so not a name).
		`{"Zm9vYmFyYmF6cXV4+/Zm9vYmFyYmF6cXV4==": "azure"}`,
		`{"openai": {"api_key": 5}, "anthropic": "sk-ant-api03-0123456789abcdef"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := parseKeysFile(data)
		if err != nil {
			if ErrorCode(err) != CodeInvalid {
				t.Fatalf("code %s", ErrorCode(err))
			}
			errTellsNoSecret(t, err, data)
			return
		}
		for k, v := range keys {
			if !ValidProvider(k) || v == "" {
				t.Fatalf("entry %q accepted", k)
			}
		}
	})
}

func FuzzParseKeyAnswer(f *testing.F) {
	for _, s := range []string{`{"api_key": "sk-1", "expires_in": 1800}`, `{"api_key": "sk-1"}`, `{"api_key": "", "expires_in": -1}`, `{"api_key": "x", "expires_in": 1e300}`, `{"expires_in": "60"}`} {
		f.Add([]byte(s))
	}
	_, _, wantErr := parseKeyAnswer(nil)
	want := wantErr.Error()
	f.Fuzz(func(t *testing.T, data []byte) {
		v, d, err := parseKeyAnswer(data)
		if err != nil {
			if err.Error() != want {
				t.Fatalf("error %q depends on the answer", err)
			}
			errTellsNoSecret(t, err, data)
			return
		}
		if v == "" || d < 0 || d > maxExpiresIn {
			t.Fatalf("value %q, expires %v", v, d)
		}
	})
}

func FuzzParseKeyMap(f *testing.F) {
	for _, s := range []string{`{"openai": "sk-1", "anthropic": ""}`, `{"x": 1}`, `[]`, `null`,
		`{"openai": "sk-proj-0123456789abcdef", "anthropic": "sk-ant-api03-0123456789abcdef"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseKeyMap(data)
		if err != nil {
			if ErrorCode(err) != CodeInvalid {
				t.Fatalf("code %s", ErrorCode(err))
			}
			errTellsNoSecret(t, err, data)
			return
		}
		for _, v := range m {
			if v == "" {
				t.Fatal("empty value kept")
			}
		}
	})
}

func FuzzParseVerifyAnswer(f *testing.F) {
	for _, s := range []string{
		`{"valid": true, "code": "VALID", "key_id": "key_1", "scopes": ["a:b"], "expires_at": "2030-01-01T00:00:00Z"}`,
		`{"valid": false, "code": "RATE_LIMITED", "retry_after": 7, "ratelimit": {"limit": 1, "remaining": 0, "reset_at": "2030-01-01T00:00:00Z"}}`,
		`{"valid": true, "code": "REVOKED"}`, `{}`, `{"retry_after": -5, "code": "X"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := parseVerifyAnswer(data)
		if err != nil {
			if ErrorCode(err) != CodeInvalid {
				t.Fatalf("code %s", ErrorCode(err))
			}
			errTellsNoSecret(t, err, data)
			return
		}
		if v.Valid != (v.Code == Valid) || v.RetryAfter < 0 {
			t.Fatalf("%+v", v)
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"7", "", "Wed, 21 Oct 2015 07:28:00 GMT", "999999999", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d := wire.ParseRetryAfter(s); d < 0 {
			t.Fatalf("%q → %v", s, d)
		}
	})
}
