//go:build !race

// The race detector makes allocation counts meaningless, hence the tag.

package latchkey_test

import (
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/allocstest"
)

// Allows runs on every verification of a key with windows; it must not
// allocate, in any zone, open or closed, and across several zones.
func TestTimeWindowsAllowsAllocatesNothing(t *testing.T) {
	tw := mustCompile(t,
		win("mon,tue,wed,thu,fri", "09:00", "17:00", "Europe/Berlin"),
		win("sat", "22:00", "02:00", "America/New_York"),
		win("", "12:00", "13:00", "UTC"),
	)
	instants := []time.Time{
		utc(t, "2025-03-31T07:00:00Z"), // open in Berlin
		utc(t, "2025-03-30T01:30:00Z"), // closed everywhere
		utc(t, "2025-11-02T06:30:00Z"), // repeated hour in New York
	}
	var sink bool
	allocstest.None(t, "Allows", func() {
		for _, at := range instants {
			sink = tw.Allows(at) != sink
		}
	})
	var empty latchkey.TimeWindows
	allocstest.None(t, "empty Allows", func() { sink = empty.Allows(instants[0]) })
}

func BenchmarkTimeWindowsAllows(b *testing.B) {
	for _, bc := range []struct {
		name string
		ws   []latchkey.TimeWindow
	}{
		{"none", nil},
		{"utc", []latchkey.TimeWindow{win("mon,tue,wed,thu,fri", "09:00", "17:00", "")}},
		{"berlin", []latchkey.TimeWindow{win("mon,tue,wed,thu,fri", "09:00", "17:00", "Europe/Berlin")}},
		{"three-zones-closed", []latchkey.TimeWindow{
			win("mon", "09:00", "10:00", "Europe/Berlin"),
			win("tue", "09:00", "10:00", "America/New_York"),
			win("wed", "09:00", "10:00", "Asia/Tokyo"),
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tw := mustCompile(b, bc.ws...)
			at := utc(b, "2025-06-05T12:00:00Z")
			b.ReportAllocs()
			for b.Loop() {
				tw.Allows(at)
			}
		})
	}
}
