package fakeclock

import (
	"sync"
	"testing"
	"time"
)

// Advances from many goroutines at once all count: none is lost to a
// concurrent one.
func TestConcurrentAdvancesAllCount(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New(t0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				c.Advance(time.Millisecond)
				_ = c.Now()
			}
		})
	}
	wg.Wait()
	if got, want := c.Now(), t0.Add(8*time.Second); !got.Equal(want) {
		t.Fatalf("Now() = %v, want %v", got, want)
	}
	c.Set(t0)
	if !c.Now().Equal(t0) {
		t.Fatalf("Set: %v", c.Now())
	}
}

// BenchmarkNowParallel: reading the clock from every core does not
// serialise (no lock), so parallel benchmarks of code that reads it on
// each operation measure that code.
func BenchmarkNowParallel(b *testing.B) {
	c := New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = c.Now()
		}
	})
}
