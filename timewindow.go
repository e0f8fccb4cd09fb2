package latchkey

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	// The IANA zone database is embedded (about 450 KB) so that a key's
	// time windows load on every server, including minimal containers
	// without /usr/share/zoneinfo, where time.LoadLocation would otherwise
	// fail for every zone but UTC and keys with windows could not be
	// verified at all. LoadLocation still prefers the system copy when
	// there is one, so a server keeps the rules its operating system has.
	_ "time/tzdata"
)

// weekdayNames lists the day names a TimeWindow accepts, in the order
// normalised windows list them (ISO order, Monday first).
var weekdayNames = [7]string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

// isoWeekday maps an index of weekdayNames to its time.Weekday.
func isoWeekday(i int) time.Weekday { return time.Weekday((i + 1) % 7) }

// dayIndex returns the index of name in weekdayNames, or -1.
func dayIndex(name string) int {
	for i, n := range weekdayNames {
		if n == name {
			return i
		}
	}
	return -1
}

const (
	endOfDay     = 24 * 60  // "24:00" in minutes after midnight
	everyWeekday = 1<<7 - 1 // compiledWindow.days for a window without days
	maxTZLen     = 64       // longer than any IANA zone name
)

// TimeWindows is the compiled form of a key's time windows, built once per
// loaded key by CompileTimeWindows so that the verify path only compares
// integers. It is immutable and safe for concurrent use; the zero value
// allows every instant.
type TimeWindows struct {
	ws []compiledWindow
}

// compiledWindow is one compiled TimeWindow.
type compiledWindow struct {
	loc *time.Location
	// days has bit d set when the window opens on time.Weekday(d).
	days uint8
	// start and end are minutes after local midnight; end may be 1440
	// (24:00). end < start means the window runs past midnight into the
	// next day; end == start is refused at compile time.
	start, end int16
}

// Len returns the number of windows; 0 means the key is not restricted.
func (w TimeWindows) Len() int { return len(w.ws) }

// Allows reports whether t falls in at least one window; an empty
// TimeWindows allows every instant.
//
// Each window is evaluated on the wall clock of its own zone: t is
// converted to the zone, and the window is open on each listed day from
// Start (inclusive) to End (exclusive) in local time, continuing into the
// next day when End is before Start. Because only the local day and time
// of day are compared, daylight-saving changes need no special case: a
// 09:00 start is 09:00 local on either side of a change, a window inside
// the hour skipped in spring never opens that night, and both passes
// through the hour repeated in autumn count.
//
// Allows does not allocate.
func (w TimeWindows) Allows(t time.Time) bool {
	if len(w.ws) == 0 {
		return true
	}
	// Windows are sorted by zone at compile time, so the conversion is done
	// once per zone rather than once per window.
	var (
		loc    *time.Location
		day    time.Weekday
		minute int
	)
	for i := range w.ws {
		c := &w.ws[i]
		if c.loc != loc {
			loc = c.loc
			lt := t.In(loc)
			h, m, _ := lt.Clock()
			day, minute = lt.Weekday(), h*60+m
		}
		if c.contains(day, minute) {
			return true
		}
	}
	return false
}

// contains reports whether the local weekday day at minute (minutes after
// midnight) is inside c.
func (c *compiledWindow) contains(day time.Weekday, minute int) bool {
	start, end := int(c.start), int(c.end)
	if start < end {
		return c.days&(1<<day) != 0 && start <= minute && minute < end
	}
	// Past midnight: the evening part belongs to a listed day, the early
	// morning part to the day after a listed day.
	prev := (day + 6) % 7
	return c.days&(1<<day) != 0 && minute >= start ||
		c.days&(1<<prev) != 0 && minute < end
}

// CompileTimeWindows validates a key's time windows and compiles them for
// TimeWindows.Allows. It normalises ws in place, so that what is stored is
// canonical: an empty TZ becomes "UTC" and Days are sorted Monday first.
//
// Rules: at most MaxTimeWindows windows; Days among "mon" … "sun", lower
// case, each at most once (none means every day); Start and End as "HH:MM"
// from 00:00 to 23:59, End also "24:00"; Start and End not equal (a whole
// day is 00:00–24:00); TZ an IANA zone name such as "Europe/Berlin" (not
// "Local", which would depend on the server). Errors are EInvalid and name
// the window.
func CompileTimeWindows(ws []TimeWindow) (TimeWindows, error) {
	if len(ws) == 0 {
		return TimeWindows{}, nil
	}
	if len(ws) > MaxTimeWindows {
		return TimeWindows{}, Errorf(EInvalid, "time_windows: at most %d windows", MaxTimeWindows)
	}
	type named struct {
		tz string
		c  compiledWindow
	}
	out := make([]named, len(ws))
	for i := range ws {
		c, err := compileWindow("time_windows["+strconv.Itoa(i)+"]", &ws[i])
		if err != nil {
			return TimeWindows{}, err
		}
		out[i] = named{ws[i].TZ, c}
	}
	// Group windows of one zone so that Allows converts the time once per
	// zone. The order of windows does not change what they allow.
	slices.SortStableFunc(out, func(a, b named) int { return strings.Compare(a.tz, b.tz) })
	tw := TimeWindows{ws: make([]compiledWindow, len(out))}
	for i := range out {
		tw.ws[i] = out[i].c
	}
	return tw, nil
}

// compileWindow validates and normalises one window; field names it in
// error messages.
func compileWindow(field string, w *TimeWindow) (compiledWindow, error) {
	var c compiledWindow
	var seen uint8
	for _, d := range w.Days {
		i := dayIndex(d)
		if i < 0 {
			return c, Errorf(EInvalid, "%s: day %q: use mon, tue, wed, thu, fri, sat or sun", field, clip(d, 20))
		}
		if seen&(1<<i) != 0 {
			return c, Errorf(EInvalid, "%s: day %q is listed twice", field, d)
		}
		seen |= 1 << i
		c.days |= 1 << isoWeekday(i)
	}
	if len(w.Days) == 0 {
		c.days = everyWeekday
	} else {
		slices.SortFunc(w.Days, func(a, b string) int { return dayIndex(a) - dayIndex(b) })
	}
	start, ok := parseClock(w.Start, false)
	if !ok {
		return c, Errorf(EInvalid, "%s: start %q: use HH:MM from 00:00 to 23:59", field, clip(w.Start, 20))
	}
	end, ok := parseClock(w.End, true)
	if !ok {
		return c, Errorf(EInvalid, "%s: end %q: use HH:MM from 00:00 to 24:00", field, clip(w.End, 20))
	}
	if start == end {
		return c, Errorf(EInvalid, "%s: start and end are both %s; for a whole day use 00:00 to 24:00", field, w.Start)
	}
	c.start, c.end = int16(start), int16(end)
	if w.TZ == "" {
		w.TZ = "UTC"
	}
	loc, err := loadZone(w.TZ)
	if err != nil {
		return c, Errorf(EInvalid, "%s: tz %q: not an IANA time zone such as Europe/Berlin or UTC", field, clip(w.TZ, 40))
	}
	c.loc = loc
	return c, nil
}

// parseClock reads "HH:MM" as minutes after midnight; allow24 admits
// "24:00" (an end at midnight).
func parseClock(s string, allow24 bool) (int, bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, false
	}
	for _, i := range [4]int{0, 1, 3, 4} {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	switch {
	case h < 24 && m < 60:
		return h*60 + m, true
	case allow24 && h == 24 && m == 0:
		return endOfDay, true
	}
	return 0, false
}

// zoneCache caches loaded locations: every cache miss on the verify path
// compiles the key's windows, and time.LoadLocation reads and parses a
// file each time. Only successful loads are kept, so the map is bounded by
// the zone database; maxCachedZones guards against file systems that
// would accept the same zone under many spellings.
var zoneCache struct {
	sync.RWMutex
	m map[string]*time.Location
}

const maxCachedZones = 1024

func loadZone(name string) (*time.Location, error) {
	if !validZoneName(name) {
		return nil, Errorf(EInvalid, "bad zone name")
	}
	zoneCache.RLock()
	loc := zoneCache.m[name]
	zoneCache.RUnlock()
	if loc != nil {
		return loc, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	zoneCache.Lock()
	if zoneCache.m == nil {
		zoneCache.m = map[string]*time.Location{}
	}
	if len(zoneCache.m) < maxCachedZones {
		zoneCache.m[name] = loc
	}
	zoneCache.Unlock()
	return loc, nil
}

// validZoneName admits the characters of IANA zone names
// ("America/Argentina/Buenos_Aires", "Etc/GMT+5", "America/Port-au-Prince")
// and refuses "Local", whose meaning depends on the server. Restricting
// the name before it reaches time.LoadLocation keeps odd input away from
// the file system.
func validZoneName(name string) bool {
	if name == "" || len(name) > maxTZLen || name == "Local" || name[0] == '/' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '/' || c == '_' || c == '-' || c == '+') {
			return false
		}
	}
	return !strings.Contains(name, "..")
}

// ParseTimeWindowFlag reads the CLI's time window, DAYS@START-END[@ZONE]:
//
//	mon-fri@09:00-17:00@Europe/Berlin
//	sat,sun@10:00-14:00
//	daily@22:00-06:00@UTC
//
// DAYS is "daily" or "*" (every day), or a comma-separated list of days and
// ranges; a range may wrap around the week ("fri-mon" is Friday to Monday)
// and day names may be in any case. The zone defaults to UTC. The window
// returned is normalised as CompileTimeWindows leaves it.
func ParseTimeWindowFlag(s string) (TimeWindow, error) {
	field := fmt.Sprintf("time window %q", clip(s, 60))
	usage := func() (TimeWindow, error) {
		return TimeWindow{}, Errorf(EInvalid, "%s: use DAYS@HH:MM-HH:MM[@ZONE] such as mon-fri@09:00-17:00@Europe/Berlin, sat,sun@10:00-14:00 or daily@22:00-06:00", field)
	}
	parts := strings.Split(strings.TrimSpace(s), "@")
	if len(parts) != 2 && len(parts) != 3 {
		return usage()
	}
	days, err := parseDaySpec(field, parts[0])
	if err != nil {
		return TimeWindow{}, err
	}
	start, end, ok := strings.Cut(parts[1], "-")
	if !ok {
		return usage()
	}
	w := TimeWindow{Days: days, Start: start, End: end}
	if len(parts) == 3 {
		if parts[2] == "" {
			return usage()
		}
		w.TZ = parts[2]
	}
	if _, err := compileWindow(field, &w); err != nil {
		return TimeWindow{}, err
	}
	return w, nil
}

// parseDaySpec reads the DAYS part of a time window flag into a day list
// in normalised order; nil means every day.
func parseDaySpec(field, spec string) ([]string, error) {
	spec = strings.ToLower(strings.TrimSpace(spec))
	if spec == "daily" || spec == "*" {
		return nil, nil
	}
	day := func(name string) (int, error) {
		i := dayIndex(strings.TrimSpace(name))
		if i < 0 {
			return 0, Errorf(EInvalid, "%s: day %q: use mon, tue, wed, thu, fri, sat or sun, a range such as mon-fri, or daily", field, clip(name, 20))
		}
		return i, nil
	}
	var set uint8 // bit i: weekdayNames[i]
	for item := range strings.SplitSeq(spec, ",") {
		from, to, isRange := strings.Cut(item, "-")
		a, err := day(from)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = day(to); err != nil {
				return nil, err
			}
		}
		// Walk forward from a to b, wrapping past Sunday: fri-mon is
		// fri, sat, sun, mon.
		for i := a; ; i = (i + 1) % 7 {
			set |= 1 << i
			if i == b {
				break
			}
		}
	}
	days := make([]string, 0, 7)
	for i, n := range weekdayNames {
		if set&(1<<i) != 0 {
			days = append(days, n)
		}
	}
	return days, nil
}
