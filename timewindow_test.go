package latchkey_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// utc parses an RFC 3339 instant; DST tests name instants in UTC so that
// "right before" and "right after" a change are unambiguous.
func utc(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustCompile(t testing.TB, ws ...latchkey.TimeWindow) latchkey.TimeWindows {
	t.Helper()
	c, err := latchkey.CompileTimeWindows(ws)
	if err != nil {
		t.Fatalf("CompileTimeWindows(%+v): %v", ws, err)
	}
	return c
}

func win(days, start, end, tz string) latchkey.TimeWindow {
	w := latchkey.TimeWindow{Start: start, End: end, TZ: tz}
	if days != "" {
		w.Days = strings.Split(days, ",")
	}
	return w
}

// The dates below were chosen for their weekdays and DST changes:
// Europe/Berlin moved to CEST on Sun 2025-03-30 at 01:00Z and back to CET
// on Sun 2025-10-26 at 01:00Z; America/New_York moved to EDT on Sun
// 2025-03-09 at 07:00Z and back to EST on Sun 2025-11-02 at 06:00Z.
func TestTimeWindowsDatesAreWhatTheTestsAssume(t *testing.T) {
	for _, d := range []string{"2025-03-09", "2025-03-30", "2025-10-26", "2025-11-02"} {
		if wd := utc(t, d+"T12:00:00Z").Weekday(); wd != time.Sunday {
			t.Errorf("%s is a %s", d, wd)
		}
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	ny, _ := time.LoadLocation("America/New_York")
	changes := []struct {
		loc           *time.Location
		before, after string
		offBefore     int
		offAfter      int
	}{
		{berlin, "2025-03-30T00:59:59Z", "2025-03-30T01:00:00Z", 1, 2},
		{berlin, "2025-10-26T00:59:59Z", "2025-10-26T01:00:00Z", 2, 1},
		{ny, "2025-03-09T06:59:59Z", "2025-03-09T07:00:00Z", -5, -4},
		{ny, "2025-11-02T05:59:59Z", "2025-11-02T06:00:00Z", -4, -5},
	}
	for _, c := range changes {
		_, b := utc(t, c.before).In(c.loc).Zone()
		_, a := utc(t, c.after).In(c.loc).Zone()
		if b != c.offBefore*3600 || a != c.offAfter*3600 {
			t.Errorf("%s around %s: offsets %d → %d, want %dh → %dh", c.loc, c.after, b, a, c.offBefore, c.offAfter)
		}
	}
}

func TestTimeWindowsAllows(t *testing.T) {
	officeBerlin := win("mon,tue,wed,thu,fri", "09:00", "17:00", "Europe/Berlin")
	officeNY := win("mon,tue,wed,thu,fri", "09:00", "17:00", "America/New_York")
	tests := []struct {
		name string
		ws   []latchkey.TimeWindow
		at   string
		want bool
	}{
		// Plain windows in UTC.
		{"opens at start", []latchkey.TimeWindow{win("mon", "09:00", "17:00", "")}, "2025-06-02T09:00:00Z", true},
		{"closed just before start", []latchkey.TimeWindow{win("mon", "09:00", "17:00", "")}, "2025-06-02T08:59:59Z", false},
		{"open in the last nanosecond", []latchkey.TimeWindow{win("mon", "09:00", "17:00", "")}, "2025-06-02T16:59:59.999999999Z", true},
		{"closed at end", []latchkey.TimeWindow{win("mon", "09:00", "17:00", "")}, "2025-06-02T17:00:00Z", false},
		{"closed on an unlisted day", []latchkey.TimeWindow{win("mon", "09:00", "17:00", "")}, "2025-06-03T10:00:00Z", false},
		{"no days means every day", []latchkey.TimeWindow{win("", "09:00", "10:00", "")}, "2025-06-04T09:30:00Z", true},
		{"end 24:00 includes the last minute", []latchkey.TimeWindow{win("mon", "20:00", "24:00", "")}, "2025-06-02T23:59:59Z", true},
		{"end 24:00 excludes next midnight", []latchkey.TimeWindow{win("mon", "20:00", "24:00", "")}, "2025-06-03T00:00:00Z", false},
		{"whole day opens at midnight", []latchkey.TimeWindow{win("sat", "00:00", "24:00", "")}, "2025-06-07T00:00:00Z", true},
		{"whole day ends at next midnight", []latchkey.TimeWindow{win("sat", "00:00", "24:00", "")}, "2025-06-08T00:00:00Z", false},
		{"whole day excludes the day before", []latchkey.TimeWindow{win("sat", "00:00", "24:00", "")}, "2025-06-06T23:59:59Z", false},

		// Windows past midnight belong to the day they start on.
		{"overnight closed before start", []latchkey.TimeWindow{win("fri", "22:00", "02:00", "")}, "2025-06-06T21:59:59Z", false},
		{"overnight open at start", []latchkey.TimeWindow{win("fri", "22:00", "02:00", "")}, "2025-06-06T22:00:00Z", true},
		{"overnight open after midnight", []latchkey.TimeWindow{win("fri", "22:00", "02:00", "")}, "2025-06-07T01:00:00Z", true},
		{"overnight open until end", []latchkey.TimeWindow{win("fri", "22:00", "02:00", "")}, "2025-06-07T01:59:59Z", true},
		{"overnight closed at end", []latchkey.TimeWindow{win("fri", "22:00", "02:00", "")}, "2025-06-07T02:00:00Z", false},
		{"overnight morning of the listed day is closed", []latchkey.TimeWindow{win("fri", "22:00", "02:00", "")}, "2025-06-06T01:00:00Z", false},
		{"overnight evening of the next day is closed", []latchkey.TimeWindow{win("fri", "22:00", "02:00", "")}, "2025-06-07T22:30:00Z", false},
		{"overnight from sunday wraps into monday", []latchkey.TimeWindow{win("sun", "23:00", "01:00", "")}, "2025-06-09T00:30:00Z", true},
		{"overnight from sunday not into tuesday", []latchkey.TimeWindow{win("sun", "23:00", "01:00", "")}, "2025-06-10T00:30:00Z", false},
		{"overnight every day", []latchkey.TimeWindow{win("", "22:00", "06:00", "")}, "2025-06-04T05:59:00Z", true},

		// Zones and several windows.
		{"zone shifts the window", []latchkey.TimeWindow{win("mon", "09:00", "17:00", "Asia/Tokyo")}, "2025-06-02T00:00:00Z", true},
		{"zone shifts the day", []latchkey.TimeWindow{win("tue", "00:00", "02:00", "Asia/Tokyo")}, "2025-06-02T16:30:00Z", true},
		{"any window suffices", []latchkey.TimeWindow{win("mon", "09:00", "10:00", "UTC"), win("tue", "14:00", "15:00", "Europe/Berlin")}, "2025-06-03T12:30:00Z", true},
		{"no window matches", []latchkey.TimeWindow{win("mon", "09:00", "10:00", "UTC"), win("tue", "14:00", "15:00", "Europe/Berlin")}, "2025-06-03T14:30:00Z", false},

		// Europe/Berlin: 09:00 local is 08:00Z in winter, 07:00Z in summer.
		{"berlin friday before spring change opens 09:00 CET", []latchkey.TimeWindow{officeBerlin}, "2025-03-28T08:00:00Z", true},
		{"berlin friday before spring change closed 08:59 CET", []latchkey.TimeWindow{officeBerlin}, "2025-03-28T07:59:59Z", false},
		{"berlin monday after spring change opens 09:00 CEST", []latchkey.TimeWindow{officeBerlin}, "2025-03-31T07:00:00Z", true},
		{"berlin monday after spring change closed 08:59 CEST", []latchkey.TimeWindow{officeBerlin}, "2025-03-31T06:59:59Z", false},
		{"berlin monday after spring change closes 17:00 CEST", []latchkey.TimeWindow{officeBerlin}, "2025-03-31T15:00:00Z", false},
		{"berlin friday before autumn change opens 09:00 CEST", []latchkey.TimeWindow{officeBerlin}, "2025-10-24T07:00:00Z", true},
		{"berlin monday after autumn change opens 09:00 CET", []latchkey.TimeWindow{officeBerlin}, "2025-10-27T08:00:00Z", true},
		{"berlin monday after autumn change closed 08:59 CET", []latchkey.TimeWindow{officeBerlin}, "2025-10-27T07:59:59Z", false},
		{"berlin monday after autumn change open 16:59 CET", []latchkey.TimeWindow{officeBerlin}, "2025-10-27T15:59:59Z", true},
		{"berlin monday after autumn change closes 17:00 CET", []latchkey.TimeWindow{officeBerlin}, "2025-10-27T16:00:00Z", false},
		{"berlin spring night open at 01:59 CET", []latchkey.TimeWindow{win("sun", "01:00", "03:00", "Europe/Berlin")}, "2025-03-30T00:59:59Z", true},
		{"berlin spring night jumps to 03:00 CEST and closes", []latchkey.TimeWindow{win("sun", "01:00", "03:00", "Europe/Berlin")}, "2025-03-30T01:00:00Z", false},
		{"berlin autumn first 02:00 CEST", []latchkey.TimeWindow{win("sun", "02:00", "03:00", "Europe/Berlin")}, "2025-10-26T00:00:00Z", true},
		{"berlin autumn first 02:59 CEST", []latchkey.TimeWindow{win("sun", "02:00", "03:00", "Europe/Berlin")}, "2025-10-26T00:59:59Z", true},
		{"berlin autumn second 02:00 CET", []latchkey.TimeWindow{win("sun", "02:00", "03:00", "Europe/Berlin")}, "2025-10-26T01:00:00Z", true},
		{"berlin autumn second 02:59 CET", []latchkey.TimeWindow{win("sun", "02:00", "03:00", "Europe/Berlin")}, "2025-10-26T01:59:59Z", true},
		{"berlin autumn 03:00 CET closes", []latchkey.TimeWindow{win("sun", "02:00", "03:00", "Europe/Berlin")}, "2025-10-26T02:00:00Z", false},
		{"berlin autumn 01:59 CEST before the window", []latchkey.TimeWindow{win("sun", "02:00", "03:00", "Europe/Berlin")}, "2025-10-25T23:59:59Z", false},

		// America/New_York: 09:00 local is 14:00Z in winter, 13:00Z in summer.
		{"new york friday before spring change opens 09:00 EST", []latchkey.TimeWindow{officeNY}, "2025-03-07T14:00:00Z", true},
		{"new york friday before spring change closed 08:59 EST", []latchkey.TimeWindow{officeNY}, "2025-03-07T13:59:59Z", false},
		{"new york monday after spring change opens 09:00 EDT", []latchkey.TimeWindow{officeNY}, "2025-03-10T13:00:00Z", true},
		{"new york monday after spring change closed 08:59 EDT", []latchkey.TimeWindow{officeNY}, "2025-03-10T12:59:59Z", false},
		{"new york monday after autumn change opens 09:00 EST", []latchkey.TimeWindow{officeNY}, "2025-11-03T14:00:00Z", true},
		{"new york monday after autumn change closed 08:59 EST", []latchkey.TimeWindow{officeNY}, "2025-11-03T13:59:59Z", false},
		{"new york spring night 01:59 EST before the window", []latchkey.TimeWindow{win("sun", "02:00", "03:00", "America/New_York")}, "2025-03-09T06:59:59Z", false},
		{"new york spring night 03:00 EDT after the window", []latchkey.TimeWindow{win("sun", "02:00", "03:00", "America/New_York")}, "2025-03-09T07:00:00Z", false},
		{"new york autumn first 01:00 EDT", []latchkey.TimeWindow{win("sun", "01:00", "02:00", "America/New_York")}, "2025-11-02T05:00:00Z", true},
		{"new york autumn first 01:59 EDT", []latchkey.TimeWindow{win("sun", "01:00", "02:00", "America/New_York")}, "2025-11-02T05:59:59Z", true},
		{"new york autumn second 01:00 EST", []latchkey.TimeWindow{win("sun", "01:00", "02:00", "America/New_York")}, "2025-11-02T06:00:00Z", true},
		{"new york autumn second 01:59 EST", []latchkey.TimeWindow{win("sun", "01:00", "02:00", "America/New_York")}, "2025-11-02T06:59:59Z", true},
		{"new york autumn 02:00 EST closes", []latchkey.TimeWindow{win("sun", "01:00", "02:00", "America/New_York")}, "2025-11-02T07:00:00Z", false},
		{"new york autumn 00:59 EDT before the window", []latchkey.TimeWindow{win("sun", "01:00", "02:00", "America/New_York")}, "2025-11-02T04:59:59Z", false},
		{"new york overnight across spring change open 05:59 EDT", []latchkey.TimeWindow{win("sat", "22:00", "06:00", "America/New_York")}, "2025-03-09T09:59:59Z", true},
		{"new york overnight across spring change closes 06:00 EDT", []latchkey.TimeWindow{win("sat", "22:00", "06:00", "America/New_York")}, "2025-03-09T10:00:00Z", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tw := mustCompile(t, tt.ws...)
			if got := tw.Allows(utc(t, tt.at)); got != tt.want {
				t.Errorf("Allows(%s) = %v, want %v (windows %+v)", tt.at, got, tt.want, tt.ws)
			}
		})
	}
}

func TestTimeWindowsEmptyAllowsEverything(t *testing.T) {
	compiled := mustCompile(t)
	for _, tw := range []latchkey.TimeWindows{{}, compiled} {
		if tw.Len() != 0 {
			t.Errorf("Len = %d, want 0", tw.Len())
		}
		for _, at := range []time.Time{{}, utc(t, "2025-03-30T01:30:00Z"), time.Unix(1<<40, 0)} {
			if !tw.Allows(at) {
				t.Errorf("empty windows refuse %s", at)
			}
		}
	}
}

// A window inside the hour that is skipped in spring never opens that
// night; sweep the night minute by minute to be sure.
func TestTimeWindowsSkippedHourNeverOpens(t *testing.T) {
	for _, c := range []struct{ tz, day, from string }{
		{"Europe/Berlin", "sun", "2025-03-29T20:00:00Z"},
		{"America/New_York", "sun", "2025-03-09T00:00:00Z"},
	} {
		tw := mustCompile(t, win(c.day, "02:00", "03:00", c.tz))
		from := utc(t, c.from)
		for at := from; at.Before(from.Add(12 * time.Hour)); at = at.Add(time.Minute) {
			if tw.Allows(at) {
				t.Errorf("%s: 02:00–03:00 open at %s (%s local)", c.tz, at.UTC(), at.In(mustLoc(t, c.tz)))
			}
		}
	}
}

// The repeated autumn hour counts twice: the window stays open for two
// real hours.
func TestTimeWindowsRepeatedHourCountsTwice(t *testing.T) {
	for _, c := range []struct{ tz, start, end, from string }{
		{"Europe/Berlin", "02:00", "03:00", "2025-10-25T20:00:00Z"},
		{"America/New_York", "01:00", "02:00", "2025-11-02T00:00:00Z"},
	} {
		tw := mustCompile(t, win("sun", c.start, c.end, c.tz))
		from := utc(t, c.from)
		open := 0
		for at := from; at.Before(from.Add(12 * time.Hour)); at = at.Add(time.Minute) {
			if tw.Allows(at) {
				open++
			}
		}
		if open != 120 {
			t.Errorf("%s: %s–%s open %d minutes on the autumn night, want 120", c.tz, c.start, c.end, open)
		}
	}
}

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestCompileTimeWindowsNormalisesInPlace(t *testing.T) {
	ws := []latchkey.TimeWindow{
		{Days: []string{"sun", "fri", "mon"}, Start: "09:00", End: "17:00"},
		{Start: "00:00", End: "24:00", TZ: "Europe/Berlin"},
	}
	if _, err := latchkey.CompileTimeWindows(ws); err != nil {
		t.Fatal(err)
	}
	if want := []string{"mon", "fri", "sun"}; !slices.Equal(ws[0].Days, want) {
		t.Errorf("days = %q, want %q", ws[0].Days, want)
	}
	if ws[0].TZ != "UTC" {
		t.Errorf("empty tz became %q, want UTC", ws[0].TZ)
	}
	if ws[1].TZ != "Europe/Berlin" || ws[1].Days != nil {
		t.Errorf("second window changed: %+v", ws[1])
	}
}

func TestCompileTimeWindowsRefuses(t *testing.T) {
	tooMany := make([]latchkey.TimeWindow, latchkey.MaxTimeWindows+1)
	for i := range tooMany {
		tooMany[i] = win("mon", "09:00", "10:00", "")
	}
	tests := []struct {
		name string
		ws   []latchkey.TimeWindow
	}{
		{"too many windows", tooMany},
		{"unknown day", []latchkey.TimeWindow{win("funday", "09:00", "17:00", "")}},
		{"full day name", []latchkey.TimeWindow{win("monday", "09:00", "17:00", "")}},
		{"upper-case day", []latchkey.TimeWindow{win("Mon", "09:00", "17:00", "")}},
		{"empty day", []latchkey.TimeWindow{{Days: []string{""}, Start: "09:00", End: "17:00"}}},
		{"duplicate day", []latchkey.TimeWindow{win("mon,tue,mon", "09:00", "17:00", "")}},
		{"start without leading zero", []latchkey.TimeWindow{win("mon", "9:00", "17:00", "")}},
		{"start missing", []latchkey.TimeWindow{win("mon", "", "17:00", "")}},
		{"start 24:00", []latchkey.TimeWindow{win("mon", "24:00", "02:00", "")}},
		{"start hour 25", []latchkey.TimeWindow{win("mon", "25:00", "02:00", "")}},
		{"start minute 60", []latchkey.TimeWindow{win("mon", "09:60", "17:00", "")}},
		{"start with seconds", []latchkey.TimeWindow{win("mon", "09:00:00", "17:00", "")}},
		{"start with sign", []latchkey.TimeWindow{win("mon", "+9:00", "17:00", "")}},
		{"end missing", []latchkey.TimeWindow{win("mon", "09:00", "", "")}},
		{"end 24:01", []latchkey.TimeWindow{win("mon", "09:00", "24:01", "")}},
		{"end with dot", []latchkey.TimeWindow{win("mon", "09:00", "17.00", "")}},
		{"start equals end", []latchkey.TimeWindow{win("mon", "09:00", "09:00", "")}},
		{"unknown zone", []latchkey.TimeWindow{win("mon", "09:00", "17:00", "Mars/Olympus_Mons")}},
		{"server-local zone", []latchkey.TimeWindow{win("mon", "09:00", "17:00", "Local")}},
		{"zone as a path", []latchkey.TimeWindow{win("mon", "09:00", "17:00", "../../etc/passwd")}},
		{"zone as an absolute path", []latchkey.TimeWindow{win("mon", "09:00", "17:00", "/etc/localtime")}},
		{"zone directory", []latchkey.TimeWindow{win("mon", "09:00", "17:00", "Europe")}},
		{"zone too long", []latchkey.TimeWindow{win("mon", "09:00", "17:00", strings.Repeat("A", 100))}},
		{"one bad window among good ones", []latchkey.TimeWindow{win("mon", "09:00", "17:00", ""), win("tue", "09:00", "9", "")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := latchkey.CompileTimeWindows(tt.ws)
			if code := latchkey.ErrorCode(err); code != latchkey.EInvalid {
				t.Errorf("CompileTimeWindows(%+v) = %v, want code %s", tt.ws, err, latchkey.EInvalid)
			}
		})
	}
}

func TestCompileTimeWindowsAcceptsLimits(t *testing.T) {
	max := make([]latchkey.TimeWindow, latchkey.MaxTimeWindows)
	for i := range max {
		max[i] = win("mon", "09:00", "10:00", "")
	}
	for _, ws := range [][]latchkey.TimeWindow{
		max,
		{win("mon,tue,wed,thu,fri,sat,sun", "00:00", "24:00", "")},
		{win("mon", "23:59", "00:00", "")},
		{win("mon", "00:00", "00:01", "Etc/GMT+5")},
		{win("mon", "00:00", "00:01", "America/Argentina/Buenos_Aires")},
		{win("mon", "00:00", "00:01", "America/Port-au-Prince")},
	} {
		if _, err := latchkey.CompileTimeWindows(ws); err != nil {
			t.Errorf("CompileTimeWindows(%+v): %v", ws, err)
		}
	}
}

func TestParseTimeWindowFlag(t *testing.T) {
	weekdays := []string{"mon", "tue", "wed", "thu", "fri"}
	tests := []struct {
		in   string
		want latchkey.TimeWindow
	}{
		{"mon-fri@09:00-17:00@Europe/Berlin", latchkey.TimeWindow{Days: weekdays, Start: "09:00", End: "17:00", TZ: "Europe/Berlin"}},
		{"sat,sun@10:00-14:00", latchkey.TimeWindow{Days: []string{"sat", "sun"}, Start: "10:00", End: "14:00", TZ: "UTC"}},
		{"daily@22:00-06:00@UTC", latchkey.TimeWindow{Start: "22:00", End: "06:00", TZ: "UTC"}},
		{"*@00:00-24:00", latchkey.TimeWindow{Start: "00:00", End: "24:00", TZ: "UTC"}},
		{"fri-mon@18:00-08:00", latchkey.TimeWindow{Days: []string{"mon", "fri", "sat", "sun"}, Start: "18:00", End: "08:00", TZ: "UTC"}},
		{"sun-sat@09:00-10:00", latchkey.TimeWindow{Days: []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}, Start: "09:00", End: "10:00", TZ: "UTC"}},
		{"wed-wed@09:00-10:00", latchkey.TimeWindow{Days: []string{"wed"}, Start: "09:00", End: "10:00", TZ: "UTC"}},
		{"mon-fri,wed@09:00-17:00", latchkey.TimeWindow{Days: weekdays, Start: "09:00", End: "17:00", TZ: "UTC"}},
		{"sun,mon@09:00-17:00", latchkey.TimeWindow{Days: []string{"mon", "sun"}, Start: "09:00", End: "17:00", TZ: "UTC"}},
		{" Mon-Fri@09:00-17:00@America/New_York ", latchkey.TimeWindow{Days: weekdays, Start: "09:00", End: "17:00", TZ: "America/New_York"}},
		{"DAILY@09:00-17:00", latchkey.TimeWindow{Start: "09:00", End: "17:00", TZ: "UTC"}},
		{"mon - wed, fri@09:00-17:00", latchkey.TimeWindow{Days: []string{"mon", "tue", "wed", "fri"}, Start: "09:00", End: "17:00", TZ: "UTC"}},
	}
	for _, tt := range tests {
		got, err := latchkey.ParseTimeWindowFlag(tt.in)
		if err != nil {
			t.Errorf("ParseTimeWindowFlag(%q): %v", tt.in, err)
			continue
		}
		if !slices.Equal(got.Days, tt.want.Days) || got.Start != tt.want.Start || got.End != tt.want.End || got.TZ != tt.want.TZ {
			t.Errorf("ParseTimeWindowFlag(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseTimeWindowFlagRefuses(t *testing.T) {
	for _, in := range []string{
		"",
		"mon",
		"mon@",
		"mon@09:00",
		"mon@0900-1700",
		"mon@09:00-17:00@",
		"mon@09:00-17:00@Europe/Berlin@x",
		"@09:00-17:00",
		"funday@09:00-17:00",
		"mon-@09:00-17:00",
		"-fri@09:00-17:00",
		"mon-fri-sat@09:00-17:00",
		"mon,,fri@09:00-17:00",
		"mon@09:00-09:00",
		"mon@24:00-09:00",
		"mon@09:00-17:00@Nowhere/Zone",
		"mon@09:00-17:00@Local",
		"mon@9:00-17:00",
	} {
		_, err := latchkey.ParseTimeWindowFlag(in)
		if code := latchkey.ErrorCode(err); code != latchkey.EInvalid {
			t.Errorf("ParseTimeWindowFlag(%q) = %v, want code %s", in, err, latchkey.EInvalid)
		}
	}
}

func FuzzParseTimeWindowFlag(f *testing.F) {
	for _, s := range []string{
		"mon-fri@09:00-17:00@Europe/Berlin", "sat,sun@10:00-14:00", "daily@22:00-06:00@UTC",
		"*@00:00-24:00", "fri-mon@18:00-08:00", "mon@09:00-09:00", "mon@09:00-17:00@Local",
		"mon@09:00-17:00@../../etc/passwd", "tue@23:59-00:00@Etc/GMT+5", "@@@", "mon-@-",
	} {
		f.Add(s)
	}
	probe := time.Date(2025, 3, 30, 1, 30, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		w, err := latchkey.ParseTimeWindowFlag(s)
		if err != nil {
			if code := latchkey.ErrorCode(err); code != latchkey.EInvalid {
				t.Fatalf("ParseTimeWindowFlag(%q) error %v has code %s, want %s", s, err, code, latchkey.EInvalid)
			}
			return
		}
		if w.TZ == "" {
			t.Fatalf("ParseTimeWindowFlag(%q) left the zone empty", s)
		}
		days := slices.Clone(w.Days)
		tw, err := latchkey.CompileTimeWindows([]latchkey.TimeWindow{w})
		if err != nil {
			t.Fatalf("ParseTimeWindowFlag(%q) = %+v, which does not compile: %v", s, w, err)
		}
		if !slices.Equal(days, w.Days) {
			t.Fatalf("ParseTimeWindowFlag(%q) days %q are not normalised (compiled as %q)", s, days, w.Days)
		}
		tw.Allows(probe)
	})
}
