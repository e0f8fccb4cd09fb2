package ui

import (
	"sync"
	"time"
)

// countTTL is how long the overview trusts a tenant's counts: counting
// reads every key of the tenant (and summing the day's denials every
// key's usage), which costs hundreds of milliseconds at 10,000 keys, so
// an overview reloaded within this time shows the same figures. A change
// made through the dashboard forgets them at once; one made through the
// API or on another node shows within countTTL.
const countTTL = 10 * time.Second

// maxCountTenants bounds the cache: past it, it is emptied.
const maxCountTenants = 10_000

// countCache keeps each tenant's overview figures for countTTL.
type countCache struct {
	mu sync.Mutex
	m  map[string]*tenantCounts
}

type tenantCounts struct {
	keys       keyCounts
	keysAt     time.Time // zero: none
	deniedN    int64
	deniedAt   time.Time
	generation uint64 // bumped by forget, so a count begun before a change is not kept
}

func newCountCache() *countCache { return &countCache{m: map[string]*tenantCounts{}} }

// entry is tenant's record (made if missing); c.mu held.
func (c *countCache) entry(tenant string) *tenantCounts {
	e := c.m[tenant]
	if e == nil {
		if len(c.m) >= maxCountTenants {
			clear(c.m)
		}
		e = &tenantCounts{}
		c.m[tenant] = e
	}
	return e
}

// fresh reports whether a figure taken at at is still good at now.
func fresh(at, now time.Time) bool {
	return !at.IsZero() && !now.Before(at) && now.Sub(at) < countTTL
}

// keys returns tenant's key counts, from the cache or by count.
func (c *countCache) keys(tenant string, now time.Time, count func() (keyCounts, error)) (keyCounts, error) {
	c.mu.Lock()
	e := c.entry(tenant)
	if fresh(e.keysAt, now) {
		v := e.keys
		c.mu.Unlock()
		return v, nil
	}
	gen := e.generation
	c.mu.Unlock()
	v, err := count()
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	if e := c.entry(tenant); e.generation == gen {
		e.keys, e.keysAt = v, now
	}
	c.mu.Unlock()
	return v, nil
}

// denied returns tenant's denied verifications of the last 24 hours,
// from the cache or by sum.
func (c *countCache) denied(tenant string, now time.Time, sum func() (int64, error)) (int64, error) {
	c.mu.Lock()
	e := c.entry(tenant)
	if fresh(e.deniedAt, now) {
		n := e.deniedN
		c.mu.Unlock()
		return n, nil
	}
	gen := e.generation
	c.mu.Unlock()
	n, err := sum()
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	if e := c.entry(tenant); e.generation == gen {
		e.deniedN, e.deniedAt = n, now
	}
	c.mu.Unlock()
	return n, nil
}

// forget drops tenant's figures: a change made through the dashboard
// shows on its next overview.
func (c *countCache) forget(tenant string) {
	c.mu.Lock()
	if e := c.m[tenant]; e != nil {
		e.keysAt, e.deniedAt = time.Time{}, time.Time{}
		e.generation++
	}
	c.mu.Unlock()
}
