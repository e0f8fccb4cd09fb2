package secrets

import (
	"github.com/latchkeyhq/latchkey"

	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// secretCache keeps opened secret values in memory so that a read costs a
// map lookup instead of a store transaction and a decryption. It maps a
// tenant's secret name to its versions as last read: the newest (what a
// read without a version gets) and any numbered ones read since.
//
// Coherence: every PutSecret and DeleteSecret on this node invalidates the
// name after its transaction commits, so a read on this node sees the
// change at once. Changes made on another node are seen when the entry
// expires (Options.SecretCacheTTL). A load that races with an
// invalidation does not put the old value back: as in the key cache, the
// loader notes the generation before it reads the store and inserts only
// if it is unchanged.
//
// Size: at most about Options.SecretCacheSize versions are kept; when a
// shard is full an arbitrary name is evicted (map iteration starts at a
// random place). The cached *latchkey.Secret values are shared by every reader and
// must never be modified.
type secretCache struct {
	gen      atomic.Uint64
	ttl      time.Duration
	perShard int
	seed     maphash.Seed
	shards   [secretShards]secretShard
}

const secretShards = 16

type secretShard struct {
	mu    sync.RWMutex
	names map[secretName]*secretSlot
	n     int // versions held by the shard (newest counted as one)
}

type secretName struct{ tenant, name string }

// secretSlot is what is cached of one name: the newest version and
// numbered ones, each with the time it stops being trusted.
type secretSlot struct {
	latest   cachedSecret
	versions map[int64]cachedSecret
}

type cachedSecret struct {
	sec     *latchkey.Secret
	expires time.Time
}

func newSecretCache(size int, ttl time.Duration) *secretCache {
	c := &secretCache{ttl: ttl, perShard: max(1, size/secretShards), seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].names = make(map[secretName]*secretSlot)
	}
	return c
}

func (c *secretCache) shard(tenant, name string) *secretShard {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(tenant)
	h.WriteByte(0)
	h.WriteString(name)
	return &c.shards[h.Sum64()%secretShards]
}

// get returns the cached version (0: the newest) if it is still fresh.
func (c *secretCache) get(tenant, name string, version int64, now time.Time) *latchkey.Secret {
	s := c.shard(tenant, name)
	s.mu.RLock()
	defer s.mu.RUnlock()
	slot := s.names[secretName{tenant, name}]
	if slot == nil {
		return nil
	}
	cs := slot.latest
	if version != 0 {
		cs = slot.versions[version]
	}
	if cs.sec == nil || !now.Before(cs.expires) {
		return nil
	}
	return cs.sec
}

// generation returns the value a loader must present to put.
func (c *secretCache) generation() uint64 { return c.gen.Load() }

// put caches sec, read as version (0: as the newest), unless an
// invalidation happened since gen was read.
func (c *secretCache) put(tenant string, sec *latchkey.Secret, version int64, gen uint64, now time.Time) {
	c.putTTL(tenant, sec, version, gen, now, c.ttl)
}

// putTTL is put with the entry trusted for ttl instead of the cache's
// TTL: a value read from a source is kept no longer than its refresh
// interval.
func (c *secretCache) putTTL(tenant string, sec *latchkey.Secret, version int64, gen uint64, now time.Time, ttl time.Duration) {
	s := c.shard(tenant, sec.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.gen.Load() != gen {
		return
	}
	key := secretName{tenant, sec.Name}
	slot := s.names[key]
	// Make room for a version the shard does not hold yet: evict other
	// names first, then this name's numbered versions; if the shard is
	// still full (it holds only this name's newest), cache nothing.
	for s.n >= c.perShard && !slot.holds(version) {
		if s.evictOther(key) {
			continue
		}
		if slot == nil || len(slot.versions) == 0 {
			return
		}
		s.n -= len(slot.versions)
		slot.versions = nil
	}
	if slot == nil {
		slot = &secretSlot{}
		s.names[key] = slot
	}
	cs := cachedSecret{sec: sec, expires: now.Add(ttl)}
	if version == 0 {
		if slot.latest.sec == nil {
			s.n++
		}
		slot.latest = cs
		return
	}
	if slot.versions == nil {
		slot.versions = make(map[int64]cachedSecret, 1)
	}
	if _, ok := slot.versions[version]; !ok {
		s.n++
	}
	slot.versions[version] = cs
}

// holds reports whether the slot has an entry for version (0: the newest).
func (v *secretSlot) holds(version int64) bool {
	if v == nil {
		return false
	}
	if version == 0 {
		return v.latest.sec != nil
	}
	_, ok := v.versions[version]
	return ok
}

// evictOther forgets an arbitrary name other than keep; false if there is
// none.
func (s *secretShard) evictOther(keep secretName) bool {
	for k, v := range s.names {
		if k == keep {
			continue
		}
		s.n -= v.size()
		delete(s.names, k)
		return true
	}
	return false
}

func (v *secretSlot) size() int {
	n := len(v.versions)
	if v.latest.sec != nil {
		n++
	}
	return n
}

// invalidate forgets every cached version of the tenant's secret name.
func (c *secretCache) invalidate(tenant, name string) {
	s := c.shard(tenant, name)
	s.mu.Lock()
	c.gen.Add(1)
	key := secretName{tenant, name}
	if slot := s.names[key]; slot != nil {
		s.n -= slot.size()
		delete(s.names, key)
	}
	s.mu.Unlock()
}

// len returns the number of cached versions.
func (c *secretCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += s.n
		s.mu.RUnlock()
	}
	return n
}

// clear drops every cached version; loads in flight do not put back what
// they read (the generation moved).
func (c *secretCache) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		c.gen.Add(1)
		clear(s.names)
		s.n = 0
		s.mu.Unlock()
	}
}
