// Command latchkey is the Latchkey server and its command-line client in
// one binary: `latchkey server` runs a node; every other command talks to a
// running node over its HTTP API.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/latchkeyhq/latchkey"
)

func main() { os.Exit(realMain(os.Args[1:])) }

// realMain runs the program as a process: SIGINT and SIGTERM end it
// gracefully, errors are printed once, and the result is the exit status.
func realMain(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, args, os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	if err == nil {
		return 0
	}
	if !errors.Is(err, errUsageShown) && !errors.Is(err, errAlreadyReported) {
		fmt.Fprintln(os.Stderr, "latchkey:", err)
	}
	return exitCode(err)
}

// env is what a command may touch of the outside world; tests supply their
// own.
type env struct {
	getenv func(string) string
	// environ lists the environment for child processes (exec); nil means
	// os.Environ.
	environ func() []string
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
}

// errUsageShown reports a usage error whose explanation is already printed.
var errUsageShown = errors.New("usage")

// exitCode maps errors to exit statuses: the command's own for exec; 1
// for anything the server refused, whatever its code; 2 for a mistake in
// the command line (a usage error, or a value the CLI found invalid before
// any request); 1 for everything else (the server unreachable, a denial).
func exitCode(err error) int {
	var ce *childExit
	if errors.As(err, &ce) {
		return ce.code
	}
	var refused *refusedError
	if errors.As(err, &refused) {
		return 1
	}
	if errors.Is(err, errUsageShown) || latchkey.ErrorCode(err) == latchkey.EInvalid {
		return 2
	}
	return 1
}

const usage = `latchkey — issue, verify and govern API keys

Usage:
  latchkey server [flags]            run a node (SQLite in ./latchkey.db by default)
  latchkey keys <command> [flags]    create|generate|list|show|update|rotate|suspend|resume|revoke|derive|verify|stats|key-stats|import|export|batch|rotation
  latchkey apply -f app_manifest.yml [--env E] [--dry-run] [--prune] [--out keys.env]
  latchkey tenants <command>         create|list
  latchkey policies <command>        create|list|get|update|delete: named settings keys share
  latchkey owners <command>          set|list|get|usage|delete: limits all of an owner's keys share
  latchkey secrets <command>         put|get|list|versions|rm
  latchkey keyring <command>         status|rotate|rewrap|new-master-key
  latchkey audit <command>           verify|export|tail
  latchkey events [flags]            security events: new networks, spikes, dormant keys, widened scopes
  latchkey reports <report> [flags]  access|usage|security, as JSON or CSV
  latchkey webhooks <command>        create|list|show|rm|deliveries|retry
  latchkey idp <command>             add|list|get|delete: trusted workload identity token issuers
  latchkey exec --secrets a,b -- CMD run CMD with A_API_KEY, B_API_KEY from the server
  latchkey health [--server URL]     exit 0 when the node serves (GET /readyz), 1 otherwise
  latchkey scan [--revoke] PATH…     find Latchkey keys in files (offline); --revoke has the server revoke them
  latchkey completion bash|zsh       print a shell completion script: source <(latchkey completion bash)
  latchkey version                   print the version
  latchkey help                      print this help

Client commands reach the server at --server or $LATCHKEY_ADDR
(default http://127.0.0.1:8080) with the key in --key or $LATCHKEY_KEY;
an https server whose certificate comes from your own CA needs
--cacert FILE or $LATCHKEY_CACERT.
Add --json to any client command for machine-readable output.
Run 'latchkey <command> -h' for a command's flags.

Exit status: 0 success; 1 the server refused the request (its error code
is printed), could not be reached, or a check failed (keys verify, audit
verify); 2 a usage mistake caught before any request; exec exits with its
command's status.
`

// run is the whole program; main only wires it to the process.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	e := &env{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsageShown
	}
	switch args[0] {
	case "server":
		return runServer(ctx, e, args[1:])
	case "keys":
		return runKeys(ctx, e, args[1:])
	case "apply":
		return helpOK(runApply(ctx, e, args[1:]))
	case "tenants":
		return runTenants(ctx, e, args[1:])
	case "audit":
		return runAudit(ctx, e, args[1:])
	case "reports":
		return runReports(ctx, e, args[1:])
	case "webhooks":
		return runWebhooks(ctx, e, args[1:])
	case "policies":
		return runPolicies(ctx, e, args[1:])
	case "owners":
		return runOwners(ctx, e, args[1:])
	case "idp":
		return runIdp(ctx, e, args[1:])
	case "secrets":
		return runSecrets(ctx, e, args[1:])
	case "keyring":
		return runKeyring(ctx, e, args[1:])
	case "exec":
		return helpOK(runExec(ctx, e, args[1:]))
	case "events":
		return helpOK(runEvents(ctx, e, args[1:]))
	case "health":
		return helpOK(runHealth(ctx, e, args[1:]))
	case "scan":
		return helpOK(runScan(ctx, e, args[1:]))
	case "completion":
		return helpOK(runCompletion(ctx, e, args[1:]))
	case "version", "--version":
		fmt.Fprintln(stdout, "latchkey", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "latchkey: unknown command %q\n\n%s", args[0], usage)
	return errUsageShown
}

// helpOK makes a top-level command's -h a success, as dispatch does for
// the commands of a group.
func helpOK(err error) error {
	if errors.Is(err, errHelpShown) {
		return nil
	}
	return err
}

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"
