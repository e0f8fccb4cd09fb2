// Package allocstest checks that a hot path allocates nothing, counting
// bytes as well as allocations and never rounding a small amortised cost
// down to zero.
//
// testing.AllocsPerRun divides the allocations of a run by the number of
// calls and truncates: one 64-byte allocation every 100 calls (a buffer
// regrown, a map rehashed, a pool refilled) reads as 0. None counts the
// exact totals (runtime.MemStats Mallocs and TotalAlloc) over many calls
// and fails on any.
//
// Allocation counts are meaningless under the race detector, so the tests
// that call None carry the build tag !race; scripts/test.sh runs them in
// their own stage (allocs) without -race.
package allocstest

import (
	"runtime"
	"testing"
)

// Runs is how many times None calls f in one measurement: enough that an
// allocation once in a few thousand calls still shows.
const Runs = 10_000

// attempts: other goroutines of the test binary (the runtime, the testing
// package, a server's background loop) may allocate during a measurement.
// A real cost of f — even one allocation in Runs calls — shows in every
// measurement, a stray one from elsewhere does not; so None fails only if
// each of its attempts saw an allocation.
const attempts = 3

// Cost is what a measurement saw over Runs calls.
type Cost struct {
	Mallocs, Bytes uint64
}

// Measure calls f Runs times to warm it up, then Runs times more, and
// returns the exact allocations and bytes of the second Runs calls (with
// every other goroutine of the process). It collects garbage before the
// warm-up, not after: a collection empties every sync.Pool, and refilling
// them is a cost of the collection, not of f.
//
// One warm-up call is not enough: Go fills the cache of each type
// assertion and type switch site lazily and at random (about once in a
// thousand misses), and each fill allocates a new cache, so a site that
// sees a few types allocates now and then over its first calls. The
// warm-up pays for that; an allocation that goes on after it is f's.
// (One that goes on for ever: latchkey.HashLookup says why.)
func Measure(f func()) Cost {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	runtime.GC()
	for range Runs {
		f()
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range Runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return Cost{Mallocs: after.Mallocs - before.Mallocs, Bytes: after.TotalAlloc - before.TotalAlloc}
}

// None fails t if f allocates: if in each of a few measurements of Runs
// calls anything was allocated, however little per call.
func None(t testing.TB, what string, f func()) {
	t.Helper()
	var c Cost
	for range attempts {
		if c = Measure(f); c == (Cost{}) {
			return
		}
	}
	t.Errorf("%s allocates: %d allocations, %d bytes in %d calls (%.4f allocations, %.2f bytes per call), want none",
		what, c.Mallocs, c.Bytes, Runs, float64(c.Mallocs)/Runs, float64(c.Bytes)/Runs)
}
