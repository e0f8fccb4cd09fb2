// Package fakeclock is a clock that moves only when a test says so, so that
// expiry, grace periods and suspensions are tested exactly, without sleeps.
package fakeclock

import (
	"sync/atomic"
	"time"
)

// Clock is safe for concurrent use. Reading it takes no lock (an atomic
// load of an immutable time), so that parallel benchmarks whose code reads
// the clock on every operation measure that code, not contention on the
// test's clock.
type Clock struct {
	t atomic.Pointer[time.Time]
}

// New returns a clock reading start.
func New(start time.Time) *Clock {
	c := &Clock{}
	c.t.Store(&start)
	return c
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return *c.t.Load() }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	for {
		old := c.t.Load()
		next := old.Add(d)
		if c.t.CompareAndSwap(old, &next) {
			return
		}
	}
}

// Set moves the clock to t (forward or back).
func (c *Clock) Set(t time.Time) { c.t.Store(&t) }
