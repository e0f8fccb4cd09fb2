package keys

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

var cacheT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func hashOf(i int) [32]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(b[:])
}

// scannedKey builds key i as a store read gives it: every string and
// collection its own allocation (store/sqlite decodes the JSON columns).
func scannedKey(t testing.TB, i int, meta string) *latchkey.Key {
	k := &latchkey.Key{
		ID: fmt.Sprintf("key_%020d", i), Tenant: string([]byte("acme")), Name: string([]byte("agent key")),
		Owner: "agent-" + strconv.Itoa(i) + "@example.com", Environment: string([]byte("production")),
		Prefix: string([]byte("lk")), Start: "lk_live_" + strconv.Itoa(i%10000),
		Hash: hashOf(i), State: latchkey.StateActive, CreatedAt: cacheT0, UpdatedAt: cacheT0,
		Countries: []string{}, TimeWindows: []latchkey.TimeWindow{}, RateLimits: []latchkey.RateLimit{},
		IPAllow: nil,
	}
	for _, c := range []struct {
		col string
		v   any
	}{{`["data:read","agent:activate"]`, &k.Scopes}, {`[]`, &k.Resources}, {meta, &k.Meta}, {`[]`, &k.IPAllow}} {
		if err := json.Unmarshal([]byte(c.col), c.v); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// TestCacheKeepsHotKeysThroughAColdScan plays a hot set of keys used all
// along while a scan of cold keys, many times the cache's size, goes
// through: every hot key stays cached (no store read after the first),
// every cold one costs its read, and no shard outgrows its bound.
func TestCacheKeepsHotKeysThroughAColdScan(t *testing.T) {
	const size, hot, cold = 6400, 640, 64_000
	c := newCache(size, size/10, time.Hour, time.Second)
	now := cacheT0
	reads := 0
	use := func(i int) {
		h := hashOf(i)
		if _, fresh, _ := c.lookup(h, now); fresh {
			return
		}
		reads++
		c.put(h, &Entry{Key: latchkey.Key{Hash: h}}, c.generation(), now)
	}
	for i := range hot {
		use(i)
	}
	if reads != hot {
		t.Fatalf("warm-up read the store %d times, want %d", reads, hot)
	}
	reads = 0
	for i := range cold {
		use(hot + i)
		use(i % hot)
		now = now.Add(time.Millisecond)
	}
	if reads != cold {
		t.Errorf("the scan read the store %d times for %d cold keys: %d hot keys were evicted", reads, cold, reads-cold)
	}
	pos, _ := c.len()
	if pos > size {
		t.Errorf("cache holds %d keys, bound %d", pos, size)
	}
	for i := range c.shards {
		if n := len(c.shards[i].t.pos.slots); n > size/cacheShards {
			t.Errorf("shard %d holds %d keys, bound %d", i, n, size/cacheShards)
		}
	}
}

// TestNegativeCacheIsBounded fills the negative cache far past its bound.
func TestNegativeCacheIsBounded(t *testing.T) {
	c := newCache(640, 640, time.Hour, time.Hour)
	for i := range 100_000 {
		c.put(hashOf(i), nil, c.generation(), cacheT0)
	}
	if _, neg := c.len(); neg != 640 {
		t.Errorf("negative cache holds %d hashes, bound 640", neg)
	}
	// The last one put is remembered.
	if _, _, missing := c.lookup(hashOf(99_999), cacheT0); !missing {
		t.Error("the newest unknown hash is not remembered")
	}
}

// TestCacheInvalidateAndReuseSlots checks that removing entries (the swap
// with the last slot) keeps every other entry findable.
func TestCacheInvalidateAndReuseSlots(t *testing.T) {
	c := newCache(64*50, 64, time.Hour, time.Hour)
	for i := range 3000 {
		c.put(hashOf(i), &Entry{Key: latchkey.Key{ID: strconv.Itoa(i), Hash: hashOf(i)}}, c.generation(), cacheT0)
	}
	for i := 0; i < 3000; i += 3 {
		c.invalidate(hashOf(i))
	}
	for i := range 3000 {
		e, fresh, _ := c.lookup(hashOf(i), cacheT0)
		switch {
		case i%3 == 0 && e != nil:
			t.Fatalf("key %d still cached after invalidate", i)
		case i%3 != 0 && fresh && e.Key.ID != strconv.Itoa(i):
			t.Fatalf("hash of key %d finds key %s", i, e.Key.ID)
		}
	}
}

func TestParseCacheSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"200000", 200_000},
		{"64", 64},
		{"128MiB", 128 << 20 / EntryBytes},
		{"1GB", 1_000_000_000 / EntryBytes},
		{"100KiB", 100 << 10 / EntryBytes},
		{"1073741824", 1 << 30},
	} {
		got, err := ParseCacheSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseCacheSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "0", "63", "-5", "1e6", "64 MiB", "64mib", "64M", "MiB", "1TiB", "1073741825", "999999999999GiB", "12.5MiB", "0x100", "1KiB"} {
		if _, err := ParseCacheSize(in); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("ParseCacheSize(%q) error code %q, want %q", in, latchkey.ErrorCode(err), latchkey.EInvalid)
		}
	}
}

func FuzzParseCacheSize(f *testing.F) {
	for _, s := range []string{"200000", "64MiB", "1GB", "", "0", "1TiB", "12.5MiB", "999999999999GiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseCacheSize(s)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("ParseCacheSize(%q): error code %q", s, latchkey.ErrorCode(err))
			}
			return
		}
		if n < MinCacheSize || n > MaxCacheSize {
			t.Fatalf("ParseCacheSize(%q) = %d, out of bounds", s, n)
		}
		if again, err := ParseCacheSize(strconv.Itoa(n)); err != nil || again != n {
			t.Fatalf("ParseCacheSize(%q) = %d, but %d reads back as %d, %v", s, n, n, again, err)
		}
	})
}

// gatedStore answers KeyByHash only when released, counting the reads.
type gatedStore struct {
	Store
	reads   atomic.Int64
	release chan struct{}
	key     *latchkey.Key
}

func (g *gatedStore) KeyByHash(ctx context.Context, h [32]byte) (*latchkey.Key, error) {
	g.reads.Add(1)
	<-g.release
	k := *g.key
	return &k, nil
}

// TestMissStampedeReadsOnce: many verifications of one uncached key at
// once cost one store read, and all get its answer.
func TestMissStampedeReadsOnce(t *testing.T) {
	tok, err := latchkey.GenerateToken("", crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedStore{release: make(chan struct{}), key: &latchkey.Key{
		ID: "key_1", Tenant: "acme", Hash: tok.Hash(), State: latchkey.StateActive, Scopes: []string{"data:read"},
	}}
	s := New(Options{Store: g, Now: func() time.Time { return cacheT0 }})
	const n = 50
	codes := make(chan string, n)
	for range n {
		go func() {
			v, err := s.Verify(context.Background(), VerifyRequest{Key: tok.Reveal(), Scopes: []string{"data:read"}})
			if err != nil {
				t.Error(err)
			}
			codes <- v.Code
		}()
	}
	// Wait until one goroutine leads the flight and the others joined it.
	h := tok.Hash()
	sh := s.cache.shard(h)
	for {
		sh.mu.RLock()
		f := sh.t.flights[h]
		sh.mu.RUnlock()
		if f != nil && f.waiters.Load() == n-1 {
			break
		}
		runtime.Gosched()
	}
	close(g.release)
	for range n {
		if c := <-codes; c != latchkey.CodeValid {
			t.Errorf("verify = %s, want %s", c, latchkey.CodeValid)
		}
	}
	if r := g.reads.Load(); r != 1 {
		t.Errorf("%d verifications of one key read the store %d times, want 1", n, r)
	}
}

// TestEntryTimeWindows: a key without windows is usable at any time, one
// with windows only inside them, and one whose stored windows no longer
// compile (a zone gone from the tz database) at no time.
func TestEntryTimeWindows(t *testing.T) {
	mon9 := time.Date(2026, 3, 30, 9, 0, 0, 0, time.UTC)   // a Monday
	mon20 := time.Date(2026, 3, 30, 20, 0, 0, 0, time.UTC) // same day, evening
	office := []latchkey.TimeWindow{{Days: []string{"mon"}, Start: "08:00", End: "17:00", TZ: "UTC"}}
	gone := []latchkey.TimeWindow{{Start: "08:00", End: "17:00", TZ: "Nowhere/Gone"}}
	for _, c := range []struct {
		name    string
		windows []latchkey.TimeWindow
		at9     bool
		at20    bool
	}{
		{"none", nil, true, true},
		{"office hours", office, true, false},
		{"zone gone", gone, false, false},
	} {
		e := NewEntry(&latchkey.Key{ID: "key_1", TimeWindows: c.windows})
		if got := e.AllowsTime(mon9); got != c.at9 {
			t.Errorf("%s: allowed at 09:00 = %v, want %v", c.name, got, c.at9)
		}
		if got := e.AllowsTime(mon20); got != c.at20 {
			t.Errorf("%s: allowed at 20:00 = %v, want %v", c.name, got, c.at20)
		}
	}
}
