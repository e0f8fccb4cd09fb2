package httpapi

import (
	"net/url"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

func TestReportQuery(t *testing.T) {
	for _, c := range []struct {
		query    string
		from, to time.Time
		format   string
		code     string
	}{
		{"", time.Time{}, time.Time{}, "json", ""},
		{"format=csv", time.Time{}, time.Time{}, "csv", ""},
		{"format=json&from=2026-05-01&to=2026-06-01T12:00:00%2B02:00", time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC), "json", ""},
		{"format=xml", time.Time{}, time.Time{}, "", latchkey.EInvalid},
		{"format=CSV", time.Time{}, time.Time{}, "", latchkey.EInvalid},
		{"from=yesterday", time.Time{}, time.Time{}, "", latchkey.EInvalid},
		{"to=2026-02-30", time.Time{}, time.Time{}, "", latchkey.EInvalid},
	} {
		q, err := url.ParseQuery(c.query)
		if err != nil {
			t.Fatal(err)
		}
		w, format, err := reportQuery(q)
		if latchkey.ErrorCode(err) != c.code && !(c.code == "" && err == nil) {
			t.Errorf("%q: error %v, want code %q", c.query, err, c.code)
			continue
		}
		if c.code == "" && (format != c.format || !w.From.Equal(c.from) || !w.To.Equal(c.to)) {
			t.Errorf("%q = %v – %v %q, want %v – %v %q", c.query, w.From, w.To, format, c.from, c.to, c.format)
		}
	}
}

// FuzzReportQuery: any query either reads or fails as invalid, and what
// it reads is a format the handler serves.
func FuzzReportQuery(f *testing.F) {
	for _, s := range []string{"", "format=csv", "from=2026-05-01&to=2026-06-01", "from=2026-05-01T00:00:00Z&format=json", "to=%zz", "format=xml&from=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		_, format, err := reportQuery(q)
		if err != nil {
			checkDecode(t, err)
			return
		}
		if format != "json" && format != "csv" {
			t.Fatalf("reportQuery(%q) format %q", raw, format)
		}
	})
}
