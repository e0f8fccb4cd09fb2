//go:build !race

package redisguard_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/latchkeyhq/latchkey/guard"
	"github.com/latchkeyhq/latchkey/guard/redisguard"
	"github.com/latchkeyhq/latchkey/internal/allocstest"
)

// A failure costs the request no allocation: it is queued for Redis (or
// dropped when the queue is full), never sent inline. The guard is
// closed first, so that its flusher's sends do not count here.
func TestFailAllocatesNothing(t *testing.T) {
	local, err := guard.New(guard.Options{Threshold: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	// Port 1 of loopback: nothing listens; the subscriber's dials fail
	// until Close.
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer c.Close()
	g := redisguard.New(local, c, redisguard.Options{Queue: 1})
	g.Close()
	ip := netip.MustParseAddr("203.0.113.7")
	now := time.Now()
	allocstest.None(t, "Fail", func() { g.Fail(ip, now) })
	if g.SharedStats().Dropped == 0 {
		t.Error("a full queue dropped nothing")
	}
}
