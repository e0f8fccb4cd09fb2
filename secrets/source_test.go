package secrets_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/secrets"
)

// sourceFixture is a secret service whose sources may reach an
// environment prefix, one directory and one program, all the test's own.
type sourceFixture struct {
	*fixture
	dir  string // the allowed directory
	prog string // the allowed program
}

// writeScript writes an executable shell script.
func writeScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
}

func newSourceFixture(t *testing.T, opts ...func(*setup)) *sourceFixture {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh to run exec: sources")
	}
	base := t.TempDir()
	sf := &sourceFixture{dir: filepath.Join(base, "allowed"), prog: filepath.Join(base, "bin", "getsecret")}
	for _, d := range []string{sf.dir, filepath.Dir(sf.prog)} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeScript(t, sf.prog, `printf 'exec-value-%s\n' "$1"`)
	allow, err := secrets.ParseSourceAllow("env:SRCTEST_*, file:" + sf.dir + "/, exec:" + sf.prog)
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]func(*setup){func(s *setup) { s.SourceAllow = allow }}, opts...)
	sf.fixture = newFixture(t, opts...)
	return sf
}

func (f *fixture) putSource(t *testing.T, name, src string, refresh time.Duration) *latchkey.Secret {
	t.Helper()
	s, err := f.svc.PutSecret(context.Background(), f.admin, name, secrets.SecretParams{Source: src, Refresh: refresh})
	if err != nil {
		t.Fatalf("PutSecret(%s, source %s): %v", name, src, err)
	}
	return s
}

func (f *fixture) readValue(t *testing.T, name string) (string, error) {
	t.Helper()
	s, err := f.svc.ReadSecret(context.Background(), f.admin, name, 0)
	if err != nil {
		return "", err
	}
	return s.Value, nil
}

func (f *fixture) mustRead(t *testing.T, name, want string) {
	t.Helper()
	got, err := f.readValue(t, name)
	if err != nil || got != want {
		t.Fatalf("read %s: %q, %v; want %q", name, got, err, want)
	}
}

func (f *fixture) mustFail(t *testing.T, name string) {
	t.Helper()
	if _, err := f.readValue(t, name); latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Fatalf("read %s: %v, want unavailable", name, err)
	}
}

func TestEnvSourceServesTheVariable(t *testing.T) {
	f := newSourceFixture(t)
	t.Setenv("SRCTEST_OPENAI", "sk-from-env-1")
	s := f.putSource(t, "openai", "env:SRCTEST_OPENAI", 0)
	if s.Meta[secrets.MetaSource] != "env:SRCTEST_OPENAI" || s.Meta[secrets.MetaRefresh] != "1m" || s.Value != "" {
		t.Fatalf("the answer to the write: %+v", s)
	}
	f.mustRead(t, "openai", "sk-from-env-1")
	secs, err := f.svc.ReadSecrets(context.Background(), f.admin)
	if err != nil || len(secs) != 1 || secs[0].Value != "sk-from-env-1" {
		t.Fatalf("ReadSecrets: %v %v", secs, err)
	}
	// The read is audited with the kind of source, never the value.
	evs := secretReads(t, f.fixture, f.admin)
	if len(evs) == 0 || evs[0].Details["source"] != "env" {
		t.Fatalf("read events: %+v", evs)
	}
	os.Unsetenv("SRCTEST_OPENAI")
	f.clock.Advance(5 * time.Second) // the secret cache's TTL
	f.mustFail(t, "openai")
	if _, err := f.svc.ReadSecrets(context.Background(), f.admin); latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Fatalf("ReadSecrets with a failing source: %v", err)
	}
}

func TestFileSourceFollowsTheFile(t *testing.T) {
	f := newSourceFixture(t)
	path := filepath.Join(f.dir, "anthropic")
	if err := os.WriteFile(path, []byte("sk-file-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.putSource(t, "anthropic", "file:"+path, time.Minute)
	f.mustRead(t, "anthropic", "sk-file-1") // the newline is not part of it

	// Changed on disk: seen once the secret cache's entry expires (5s),
	// well within the refresh interval, since the file's size and time
	// changed.
	if err := os.WriteFile(path, []byte("sk-file-two\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(5 * time.Second)
	f.mustRead(t, "anthropic", "sk-file-two")

	// Gone: unavailable, and the old value is not served.
	os.Remove(path)
	f.clock.Advance(5 * time.Second)
	f.mustFail(t, "anthropic")
	if err := os.WriteFile(path, []byte("sk-file-3"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(5 * time.Second)
	f.mustRead(t, "anthropic", "sk-file-3")

	// A file that does not exist yet may be named; reading it fails until
	// it does.
	f.putSource(t, "later", "file:"+filepath.Join(f.dir, "sub", "later"), 0)
	f.mustFail(t, "later")
}

func TestFileSourceRefreshBoundsTheCache(t *testing.T) {
	// A secret cache TTL far longer than the refresh: the refresh wins.
	f := newSourceFixture(t, func(s *setup) { s.CacheTTL = time.Hour })
	path := filepath.Join(f.dir, "svc")
	os.WriteFile(path, []byte("value-a"), 0o600)
	f.putSource(t, "svc", "file:"+path, 10*time.Second)
	f.mustRead(t, "svc", "value-a")
	os.WriteFile(path, []byte("value-b"), 0o600)
	f.clock.Advance(9 * time.Second)
	f.mustRead(t, "svc", "value-a")
	f.clock.Advance(time.Second)
	f.mustRead(t, "svc", "value-b")
}

func TestExecSourceRunsTheProgram(t *testing.T) {
	f := newSourceFixture(t)
	f.putSource(t, "tool", "exec:"+f.prog+" alpha", time.Minute)
	f.mustRead(t, "tool", "exec-value-alpha")

	// Runs once per refresh interval, however often it is read.
	counter := filepath.Join(t.TempDir(), "runs")
	writeScript(t, f.prog, `echo x >> `+counter+`; printf 'exec-value-%s\n' "$1"`)
	f.putSource(t, "counted", "exec:"+f.prog+" beta", 30*time.Second)
	for range 5 {
		f.mustRead(t, "counted", "exec-value-beta")
		f.clock.Advance(5 * time.Second) // past the secret cache's TTL each time
	}
	if b, _ := os.ReadFile(counter); bytes.Count(b, []byte("x")) != 1 {
		t.Fatalf("the program ran %d times within one refresh interval, want 1", bytes.Count(b, []byte("x")))
	}
	f.clock.Advance(10 * time.Second)
	f.mustRead(t, "counted", "exec-value-beta")
	if b, _ := os.ReadFile(counter); bytes.Count(b, []byte("x")) != 2 {
		t.Fatalf("the program ran %d times after the refresh interval, want 2", bytes.Count(b, []byte("x")))
	}

	// The program sees none of the server's environment.
	t.Setenv("SRCTEST_PRIVATE", "server-only")
	writeScript(t, f.prog, `printf 'env-[%s]' "$SRCTEST_PRIVATE"`)
	f.putSource(t, "envcheck", "exec:"+f.prog, 0)
	f.mustRead(t, "envcheck", "env-[]")

	// Fails: exit status, no output, too much output.
	writeScript(t, f.prog, `echo partial; exit 1`)
	f.putSource(t, "failing", "exec:"+f.prog, 0)
	f.mustFail(t, "failing")
	writeScript(t, f.prog, `exit 0`)
	f.putSource(t, "empty", "exec:"+f.prog, 0)
	f.mustFail(t, "empty")
	writeScript(t, f.prog, `head -c 70000 /dev/zero | tr '\0' a`)
	f.putSource(t, "huge", "exec:"+f.prog, 0)
	f.mustFail(t, "huge")
}

func TestExecSourceTimesOut(t *testing.T) {
	f := newSourceFixture(t, func(s *setup) { s.ExecTimeout = 200 * time.Millisecond })
	writeScript(t, f.prog, `sleep 5; echo late`)
	f.putSource(t, "slow", "exec:"+f.prog, 0)
	start := time.Now()
	f.mustFail(t, "slow")
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a program past its timeout held the read %v", d)
	}
}

func TestSourcesOutsideTheAllowlistAreRefused(t *testing.T) {
	f := newSourceFixture(t)
	outside := filepath.Join(t.TempDir(), "outside")
	os.WriteFile(outside, []byte("not yours"), 0o600)
	if err := os.Symlink(outside, filepath.Join(f.dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(outside), filepath.Join(f.dir, "dirlink")); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(filepath.Dir(f.prog), "other")
	writeScript(t, other, "echo no")
	for _, src := range []string{
		"env:HOME",
		"env:SRCTEST",             // the prefix is SRCTEST_
		"env:LATCHKEY_MASTER_KEY", // never, whatever the list says
		"file:/etc/passwd",        // outside
		"file:" + f.dir,           // the directory itself
		"file:" + f.dir + "/../x", // .. climbs out
		"file:" + f.dir + "/a/../../x",
		"file:" + f.dir + "/link", // a link out of the directory
		"file:" + f.dir + "/dirlink/outside",
		"file:" + f.dir + "/dirlink/../../etc/passwd",
		"exec:" + other,      // another program
		"exec:/bin/sh -c id", // a shell
		"exec:" + filepath.Dir(f.prog) + "/../bin/other",
	} {
		_, err := f.svc.PutSecret(context.Background(), f.admin, "refused", secrets.SecretParams{Source: src})
		if latchkey.ErrorCode(err) != latchkey.EForbidden {
			t.Errorf("source %s: %v, want forbidden", src, err)
		}
	}
	// The allowed program reached through "..": it is the same program.
	f.putSource(t, "dotdot", "exec:"+filepath.Dir(f.prog)+"/../bin/getsecret x", 0)
	f.mustRead(t, "dotdot", "exec-value-x")

	// Nothing is allowed by default.
	g := newFixture(t)
	t.Setenv("SRCTEST_X", "v")
	for _, src := range []string{"env:SRCTEST_X", "file:" + outside, "exec:" + f.prog} {
		if _, err := g.svc.PutSecret(context.Background(), g.admin, "x", secrets.SecretParams{Source: src}); latchkey.ErrorCode(err) != latchkey.EForbidden {
			t.Errorf("no allowlist, source %s: %v, want forbidden", src, err)
		}
	}
}

func TestSourceLinkedOutAfterTheWriteIsNotRead(t *testing.T) {
	f := newSourceFixture(t)
	path := filepath.Join(f.dir, "swapped")
	os.WriteFile(path, []byte("inside-value"), 0o600)
	f.putSource(t, "swapped", "file:"+path, time.Second)
	f.mustRead(t, "swapped", "inside-value")
	outside := filepath.Join(t.TempDir(), "outside")
	os.WriteFile(outside, []byte("outside-value"), 0o600)
	os.Remove(path)
	if err := os.Symlink(outside, path); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(5 * time.Second)
	f.mustFail(t, "swapped")
}

func TestSourceParamsAreChecked(t *testing.T) {
	f := newSourceFixture(t)
	for _, p := range []secrets.SecretParams{
		{Value: "v", Source: "env:SRCTEST_A"},
		{Value: "v", Refresh: time.Minute},
		{Source: "env:SRCTEST_A", Refresh: time.Millisecond},
		{Source: "env:SRCTEST_A", Refresh: 48 * time.Hour},
		{Source: "vault:x"},
		{Source: "env:"},
		{Source: "env:A-B"},
		{Source: "file:relative/path"},
		{Source: "exec:"},
		{Source: "exec:relative"},
		{Value: "v", Meta: map[string]string{"source": "file:/etc/passwd"}},
		{Source: "env:SRCTEST_A", Meta: map[string]string{"refresh": "1s"}},
	} {
		if _, err := f.svc.PutSecret(context.Background(), f.admin, "bad", p); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("%+v: %v, want invalid", p, err)
		}
	}
}

func TestSourceListsShowTheReferenceNotTheValue(t *testing.T) {
	f := newSourceFixture(t)
	t.Setenv("SRCTEST_LISTED", "sk-listed-value")
	f.put(t, f.admin, "listed", "sk-stored-first")
	f.putSource(t, "listed", "env:SRCTEST_LISTED", 90*time.Second)
	f.mustRead(t, "listed", "sk-listed-value")
	list, _, err := f.svc.ListSecrets(context.Background(), f.admin, "", 0)
	if err != nil || len(list) != 1 || list[0].Meta["source"] != "env:SRCTEST_LISTED" || list[0].Meta["refresh"] != "1m30s" {
		t.Fatalf("list: %+v %v", list, err)
	}
	vs, err := f.svc.SecretVersions(context.Background(), f.admin, "listed")
	if err != nil || len(vs) != 2 || vs[0].Meta["source"] == "" || vs[1].Meta["source"] != "" || vs[0].Value != "" || vs[1].Value != "" {
		t.Fatalf("versions: %+v %v", vs, err)
	}
	// The older version still holds its stored value.
	if s, err := f.svc.ReadSecret(context.Background(), f.admin, "listed", vs[1].Version); err != nil || s.Value != "sk-stored-first" {
		t.Fatalf("old version: %v %v", s, err)
	}
	// The write is audited with the kind; no event and no database byte
	// holds the value read from the source.
	evs, err := f.audit.ListAudit(context.Background(), f.admin, latchkey.AuditFilter{Action: "secret.written"})
	if err != nil || len(evs) != 2 || evs[0].Details["source"] != "env" && evs[1].Details["source"] != "env" {
		t.Fatalf("write events: %+v %v", evs, err)
	}
	f.svc.FlushReadAudits(context.Background())
	all, _ := f.audit.ListAudit(context.Background(), f.admin, latchkey.AuditFilter{})
	for _, e := range all {
		for _, v := range e.Details {
			if strings.Contains(v, "sk-listed-value") {
				t.Fatalf("an audit event holds the value: %+v", e)
			}
		}
	}
	files, _ := filepath.Glob(f.dbPath + "*") // with its -wal and -shm files
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte("sk-listed-value")) {
			t.Fatalf("%s holds the value read from the source", p)
		}
	}
}

func TestParseSourceAllow(t *testing.T) {
	for _, bad := range []string{"vault:x", "env:A-B*", "env:", "file:relative/", "exec:relative", "exec:/bin/op --flag"} {
		if _, err := secrets.ParseSourceAllow(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	a, err := secrets.ParseSourceAllow("")
	if err != nil || !a.Empty() {
		t.Fatalf("empty list: %v %v", a, err)
	}
}
