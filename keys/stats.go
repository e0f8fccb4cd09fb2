package keys

import (
	"unsafe"

	"github.com/latchkeyhq/latchkey"
)

// CacheStats returns the cache's figures. It takes every shard's read lock
// in turn, so call it for a metrics scrape, not per request.
func (s *Service) CacheStats() latchkey.CacheStats {
	var st latchkey.CacheStats
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

// Apply drops what the change makes stale in this node's cache: a key's
// entry (known or unknown), every "no such key" answer after an import,
// the keys of a changed policy or owner (and the limiter's shared state
// of the owner), or everything after a reset. Secret changes are the secret service's.
func (s *Service) Apply(c latchkey.Change) {
	switch c.Kind {
	case latchkey.ChangeKey:
		s.cache.invalidate(c.Hash)
	case latchkey.ChangeNewKeys:
		s.cache.forgetUnknown()
	case latchkey.ChangeReset:
		s.cache.clear()
	case latchkey.ChangePolicy:
		s.cache.dropWhere(func(e *Entry) bool { return e.Key.Policy == c.Name && e.Key.Tenant == c.Tenant })
	case latchkey.ChangeOwner:
		s.cache.dropWhere(func(e *Entry) bool { return e.Key.Owner == c.Name && e.Key.Tenant == c.Tenant })
		if s.limiter != nil {
			s.limiter.Forget(latchkey.OwnerQuotaID(c.Tenant, c.Name))
		}
	}
}
