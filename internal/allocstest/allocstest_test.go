//go:build !race

package allocstest

import "testing"

var sink []byte

// TestMeasureCatchesRareAllocations: one allocation every 100
// calls is 0 for testing.AllocsPerRun, and not for Measure.
func TestMeasureCatchesRareAllocations(t *testing.T) {
	n := 0
	rare := func() {
		if n++; n%100 == 0 {
			sink = make([]byte, 64)
		}
	}
	if got := testing.AllocsPerRun(1000, rare); got != 0 {
		t.Fatalf("AllocsPerRun = %v; this test assumes it rounds to 0", got)
	}
	c := Measure(rare)
	if c.Mallocs < Runs/100 || c.Bytes < 64*Runs/100 {
		t.Fatalf("Measure = %+v, want at least %d allocations and %d bytes", c, Runs/100, 64*Runs/100)
	}
}

func TestNoneAllocationFreeAllocatesNothing(t *testing.T) {
	x := 0
	None(t, "an increment", func() { x++ })
}

// TestNoneFailsOnRareAllocation runs None on a recording TB.
func TestNoneFailsOnRareAllocation(t *testing.T) {
	n := 0
	rec := &recorder{TB: t}
	None(rec, "rare", func() {
		if n++; n%1000 == 0 {
			sink = make([]byte, 8)
		}
	})
	if !rec.failed {
		t.Fatal("None passed a function that allocates once in 1000 calls")
	}
}

type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }
