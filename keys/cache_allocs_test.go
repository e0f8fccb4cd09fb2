//go:build !race

package keys

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestCacheAllocatesAtMostEntryBytesPerKey fills the cache with 100,000 keys of the typical
// shape (two scopes; meta empty, and meta with one field) as the store
// reads them and holds each to EntryBytes of heap, everything counted.
// LATCHKEY_BIG=1 adds the 1,000,000-key run. (Without -race: the race
// detector changes what allocations weigh.)
func TestCacheAllocatesAtMostEntryBytesPerKey(t *testing.T) {
	sizes := []int{100_000}
	if os.Getenv("LATCHKEY_BIG") == "1" {
		sizes = append(sizes, 1_000_000)
	}
	for _, n := range sizes {
		for _, shape := range []struct{ name, meta string }{
			{"no meta", `{}`},
			{"one meta field", `{"team":"payments"}`},
		} {
			t.Run(fmt.Sprintf("%d/%s", n, shape.name), func(t *testing.T) {
				before := heapInUse()
				c := newCache(n, n/10, time.Minute, time.Second)
				// n and an eighth: every shard full, the steady state.
				for i := range n + n/8 {
					c.put(hashOf(i), NewEntry(scannedKey(t, i, shape.meta)), c.generation(), cacheT0)
				}
				after := heapInUse()
				pos, _ := c.len()
				if pos != n/cacheShards*cacheShards {
					t.Fatalf("cache holds %d keys, want %d", pos, n/cacheShards*cacheShards)
				}
				per := float64(after-before) / float64(pos)
				t.Logf("%d keys (%s): %.0f bytes per cached key", pos, shape.name, per)
				if per > EntryBytes {
					t.Errorf("%.0f bytes per cached key, more than EntryBytes (%d)", per, EntryBytes)
				}
				runtime.KeepAlive(c)
			})
		}
	}
}
