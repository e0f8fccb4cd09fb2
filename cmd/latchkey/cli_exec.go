package main

// `latchkey exec`: run a command with provider keys from the broker in its
// environment, and nowhere else: nothing is written to disk, and the
// command's exit status and the signals sent to latchkey pass through.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client"
)

const execSynopsis = `--secrets NAME[,NAME…] [--env NAME=VAR]… [flags] [--] CMD [ARG…]

Fetches each secret from the server (GET /keys/NAME, with the key in --key
or $LATCHKEY_KEY, which needs secrets:read) and runs CMD with NAME_API_KEY
set to it (openai → OPENAI_API_KEY; --env openai=MY_OPENAI names the
variable). If any secret cannot be fetched, CMD does not run. CMD does not
receive LATCHKEY_KEY. latchkey exits with CMD's status (128+N if signal N
ended it; 127 if CMD is not found, 126 if it cannot run) and passes on
SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2.

With --identity-token FILE --tenant T --provider P, no key is needed: the
workload's identity token (a CI job's OIDC token, a Kubernetes
service-account token) is exchanged for a short-lived key first (POST
/v1/token, docs/identity.md), which fetches the secrets; without
--secrets, CMD gets that key in LATCHKEY_KEY.`

// forwardedSignals are passed on to the command.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// childExit carries the command's exit status out of run; main exits with
// it and prints nothing more.
type childExit struct{ code int }

func (e *childExit) Error() string { return fmt.Sprintf("the command exited with status %d", e.code) }

// Is lets main recognise that the outcome is already reported.
func (e *childExit) Is(target error) bool { return target == errAlreadyReported }

func runExec(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "exec", execSynopsis)
	var names listFlag
	var renames repeatedFlag
	c.fs.Var(&names, "secrets", "secrets to fetch, comma-separated (repeatable)")
	c.fs.Var(&renames, "env", "NAME=VAR: put secret NAME in variable VAR instead of NAME_API_KEY (repeatable)")
	idf := addIdentityFlags(c)
	// The flag package stops at the first argument that is not a flag, so
	// CMD's own flags are left alone, with or without "--".
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsageShown
	}
	argv := c.fs.Args()
	if len(argv) == 0 {
		fmt.Fprintln(e.stderr, "latchkey exec: missing CMD")
		c.fs.Usage()
		return errUsageShown
	}
	var vars []execVar
	if idf.tokenFile == "" || len(names) > 0 || len(renames) > 0 {
		var err error
		if vars, err = execVars(names, renames); err != nil {
			return err
		}
	}
	cl, err := idf.client(ctx, e, c)
	if err != nil {
		return err
	}
	environ := os.Environ
	if e.environ != nil {
		environ = e.environ
	}
	if len(vars) == 0 {
		// An identity token and no secrets: the command gets the key.
		return runChild(e, argv, append(childEnv(environ(), nil, nil), "LATCHKEY_KEY="+cl.key))
	}
	values, err := fetchSecrets(ctx, cl, vars)
	if err != nil {
		return err
	}
	return runChild(e, argv, childEnv(environ(), vars, values))
}

// execVar is one secret and the variable it goes in.
type execVar struct{ name, variable string }

// execVars pairs each secret with its variable. Errors: EInvalid for a bad
// name, a rename of a secret not asked for, or two secrets in one variable.
func execVars(names, renames []string) ([]execVar, error) {
	if len(names) == 0 {
		return nil, latchkey.Errorf(latchkey.EInvalid, "--secrets: name at least one secret, such as --secrets openai,anthropic")
	}
	rename := map[string]string{}
	for _, r := range renames {
		n, v, ok := strings.Cut(r, "=")
		n, v = strings.TrimSpace(n), strings.TrimSpace(v)
		if !ok || n == "" || !validEnvName(v) {
			return nil, latchkey.Errorf(latchkey.EInvalid, "--env %q: expected NAME=VAR, VAR of letters, digits and '_' not starting with a digit", r)
		}
		rename[n] = v
	}
	asked := map[string]bool{}
	byVar := map[string]string{} // variable → secret
	var out []execVar
	for _, n := range names {
		if asked[n] {
			continue
		}
		asked[n] = true
		if !client.ValidProvider(n) {
			return nil, latchkey.Errorf(latchkey.EInvalid, "--secrets: %q is not a secret name (letters, digits, '.', '_', '-')", n)
		}
		v := rename[n]
		if v == "" {
			v = client.EnvName(n)
		}
		if other, taken := byVar[v]; taken {
			return nil, latchkey.Errorf(latchkey.EInvalid, "secrets %q and %q would both go in %s; rename one with --env", other, n, v)
		}
		byVar[v] = n
		out = append(out, execVar{name: n, variable: v})
	}
	for n := range rename {
		if !asked[n] {
			return nil, latchkey.Errorf(latchkey.EInvalid, "--env names %q, which is not in --secrets", n)
		}
	}
	return out, nil
}

func validEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// fetchSecrets asks the server for every secret through the Go client, with
// no fallback: exec exists to put the broker's values in place, so a
// secret the broker cannot give stops the command from starting.
// Errors: the server's code (unauthenticated, forbidden, not_found,
// unavailable…), with a message naming the secret.
func fetchSecrets(ctx context.Context, cl *cliClient, vars []execVar) ([]string, error) {
	s, err := client.NewSecrets(client.SecretsConfig{
		EndpointURL: cl.base + "/keys",
		AuthToken:   cl.key,
		Timeout:     cl.timeout,
		NoEnv:       true,
		Headers:     map[string]string{"User-Agent": "latchkey-cli/" + version},
		HTTPClient:  cl.http, // with --cacert's roots
	})
	if err != nil {
		return nil, latchkey.Errorf(client.ErrorCode(err), "%s", client.ErrorMessage(err))
	}
	values := make([]string, len(vars))
	for i, v := range vars {
		val, err := s.Get(ctx, v.name)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			code := client.ErrorCode(err)
			msg := client.ErrorMessage(err)
			var ce *client.Error
			if errors.As(err, &ce) && len(ce.Attempts) == 1 {
				a := ce.Attempts[0]
				msg = "secret " + fmt.Sprintf("%q", v.name) + ": " + a.Problem
			}
			switch code {
			case latchkey.EUnauthenticated:
				msg += " — pass a valid key in --key or LATCHKEY_KEY"
			case latchkey.EForbidden:
				msg += " — the key needs secrets:read and the resource secret:" + v.name
			case latchkey.ENotFound:
				msg += " — store it first: latchkey secrets put " + v.name
			case latchkey.EUnavailable:
				msg += " — is 'latchkey server' running at " + cl.base + "? (set --server or LATCHKEY_ADDR)"
			}
			return nil, latchkey.Errorf(code, "%s", msg)
		}
		values[i] = val
	}
	return values, nil
}

// childEnv is the command's environment: ours without LATCHKEY_KEY (the
// command gets the secrets it needs, not the key that can read them all)
// and without any variable about to be set, plus the secrets.
func childEnv(environ []string, vars []execVar, values []string) []string {
	drop := map[string]bool{"LATCHKEY_KEY": true}
	for _, v := range vars {
		drop[v.variable] = true
	}
	out := make([]string, 0, len(environ)+len(vars))
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			out = append(out, kv)
		}
	}
	for i, v := range vars {
		out = append(out, v.variable+"="+values[i])
	}
	return out
}

// runChild runs argv with env, forwarding signals, and returns its exit
// status as a *childExit (nil for 0).
func runChild(e *env, argv []string, env []string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = e.stdin, e.stdout, e.stderr
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		code := 126
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = 127
		}
		fmt.Fprintf(e.stderr, "latchkey exec: cannot run %s: %s\n", argv[0], startCause(err))
		return &childExit{code: code}
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s) // it may have exited meanwhile
			case <-done:
				return
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	st := cmd.ProcessState
	if st == nil {
		return latchkey.Errorf(latchkey.EInternal, "%s: %v", argv[0], err)
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return &childExit{code: 128 + int(ws.Signal())}
	}
	if code := st.ExitCode(); code != 0 {
		return &childExit{code: code}
	}
	return nil
}

// startCause drops the repetition of the command name that exec's errors
// carry.
func startCause(err error) string {
	var ee *exec.Error
	if errors.As(err, &ee) {
		err = ee.Err
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return err.Error()
}
