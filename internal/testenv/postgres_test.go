package testenv

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// queryInt runs a query that returns one integer on the database at dsn.
func queryInt(t *testing.T, dsn, q string) (int64, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n int64
	err = conn.QueryRow(ctx, q).Scan(&n)
	return n, err
}

// execSQL runs statements (several, separated by semicolons) on the
// database at dsn.
func execSQL(t *testing.T, dsn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresDatabasesAreSeparate: each NewDatabase is empty and its own,
// and a template's copy starts with the template's tables.
func TestPostgresDatabasesAreSeparate(t *testing.T) {
	pg := StartPostgres(t)
	a, b := pg.NewDatabase(t), pg.NewDatabase(t)
	if a == b {
		t.Fatalf("two databases share the DSN %s", a)
	}
	execSQL(t, a, "CREATE TABLE only_in_a (x int)")
	n, err := queryInt(t, b, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'")
	if err != nil || n != 0 {
		t.Errorf("database b sees a's table: %d, %v", n, err)
	}

	setups := 0
	setup := func(ctx context.Context, dsn string) error {
		setups++
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "CREATE TABLE seeded (x int); INSERT INTO seeded VALUES (7)")
		return err
	}
	for range 2 {
		if err := pg.Template("seed", setup); err != nil {
			t.Fatal(err)
		}
	}
	if setups != 1 {
		t.Errorf("template set up %d times, want once", setups)
	}
	n, err = queryInt(t, pg.NewDatabaseFrom(t, "seed"), "SELECT x FROM seeded")
	if err != nil || n != 7 {
		t.Errorf("copy of the template: %d, %v; want its row", n, err)
	}
	if err := pg.Template("broken", func(context.Context, string) error { return errors.New("no") }); err == nil {
		t.Error("a failed template setup reported success")
	}
}

// TestPostgresStopAndStart: a stopped server refuses connections, and
// Start brings it back on the same port with its data.
func TestPostgresStopAndStart(t *testing.T) {
	pg := StartPostgres(t)
	dsn := pg.NewDatabase(t)
	execSQL(t, dsn, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (3)")
	port := pg.Port
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err := queryInt(t, dsn, "SELECT 1")
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) {
		t.Fatalf("query on a stopped server: %v, want a connect error", err)
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	if pg.Port != port {
		t.Errorf("port %d after Start, want %d", pg.Port, port)
	}
	if n, err := queryInt(t, dsn, "SELECT x FROM kept"); err != nil || n != 3 {
		t.Errorf("data after a restart: %d, %v", n, err)
	}
}

// TestPostgresStopsWhenTestEnds: nothing of the server is left once the
// test that started it has ended: no process, no listener, no directory.
func TestPostgresStopsWhenTestEnds(t *testing.T) {
	var pg *Postgres
	t.Run("Start", func(t *testing.T) {
		pg = StartPostgres(t)
		pg.NewDatabase(t)
	})
	if pg == nil {
		t.Skip("postgres did not start (see the subtest)")
	}
	if pg.running() {
		t.Error("postgres still marked running after its test ended")
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(pg.Port), time.Second); err == nil {
		c.Close()
		t.Errorf("port %d still accepts connections after the test ended", pg.Port)
	}
	if _, err := os.Stat(pg.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s still there: %v", pg.Dir, err)
	}
}

// TestSharedPostgresNeedsPostgresMain: without PostgresMain nothing would
// stop a shared server, so asking for one fails the test instead.
func TestSharedPostgresNeedsPostgresMain(t *testing.T) {
	rec := &recordTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		SharedPostgres(rec)
	}()
	<-done
	if rec.fatal == "" {
		t.Fatal("SharedPostgres without PostgresMain did not fail the test")
	}
}

// The directory of a server whose test binary died is removed by the next
// start; one whose binary still runs is left alone.
func TestSweepRemovesOnlyOrphanedDirectories(t *testing.T) {
	done := exec.Command(os.Args[0], "-test.run=^$")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	dead := done.Process.Pid // exited and waited for: no such process now
	dirs := map[int]string{}
	for _, pid := range []int{dead, os.Getpid()} {
		dir, err := os.MkdirTemp("", postgresDirPattern)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.WriteFile(filepath.Join(dir, postgresOwnerFile), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			t.Fatal(err)
		}
		dirs[pid] = dir
	}
	sweepPostgresDirs()
	if _, err := os.Stat(dirs[dead]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the directory of a dead binary is still there: %v", err)
	}
	if _, err := os.Stat(dirs[os.Getpid()]); err != nil {
		t.Errorf("the directory of a running binary was removed: %v", err)
	}
}
