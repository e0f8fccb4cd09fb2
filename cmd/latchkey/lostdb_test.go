package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// A server whose database file is deleted or replaced under it notices:
// writes answer 503 unavailable instead of being acknowledged into a file
// nobody will open again, /readyz fails with the reason, the log says so
// once, and keys it has cached keep verifying (fail-static).
func TestE2ELostDatabaseIsNoticed(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(t *testing.T, db string)
		want error // the reason /readyz gives
	}{
		{"Deleted", func(t *testing.T, db string) {
			for _, p := range []string{db, db + "-wal", db + "-shm"} {
				if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
			}
		}, sqlite.ErrFileDeleted},
		{"Replaced", func(t *testing.T, db string) {
			// Another, valid database moved into place.
			other := filepath.Join(filepath.Dir(db), "other.db")
			o, err := sqlite.Open(context.Background(), other)
			if err != nil {
				t.Fatal(err)
			}
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(other, db); err != nil {
				t.Fatal(err)
			}
		}, sqlite.ErrFileReplaced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t)
			admin := ts.mustTenant(t, "acme")
			id, key := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})
			if c := ts.verifyCode(t, map[string]any{"key": key}); c != latchkey.CodeValid {
				t.Fatalf("verify before: %s", c)
			}
			if r := do(t, "GET", ts.URL+"/readyz", nil, nil); r.Status != 200 {
				t.Fatalf("/readyz before: %d %s", r.Status, r.Raw)
			}

			tc.lose(t, ts.DB)

			// The periodic check notices without any request.
			deadline := time.Now().Add(10 * time.Second)
			for lostLogLines(ts.Log.Bytes()) == 0 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if n := lostLogLines(ts.Log.Bytes()); n != 1 {
				t.Errorf("%d %q log lines 10s after the database was lost, want 1", n, msgDatabaseLost)
			}
			r := do(t, "GET", ts.URL+"/readyz", nil, nil)
			if r.Status != 503 || r.errCode() != latchkey.EUnavailable {
				t.Errorf("/readyz after: %d %s, want 503 unavailable", r.Status, r.Raw)
			}
			e, _ := r.Body["error"].(map[string]any)
			if msg, _ := e["message"].(string); msg != latchkey.ErrorMessage(tc.want) {
				t.Errorf("/readyz reason %q, want the store's %q", msg, latchkey.ErrorMessage(tc.want))
			}
			if r := ts.call(t, "POST", "/v1/keys", admin, map[string]any{"name": "after"}); r.Status != 503 || r.errCode() != latchkey.EUnavailable {
				t.Errorf("create after: %d %s, want 503 unavailable", r.Status, r.Raw)
			}
			if r := ts.call(t, "POST", "/v1/keys/"+id+"/revoke", admin, map[string]any{"reason": "leaked"}); r.Status != 503 || r.errCode() != latchkey.EUnavailable {
				t.Errorf("revoke after: %d %s, want 503 unavailable", r.Status, r.Raw)
			}
			// Fail-static: the cached key still verifies.
			if c := ts.verifyCode(t, map[string]any{"key": key}); c != latchkey.CodeValid {
				t.Errorf("verify of a cached key after: %s", c)
			}
			// Once, not per request, nor per retry of the background
			// writers (usage flush, webhook outbox), which carry on at
			// debug level.
			reason := latchkey.ErrorMessage(tc.want)
			eventually(t, 10*time.Second, "a background writer's failure at debug level", func() bool {
				return loudLostLines(ts.Log.Bytes(), reason, "DEBUG") > 0
			})
			if n := lostLogLines(ts.Log.Bytes()); n != 1 {
				t.Errorf("%d %q log lines after several requests, want 1", n, msgDatabaseLost)
			}
			if n := loudLostLines(ts.Log.Bytes(), reason, "WARN", "ERROR"); n != 1 {
				t.Errorf("%d log lines above debug carry the loss, want 1 (the report)", n)
			}
		})
	}
}

// lostLogLines counts the JSON log lines that report a lost database.
func lostLogLines(log []byte) int {
	n := 0
	for _, line := range strings.Split(string(log), "\n") {
		var rec struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msgDatabaseLost {
			n++
		}
	}
	return n
}

// loudLostLines counts the JSON log lines at one of levels whose err
// carries reason.
func loudLostLines(log []byte, reason string, levels ...string) int {
	n := 0
	for _, line := range strings.Split(string(log), "\n") {
		var rec struct {
			Level string `json:"level"`
			Err   string `json:"err"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && slices.Contains(levels, rec.Level) && strings.Contains(rec.Err, reason) {
			n++
		}
	}
	return n
}

// A restart that finds the master key file but no database refuses to
// start (it would mint a new root key over an empty database and every key
// would be gone), unless --init says to start afresh.
func TestE2EMissingDatabaseBesideMasterKeyRefusesToStart(t *testing.T) {
	dir, err := os.MkdirTemp(e2eRoot, "lostdb-")
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "latchkey.db")
	_, root, c := startChild(t, dir, db, 1)
	registerKey(root)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.wait(15 * time.Second); err != nil {
		t.Fatalf("first server after SIGTERM: %v", err)
	}
	if _, err := os.Stat(defaultMasterKeyFile(db)); err != nil {
		t.Fatalf("no master key file after the first start: %v", err)
	}
	for _, p := range []string{db, db + "-wal", db + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}

	// In process: the error's code.
	if err, log := serveOnce(t, serverConfig{DB: db}); latchkey.ErrorCode(err) != latchkey.EConflict {
		t.Errorf("start without the database: %v, want conflict\n%s", err, log)
	}
	if _, err := os.Stat(db); err == nil {
		t.Error("the refused start created a database file")
	}

	// As a process: a non-zero exit status, and the error on stderr.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LATCHKEY_E2E_CHILD=1", "LATCHKEY_E2E_ARGS=server --addr 127.0.0.1:0 --db "+db)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("server without its database: %v, want exit status 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "--init") {
		t.Errorf("the refusal does not say how to start afresh:\n%s", out)
	}

	// --init starts a new, empty database with the existing master key.
	url, root2, c2 := startChildArgs(t, dir, db, 2, " --init")
	defer c2.kill()
	registerKey(root2)
	if root2 == "" {
		t.Fatal("--init did not print the new root key")
	}
	if r := do(t, "GET", url+"/readyz", nil, nil); r.Status != 200 || r.str("status") != "ready" {
		t.Fatalf("/readyz after --init: %d %s", r.Status, r.Raw)
	}
	// The lost log's audit anchor was moved aside, not held against the
	// new log (where it would read as a truncated one).
	if r := do(t, "GET", url+"/v1/audit/verify", map[string]string{"Authorization": bearer(root2)}, nil); r.Status != 200 || r.Body["ok"] != true {
		t.Fatalf("audit verify after --init: %d %s", r.Status, r.Raw)
	}
	if old, _ := filepath.Glob(filepath.Join(dir, "latchkey.audit-anchor.before-init-*")); len(old) != 1 {
		t.Fatalf("the old audit anchor was not kept aside: %v", old)
	}
}
