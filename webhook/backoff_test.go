package webhook

import (
	"testing"
	"time"
)

func TestBackoffDoublesUpToTheCap(t *testing.T) {
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second}
	for i, w := range want {
		if got := backoff(i+1, 5*time.Second, time.Hour); got != w {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	for _, n := range []int{11, 12, 100, 1 << 30} {
		if got := backoff(n, 5*time.Second, time.Hour); got != time.Hour {
			t.Errorf("backoff(%d) = %v, want the cap", n, got)
		}
	}
	if got := backoff(3, time.Minute, 90*time.Second); got != 90*time.Second {
		t.Errorf("a cap that is not a doubling: %v", got)
	}
}

func TestEqualJitterStaysWithinHalfAndWhole(t *testing.T) {
	d := 10 * time.Second
	seen := map[bool]int{}
	for range 1000 {
		j := equalJitter(d)
		if j < d/2 || j > d {
			t.Fatalf("equalJitter(%v) = %v, outside [%v, %v]", d, j, d/2, d)
		}
		seen[j < 3*d/4]++
	}
	if seen[true] == 0 || seen[false] == 0 {
		t.Fatalf("jitter does not spread: %v", seen)
	}
	if equalJitter(0) != 0 || equalJitter(1) != 1 {
		t.Fatal("tiny waits")
	}
}
