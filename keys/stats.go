package keys

import (
	"unsafe"

	"github.com/latchkeyhq/latchkey"
)

// CacheStats is latchkey.CacheStats.
type CacheStats = latchkey.CacheStats

// CacheStats returns the cache's figures. It takes every shard's read lock
// in turn, so call it for a metrics scrape, not per request.
func (s *Service) CacheStats() CacheStats {
	var st CacheStats
	c := s.cache
	for i := range c.shards {
		sh := &c.shards[i]
		st.Hits += sh.hits.Load()
		st.Misses += sh.misses.Load()
	}
	st.Keys, st.Unknown = c.len()
	return st
}

// A cache shard must stay one cache line (64 bytes), so that the hit and
// miss counters share the line of the lock a lookup takes anyway: this
// fails to compile otherwise.
var _ = [1]struct{}{}[unsafe.Sizeof(shard{})-64]
