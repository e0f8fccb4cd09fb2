package client

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"
)

// parseKeysFile reads the fallback keys file: one JSON object mapping a
// provider name to its key, either as a string or as an object with
// "api_key" (the shape of fast-agent's per-provider settings):
//
//	{"openai": "sk-…", "anthropic": {"api_key": "sk-ant-…"}}
//
// Empty values count as absent. Errors name the problem and never quote the
// file's content, which holds keys. Errors: CodeInvalid.
func parseKeysFile(data []byte) (map[string]string, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return nil, errorf(CodeInvalid, "not a JSON object of provider names to keys, such as {\"openai\": \"sk-…\"}")
	}
	if dec.More() {
		return nil, errorf(CodeInvalid, "more than one JSON value; the file must hold one object")
	}
	keys := make(map[string]string, len(raw))
	for name, v := range raw {
		if !ValidProvider(name) {
			return nil, errorf(CodeInvalid, "entry "+quoteBadName(name)+" is not a provider name (letters, digits, '.', '_', '-')")
		}
		var s string
		if json.Unmarshal(v, &s) == nil {
			if s != "" {
				keys[name] = s
			}
			continue
		}
		var obj struct {
			APIKey *string `json:"api_key"`
		}
		if json.Unmarshal(v, &obj) != nil || obj.APIKey == nil {
			return nil, errorf(CodeInvalid, "entry "+quoteName(name)+" must be a string or an object with \"api_key\"")
		}
		if *obj.APIKey != "" {
			keys[name] = *obj.APIKey
		}
	}
	return keys, nil
}

// ValidProvider says whether name can be a provider (a secret's name):
// 1–128 of letters, digits, '.', '_' and '-', not starting with '.' (so it
// is one clean path segment).
func ValidProvider(name string) bool {
	if name == "" || len(name) > 128 || name[0] == '.' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// quoteName quotes a name for a message, clipped; used only for names,
// never values.
func quoteName(s string) string {
	return `"` + clip(strings.ToValidUTF8(s, "?"), 64) + `"`
}

// quoteBadName quotes the start of a name that is not valid, for an error:
// such a "name" may be a key pasted in the wrong place (a keys file's
// provider, a header's name), so no more than its first 12 bytes are shown.
func quoteBadName(s string) string {
	return `"` + clip(strings.ToValidUTF8(s, "?"), 12) + `"`
}

// EnvName is the environment variable a provider's key is read from and,
// for `latchkey exec`, written to: the name in upper case with every
// character other than a letter or digit turned into '_', then "_API_KEY"
// ("openai" → OPENAI_API_KEY, "azure-openai" → AZURE_OPENAI_API_KEY), with
// a leading '_' if the name starts with a digit ("01ai" → _01AI_API_KEY).
func EnvName(provider string) string {
	var b strings.Builder
	b.Grow(len(provider) + 9)
	if provider != "" && provider[0] >= '0' && provider[0] <= '9' {
		b.WriteByte('_') // a variable name cannot start with a digit
	}
	for _, r := range provider {
		switch {
		case r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			b.WriteRune(unicode.ToUpper(r))
		default:
			b.WriteByte('_')
		}
	}
	b.WriteString("_API_KEY")
	return b.String()
}
