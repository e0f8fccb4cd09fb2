package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keyring"
)

func TestCLISecrets(t *testing.T) {
	n := startCLINode(t)
	fromEnv, fromFile, fromStdin := secretValue("sk-env-"), secretValue("sk-file-"), secretValue("sk-stdin-")
	file := filepath.Join(t.TempDir(), "value")
	if err := os.WriteFile(file, []byte(fromFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	r := n.runEnv(t, n.env("OPENAI_KEY", fromEnv), "secrets", "put", "openai", "--from-env", "OPENAI_KEY", "--expires-in", "30m", "--meta", "team=ml")
	if r.err != nil || !strings.Contains(r.stdout, "version 1") || strings.Contains(r.stdout, fromEnv) {
		t.Fatalf("put --from-env: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	n.ok(t, "secrets", "put", "anthropic", "--from-file", file)
	if r := n.runStdin(t, n.env(), fromStdin+"\n", "secrets", "put", "openai", "--stdin"); r.err != nil || !strings.Contains(r.stdout, "version 2") {
		t.Fatalf("put --stdin: %v\n%s%s", r.err, r.stdout, r.stderr)
	}

	// get prints the value alone, so $(latchkey secrets get NAME) is it.
	if got := n.ok(t, "secrets", "get", "anthropic").stdout; got != fromFile+"\n" {
		t.Fatalf("get anthropic = %q", got)
	}
	if got := n.ok(t, "secrets", "get", "openai").stdout; got != fromStdin+"\n" {
		t.Fatalf("get openai = %q", got)
	}
	if got := n.ok(t, "secrets", "get", "openai", "--version", "1").stdout; got != fromEnv+"\n" {
		t.Fatalf("get openai --version 1 = %q", got)
	}
	m := n.okJSON(t, "secrets", "get", "openai", "--version", "1")
	if m["expires_in"] != 1800.0 || m["value"] != fromEnv {
		t.Fatalf("get --json = %v", m)
	}

	list := n.ok(t, "secrets", "list").stdout
	if !strings.Contains(list, "anthropic") || !strings.Contains(list, "openai") {
		t.Fatalf("list:\n%s", list)
	}
	vers := n.ok(t, "secrets", "versions", "openai").stdout
	if !strings.Contains(vers, "\n2 ") || !strings.Contains(vers, "\n1 ") {
		t.Fatalf("versions:\n%s", vers)
	}
	for _, out := range []string{list, vers} {
		for _, v := range []string{fromEnv, fromFile, fromStdin} {
			if strings.Contains(out, v) {
				t.Fatal("a listing shows a value")
			}
		}
	}

	n.ok(t, "secrets", "rm", "anthropic")
	if r := n.run(t, "secrets", "get", "anthropic"); cliErrCode(r.err) != latchkey.ENotFound {
		t.Fatalf("get after rm: %v", r.err)
	}

	// Mistakes are refused before anything is sent, and a value is never an argument.
	for _, args := range [][]string{
		{"secrets", "put", "openai"},
		{"secrets", "put", "openai", "--stdin", "--from-env", "X"},
		{"secrets", "put", "openai", "--from-env", "UNSET_VARIABLE"},
		{"secrets", "put", "OpenAI", "--from-file", file},
		{"secrets", "put", "openai", "--from-file", file, "--expires-in", "1500ms"},
		{"secrets", "get", "openai", "--version", "0"},
	} {
		if r := n.run(t, args...); cliErrCode(r.err) != latchkey.EInvalid {
			t.Errorf("latchkey %s: %v, want invalid", strings.Join(args, " "), r.err)
		}
	}
	if r := n.run(t, "secrets", "put", "openai", "sk-on-the-command-line"); r.err == nil {
		t.Fatal("a value on the command line was accepted")
	}
}

func TestCLIKeyring(t *testing.T) {
	n := startCLINode(t)
	if out := n.ok(t, "keyring", "status").stdout; !strings.Contains(out, "1 ") || !strings.Contains(out, "yes") {
		t.Fatalf("status:\n%s", out)
	}
	if m := n.okJSON(t, "keyring", "rotate"); m["active_term"] != 2.0 {
		t.Fatalf("rotate --json = %v", m)
	}
	path := filepath.Join(t.TempDir(), "new.key")
	if out := n.ok(t, "keyring", "new-master-key", path).stdout; strings.Count(out, "\n") != 1 {
		t.Fatalf("new-master-key prints more than where the key is:\n%s", out)
	}
	if _, err := keyring.ReadMasterKeyFile(path); err != nil {
		t.Fatal(err)
	}
	if r := n.run(t, "keyring", "new-master-key", path); r.err == nil {
		t.Fatal("new-master-key replaced an existing file")
	}
	if out := n.ok(t, "keyring", "rewrap", "--new-master-key-file", path).stdout; !strings.Contains(out, "Rewrapped 2 keyring terms") {
		t.Fatalf("rewrap:\n%s", out)
	}
	if r := n.run(t, "keyring", "rewrap"); cliErrCode(r.err) != latchkey.EInvalid {
		t.Fatalf("rewrap without a file: %v", r.err)
	}
}
