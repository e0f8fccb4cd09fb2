package latchkey

import "testing"

func TestValidateSecretName(t *testing.T) {
	for _, ok := range []string{"openai", "anthropic", "my-service", "azure_openai", "a", "x1", "gpt-4o"} {
		if err := ValidateSecretName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
		if err := ValidateResource(SecretResource(ok)); err != nil {
			t.Errorf("resource of %q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "OpenAI", "1password", "-x", "x-", "my service", "a/b", "a:b", "é", "a\x00",
		"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl"} {
		if err := ValidateSecretName(bad); ErrorCode(err) != EInvalid {
			t.Errorf("%q: %v, want invalid", bad, err)
		}
	}
}

func FuzzValidateSecretName(f *testing.F) {
	for _, s := range []string{"openai", "my-service", "", "A", "a:b", "x_"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateSecretName(s) != nil {
			return
		}
		// Every valid name is a valid, literal resource and a safe path
		// segment.
		if err := ValidateResource(SecretResource(s)); err != nil {
			t.Fatalf("%q is valid but its resource is not: %v", s, err)
		}
		if !ResourceCovers("secret:*", SecretResource(s)) || ResourceCovers(SecretResource(s), "secret:"+s+"x") {
			t.Fatalf("%q: resource matching is off", s)
		}
	})
}
