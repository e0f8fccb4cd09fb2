//go:build !race

// The race detector makes allocation counts meaningless, hence the tag.

package httpapi

import (
	"testing"

	"github.com/latchkeyhq/latchkey/internal/allocstest"
)

// TestRequestIDsAllocateOnlyTheirChunks: a request id the server makes
// costs nothing but its share of a chunk of idChunkSize ids. This is an
// amortised cost (about 0.06 allocations and 60 bytes a request) that
// testing.AllocsPerRun rounds to 0; here it is bounded exactly, so an id
// that allocated on its own would fail.
func TestRequestIDsAllocateOnlyTheirChunks(t *testing.T) {
	var g requestIDs
	g.init()
	chunk := allocstest.Measure(func() { g.newChunk() })
	got := allocstest.Measure(func() { g.next() })
	// Runs+1 ids (with Measure's warm-up) fill at most this many chunks.
	chunks := uint64((allocstest.Runs+1)/idChunkSize + 1)
	if got.Mallocs > chunks*chunk.Mallocs/allocstest.Runs || got.Bytes > chunks*chunk.Bytes/allocstest.Runs {
		t.Fatalf("%d request ids cost %+v; %d chunks cost %+v", allocstest.Runs, got,
			chunks, allocstest.Cost{Mallocs: chunks * chunk.Mallocs / allocstest.Runs, Bytes: chunks * chunk.Bytes / allocstest.Runs})
	}
}
