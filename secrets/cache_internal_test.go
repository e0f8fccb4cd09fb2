package secrets

import (
	"fmt"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

var tc0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// The cache never holds more versions than its size, however many names
// and versions are read.
func TestSecretCacheIsBounded(t *testing.T) {
	const size = 64
	c := newSecretCache(size, time.Minute)
	for i := range 5000 {
		name := fmt.Sprintf("s%d", i%700)
		sec := &latchkey.Secret{Name: name, Version: int64(i%9 + 1)}
		c.put(fmt.Sprintf("t%d", i%3), sec, int64(i%4)*sec.Version, c.generation(), tc0)
		if n := c.len(); n > size {
			t.Fatalf("after %d puts the cache holds %d versions, more than %d", i+1, n, size)
		}
	}
	if n := c.len(); n < size/2 {
		t.Fatalf("a full cache holds only %d versions", n)
	}
	// One name's many versions are bounded too.
	c = newSecretCache(secretShards, time.Minute) // one version per shard
	for v := int64(1); v <= 50; v++ {
		c.put("t", &latchkey.Secret{Name: "hot", Version: v}, v, c.generation(), tc0)
	}
	if n := c.len(); n > secretShards {
		t.Fatalf("one name's versions: %d cached", n)
	}
}

// An entry is trusted for the TTL and not after it.
func TestSecretCacheTTL(t *testing.T) {
	c := newSecretCache(100, 5*time.Second)
	sec := &latchkey.Secret{Name: "openai", Version: 1, Value: "sk-x"}
	c.put("acme", sec, 0, c.generation(), tc0)
	if c.get("acme", "openai", 0, tc0.Add(5*time.Second-time.Nanosecond)) != sec {
		t.Fatal("a fresh entry was not returned")
	}
	if c.get("acme", "openai", 0, tc0.Add(5*time.Second)) != nil {
		t.Fatal("an expired entry was returned")
	}
	if c.get("acme", "openai", 1, tc0) != nil || c.get("globex", "openai", 0, tc0) != nil {
		t.Fatal("an entry was returned for another version or tenant")
	}
}

// A load that began before an invalidation does not put the old value
// back.
func TestSecretCacheLoadRacingAnInvalidation(t *testing.T) {
	c := newSecretCache(100, time.Minute)
	gen := c.generation()
	c.invalidate("acme", "openai") // a put committed while the load read
	c.put("acme", &latchkey.Secret{Name: "openai", Version: 1}, 0, gen, tc0)
	if c.get("acme", "openai", 0, tc0) != nil {
		t.Fatal("a stale load was cached after an invalidation")
	}
}
