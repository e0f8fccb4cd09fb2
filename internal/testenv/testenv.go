// Package testenv starts real outside programs (nginx, Caddy, PostgreSQL,
// Redis; Chromium as it is needed) for tests, each from a temporary directory,
// listening on 127.0.0.1 only and stopped by PID when the test ends.
//
// The programs come from Debian packages that scripts/test.sh installs. When a
// program is missing a test skips, unless LATCHKEY_TEST_REQUIRE=1 (set by
// scripts/test.sh and so by CI), in which case it fails: a CI run must never
// pass because it quietly skipped the tests that use real parts.
package testenv

import (
	"net"
	"os"
	"testing"
)

// RequireEnv is the environment variable that turns a missing program from a
// skip into a failure.
const RequireEnv = "LATCHKEY_TEST_REQUIRE"

// Require reports that what (a program, a package, a service) is not
// available: it fails t when LATCHKEY_TEST_REQUIRE=1 and skips t otherwise.
// what should say how to get it, e.g. "nginx (apt-get install -y nginx)".
func Require(t testing.TB, what string) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("missing %s; required because %s=1", what, RequireEnv)
	}
	t.Skipf("missing %s; skipping (set %s=1 to fail instead)", what, RequireEnv)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// port is released before returning so that a child process can bind it; a
// caller that may lose the race should retry with a new port (StartNginx does).
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: find a free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatalf("testenv: release port %d: %v", port, err)
	}
	return port
}
