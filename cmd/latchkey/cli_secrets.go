package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client/admin"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/secrets"
)

const secretsUsage = `Usage: latchkey secrets <command> [flags]

Commands:
  put NAME --from-env VAR|--from-file F|--stdin   store a new version of a secret
  put NAME --source REF [--refresh 5m]           store a reference the server reads the value from
                                                 (env:NAME, file:/path, exec:/program arg…)
  get NAME [--version N]                         print a secret's value
  list                                           list secrets (no values)
  versions NAME                                  list a secret's kept versions (no values)
  rm NAME                                        delete a secret and all its versions

A value is never taken from the command line, where ps and shell history
would keep it. Names are lower case: openai, anthropic, my-service. Every
command takes --server URL, --key KEY, --json and --timeout. Run
'latchkey secrets <command> -h' for its flags.
`

var secretsCommands = map[string]func(context.Context, *env, []string) error{
	"put":      secretsPut,
	"get":      secretsGet,
	"list":     secretsList,
	"versions": secretsVersions,
	"rm":       secretsRm,
}

// runSecrets runs `latchkey secrets …`.
func runSecrets(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "secrets", secretsUsage, secretsCommands, args)
}

// parseSecretName parses a secrets command's flags and its one argument,
// NAME, and checks the name. Errors: EInvalid.
func (c *command) parseSecretName(args []string) (string, error) {
	pos, err := c.parse(args, "NAME")
	if err != nil {
		return "", err
	}
	if err := latchkey.ValidateSecretName(pos[0]); err != nil {
		return "", err
	}
	return pos[0], nil
}

// trimNewline drops one trailing line end, which files and here-strings
// add and no provider key holds.
func trimNewline(s string) string {
	s = strings.TrimSuffix(s, "\n")
	return strings.TrimSuffix(s, "\r")
}

func secretsPut(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "secrets put", "NAME --from-env VAR|--from-file F|--stdin|--source REF [flags]")
	fromEnv := c.fs.String("from-env", "", "read the value from this environment variable")
	fromFile := c.fs.String("from-file", "", "read the value from this file (one trailing newline dropped)")
	stdin := c.fs.Bool("stdin", false, "read the value from standard input (one trailing newline dropped)")
	source := c.fs.String("source", "", "store this reference instead of a value: env:NAME, file:/path or exec:/program arg… (read by the server, within its --secret-source-allow)")
	refresh := c.fs.String("refresh", "", "with --source: how long the server uses a value it read, e.g. 5m (default 1m)")
	expires := c.fs.String("expires-in", "", "how long clients may cache the value, e.g. 30m (default: the server's, 1h)")
	var meta metaFlag
	c.fs.Var(&meta, "meta", "metadata key=value (repeatable)")
	name, err := c.parseSecretName(args)
	if err != nil {
		return err
	}
	sources := 0
	for _, set := range []bool{c.set("from-env"), c.set("from-file"), *stdin, c.set("source")} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return latchkey.Errorf(latchkey.EInvalid, "give the value with exactly one of --from-env VAR, --from-file F, --stdin or --source REF")
	}
	if c.set("refresh") && !c.set("source") {
		return latchkey.Errorf(latchkey.EInvalid, "--refresh is for --source")
	}
	var value string
	var p admin.SecretParams
	switch {
	case c.set("source"):
		if *source == "" {
			return latchkey.Errorf(latchkey.EInvalid, "--source needs a reference such as env:NAME")
		}
		p.Source = *source
		if *refresh != "" {
			d, err := parseDurationFlag("refresh", *refresh)
			if err != nil {
				return err
			}
			p.Refresh = d
		}
	case c.set("from-env"):
		if *fromEnv == "" {
			return latchkey.Errorf(latchkey.EInvalid, "--from-env needs a variable name")
		}
		value = e.getenv(*fromEnv)
		if value == "" {
			return latchkey.Errorf(latchkey.EInvalid, "environment variable %s is empty or not set", *fromEnv)
		}
	case c.set("from-file"):
		b, err := os.ReadFile(*fromFile)
		if err != nil {
			return latchkey.Errorf(latchkey.EInvalid, "--from-file: %v", err)
		}
		value = trimNewline(string(b))
		clear(b)
	default:
		b, err := io.ReadAll(io.LimitReader(e.stdin, secrets.MaxSecretValue+2))
		if err != nil {
			return latchkey.Errorf(latchkey.EInvalid, "--stdin: %v", err)
		}
		value = trimNewline(string(b))
		clear(b)
	}
	p.Value = value
	if *expires != "" {
		d, err := parseDurationFlag("expires-in", *expires)
		if err != nil {
			return err
		}
		if d < time.Second || d%time.Second != 0 {
			return latchkey.Errorf(latchkey.EInvalid, "--expires-in must be whole seconds, at least 1s")
		}
		p.ExpiresIn = d
	}
	if meta != nil {
		p.Meta = make(map[string]string, len(meta))
		for k, v := range meta {
			p.Meta[k] = fmt.Sprint(v)
		}
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	out, err := cl.PutSecret(ctx, name, p, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	if ref := out.Meta["source"]; ref != "" {
		fmt.Fprintf(e.stdout, "Stored secret %s version %d, read from %s every %s (clients cache it for %ds)\n", out.Name, out.Version, ref, out.Meta["refresh"], out.ExpiresIn)
		return nil
	}
	fmt.Fprintf(e.stdout, "Stored secret %s version %d (clients cache it for %ds)\n", out.Name, out.Version, out.ExpiresIn)
	return nil
}

func secretsGet(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "secrets get", "NAME [--version N]")
	ver := c.fs.Int64("version", 0, "read this version (default: the newest)")
	name, err := c.parseSecretName(args)
	if err != nil {
		return err
	}
	var version int64
	if c.set("version") {
		if *ver < 1 {
			return latchkey.Errorf(latchkey.EInvalid, "--version must be at least 1")
		}
		version = *ver
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	out, err := cl.GetSecret(ctx, name, version, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	// The value alone, so that $(latchkey secrets get openai) is the key.
	fmt.Fprintln(e.stdout, out.Value)
	return nil
}

func secretsList(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "secrets list", "[flags]")
	pf := addPageFlags(c, "secrets")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if err := pf.check(c); err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	fetch := func(ctx context.Context, p admin.Page, o ...admin.CallOption) ([]latchkey.SecretInfo, string, error) {
		l, err := cl.ListSecrets(ctx, p, o...)
		if err != nil {
			return nil, "", err
		}
		return l.Secrets, l.NextCursor, nil
	}
	return runList(ctx, e, c, cl, pf, "secrets", fetch, listTable[latchkey.SecretInfo]{
		header: "NAME\tVERSION\tKEPT\tEXPIRES_IN\tUPDATED",
		row: func(s *latchkey.SecretInfo) string {
			return fmt.Sprintf("%s\t%d\t%d\t%ds\t%s", s.Name, s.Version, s.Versions, s.ExpiresIn, fmtTime(s.UpdatedAt, "-"))
		},
	})
}

func secretsVersions(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "secrets versions", "NAME")
	name, err := c.parseSecretName(args)
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	versions, err := cl.SecretVersions(ctx, name, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "VERSION\tCREATED\tCREATED_BY\tEXPIRES_IN")
	for _, v := range versions {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%ds\n", v.Version, fmtTime(v.CreatedAt, "-"), orDash(v.CreatedBy), v.ExpiresIn)
	}
	return tw.Flush()
}

func secretsRm(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "secrets rm", "NAME")
	name, err := c.parseSecretName(args)
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	if err := cl.DeleteSecret(ctx, name); err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, []byte(fmt.Sprintf(`{"deleted": %q}`, name)))
	}
	fmt.Fprintf(e.stdout, "Deleted secret %s and all its versions\n", name)
	return nil
}

const keyringUsage = `Usage: latchkey keyring <command> [flags]

Commands:
  status                                 the keyring's terms and the active one
  rotate                                 add a term; new values are sealed with it
  rewrap --new-master-key-file PATH      wrap every term under the master key in PATH,
                                         a 0600 file on the server's host
  new-master-key FILE                    write a new random master key to FILE (0600),
                                         here, without a server

status, rotate and rewrap need the operator's root key and take --server
URL, --key KEY, --json and --timeout. See docs/secrets.md for the
rotation and rewrap procedure.
`

var keyringCommands = map[string]func(context.Context, *env, []string) error{
	"status":         keyringStatus,
	"rotate":         keyringRotate,
	"rewrap":         keyringRewrap,
	"new-master-key": keyringNewMasterKey,
}

// runKeyring runs `latchkey keyring …`.
func runKeyring(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "keyring", keyringUsage, keyringCommands, args)
}

func printKeyringStatus(e *env, st *latchkey.KeyringStatus, raw []byte, asJSON bool) error {
	if asJSON {
		return printJSON(e.stdout, raw)
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "TERM\tCREATED\tACTIVE")
	for _, t := range st.Terms {
		active := ""
		if t.Term == st.Active {
			active = "yes"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", t.Term, fmtTime(t.CreatedAt, "-"), orDash(active))
	}
	return tw.Flush()
}

func keyringStatus(ctx context.Context, e *env, args []string) error {
	return keyringCall(ctx, e, args, "keyring status", (*admin.Client).KeyringStatus)
}

func keyringRotate(ctx context.Context, e *env, args []string) error {
	return keyringCall(ctx, e, args, "keyring rotate", (*admin.Client).RotateKeyring)
}

// keyringCall runs a keyring command without arguments: one call whose
// answer is the keyring's status.
func keyringCall(ctx context.Context, e *env, args []string, name string, call func(*admin.Client, context.Context, ...admin.CallOption) (*latchkey.KeyringStatus, error)) error {
	c := newCommand(e, name, "[flags]")
	if _, err := c.parse(args); err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	st, err := call(cl.Client, ctx, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	return printKeyringStatus(e, st, raw, c.client.json)
}

func keyringRewrap(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "keyring rewrap", "--new-master-key-file PATH")
	file := c.fs.String("new-master-key-file", "", "absolute path, on the server's host, of a 0600 file holding the new master key (make one with 'latchkey keyring new-master-key')")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if *file == "" {
		return latchkey.Errorf(latchkey.EInvalid, "--new-master-key-file is required")
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	out, err := cl.RewrapKeyring(ctx, *file, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	fmt.Fprintf(e.stdout, "Rewrapped %d keyring terms under the master key in %s\n", out.Terms, *file)
	if out.MasterKeyFile != "" {
		fmt.Fprintf(e.stdout, "The server's master key file %s now holds the new key.\n", out.MasterKeyFile)
	} else {
		fmt.Fprintln(e.stdout, "The server took its master key from LATCHKEY_MASTER_KEY: set it to the new key before the next start.")
	}
	return nil
}

func keyringNewMasterKey(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "keyring new-master-key", "FILE")
	pos, err := c.parse(args, "FILE")
	if err != nil {
		return err
	}
	k, err := keyring.CreateMasterKeyFile(pos[0])
	if err != nil {
		return latchkey.Errorf(latchkey.EInvalid, "%v", err)
	}
	clear(k)
	fmt.Fprintf(e.stdout, "Wrote a new master key to %s (mode 0600)\n", pos[0])
	return nil
}
