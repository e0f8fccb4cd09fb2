package redislimit

import (
	"hash/maphash"
	"sync"
	"time"
	"unsafe"

	"github.com/latchkeyhq/latchkey"
)

// denials remembers, per key, until when its rate windows cannot admit a
// request, so that a client hammering a limited key is answered on the
// node without a Redis round trip.
//
// The answer is exact, not a guess: a GCRA window's theoretical arrival
// time only moves forward, and only when a request is admitted, so once
// the script has said that no request can pass before t, no node can
// admit one before t either. What can move it back is a change of the
// key's windows (the entry carries their signature, and a key whose
// windows differ ignores it), Forget (which drops the entry) and a Redis
// that loses its data (the key then waits out the denial it was given,
// as it would have without the loss). Quota and concurrency denials are
// not remembered: a period's end or a released lease can admit earlier.
// Nor are the denials of requests with named costs or of keys with owner
// limits, which Redis always decides: an owner's windows change, and are
// spent by other keys, without the key's signature changing, and a
// request's named costs are not part of it.
type denials struct {
	seed   maphash.Seed
	shards [denialShards]denialShard
}

const (
	denialShards = 16
	// maxDenials bounds the entries held: one per key currently denied;
	// a key beyond the bound is simply asked of Redis each time.
	maxDenials = 1 << 16
)

type denialShardData struct {
	mu sync.RWMutex
	m  map[string]denial
}

// denialShard is padded to a cache line so that one shard's lock does not
// slow its neighbours.
type denialShard struct {
	denialShardData
	_ [64 - unsafe.Sizeof(denialShardData{})%64]byte
}

type denial struct {
	until int64  // unix ns, on the callers' clock
	sig   uint64 // windowsSig of the key when it was denied
	adm   latchkey.Admission
}

func newDenials() *denials {
	d := &denials{seed: maphash.MakeSeed()}
	for i := range d.shards {
		d.shards[i].m = make(map[string]denial)
	}
	return d
}

func (d *denials) shard(id string) *denialShard {
	return &d.shards[maphash.String(d.seed, id)%denialShards]
}

// get returns the denial to answer for key id at now (RetryAfter counted
// from now), if one holds. It does not allocate.
func (d *denials) get(id string, sig uint64, now time.Time) (latchkey.Admission, bool) {
	s := d.shard(id)
	s.mu.RLock()
	e, ok := s.m[id]
	s.mu.RUnlock()
	ns := now.UnixNano()
	if !ok || e.sig != sig || ns >= e.until {
		return latchkey.Admission{}, false
	}
	adm := e.adm
	adm.RetryAfter = time.Duration(e.until - ns)
	return adm, true
}

// put remembers that key id, whose windows have signature sig, is denied
// as adm from now until now+adm.RetryAfter.
func (d *denials) put(id string, sig uint64, adm latchkey.Admission, now time.Time) {
	s := d.shard(id)
	s.mu.Lock()
	if _, ok := s.m[id]; ok || len(s.m) < maxDenials/denialShards {
		s.m[id] = denial{until: now.Add(adm.RetryAfter).UnixNano(), sig: sig, adm: adm}
	}
	s.mu.Unlock()
}

// forget drops key id's denial.
func (d *denials) forget(id string) {
	s := d.shard(id)
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// sweep drops the denials over by now: work in proportion to the keys
// denied, once per flush interval.
func (d *denials) sweep(now int64) {
	for i := range d.shards {
		s := &d.shards[i]
		s.mu.Lock()
		for id, e := range s.m {
			if now >= e.until {
				delete(s.m, id)
			}
		}
		s.mu.Unlock()
	}
}

// windowsSig sums up a key's rate windows (limit, length and whether
// they count every request, in order),
// so that a denial is not answered for windows that have changed since.
func windowsSig(ws []latchkey.RateLimit) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037) ^ uint64(len(ws))
	for i := range ws {
		h = (h ^ uint64(ws[i].Limit)) * prime
		h = (h ^ uint64(ws[i].Window)) * prime
		h = (h ^ uint64(len(ws[i].Apply))) * prime // "" or "on_request"
	}
	return h
}
