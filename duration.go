package latchkey

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration that reads and writes the day- and
// year-suffixed forms of the API ("90s", "15m", "6h", "30d", "2w", "1y",
// "1d12h"). A day is 24 hours and a year 365 days.
type Duration time.Duration

// MaxDuration bounds every duration the API accepts (100 years).
const MaxDuration = 100 * 365 * 24 * time.Hour

var durationUnits = map[string]time.Duration{
	"ns": time.Nanosecond, "us": time.Microsecond, "µs": time.Microsecond,
	"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour,
	"d": 24 * time.Hour, "w": 7 * 24 * time.Hour, "y": 365 * 24 * time.Hour,
}

// ParseDuration parses a non-negative duration such as "30d" or "1h30m".
// Errors are EInvalid.
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	bad := func(why string) (time.Duration, error) {
		return 0, Errorf(EInvalid, "duration %q: %s (use forms like 90s, 15m, 6h, 30d, 1y)", clip(orig, 40), why)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return bad("empty")
	}
	if s == "0" {
		return 0, nil
	}
	var total float64
	for s != "" {
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		if i == 0 {
			return bad("expected a number")
		}
		num, err := strconv.ParseFloat(s[:i], 64)
		if err != nil {
			return bad("bad number")
		}
		s = s[i:]
		j := 0
		for j < len(s) && !(s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
			j++
		}
		unit, ok := durationUnits[s[:j]]
		if !ok {
			if j == 0 {
				return bad("missing unit")
			}
			return bad("unknown unit " + strconv.Quote(clip(s[:j], 8)))
		}
		s = s[j:]
		total += num * float64(unit)
		if total > float64(MaxDuration) {
			return bad("longer than 100 years")
		}
	}
	return time.Duration(math.Round(total)), nil
}

// FormatDuration writes d in the shortest of the API's forms ("30d", "1h").
func FormatDuration(d time.Duration) string {
	day := 24 * time.Hour
	switch {
	case d == 0:
		return "0s"
	case d%(365*day) == 0:
		return strconv.FormatInt(int64(d/(365*day)), 10) + "y"
	case d%day == 0:
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// String writes the duration in the API's form.
func (d Duration) String() string { return FormatDuration(time.Duration(d)) }

// MarshalText writes the duration as a string such as "30d".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads any form ParseDuration accepts.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
