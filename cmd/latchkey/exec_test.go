package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// fakeKeyRoute answers GET /keys/{name} as the broker's seed route does,
// for the key "lk_exec".
func fakeKeyRoute(t *testing.T, secrets map[string]string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		if r.Header.Get("Authorization") != "Bearer lk_exec" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error": {"code": "unauthenticated", "message": "unknown key", "request_id": "r1"}}`))
			return
		}
		v, ok := secrets[strings.TrimPrefix(r.URL.Path, "/keys/")]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error": {"code": "not_found", "message": "no such secret", "request_id": "r2"}}`))
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"api_key": v, "expires_in": 60})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// runExecCLI runs `latchkey exec` in this process with env as the whole
// environment (the child's too).
func runExecCLI(t *testing.T, vars map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	e := func(k string) string { return vars[k] }
	environ := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range vars {
		environ = append(environ, k+"="+v)
	}
	ev := &env{getenv: e, environ: func() []string { return environ }, stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	if err := runExec(context.Background(), ev, args); err != nil {
		code = exitCode(err)
	}
	return out.String(), errb.String(), code
}

// hashScript prints the SHA-256 of each named variable's value (or
// "unset") and exits with status 3, so a test sees values without printing
// them.
const hashScript = `for v in "$@"; do eval "x=\${$v-unset}"; printf %s "$x" | sha256sum | cut -c1-64; done; exit 3`

func TestExecPassesSecretsAndExitCode(t *testing.T) {
	srv := fakeKeyRoute(t, map[string]string{"openai": "sk-openai-exec", "anthropic": "sk-ant-exec"})
	env := map[string]string{"LATCHKEY_ADDR": srv.URL, "LATCHKEY_KEY": "lk_exec", "OPENAI_API_KEY": "stale-parent-value"}
	out, errOut, code := runExecCLI(t, env, "--secrets", "openai,anthropic", "--env", "anthropic=MY_ANTHROPIC", "--",
		"sh", "-c", hashScript, "sh", "OPENAI_API_KEY", "MY_ANTHROPIC", "ANTHROPIC_API_KEY", "LATCHKEY_KEY")
	if code != 3 {
		t.Fatalf("exit code %d, want the command's 3; stderr: %s", code, errOut)
	}
	want := strings.Join([]string{sha("sk-openai-exec"), sha("sk-ant-exec"), sha("unset"), sha("unset")}, "\n") + "\n"
	if out != want {
		t.Fatalf("the command saw:\n%s\nwant (hashes of) the secrets in OPENAI_API_KEY and MY_ANTHROPIC, nothing in ANTHROPIC_API_KEY or LATCHKEY_KEY:\n%s", out, want)
	}
	if strings.Contains(errOut, "sk-") {
		t.Fatalf("stderr holds a secret: %s", errOut)
	}
	// Success passes through as success; flags after CMD are CMD's.
	if _, errOut, code := runExecCLI(t, env, "--secrets=openai", "sh", "-c", "exit 0", "--secrets", "x"); code != 0 {
		t.Fatalf("exit code %d for a command that succeeded: %s", code, errOut)
	}
}

func TestExecRefusesToRunWithoutEverySecret(t *testing.T) {
	srv := fakeKeyRoute(t, map[string]string{"openai": "sk-openai-exec"})
	marker := filepath.Join(t.TempDir(), "ran")
	cmd := []string{"sh", "-c", "touch " + marker}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code string
	}{
		{"unknown secret", map[string]string{"LATCHKEY_ADDR": srv.URL, "LATCHKEY_KEY": "lk_exec"}, []string{"--secrets", "openai,mistral"}, latchkey.ENotFound},
		{"bad key", map[string]string{"LATCHKEY_ADDR": srv.URL, "LATCHKEY_KEY": "lk_wrong", "OPENAI_API_KEY": "from-env"}, []string{"--secrets", "openai"}, latchkey.EUnauthenticated},
		{"no key", map[string]string{"LATCHKEY_ADDR": srv.URL}, []string{"--secrets", "openai"}, latchkey.EUnauthenticated},
		{"server down", map[string]string{"LATCHKEY_ADDR": "http://127.0.0.1:1", "LATCHKEY_KEY": "lk_exec"}, []string{"--secrets", "openai"}, latchkey.EUnavailable},
		{"no secrets", map[string]string{"LATCHKEY_ADDR": srv.URL, "LATCHKEY_KEY": "lk_exec"}, nil, latchkey.EInvalid},
		{"bad rename", map[string]string{"LATCHKEY_ADDR": srv.URL, "LATCHKEY_KEY": "lk_exec"}, []string{"--secrets", "openai", "--env", "openai=1X"}, latchkey.EInvalid},
		{"rename of nothing", map[string]string{"LATCHKEY_ADDR": srv.URL, "LATCHKEY_KEY": "lk_exec"}, []string{"--secrets", "openai", "--env", "gemini=G"}, latchkey.EInvalid},
		{"one variable twice", map[string]string{"LATCHKEY_ADDR": srv.URL, "LATCHKEY_KEY": "lk_exec"}, []string{"--secrets", "openai,x", "--env", "x=OPENAI_API_KEY"}, latchkey.EInvalid},
		{"bad name", map[string]string{"LATCHKEY_ADDR": srv.URL, "LATCHKEY_KEY": "lk_exec"}, []string{"--secrets", "../admin"}, latchkey.EInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			e := &env{getenv: func(k string) string { return tc.env[k] }, environ: func() []string { return nil }, stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
			err := runExec(context.Background(), e, append(tc.args, cmd...))
			if latchkey.ErrorCode(err) != tc.code {
				t.Fatalf("error %v, want %s", err, tc.code)
			}
			if _, statErr := os.Stat(marker); statErr == nil {
				t.Fatal("the command ran")
			}
			if strings.Contains(err.Error(), "sk-") || strings.Contains(err.Error(), "lk_") {
				t.Fatalf("error holds a key: %v", err)
			}
		})
	}
}

func TestExecCommandNotFoundIs127(t *testing.T) {
	srv := fakeKeyRoute(t, map[string]string{"openai": "sk-openai-exec"})
	env := map[string]string{"LATCHKEY_ADDR": srv.URL, "LATCHKEY_KEY": "lk_exec"}
	if _, _, code := runExecCLI(t, env, "--secrets", "openai", "--", "no-such-command-here"); code != 127 {
		t.Fatalf("exit code %d, want 127", code)
	}
	dir := t.TempDir()
	notExec := filepath.Join(dir, "script")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o600)
	if _, _, code := runExecCLI(t, env, "--secrets", "openai", "--", notExec); code != 126 {
		t.Fatalf("exit code %d for a file that cannot run, want 126", code)
	}
}

// TestExecForwardsSignals runs `latchkey exec` as a process (this test
// binary, re-executed through realMain) around a shell that reports the
// SIGTERM it receives and exits 42; latchkey must pass the signal on and
// then exit 42 itself.
func TestExecForwardsSignals(t *testing.T) {
	srv := fakeKeyRoute(t, map[string]string{"openai": "sk-openai-exec"})
	dir := t.TempDir()
	script := filepath.Join(dir, "child.sh")
	os.WriteFile(script, []byte(`trap 'kill $p; echo got-term; exit 42' TERM
sleep 1000 </dev/null >/dev/null 2>&1 & p=$!
echo ready
wait $p
`), 0o600)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LATCHKEY_E2E_CHILD=1", "LATCHKEY_ADDR="+srv.URL, "LATCHKEY_KEY=lk_exec",
		"LATCHKEY_E2E_ARGS=exec --secrets openai -- sh "+script)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill := func() { once.Do(func() { cmd.Process.Kill() }) }
	t.Cleanup(kill)
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		if l != "ready" {
			t.Fatalf("child said %q; stderr: %s", l, stderr.String())
		}
	case <-time.After(30 * time.Second):
		kill()
		t.Fatalf("the command did not start; stderr: %s", stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if l := <-lines; l != "got-term" {
		t.Fatalf("the command said %q after SIGTERM, want got-term", l)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		kill()
		t.Fatal("latchkey exec did not exit after its command did")
	}
	if code := cmd.ProcessState.ExitCode(); code != 42 {
		t.Fatalf("latchkey exited %d, want the command's 42; stderr: %s", code, stderr.String())
	}
}

// FuzzExecVars checks that no --secrets/--env combination panics and that
// every accepted one gives each secret its own valid variable.
func FuzzExecVars(f *testing.F) {
	f.Add("openai,anthropic", "anthropic=MY_ANTHROPIC")
	f.Add("openai,x", "x=OPENAI_API_KEY")
	f.Add("a", "a=1")
	f.Add("01ai", "")
	f.Add("", "=")
	f.Fuzz(func(t *testing.T, names, renames string) {
		var n listFlag
		n.Set(names)
		var r repeatedFlag
		for p := range strings.SplitSeq(renames, ";") {
			r.Set(p)
		}
		vars, err := execVars(n, r)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("code %s", latchkey.ErrorCode(err))
			}
			return
		}
		seen := map[string]bool{}
		for _, v := range vars {
			if !validEnvName(v.variable) || seen[v.variable] {
				t.Fatalf("%+v", vars)
			}
			seen[v.variable] = true
		}
	})
}
