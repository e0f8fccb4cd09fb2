package testenv

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestStartRedisAnswersStopsAndRestartsOnTheSameAddress(t *testing.T) {
	var r *Redis
	t.Run("Start", func(t *testing.T) {
		r = StartRedis(t)
		if !strings.HasPrefix(r.Addr, "127.0.0.1:") {
			t.Fatalf("Addr %q is not on 127.0.0.1", r.Addr)
		}
		if want := "redis://" + r.Addr + "/0"; r.URL() != want {
			t.Errorf("URL() = %q, want %q", r.URL(), want)
		}
		if err := pingRedis(r.Addr); err != nil {
			t.Fatalf("PING after StartRedis: %v", err)
		}
		r.Stop()
		if r.Running() {
			t.Fatal("Running() after Stop")
		}
		if c, err := net.DialTimeout("tcp", r.Addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s accepts connections after Stop", r.Addr)
		}
		r.Restart()
		if err := pingRedis(r.Addr); err != nil {
			t.Fatalf("PING after Restart: %v", err)
		}
	})
	if r == nil {
		t.Skip("redis-server did not start (see the subtest)")
	}
	if r.Running() {
		t.Fatal("redis-server still running after its test ended")
	}
	if c, err := net.DialTimeout("tcp", r.Addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after the test ended", r.Addr)
	}
}
