package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// caddyBin is where Debian's caddy package puts the binary.
const caddyBin = "/usr/bin/caddy"

// Bounds on waiting for Caddy; a test must never hang on a stuck child.
const (
	caddyReadyTimeout  = 15 * time.Second
	caddyStopTimeout   = 5 * time.Second
	caddyStartAttempts = 3
)

// CaddyConfig says what StartCaddy puts in front of what.
type CaddyConfig struct {
	// Auth is Latchkey's address, host:port, and AuthURI the forward-auth
	// path with the scopes every request must hold, e.g.
	// /v1/auth?scope=data:read.
	Auth, AuthURI string
	// Upstream is the protected application's address, host:port.
	Upstream string
}

// Caddy is a running Caddy started by StartCaddy, stopped when the test
// that started it ends.
type Caddy struct {
	// URL is http://127.0.0.1:PORT, with no trailing slash.
	URL string
	// Dir holds the Caddyfile and Caddy's HOME, data and config dirs.
	Dir string

	cmd    *exec.Cmd
	done   chan struct{}
	stderr *syncBuffer
}

// CaddySnippet is the site block of docs/forward-auth.md: site answered
// by Caddy, each request first asked of Latchkey at auth (host:port) with
// authURI, its identity headers copied onto the request that goes on to
// upstream (host:port). A denial (401, 403, 429 with Retry-After) is
// Latchkey's answer, passed to the client as it is. It panics on an
// argument a Caddyfile cannot hold; they are the caller's constants.
func CaddySnippet(site, auth, authURI, upstream string) string {
	for _, s := range []string{site, auth, authURI, upstream} {
		if s == "" || strings.ContainsAny(s, " \t\r\n{}\"#") {
			panic(fmt.Sprintf("testenv.CaddySnippet: %q cannot be written into a Caddyfile", s))
		}
	}
	return strings.NewReplacer("{{SITE}}", site, "{{AUTH}}", auth, "{{URI}}", authURI, "{{UPSTREAM}}", upstream).Replace(caddySite)
}

// caddySite is the forward-auth configuration; every header named here is
// part of the GET /v1/auth contract (docs/api.md).
const caddySite = `{{SITE}} {
	forward_auth {{AUTH}} {
		uri {{URI}}
		copy_headers X-Latchkey-Key-Id X-Latchkey-Tenant X-Latchkey-Owner X-Latchkey-Scopes
	}
	reverse_proxy {{UPSTREAM}}
}
`

// caddyGlobal keeps a test's Caddy off its admin port (2019) and away
// from certificates, OCSP and telemetry hosts.
const caddyGlobal = `{
	admin off
	auto_https off
}
`

// StartCaddy runs caddy from a fresh t.TempDir() with CaddySnippet's
// configuration on a free port of 127.0.0.1, and returns once it accepts
// connections. It is stopped (SIGTERM, then SIGKILL) when the test ends.
// Without a caddy binary it calls Require.
func StartCaddy(t testing.TB, cfg CaddyConfig) *Caddy {
	t.Helper()
	if fi, err := os.Stat(caddyBin); err != nil || fi.IsDir() {
		Require(t, "caddy at "+caddyBin+" (apt-get install -y caddy)")
		return nil
	}
	dir := t.TempDir()
	for attempt := 1; ; attempt++ {
		c, err := startCaddyOnce(t, dir, cfg)
		if err == nil {
			return c
		}
		if errors.Is(err, errAddrInUse) && attempt < caddyStartAttempts {
			t.Logf("testenv: caddy lost its port to another process (attempt %d); retrying", attempt)
			continue
		}
		t.Fatalf("testenv: StartCaddy: %v", err)
	}
}

func startCaddyOnce(t testing.TB, dir string, cfg CaddyConfig) (*Caddy, error) {
	t.Helper()
	listen := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	text := caddyGlobal + "\n" + CaddySnippet("http://"+listen, cfg.Auth, cfg.AuthURI, cfg.Upstream)
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(caddyBin, "run", "--config", file, "--adapter", "caddyfile")
	cmd.Dir = dir
	// Caddy keeps state under HOME and the XDG dirs: all inside dir.
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	stderr := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = nginxSysProcAttr() // its own process group, stopped if we die
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", caddyBin, err)
	}
	c := &Caddy{URL: "http://" + listen, Dir: dir, cmd: cmd, done: make(chan struct{}), stderr: stderr}
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	if err := waitListening(listen, c.done, caddyReadyTimeout); err != nil {
		c.stop(t)
		if strings.Contains(stderr.String(), "address already in use") {
			return nil, errAddrInUse
		}
		return nil, fmt.Errorf("caddy: %v\nstderr:\n%s\nCaddyfile:\n%s", err, stderr.String(), text)
	}
	t.Cleanup(func() {
		c.stop(t)
		if t.Failed() {
			t.Logf("caddy at %s (dir %s):\n%s", c.URL, dir, stderr.String())
		}
	})
	return c, nil
}

// waitListening polls until something accepts TCP connections on addr,
// done is closed (the process exited) or timeout passes.
func waitListening(addr string, done <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-done:
			return errors.New("the process exited before accepting connections")
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, 250*time.Millisecond)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing accepted connections on %s within %v: %v", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends Caddy: SIGTERM (it exits 0), then SIGKILL to its process
// group after a bound.
func (c *Caddy) stop(t testing.TB) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return
	case <-time.After(caddyStopTimeout):
	}
	t.Logf("testenv: caddy (pid %d) did not stop within %v; killing it", c.cmd.Process.Pid, caddyStopTimeout)
	_ = nginxKill(c.cmd.Process)
	select {
	case <-c.done:
	case <-time.After(caddyStopTimeout):
		t.Errorf("testenv: caddy (pid %d) still running after SIGKILL", c.cmd.Process.Pid)
	}
}
