package keys

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/latchkeyhq/latchkey"
)

// Entry is an immutable snapshot of a key as the verify path needs it. It is
// shared by every goroutine that verifies the key, so nothing may modify it
// or the slices it holds once it is built (NewEntry).
//
// It is one allocation: the key is held by value, and the forward-auth
// header values and the verify answer's meta are made from it on use, so
// a cached key costs the Entry, its own strings (id, name, owner) and
// its slot in the cache; everything else is shared between keys.
type Entry struct {
	// Key is the key as the store read it, with Start cleared (no check
	// and no answer of the verify path reads it) and what many keys hold
	// alike shared (compact).
	//
	// When the key names a policy, the fields the policy governs hold the
	// effective settings (the key's own narrowed by the policy's: see
	// applyPolicy), and Key.Bound holds only the owner's record, if any.
	Key latchkey.Key
	// view is what the answers and the rarer checks need in a ready form,
	// shared between keys with the same scopes and meta and neither time
	// windows nor a condition.
	view *entryView
}

// entryTimes is an entry's compiled time windows: the key's own and its
// policy's, each allowing every time when empty. Both must allow a time.
// broken is set when stored windows no longer compile (a zone gone from
// the tz database): the key is then usable at no time, not at any.
type entryTimes struct {
	own, policy latchkey.TimeWindows
	broken      bool
}

// entryView holds the X-Latchkey-Scopes header value (the scopes
// comma-joined) and Key.Meta as encoding/json encodes it without HTML
// escaping (the verify answer's "meta"; nil when the meta is empty).
//
// It also holds what few keys have, so that the Entry of every other key
// does not pay a word for it: the compiled time windows (nil for any
// time) and conditions (nil for none). A view with either is the key's
// own, never shared.
type entryView struct {
	scopes  string
	meta    []byte
	windows *entryTimes
	cond    *condition
}

// AllowsTime reports whether the key's time windows allow now.
func (e *Entry) AllowsTime(now time.Time) bool {
	w := e.view.windows
	return w == nil || !w.broken && w.own.Allows(now) && w.policy.Allows(now)
}

// Forward-auth header values, each a one-element slice of a string inside
// the entry: setting them on an allowed request allocates nothing. The
// caller must not modify them.

// KeyIDHeader is the X-Latchkey-Key-Id value.
func (e *Entry) KeyIDHeader() []string { return unsafe.Slice(&e.Key.ID, 1) }

// TenantHeader is the X-Latchkey-Tenant value.
func (e *Entry) TenantHeader() []string { return unsafe.Slice(&e.Key.Tenant, 1) }

// OwnerHeader is the X-Latchkey-Owner value.
func (e *Entry) OwnerHeader() []string { return unsafe.Slice(&e.Key.Owner, 1) }

// ScopesHeader is the X-Latchkey-Scopes value: the scopes comma-joined.
func (e *Entry) ScopesHeader() []string { return unsafe.Slice(&e.view.scopes, 1) }

// MetaJSON returns the key's meta as encoding/json encodes it without HTML
// escaping, or nil when the key has none: the verify answer copies it. The
// caller must not modify it.
func (e *Entry) MetaJSON() []byte {
	return e.view.meta
}

// EntryBytes is the resident memory one cached key of the typical shape
// (two scopes, a little meta, no limits) is held to, everything included:
// the Entry (which holds the latchkey.Key), the key's own strings, and the
// cache's index and slot. TestCacheAllocatesAtMostEntryBytesPerKey measures
// it at 100,000 entries (and at 1,000,000 with LATCHKEY_BIG=1). It also
// turns a --cache-size in bytes into entries.
//
// Measured: 749 bytes a key at 100,000 keys, 761 at 1,000,000 (1,038 and
// 1,082 when the Entry pointed to a separate Key and held its header
// slices and verify answer, and the slot held the hash). The Entry is 640
// of it: a 624-byte struct plus Go's 8-byte header for a large object with
// pointers, in the 640-byte size class (9 bytes more and it is 704: the
// assertion below the constant keeps it from growing unnoticed). The
// slot is 16 and the index about 25; the key's own strings (id, owner,
// name, one allocation) the rest. The key's Condition (16 bytes) took the
// word the compiled time windows had, which moved to the view, and
// another: the struct is 632 bytes since, at the bound.
// Tenant, environment, prefix, scope and resource lists, the scopes
// header and small meta maps with their JSON are shared between keys.
// TestActiveKeysAllocateAtMost1KBEach (httpapi) adds the verify answer and
// the usage recorder: 919 bytes an active key at 100,000, 974 at 1,000,000.
const EntryBytes = 800

// An Entry must stay within the 640-byte size class (a 632-byte struct
// at most, with the 8-byte header): this fails to compile otherwise.
var _ = [1]struct{}{}[unsafe.Sizeof(Entry{})/633]

// DefaultCacheBytes is the memory the key cache may use by default.
const DefaultCacheBytes = 128 << 20

// DefaultCacheSize is the default bound on cached keys:
// DefaultCacheBytes / EntryBytes (167,772 keys in 128 MiB).
const DefaultCacheSize = DefaultCacheBytes / EntryBytes

// MinCacheSize and MaxCacheSize bound --cache-size: one key per shard at
// least, and no more than a 64-bit index can hold in reason.
const (
	MinCacheSize = cacheShards
	MaxCacheSize = 1 << 30
)

// ParseCacheSize reads a cache bound: a count of keys ("200000") or a
// size in bytes with a unit (B, KB, MB, GB, KiB, MiB, GiB; "64MiB"),
// which becomes bytes / EntryBytes keys. The result is from MinCacheSize
// to MaxCacheSize; anything else is EInvalid.
func ParseCacheSize(s string) (int, error) {
	num := strings.TrimRight(s, "BKMGTiib")
	unit := s[len(num):]
	if num == "" || len(num) > 12 {
		return 0, latchkey.Errorf(latchkey.EInvalid, "cache size %.40q: want a number of keys or a size like 64MiB", s)
	}
	n := int64(0)
	for _, c := range []byte(num) {
		if c < '0' || c > '9' {
			return 0, latchkey.Errorf(latchkey.EInvalid, "cache size %.40q: want a number of keys or a size like 64MiB", s)
		}
		n = n*10 + int64(c-'0')
	}
	mult := map[string]int64{
		"": 0, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
	}
	m, ok := mult[unit]
	if !ok {
		return 0, latchkey.Errorf(latchkey.EInvalid, "cache size %.40q: unit must be B, KB, MB, GB, KiB, MiB or GiB", s)
	}
	if m != 0 {
		// n has at most 12 digits and m at most 2^30: no overflow.
		n = n * m / EntryBytes
	}
	if n < MinCacheSize || n > MaxCacheSize {
		return 0, latchkey.Errorf(latchkey.EInvalid, "cache size %.40q: must hold from %d to %d keys (%d bytes each)", s, MinCacheSize, MaxCacheSize, EntryBytes)
	}
	return int(n), nil
}

// NegativeCacheSize is the default bound on remembered unknown keys for a
// key cache of size keys: a tenth, at least 10,000.
func NegativeCacheSize(size int) int { return max(10_000, size/10) }

// NewEntry builds the cache entry of a key read from the store. It keeps
// nothing of k but the strings and collections it points to, which it may
// share with other entries: the caller must not modify them afterwards.
//
// A key that names a policy takes it from k.Bound, or from the presets
// when the tenant stores none of that name (applyPolicy); the entry's
// Bound keeps only the owner's record.
func NewEntry(k *latchkey.Key) *Entry {
	e := &Entry{Key: *k}
	k = &e.Key
	k.Start = ""
	k.ID, k.Owner, k.Name = ownStrings(k.ID, k.Owner, k.Name)
	var policyWindows []latchkey.TimeWindow
	var policyCondition string
	if k.Policy != "" {
		p := policyOf(k)
		policyWindows = applyPolicy(k, p)
		if p != nil {
			policyCondition = p.Condition
		}
	}
	k.Bound = boundOwner(k.Bound)
	meta, shared := compact(k)
	var windows *entryTimes
	if len(k.TimeWindows) > 0 || len(policyWindows) > 0 {
		own, err1 := latchkey.CompileTimeWindows(k.TimeWindows)
		pol, err2 := latchkey.CompileTimeWindows(policyWindows)
		windows = &entryTimes{own: own, policy: pol, broken: err1 != nil || err2 != nil}
	}
	cond := compileCondition(k, policyCondition)
	scopes := internScopes.joined(k.Scopes)
	if windows != nil || cond != nil {
		e.view = &entryView{scopes: scopes, meta: meta, windows: windows, cond: cond}
	} else {
		e.view = internViews.get(scopes, meta, shared)
	}
	return e
}

// boundOwner is what an entry keeps of a key's Bound: the owner's record
// (which the limiter reads), shared between the entries of the owner's
// keys as long as the record is the same. The policy is already applied.
func boundOwner(b *latchkey.Bound) *latchkey.Bound {
	if b == nil || b.Owner == nil {
		return nil
	}
	return internOwners.get(b.Owner)
}

// ownStrings copies a key's own strings (a store read allocates each on
// its own) into one allocation: 8 to 24 bytes less a key than three
// size-class roundings.
func ownStrings(id, owner, name string) (string, string, string) {
	var b strings.Builder
	b.Grow(len(id) + len(owner) + len(name))
	b.WriteString(id)
	b.WriteString(owner)
	b.WriteString(name)
	all := b.String()
	return all[:len(id)], all[len(id) : len(id)+len(owner)], all[len(id)+len(owner):]
}

// emptyMeta is the Meta of every cached key that has none: a map per key
// costs its header even when empty. Entries are immutable, so sharing it
// is safe.
var emptyMeta = map[string]any{}

// compact shares, between cached keys, what many keys hold alike: the
// tenant, environment and prefix strings, the scope and resource lists,
// an empty meta, small meta maps. A million keys of a handful of tenants
// otherwise hold a million copies of each. It returns the meta's JSON
// (nil for an empty meta) and whether other keys share it.
func compact(k *latchkey.Key) ([]byte, bool) {
	k.Tenant = internStrings.get(k.Tenant)
	k.Environment = internStrings.get(k.Environment)
	k.Prefix = internStrings.get(k.Prefix)
	k.Scopes = internScopes.list(k.Scopes)
	k.Resources = internScopes.list(k.Resources)
	k.Policy = internStrings.get(k.Policy)
	if len(k.Meta) == 0 {
		k.Meta = emptyMeta
		return nil, true
	}
	return internMeta.get(k)
}

// metaIntern shares small meta maps that are alike ({"team": "payments"}
// on every key of a team), and their JSON, by their JSON form.
type metaIntern struct {
	mu sync.Mutex
	m  map[string]metaInterned
}

type metaInterned struct {
	m    map[string]any
	json []byte
}

// get returns the JSON of k's meta, and replaces k.Meta by an equal map
// another key already holds, if the meta is small; shared reports
// whether the JSON returned is the one of the shared map.
func (t *metaIntern) get(k *latchkey.Key) (json []byte, shared bool) {
	b, err := marshalNoHTML(k.Meta)
	if err != nil {
		// Unreachable for a stored key: its meta was decoded from JSON.
		return nil, false
	}
	if len(k.Meta) > 4 || len(b) > 256 {
		return b, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.m[string(b)]; ok { // sorted keys: one form per map
		k.Meta = v.m
		return v.json, true
	}
	if len(t.m) < internLimit {
		t.m[string(b)] = metaInterned{m: k.Meta, json: b}
		return b, true
	}
	return b, false
}

// viewIntern shares entry views between keys with the same scopes and a
// shared (or no) meta, found by the scopes header and the meta JSON's
// first byte's address.
type viewIntern struct {
	mu sync.Mutex
	m  map[viewKey]*entryView
}

type viewKey struct {
	scopes string
	meta   *byte
}

// get returns the view of scopes and meta, shared when meta is.
func (t *viewIntern) get(scopes string, meta []byte, shared bool) *entryView {
	if !shared {
		return &entryView{scopes: scopes, meta: meta}
	}
	key := viewKey{scopes: scopes}
	if len(meta) > 0 {
		key.meta = &meta[0]
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.m[key]; ok {
		return v
	}
	v := &entryView{scopes: scopes, meta: meta}
	if len(t.m) < internLimit {
		t.m[key] = v
	}
	return v
}

// ownerIntern shares an owner's record between the entries of its keys:
// the same tenant, id and update time are the same record.
type ownerIntern struct {
	mu sync.Mutex
	m  map[ownerKey]*latchkey.Bound
}

type ownerKey struct {
	tenant, id string
	updated    int64
}

func (t *ownerIntern) get(o *latchkey.Owner) *latchkey.Bound {
	key := ownerKey{tenant: o.Tenant, id: o.ID, updated: o.UpdatedAt.UnixMicro()}
	t.mu.Lock()
	defer t.mu.Unlock()
	if b, ok := t.m[key]; ok {
		return b
	}
	b := &latchkey.Bound{Owner: o}
	if len(t.m) >= internLimit {
		// Records replaced since they were shared: start again rather
		// than keep the old ones for good.
		clear(t.m)
	}
	t.m[key] = b
	return b
}

// marshalNoHTML encodes v as encoding/json does, without escaping HTML
// characters (as httpapi writes its answers).
func marshalNoHTML(v any) ([]byte, error) {
	var w bytes.Buffer
	enc := json.NewEncoder(&w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	b := w.Bytes()
	return slices.Clip(b[:len(b)-1]), nil // without Encode's newline
}

// internLimit bounds each intern table: past it, values are kept as they
// come (correct, only not shared).
const internLimit = 4096

var (
	internStrings = &strIntern{m: make(map[string]string)}
	internScopes  = &listIntern{m: make(map[string]listInterned)}
	internMeta    = &metaIntern{m: make(map[string]metaInterned)}
	internViews   = &viewIntern{m: make(map[viewKey]*entryView)}
	internOwners  = &ownerIntern{m: make(map[ownerKey]*latchkey.Bound)}
)

type strIntern struct {
	mu sync.Mutex
	m  map[string]string
}

func (t *strIntern) get(s string) string {
	if s == "" {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.m[s]; ok {
		return v
	}
	if len(t.m) < internLimit {
		t.m[s] = s
	}
	return s
}

// listIntern shares string lists, and their comma-joined form (the
// X-Latchkey-Scopes header).
type listIntern struct {
	mu sync.Mutex
	m  map[string]listInterned
}

type listInterned struct {
	list   []string
	joined string
}

// listKey joins with a byte no scope or resource may hold ('\x00'), so two
// different lists never share a key.
func listKey(l []string) string { return strings.Join(l, "\x00") }

func (t *listIntern) lookup(l []string) listInterned {
	key := listKey(l)
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.m[key]; ok {
		return v
	}
	v := listInterned{list: slices.Clip(l), joined: strings.Join(l, ",")}
	if len(t.m) < internLimit {
		t.m[key] = v
	}
	return v
}

func (t *listIntern) list(l []string) []string {
	if len(l) == 0 {
		return l
	}
	return t.lookup(l).list
}

func (t *listIntern) joined(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return t.lookup(l).joined
}

const cacheShards = 64

// cache maps key hashes to entries (positive) or to "no such key"
// (negative). Both halves are bounded per shard and evict by CLOCK (second
// chance): a lookup that hits sets the slot's reference bit (an atomic
// store, under the read lock, only when it is not set yet, so a hot key's
// hits do not write its line); an insertion into a full shard sweeps the
// hand over the slots, clearing set bits and reusing the first slot whose
// bit is clear (or whose entry has expired). A key used again within one
// turn of the hand stays; a scan of cold keys only ever replaces cold
// keys.
//
// Each shard's index maps the first 8 bytes of a hash to a slot number: a
// map with neither pointer keys nor pointer values, which the garbage
// collector does not scan, and 12 bytes an entry instead of 36. The slot
// holds the whole hash, which a lookup compares: two hashes that share
// their first 8 bytes (which nobody can aim for, short of a second
// preimage of 64 bits of SHA-256) only take each other's slot, as an
// eviction would. The slots are one slice, grown to the shard's bound and
// no further.
//
// A load that races with an invalidation must not put the old row back. A
// loader notes the generation before it reads the store and inserts only if
// the generation is unchanged; invalidate bumps the generation under the
// same shard lock, so either the loader sees the bump or invalidate deletes
// what the loader inserted.
//
// Concurrent misses on one hash share one store read (join/finish): the
// first becomes the flight's leader, the others wait for its answer. An
// invalidation detaches the flight, so a verification that starts after
// the change cannot be handed a row read before it.
type cache struct {
	gen      atomic.Uint64
	ttl      int64 // nanoseconds
	negTTL   int64
	perShard int
	negShard int
	shards   *[cacheShards]shard // allocated alone, so page-aligned
}

type shard struct {
	mu sync.RWMutex
	t  *shardTable
	// hits counts lookups answered here (a fresh key or a remembered
	// unknown one), misses those that must read the store. They share one
	// cache line with the lock, which a lookup writes anyway (shards are
	// 64 bytes and the array is page-aligned): kept elsewhere, counting
	// cost parallel verification of a hot key 60% more time.
	hits, misses atomic.Uint64
	_            [16]byte // pads the shard to 64 bytes
}

type shardTable struct {
	pos, neg clock
	flights  map[[32]byte]*flight
}

// clock is one CLOCK-evicted table of slots.
type clock struct {
	index map[uint64]uint32 // indexKey(hash) → slot number
	slots []slot
	// hashes holds the negative table's hashes, by slot number. The
	// positive table has none: its entries hold theirs (Entry.Key.Hash),
	// which saves 32 bytes a cached key.
	hashes   [][32]byte
	negative bool
	hand     int
	max      int
}

// slot is 16 bytes: the entry, and the reference bit sharing a word with
// the expiry.
type slot struct {
	e *Entry // nil in the negative table
	// word is the expiry in Unix nanoseconds (63 bits: until 2262) with
	// the reference bit on top. Lookups set the bit under the read lock
	// (refBit, atomically); everything else changes under the write lock.
	word atomic.Uint64
}

const refBit = 1 << 63

// expiryWord is the word of a slot expiring at expires, its bit clear.
func expiryWord(expires int64) uint64 { return uint64(max(expires, 0)) &^ refBit }

func (sl *slot) expires() int64 { return int64(sl.word.Load() &^ refBit) }

func (sl *slot) referenced() bool { return sl.word.Load()&refBit != 0 }

// indexKey is what a clock's index is keyed by: the hash's first 8 bytes.
func indexKey(h *[32]byte) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

// hash returns the hash slot i holds.
func (k *clock) hash(i uint32) *[32]byte {
	if k.negative {
		return &k.hashes[i]
	}
	return &k.slots[i].e.Key.Hash
}

// reset empties the table, keeping its memory for what comes next.
func (k *clock) reset() {
	clear(k.index)
	clear(k.slots)
	k.slots = k.slots[:0]
	k.hashes = k.hashes[:0]
	k.hand = 0
}

// find returns the slot holding h.
func (k *clock) find(h *[32]byte) (*slot, bool) {
	i, ok := k.index[indexKey(h)]
	if !ok || *k.hash(i) != *h {
		return nil, false
	}
	return &k.slots[i], true
}

// fill puts h and e in slot i (its word is the caller's).
func (k *clock) fill(i uint32, h *[32]byte, e *Entry) {
	k.slots[i].e = e
	if k.negative {
		k.hashes[i] = *h
	}
}

// flight is one store read that concurrent misses on a hash wait for.
type flight struct {
	done    chan struct{}
	e       *Entry
	err     error
	waiters atomic.Int32 // followers joined (for tests)
}

func newCache(size, negSize int, ttl, negTTL time.Duration) *cache {
	c := &cache{
		ttl:      int64(ttl),
		negTTL:   int64(negTTL),
		perShard: max(1, size/cacheShards),
		negShard: max(1, negSize/cacheShards),
		shards:   new([cacheShards]shard),
	}
	for i := range c.shards {
		c.shards[i].t = &shardTable{
			pos:     clock{index: make(map[uint64]uint32), max: c.perShard},
			neg:     clock{index: make(map[uint64]uint32), max: c.negShard, negative: true},
			flights: make(map[[32]byte]*flight),
		}
	}
	return c
}

func (c *cache) shard(h [32]byte) *shard { return &c.shards[h[0]%cacheShards] }

// lookup returns the entry for h and whether it is still fresh, and whether
// h is known not to exist.
func (c *cache) lookup(h [32]byte, now time.Time) (e *Entry, fresh, missing bool) {
	s := c.shard(h)
	t := now.UnixNano()
	s.mu.RLock()
	var expires int64
	var found bool
	if sl, ok := s.t.pos.find(&h); ok {
		e, expires, found = sl.e, sl.expires(), true
		sl.touch()
	} else if sl, ok := s.t.neg.find(&h); ok {
		expires = sl.expires()
		sl.touch()
	}
	s.mu.RUnlock()
	if found {
		fresh = t < expires
		s.count(fresh)
		return e, fresh, false
	}
	missing = t < expires
	s.count(missing)
	return nil, false, missing
}

func (sl *slot) touch() {
	if !sl.referenced() {
		sl.word.Or(refBit)
	}
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
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.gen.Load() != gen {
		return
	}
	if e == nil {
		s.t.neg.set(h, nil, t+c.negTTL, t)
		return
	}
	s.t.neg.remove(h)
	s.t.pos.set(h, e, t+c.ttl, t)
}

// set stores e for h, evicting by CLOCK when the table is full. now is in
// Unix nanoseconds (an expired slot is taken whatever its bit).
//
// A positive entry must hold h as its Key.Hash.
func (k *clock) set(h [32]byte, e *Entry, expires, now int64) {
	ik := indexKey(&h)
	if i, ok := k.index[ik]; ok {
		// h itself, or a hash sharing its index key, which h replaces.
		k.fill(i, &h, e)
		sl := &k.slots[i]
		sl.word.Store(expiryWord(expires) | sl.word.Load()&refBit)
		return
	}
	if len(k.slots) < k.max {
		if len(k.slots) == cap(k.slots) {
			// Doubling up to the bound, not append's growth: a full
			// shard's slots are exactly its bound.
			n := min(k.max, max(16, 2*cap(k.slots))) - len(k.slots)
			k.slots = slices.Grow(k.slots, n)
			if k.negative {
				k.hashes = slices.Grow(k.hashes, n)
			}
		}
		k.slots = append(k.slots, slot{e: e})
		if k.negative {
			k.hashes = append(k.hashes, h)
		}
		k.slots[len(k.slots)-1].word.Store(expiryWord(expires))
		k.index[ik] = uint32(len(k.slots) - 1)
		return
	}
	// Every set bit is cleared as the hand passes, so within two turns a
	// slot is found.
	for {
		if k.hand >= len(k.slots) {
			k.hand = 0
		}
		sl := &k.slots[k.hand]
		if sl.referenced() && sl.expires() > now {
			sl.word.And(^uint64(refBit))
			k.hand++
			continue
		}
		delete(k.index, indexKey(k.hash(uint32(k.hand))))
		k.fill(uint32(k.hand), &h, e)
		sl.word.Store(expiryWord(expires))
		k.index[ik] = uint32(k.hand)
		k.hand++
		return
	}
}

// remove forgets h, moving the last slot into its place.
func (k *clock) remove(h [32]byte) {
	ik := indexKey(&h)
	i, ok := k.index[ik]
	if !ok || *k.hash(i) != h {
		return
	}
	delete(k.index, ik)
	last := len(k.slots) - 1
	if int(i) != last {
		src := &k.slots[last]
		dst := &k.slots[i]
		dst.e = src.e
		dst.word.Store(src.word.Load())
		if k.negative {
			k.hashes[i] = k.hashes[last]
		}
		k.index[indexKey(k.hash(i))] = i
	}
	k.slots[last] = slot{}
	k.slots = k.slots[:last]
	if k.negative {
		k.hashes = k.hashes[:last]
	}
}

// join returns the flight loading h, and whether the caller leads it (and
// must call finish).
func (c *cache) join(h [32]byte) (*flight, bool) {
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.t.flights[h]; ok {
		f.waiters.Add(1)
		return f, false
	}
	f := &flight{done: make(chan struct{})}
	s.t.flights[h] = f
	return f, true
}

// finish hands the leader's answer to the flight's waiters.
func (c *cache) finish(h [32]byte, f *flight, e *Entry, err error) {
	s := c.shard(h)
	s.mu.Lock()
	if s.t.flights[h] == f {
		delete(s.t.flights, h)
	}
	s.mu.Unlock()
	f.e, f.err = e, err
	close(f.done)
}

// wait returns the flight's answer, or the context's error.
func (f *flight) wait(ctx context.Context) (*Entry, error) {
	select {
	case <-f.done:
		return f.e, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// invalidate forgets everything cached about the hashes, positive or
// negative, so that the next verify reads the store.
func (c *cache) invalidate(hashes ...[32]byte) {
	for _, h := range hashes {
		s := c.shard(h)
		s.mu.Lock()
		c.gen.Add(1)
		s.t.pos.remove(h)
		s.t.neg.remove(h)
		delete(s.t.flights, h)
		s.mu.Unlock()
	}
}

// dropWhere drops every cached key that match accepts (the keys of a
// policy or an owner that changed): one pass over the cached entries,
// whatever the number of keys stored. Loads in flight do not put back
// what they read (the generation moved), and later lookups do not join
// them.
func (c *cache) dropWhere(match func(*Entry) bool) {
	var drop [][32]byte
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		c.gen.Add(1)
		drop = drop[:0]
		for j := range s.t.pos.slots {
			if e := s.t.pos.slots[j].e; e != nil && match(e) {
				drop = append(drop, e.Key.Hash)
			}
		}
		for _, h := range drop {
			s.t.pos.remove(h)
		}
		clear(s.t.flights)
		s.mu.Unlock()
	}
}

// forgetUnknown drops every "no such key" answer (keys were created in
// bulk somewhere), keeping the known keys.
func (c *cache) forgetUnknown() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		c.gen.Add(1)
		s.t.neg.reset()
		s.mu.Unlock()
	}
}

// clear drops everything cached; loads in flight do not put back what
// they read (the generation moved).
func (c *cache) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		c.gen.Add(1)
		s.t.pos.reset()
		s.t.neg.reset()
		clear(s.t.flights)
		s.mu.Unlock()
	}
}

// len returns the number of positive and negative entries.
func (c *cache) len() (pos, neg int) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		pos += len(s.t.pos.slots)
		neg += len(s.t.neg.slots)
		s.mu.RUnlock()
	}
	return pos, neg
}
