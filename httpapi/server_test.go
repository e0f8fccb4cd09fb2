package httpapi

import (
	"sync"
	"testing"
)

func TestRequestIDsAreUniqueAcrossChunksAndGoroutines(t *testing.T) {
	var g requestIDs
	g.init()
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			local := make([]string, 0, 2000)
			for range 2000 {
				id, hdr := g.next()
				if len(hdr) != 1 || cap(hdr) != 1 || hdr[0] != id || !plainID(id) {
					t.Errorf("id %q with header %q", id, hdr)
					return
				}
				local = append(local, id)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range local {
				if seen[id] {
					t.Errorf("duplicate request id %s", id)
				}
				seen[id] = true
			}
		})
	}
	wg.Wait()
	if len(seen) != 8000 {
		t.Fatalf("%d distinct ids, want 8000", len(seen))
	}
}
