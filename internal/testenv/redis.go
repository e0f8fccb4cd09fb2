package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// redisBin is where Debian's redis-server package puts the binary.
const redisBin = "/usr/bin/redis-server"

// Bounds on waiting for redis-server; a test must never hang on a stuck
// child.
const (
	redisReadyTimeout = 10 * time.Second
	redisStopTimeout  = 5 * time.Second
	// redisStartAttempts bounds retries when another process takes the
	// port between FreePort (or a Stop) and redis-server's bind.
	redisStartAttempts = 3
)

// Redis is a running redis-server started by StartRedis, listening on
// 127.0.0.1 only, with persistence off: a Stop loses every key, as a crash
// of a cache-only Redis does. It is stopped when the test that started it
// ends.
type Redis struct {
	// Addr is 127.0.0.1:PORT.
	Addr string
	// Dir is the server's working directory (empty: --save '' and
	// --appendonly no write nothing there).
	Dir string

	t   testing.TB
	bin string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has been waited for
	stderr *syncBuffer
}

// StartRedis runs redis-server in the foreground from a fresh t.TempDir() on
// a free port of 127.0.0.1, with persistence off, and returns once it answers
// PING. It is killed by PID when the test ends. Without a redis-server binary
// it calls Require.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin := findRedis()
	if bin == "" {
		Require(t, "redis-server at "+redisBin+" (apt-get install -y redis-server)")
		return nil
	}
	r := &Redis{Dir: t.TempDir(), t: t, bin: bin}
	var err error
	for attempt := 1; attempt <= redisStartAttempts; attempt++ {
		r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
		if err = r.start(); err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
		t.Logf("testenv: redis-server lost its port to another process (attempt %d); retrying", attempt)
	}
	if err != nil {
		t.Fatalf("testenv: StartRedis: %v", err)
	}
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			r.mu.Lock()
			out := r.stderr.String()
			r.mu.Unlock()
			t.Logf("redis-server at %s:\n%s", r.Addr, out)
		}
	})
	return r
}

// URL is the server's address as a redis:// URL for database 0, as the
// --redis flag takes it.
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// Stop kills the server (SIGKILL, as a crash) and waits until it has exited
// and its port no longer accepts connections. Everything it held is lost.
func (r *Redis) Stop() {
	r.t.Helper()
	r.stop()
}

// Restart starts an empty server on the same address after a Stop (or
// kills the running one first), and returns once it answers PING.
func (r *Redis) Restart() {
	r.t.Helper()
	r.stop()
	var err error
	// The port was ours a moment ago; a few attempts cover a socket the
	// kernel has not quite let go of.
	for attempt := 1; attempt <= redisStartAttempts; attempt++ {
		if err = r.start(); err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("testenv: restarting redis-server on %s: %v", r.Addr, err)
	}
}

// Running reports whether the server process is alive.
func (r *Redis) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

func (r *Redis) start() error {
	_, port, _ := net.SplitHostPort(r.Addr)
	cmd := exec.Command(r.bin,
		"--bind", "127.0.0.1",
		"--port", port,
		"--save", "",
		"--appendonly", "no",
		"--dir", r.Dir,
		"--daemonize", "no",
		"--protected-mode", "yes",
	)
	cmd.Dir = r.Dir
	stderr := &syncBuffer{}
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	// Its own process group, and SIGTERM from the kernel if the test
	// binary dies without running its cleanups.
	cmd.SysProcAttr = nginxSysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", r.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	r.mu.Lock()
	r.cmd, r.done, r.stderr = cmd, done, stderr
	r.mu.Unlock()

	if err := waitRedis(r.Addr, done); err != nil {
		r.stop()
		out := stderr.String()
		if strings.Contains(out, "Address already in use") {
			return errAddrInUse
		}
		return fmt.Errorf("%v\nredis-server output:\n%s", err, out)
	}
	return nil
}

// stop kills the process by PID and waits for it.
func (r *Redis) stop() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	if err := cmd.Process.Kill(); err != nil {
		r.t.Logf("testenv: kill redis-server (pid %d): %v", cmd.Process.Pid, err)
	}
	select {
	case <-done:
	case <-time.After(redisStopTimeout):
		r.t.Errorf("testenv: redis-server (pid %d) still running %v after SIGKILL", cmd.Process.Pid, redisStopTimeout)
	}
}

// waitRedis polls until the server at addr answers PING with PONG, the
// process exits (done), or redisReadyTimeout passes.
func waitRedis(addr string, done <-chan struct{}) error {
	deadline := time.Now().Add(redisReadyTimeout)
	var last error
	for {
		select {
		case <-done:
			return errors.New("redis-server exited before answering PING")
		default:
		}
		if last = pingRedis(addr); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not answer PING within %v: %v", addr, redisReadyTimeout, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pingRedis sends one inline PING and expects +PONG (a server still loading
// answers -LOADING, which counts as not ready).
func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 250*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// findRedis returns the redis-server binary to run, or "" if there is none.
func findRedis() string {
	if fi, err := os.Stat(redisBin); err == nil && !fi.IsDir() {
		return redisBin
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	return ""
}
