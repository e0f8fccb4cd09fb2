package latchkey_test

import (
	"slices"
	"testing"

	"github.com/latchkeyhq/latchkey"
)

func TestNormalizeCountries(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{nil, []string{}},
		{[]string{"DE"}, []string{"DE"}},
		{[]string{"de", " Us ", "DE", "fr", "us"}, []string{"DE", "US", "FR"}},
		{slices.Repeat([]string{"DE"}, latchkey.MaxCountries+10), []string{"DE"}},
	}
	for _, tt := range tests {
		got, err := latchkey.NormalizeCountries(tt.in)
		if err != nil || !slices.Equal(got, tt.want) || got == nil {
			t.Errorf("NormalizeCountries(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if got, err := latchkey.NormalizeCountries(distinctCodes(latchkey.MaxCountries)); err != nil || len(got) != latchkey.MaxCountries {
		t.Errorf("NormalizeCountries(%d codes) = %d codes, %v", latchkey.MaxCountries, len(got), err)
	}
}

func TestNormalizeCountriesRefuses(t *testing.T) {
	for name, in := range map[string][]string{
		"empty code":         {""},
		"one letter":         {"D"},
		"three letters":      {"DEU"},
		"a digit":            {"D1"},
		"a non-ASCII letter": {"ÄB"},
		"a name":             {"Germany"},
		"bad after good":     {"DE", "F"},
		"too many":           distinctCodes(latchkey.MaxCountries + 1),
	} {
		_, err := latchkey.NormalizeCountries(in)
		if code := latchkey.ErrorCode(err); code != latchkey.EInvalid {
			t.Errorf("%s: NormalizeCountries = %v, want code %s", name, err, latchkey.EInvalid)
		}
	}
}

// distinctCodes returns n different well-formed codes: AA, AB, ….
func distinctCodes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = string([]byte{'A' + byte(i/26), 'A' + byte(i%26)})
	}
	return out
}
