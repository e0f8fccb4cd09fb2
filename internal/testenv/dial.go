package testenv

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
)

// LoopbackDialer returns a dial function for the code under test (a
// JWKS fetch, a webhook) that connects only to 127.0.0.0/8: any other
// address is recorded and refused, so a broken check cannot send a packet
// off the machine, and the test fails when it ends if anything tried.
func LoopbackDialer(t testing.TB) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var mu sync.Mutex
	var refused []string
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if len(refused) > 0 {
			t.Errorf("the code under test tried to connect outside loopback: %v", refused)
		}
	})
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err == nil {
			if a, perr := netip.ParseAddr(host); perr == nil && a.Unmap().Is4() && a.Unmap().IsLoopback() {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}
		}
		mu.Lock()
		refused = append(refused, addr)
		mu.Unlock()
		return nil, &net.OpError{Op: "dial", Net: network, Err: errOffLoopback}
	}
}

type offLoopback struct{}

func (offLoopback) Error() string { return "testenv: only 127.0.0.0/8 may be dialled in tests" }

var errOffLoopback error = offLoopback{}
