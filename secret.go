package latchkey

import "strconv"

import "time"

// Secret is a brokered secret as the API shows it. Value is set only when
// a secret is read, never in lists, versions or write answers.
type Secret struct {
	Name      string            `json:"name"`
	Value     string            `json:"value,omitempty"`
	Version   int64             `json:"version"`
	ExpiresIn int64             `json:"expires_in"`
	Meta      map[string]string `json:"meta"`
	CreatedAt time.Time         `json:"created_at"`
	CreatedBy string            `json:"created_by,omitempty"`
}

// MaxSecretName is the longest secret name.
const MaxSecretName = 63

// ValidateSecretName reports whether name is a secret name: lower-case and
// provider-like ("openai", "anthropic", "my-service", "azure_openai"), 1 to
// 63 characters of [a-z0-9_-], starting with a letter and ending with a
// letter or digit. A secret is read as the resource "secret:<name>", and
// clients map names to environment variables (OPENAI_API_KEY), so nothing
// else is allowed. Errors are EInvalid and quote at most 70 bytes.
func ValidateSecretName(name string) error {
	if name == "" {
		return Errorf(EInvalid, "secret name is empty")
	}
	if len(name) > MaxSecretName {
		return Errorf(EInvalid, "secret name %.70q is longer than %d characters", name, MaxSecretName)
	}
	if c := name[0]; c < 'a' || c > 'z' {
		return Errorf(EInvalid, "secret name %.70q must start with a lower-case letter", name)
	}
	if c := name[len(name)-1]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
		return Errorf(EInvalid, "secret name %.70q must end with a lower-case letter or digit", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return Errorf(EInvalid, "secret name %.70q: %s is not allowed; use a-z, 0-9, '-' and '_'", name, quoteByte(c))
		}
	}
	return nil
}

// SecretResource is the resource a key must be allowed to read a secret.
func SecretResource(name string) string { return "secret:" + name }

// SecretAAD binds a sealed secret value to its row: a value moved to
// another tenant, name or version does not open. The secret service and
// the key rotations that seal successors as secrets use it alike.
func SecretAAD(tenant, name string, version int64) []byte {
	b := make([]byte, 0, 16+len(tenant)+len(name)+20)
	b = append(b, "latchkey secret\x00"...)
	b = append(b, tenant...)
	b = append(b, 0)
	b = append(b, name...)
	b = append(b, 0)
	return strconv.AppendInt(b, version, 10)
}
