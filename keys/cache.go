package keys

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Entry is an immutable snapshot of a key as the verify path needs it. It is
// shared by every goroutine that verifies the key, so nothing may modify it
// or the slices it holds once it is built.
type Entry struct {
	Key *latchkey.Key
	// Windows is the key's compiled time windows (empty: any time).
	Windows latchkey.TimeWindows
	// noWindow is set when stored windows no longer compile (a zone gone
	// from the tz database): the key is then usable at no time, not at any.
	noWindow bool

	// Header values for forward-auth, built once so that an allowed request
	// sets identity headers without allocating.
	KeyIDHeader  []string
	TenantHeader []string
	OwnerHeader  []string
	ScopesHeader []string

	// VerifyJSON is what POST /v1/keys/verify says of the key (its
	// identity fields as JSON), encoded by httpapi the first time it
	// answers for this entry, so that later answers copy it. It is nil
	// until then; the key never changes under an entry, so neither does it.
	VerifyJSON atomic.Pointer[[]byte]
}

func newEntry(k *latchkey.Key) *Entry {
	one := func(s string) []string { return []string{s} }
	ws, err := latchkey.CompileTimeWindows(k.TimeWindows)
	return &Entry{
		Key:          k,
		Windows:      ws,
		noWindow:     err != nil,
		KeyIDHeader:  one(k.ID),
		TenantHeader: one(k.Tenant),
		OwnerHeader:  one(k.Owner),
		ScopesHeader: one(strings.Join(k.Scopes, ",")),
	}
}

const cacheShards = 64

// cache maps key hashes to entries (positive) or to "no such key"
// (negative). Both halves are bounded; when a shard is full an arbitrary
// entry is evicted (Go map iteration starts at a random place), which keeps
// the hot path free of LRU bookkeeping.
//
// A load that races with an invalidation must not put the old row back. A
// loader notes the generation before it reads the store and inserts only if
// the generation is unchanged; invalidate bumps the generation under the
// same shard lock, so either the loader sees the bump or invalidate deletes
// what the loader inserted.
type cache struct {
	gen      atomic.Uint64
	ttl      time.Duration
	negTTL   time.Duration
	perShard int
	negShard int
	shards   *[cacheShards]shard // allocated alone, so page-aligned
}

type shard struct {
	mu  sync.RWMutex
	pos map[[32]byte]cached
	neg map[[32]byte]time.Time // hash → time the negative answer expires
	// hits counts lookups answered here (a fresh key or a remembered
	// unknown one), misses those that must read the store. They share one
	// cache line with the lock, which a lookup writes anyway (shards are
	// 64 bytes and the array is page-aligned): kept elsewhere, counting
	// cost parallel verification of a hot key 60% more time.
	hits, misses atomic.Uint64
	_            [8]byte // pads the shard to 64 bytes
}

type cached struct {
	e       *Entry
	expires time.Time
}

func newCache(size, negSize int, ttl, negTTL time.Duration) *cache {
	c := &cache{
		ttl:      ttl,
		negTTL:   negTTL,
		perShard: max(1, size/cacheShards),
		negShard: max(1, negSize/cacheShards),
		shards:   new([cacheShards]shard),
	}
	for i := range c.shards {
		c.shards[i].pos = make(map[[32]byte]cached)
		c.shards[i].neg = make(map[[32]byte]time.Time)
	}
	return c
}

func (c *cache) shard(h [32]byte) *shard { return &c.shards[h[0]%cacheShards] }

// lookup returns the entry for h and whether it is still fresh, and whether
// h is known not to exist.
func (c *cache) lookup(h [32]byte, now time.Time) (e *Entry, fresh, missing bool) {
	s := c.shard(h)
	s.mu.RLock()
	v, ok := s.pos[h]
	var negUntil time.Time
	if !ok {
		negUntil = s.neg[h]
	}
	s.mu.RUnlock()
	if ok {
		fresh = now.Before(v.expires)
		s.count(fresh)
		return v.e, fresh, false
	}
	missing = now.Before(negUntil)
	s.count(missing)
	return nil, false, missing
}

func (s *shard) count(hit bool) {
	if hit {
		s.hits.Add(1)
	} else {
		s.misses.Add(1)
	}
}

// generation returns the value a loader must present to put.
func (c *cache) generation() uint64 { return c.gen.Load() }

// put stores e (or, with e == nil, a negative answer) for h unless an
// invalidation happened since gen was read.
func (c *cache) put(h [32]byte, e *Entry, gen uint64, now time.Time) {
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.gen.Load() != gen {
		return
	}
	if e == nil {
		if _, ok := s.neg[h]; !ok && len(s.neg) >= c.negShard {
			for k := range s.neg {
				delete(s.neg, k)
				break
			}
		}
		s.neg[h] = now.Add(c.negTTL)
		return
	}
	delete(s.neg, h)
	if _, ok := s.pos[h]; !ok && len(s.pos) >= c.perShard {
		for k := range s.pos {
			delete(s.pos, k)
			break
		}
	}
	s.pos[h] = cached{e: e, expires: now.Add(c.ttl)}
}

// invalidate forgets everything cached about the hashes, positive or
// negative, so that the next verify reads the store.
func (c *cache) invalidate(hashes ...[32]byte) {
	for _, h := range hashes {
		s := c.shard(h)
		s.mu.Lock()
		c.gen.Add(1)
		delete(s.pos, h)
		delete(s.neg, h)
		s.mu.Unlock()
	}
}

// len returns the number of positive and negative entries.
func (c *cache) len() (pos, neg int) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		pos += len(s.pos)
		neg += len(s.neg)
		s.mu.RUnlock()
	}
	return pos, neg
}
