package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// postgresBinDir is where Debian's postgresql-15 package puts the server's
// programs.
const postgresBinDir = "/usr/lib/postgresql/15/bin"

// postgresWhat names the missing program in a Require message.
const postgresWhat = "PostgreSQL 15 at " + postgresBinDir + " (apt-get install -y postgresql)"

// Bounds on waiting for PostgreSQL; a test must never hang on a stuck child.
const (
	postgresInitTimeout  = 60 * time.Second
	postgresReadyTimeout = 30 * time.Second
	postgresStopTimeout  = 10 * time.Second
	// postgresStartAttempts bounds retries when another process takes the
	// port between FreePort and the server's bind.
	postgresStartAttempts = 3
)

// ErrNoPostgres is returned by LaunchPostgres when the PostgreSQL programs
// are not installed.
var ErrNoPostgres = errors.New("testenv: missing " + postgresWhat)

// Postgres is a PostgreSQL server of its own, run from a temporary
// directory on 127.0.0.1 with durability off (fsync, synchronous_commit and
// full_page_writes: a test never survives a power cut). Its only role is
// postgres, with trust authentication and no password.
//
// A test gets one with StartPostgres (a server for that test) or
// SharedPostgres (one server for the whole test binary, stopped by
// PostgresMain), and a database of its own on it with NewDatabase: creating a
// database costs milliseconds where starting a server costs seconds.
type Postgres struct {
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Dir holds the data directory, Dir/data, which is also where the
	// Unix socket is. The server's log goes to the test's log when the
	// test fails.
	Dir string

	dataDir string
	asUser  *user.User   // nil: run as ourselves
	counter atomic.Int64 // names databases

	mu     sync.Mutex // guards the fields below, and Start/Stop
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has been waited for
	stderr *syncBuffer
	closed bool

	tmplMu sync.Mutex       // held by Template, so that a name is made once
	tmpl   map[string]error // Template's results by name
}

// StartPostgres runs a PostgreSQL server for t alone, and stops it and
// removes its files when t ends. Without the PostgreSQL programs it calls
// Require. Tests of a package that each need an empty database should share
// one server instead (SharedPostgres and NewDatabase).
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	p, err := LaunchPostgres()
	if errors.Is(err, ErrNoPostgres) {
		Require(t, postgresWhat)
		return nil
	}
	if err != nil {
		t.Fatalf("testenv: StartPostgres: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postgres on port %d (dir %s) said:\n%s", p.Port, p.Dir, p.log())
		}
		if err := p.Close(); err != nil {
			t.Errorf("testenv: stop postgres: %v", err)
		}
	})
	return p
}

// LaunchPostgres starts a PostgreSQL server for a caller without a test at
// hand (TestMain, a benchmark program). The caller must Close it. It
// returns ErrNoPostgres when the programs are missing.
func LaunchPostgres() (*Postgres, error) {
	if _, err := os.Stat(filepath.Join(postgresBinDir, "postgres")); err != nil {
		return nil, ErrNoPostgres
	}
	p := &Postgres{tmpl: map[string]error{}}
	// PostgreSQL refuses to run as root: as root, the server runs as the
	// postgres user, which must be able to reach its directory. A
	// directory straight under the system's temp dir is reachable, where
	// t.TempDir's parent (mode 0700) is not.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("testenv: postgres runs as the postgres user, which does not exist: %w", err)
		}
		p.asUser = u
	}
	sweepPostgresDirs()
	dir, err := os.MkdirTemp("", postgresDirPattern)
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	// The test binary's pid, so that a later run can tell the directory
	// of a binary that died without its cleanups (sweepPostgresDirs).
	if err := os.WriteFile(filepath.Join(dir, postgresOwnerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("testenv: %w", err)
	}
	p.Dir = dir
	p.dataDir = filepath.Join(dir, "data")
	if err := p.initdb(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		p.Port = freePort()
		err := p.Start()
		if err == nil {
			return p, nil
		}
		if errors.Is(err, errAddrInUse) && attempt < postgresStartAttempts {
			continue
		}
		_ = os.RemoveAll(dir)
		return nil, err
	}
}

// The server's directory is postgresDirPattern in the system's temp dir,
// and holds the pid of the test binary that made it in postgresOwnerFile.
const (
	postgresDirPattern = "latchkey-pg-"
	postgresOwnerFile  = "owner.pid"
)

// sweepPostgresDirs removes the directories of servers whose test binary
// died without its cleanups (a go test -timeout panic, a kill): the server
// itself went with the binary (its parent-death signal), its files stayed.
// A directory is left alone while its binary or its server still runs.
func sweepPostgresDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), postgresDirPattern+"*"))
	for _, dir := range dirs {
		owner := readPID(filepath.Join(dir, postgresOwnerFile))
		if owner == 0 || alive(owner) || alive(readPID(filepath.Join(dir, "data", "postmaster.pid"))) {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

// readPID reads the number on the first line of a pid file (0 if none).
func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0
	}
	return pid
}

// alive reports whether a process with the pid exists.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	return proc.Signal(syscall.Signal(0)) == nil
}

// freePort is FreePort without a test: the port of a listener on
// 127.0.0.1:0, released; 0 if there is none (the start then fails).
func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// command returns a command running one of the server's programs, as the
// postgres user when we are root (through runuser, as TESTING.md says).
func (p *Postgres) command(prog string, args ...string) *exec.Cmd {
	bin := filepath.Join(postgresBinDir, prog)
	if p.asUser == nil {
		return exec.Command(bin, args...)
	}
	return exec.Command("runuser", append([]string{"-u", p.asUser.Username, "--", bin}, args...)...)
}

// initdb creates the cluster: trust authentication for the role postgres,
// UTF-8, and no fsync while it writes. Its default collation is ICU's
// en-US, not byte order, as a production database's usually is (en_US.UTF-8):
// a backend that sorts ids without saying COLLATE "C" fails its tests here
// rather than in production.
func (p *Postgres) initdb() error {
	if p.asUser != nil {
		uid, _ := strconv.Atoi(p.asUser.Uid)
		gid, _ := strconv.Atoi(p.asUser.Gid)
		if err := os.Chmod(p.Dir, 0o755); err != nil {
			return fmt.Errorf("testenv: %w", err)
		}
		if err := os.Chown(p.Dir, uid, gid); err != nil {
			return fmt.Errorf("testenv: %w", err)
		}
	}
	cmd := p.command("initdb", "-D", p.dataDir, "-A", "trust", "-U", "postgres", "--no-sync",
		"-E", "UTF8", "--locale=C.UTF-8", "--locale-provider=icu", "--icu-locale=en-US", "--no-instructions")
	cmd.Dir = p.Dir
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = nginxSysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testenv: initdb: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("testenv: initdb: %v\n%s", err, out.String())
		}
		return nil
	case <-time.After(postgresInitTimeout):
		_ = nginxKill(cmd.Process)
		<-done
		return fmt.Errorf("testenv: initdb did not finish within %v\n%s", postgresInitTimeout, out.String())
	}
}

// Start starts the server on its port and data directory and returns once it
// accepts connections: the first start, and again after Stop, for tests of
// what a client does while the database is away.
func (p *Postgres) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("testenv: postgres is closed")
	}
	if p.cmd != nil {
		return errors.New("testenv: postgres is running")
	}
	cmd := p.command("postgres", "-D", p.dataDir, "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-k", p.dataDir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=32MB", "-c", "dynamic_shared_memory_type=mmap",
		"-c", "log_min_messages=warning", "-c", "log_min_error_statement=panic", "-c", "log_checkpoints=off")
	cmd.Dir = p.Dir
	stderr := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	// Its own process group, so that a kill reaches every backend too;
	// and a parent-death signal, so that a test binary that dies without
	// its cleanups (a -timeout panic) takes the server with it.
	cmd.SysProcAttr = nginxSysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testenv: start postgres: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	p.cmd, p.done, p.stderr = cmd, done, stderr
	if err := p.waitReady(); err != nil {
		p.stopLocked()
		if strings.Contains(stderr.String(), "Address already in use") {
			return errAddrInUse
		}
		return fmt.Errorf("testenv: %v\npostgres said:\n%s", err, stderr.String())
	}
	return nil
}

// waitReady polls until the server answers a query, exits, or
// postgresReadyTimeout passes.
func (p *Postgres) waitReady() error {
	deadline := time.Now().Add(postgresReadyTimeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("postgres exited before accepting connections (%v)", p.cmd.ProcessState)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := p.exec(ctx, "postgres", "SELECT 1")
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not answer on port %d within %v: %v", p.Port, postgresReadyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop shuts the server down (a fast shutdown: clients are disconnected)
// and keeps its data, so that Start brings it back on the same port. A test
// that stops the server sees what a client sees when the database is away.
func (p *Postgres) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	return p.stopLocked()
}

// stopLocked stops the running server by the pid in postmaster.pid (as root
// the command we started is runuser, which would turn a signal into a
// smart shutdown and a kill), then kills whatever is left of its process
// group.
func (p *Postgres) stopLocked() error {
	cmd, done := p.cmd, p.done
	p.cmd = nil
	if pid := p.postmasterPID(); pid > 0 {
		if proc, err := os.FindProcess(pid); err == nil {
			_ = proc.Signal(os.Interrupt) // SIGINT: fast shutdown
		}
	} else {
		_ = cmd.Process.Signal(os.Interrupt)
	}
	var err error
	select {
	case <-done:
	case <-time.After(postgresStopTimeout):
		err = fmt.Errorf("postgres (pid %d) did not stop within %v; killed it", cmd.Process.Pid, postgresStopTimeout)
	}
	// Stragglers: backends of a server that was killed, or the whole
	// group after a timeout. Harmless when nothing is left.
	_ = nginxKill(cmd.Process)
	select {
	case <-done:
	case <-time.After(postgresStopTimeout):
		return fmt.Errorf("postgres (pid %d) still running after SIGKILL", cmd.Process.Pid)
	}
	return err
}

// postmasterPID reads the server's pid from postmaster.pid (0 if absent).
func (p *Postgres) postmasterPID() int {
	return readPID(filepath.Join(p.dataDir, "postmaster.pid"))
}

// Close stops the server and removes its directory. It may be called more
// than once.
func (p *Postgres) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var err error
	if p.cmd != nil {
		err = p.stopLocked()
	}
	return errors.Join(err, os.RemoveAll(p.Dir))
}

// log returns what the server wrote to stderr since its last start.
func (p *Postgres) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stderr == nil {
		return ""
	}
	return p.stderr.String()
}

// DSN returns the connection string of database db on the server.
func (p *Postgres) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// exec runs one statement on database db.
func (p *Postgres) exec(ctx context.Context, db, sql string) error {
	conn, err := pgx.Connect(ctx, p.DSN(db))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// NewDatabase creates an empty database for t and returns its connection
// string; the database is dropped when t ends (its connections with it).
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	return p.newDatabase(t, "")
}

// NewDatabaseFrom is NewDatabase with a copy of a template made by
// Template, e.g. one with a schema already migrated.
func (p *Postgres) NewDatabaseFrom(t testing.TB, template string) string {
	t.Helper()
	return p.newDatabase(t, template)
}

func (p *Postgres) newDatabase(t testing.TB, template string) string {
	t.Helper()
	name := fmt.Sprintf("test_%d", p.counter.Add(1))
	// FILE_COPY copies the template's files whole: for a small database
	// about twice as fast as PostgreSQL 15's default, WAL_LOG, which
	// writes every block through the log (and durability is off here).
	q := "CREATE DATABASE " + name + " STRATEGY FILE_COPY"
	if template != "" {
		q += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	ctx, cancel := context.WithTimeout(context.Background(), postgresReadyTimeout)
	defer cancel()
	if err := p.exec(ctx, "postgres", q); err != nil {
		t.Fatalf("testenv: %s: %v", q, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), postgresReadyTimeout)
		defer cancel()
		// FORCE ends the connections of a pool the test did not close.
		// A stopped server (a test that failed midway) has nothing to drop.
		if err := p.exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil && p.running() {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	return p.DSN(name)
}

// running reports whether the server has been started and not stopped.
func (p *Postgres) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Template creates, once per name, a database that setup fills (given its
// connection string) and that NewDatabaseFrom copies. Later calls with the
// name return the first call's result without running setup. A failed
// setup leaves no template behind.
func (p *Postgres) Template(name string, setup func(ctx context.Context, dsn string) error) error {
	p.tmplMu.Lock()
	defer p.tmplMu.Unlock()
	if err, done := p.tmpl[name]; done {
		return err
	}
	err := p.makeTemplate(name, setup)
	p.tmpl[name] = err
	return err
}

func (p *Postgres) makeTemplate(name string, setup func(ctx context.Context, dsn string) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), postgresInitTimeout)
	defer cancel()
	id := pgx.Identifier{name}.Sanitize()
	if err := p.exec(ctx, "postgres", "CREATE DATABASE "+id); err != nil {
		return fmt.Errorf("testenv: template %s: %w", name, err)
	}
	err := setup(ctx, p.DSN(name))
	if err == nil {
		// A template must have no connections while it is copied; setup's
		// are closed by now.
		err = p.exec(ctx, "postgres", "ALTER DATABASE "+id+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
	}
	if err != nil {
		_ = p.exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+id+" WITH (FORCE)")
		return fmt.Errorf("testenv: template %s: %w", name, err)
	}
	return nil
}

// The server shared by a test binary (SharedPostgres).
var shared struct {
	mu   sync.Mutex
	pg   *Postgres
	err  error
	done bool // started (or failed to) once
	main bool // PostgresMain is running the tests
}

// SharedPostgres returns the test binary's one PostgreSQL server, started
// by the first test that asks. The package's TestMain must be PostgresMain
// (or call it), which stops the server when the tests end; without it
// SharedPostgres fails the test rather than leave a server behind. Without
// the PostgreSQL programs it calls Require.
func SharedPostgres(t testing.TB) *Postgres {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		t.Fatalf("testenv: SharedPostgres needs TestMain to be testenv.PostgresMain, which stops the server")
	}
	if !shared.done {
		shared.done = true
		shared.pg, shared.err = LaunchPostgres()
	}
	if errors.Is(shared.err, ErrNoPostgres) {
		Require(t, postgresWhat)
	}
	if shared.err != nil {
		t.Fatalf("testenv: SharedPostgres: %v", shared.err)
	}
	return shared.pg
}

// PostgresMain runs a package's tests (m.Run) and then stops the server
// SharedPostgres started, if any. Use it as TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.PostgresMain(m)) }
//
// Each of after, if any, runs once the tests have run and before the
// server stops, with their exit code and the shared server's directory
// ("" if no test started it), and returns the code to exit with: a
// package's end-of-run checks (a scan of the database files for leaked
// secrets) see the server's files while they exist.
func PostgresMain(m *testing.M, after ...func(code int, dir string) int) int {
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	dir := ""
	if shared.pg != nil {
		dir = shared.pg.Dir
	}
	for _, f := range after {
		code = f(code, dir)
	}
	if shared.pg != nil {
		if err := shared.pg.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv: stop the shared postgres:", err)
			if code == 0 {
				code = 1
			}
		}
		shared.pg = nil
	}
	return code
}
