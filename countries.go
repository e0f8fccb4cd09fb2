package latchkey

import "strings"

// NormalizeCountries validates a key's country list: ISO 3166-1 alpha-2
// codes ("DE", "us"; surrounding spaces are ignored), at most
// MaxCountries of them after duplicates are dropped. It returns
// the codes upper-cased, without duplicates, in the order first given.
// Only the form is checked, not whether ISO has assigned the code: a code
// no database uses simply never matches. Errors are EInvalid.
func NormalizeCountries(codes []string) ([]string, error) {
	out := make([]string, 0, min(len(codes), MaxCountries))
	var seen [26 * 26]bool
	for _, c := range codes {
		c = strings.TrimSpace(c)
		n, ok := CountryCode(c)
		if !ok {
			if len(c) > 20 {
				c = c[:20] + "…"
			}
			return nil, Errorf(EInvalid, "countries: %q is not an ISO 3166-1 alpha-2 code such as DE or US", c)
		}
		i := int(n[0]-'A')*26 + int(n[1]-'A')
		if seen[i] {
			continue
		}
		seen[i] = true
		if len(out) == MaxCountries {
			return nil, Errorf(EInvalid, "countries: at most %d codes", MaxCountries)
		}
		out = append(out, n)
	}
	return out, nil
}

// CountryCode upper-cases a two-letter country code; anything else is not
// one.
func CountryCode(c string) (string, bool) {
	if len(c) != 2 || !isASCIILetter(c[0]) || !isASCIILetter(c[1]) {
		return "", false
	}
	if c[0] >= 'a' || c[1] >= 'a' {
		c = strings.ToUpper(c)
	}
	return c, true
}

func isASCIILetter(c byte) bool { return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' }
