package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keyring"
)

// serveOnce runs serve with cfg and stops it as soon as it listens: it
// returns the start-up error, or nil, and the log.
func serveOnce(t *testing.T, cfg serverConfig) (error, string) {
	t.Helper()
	cfg.Addr, cfg.LogLevel, cfg.MaxBody = "127.0.0.1:0", "info", 1<<20
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log syncBuffer
	logsMu.Lock()
	logs = append(logs, &log)
	logsMu.Unlock()
	err := serve(ctx, &env{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: io.Discard, stderr: &log}, cfg, serverHooks{Ready: func(string) { cancel() }})
	return err, log.String()
}

func TestDefaultMasterKeyFileIsBesideTheDatabase(t *testing.T) {
	for db, want := range map[string]string{
		"./latchkey.db":         "latchkey.master-key",
		"/var/lib/lk/data.db":   "/var/lib/lk/data.master-key",
		"/var/lib/lk/data":      "/var/lib/lk/data.master-key",
		"/srv/x.sqlite3":        "/srv/x.master-key",
		"/srv/.hidden":          "/srv/.hidden.master-key",
		"relative/dir/store.db": "relative/dir/store.master-key",
	} {
		if got := defaultMasterKeyFile(db); got != want {
			t.Errorf("defaultMasterKeyFile(%q) = %q, want %q", db, got, want)
		}
	}
}

// The first start creates a 0600 master key file beside the database and
// logs its path, never its value.
func TestE2EMasterKeyFileCreatedOnFirstStart(t *testing.T) {
	ts := startServer(t)
	path := defaultMasterKeyFile(ts.DB)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("master key file mode %04o, want 0600", fi.Mode().Perm())
	}
	k, err := keyring.ReadMasterKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	log := ts.Log.Bytes()
	if !bytes.Contains(log, []byte(path)) {
		t.Fatalf("the log does not name the master key file %s:\n%s", path, log)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding} {
		if bytes.Contains(log, []byte(enc.EncodeToString(k)[:24])) {
			t.Fatal("the log holds the master key")
		}
	}
}

// A server started with another master key than its keyring's, or
// without the file its keyring needs, refuses to start and says why.
func TestE2EWrongOrMissingMasterKeyRefusesToStart(t *testing.T) {
	dir, err := os.MkdirTemp(e2eRoot, "node-")
	if err != nil {
		t.Fatal(err)
	}
	db := dir + "/latchkey.db"
	root, _ := latchkey.GenerateToken("", nil)
	registerKey(root.Reveal())
	if err, log := serveOnce(t, serverConfig{DB: db, RootKey: root.Reveal()}); err != nil {
		t.Fatalf("first start: %v\n%s", err, log)
	}
	other, _ := keyring.GenerateMasterKey()
	err, _ = serveOnce(t, serverConfig{DB: db, MasterKey: base64.StdEncoding.EncodeToString(other)})
	if !errors.Is(err, keyring.ErrWrongMasterKey) {
		t.Fatalf("start with another master key: %v, want ErrWrongMasterKey", err)
	}
	if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(other)) {
		t.Fatal("the error shows the master key")
	}
	if err, _ := serveOnce(t, serverConfig{DB: db, MasterKey: "bm90IDMyIGJ5dGVz"}); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("start with a short master key: %v, want invalid", err)
	}
	// The file's key still opens the keyring.
	if err, log := serveOnce(t, serverConfig{DB: db}); err != nil {
		t.Fatalf("restart with the key file: %v\n%s", err, log)
	}
	// Without the file, the server does not make a new key over a keyring.
	if err := os.Rename(defaultMasterKeyFile(db), dir+"/moved.key"); err != nil {
		t.Fatal(err)
	}
	err, _ = serveOnce(t, serverConfig{DB: db})
	if latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("start without the master key file: %v, want invalid", err)
	}
	if _, serr := os.Stat(defaultMasterKeyFile(db)); serr == nil {
		t.Fatal("a new master key file was made over an existing keyring")
	}
	// --master-key-file names it where it is now.
	if err, log := serveOnce(t, serverConfig{DB: db, MasterKeyFile: dir + "/moved.key"}); err != nil {
		t.Fatalf("start with --master-key-file: %v\n%s", err, log)
	}
	if err := os.Chmod(dir+"/moved.key", 0o644); err != nil {
		t.Fatal(err)
	}
	if err, _ := serveOnce(t, serverConfig{DB: db, MasterKeyFile: dir + "/moved.key"}); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("start with a world-readable key file: %v, want invalid", err)
	}
}
