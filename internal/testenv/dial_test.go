package testenv

import (
	"context"
	"net"
	"testing"
)

// The dialer connects to loopback and refuses, and reports, anything else
// (a reserved documentation address here: nothing is sent to it).
func TestLoopbackDialerRefusesEverythingElse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dial := LoopbackDialer(t)
	c, err := dial(context.Background(), "tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("loopback: %v", err)
	}
	c.Close()
	var rec recorder
	off := LoopbackDialer(&rec)
	if _, err := off(context.Background(), "tcp", "192.0.2.1:80"); err == nil {
		t.Fatal("an address outside loopback was dialled")
	}
	rec.cleanup()
	if !rec.failed {
		t.Fatal("the refused dial was not reported")
	}
}

// recorder is a testing.TB that keeps its cleanups and failure to itself.
type recorder struct {
	testing.TB
	fns    []func()
	failed bool
}

func (r *recorder) Cleanup(f func())      { r.fns = append(r.fns, f) }
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Helper()               {}
func (r *recorder) cleanup() {
	for _, f := range r.fns {
		f()
	}
}
