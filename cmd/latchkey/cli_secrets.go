package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/secrets"
)

const secretsUsage = `Usage: latchkey secrets <command> [flags]

Commands:
  put NAME --from-env VAR|--from-file F|--stdin   store a new version of a secret
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
// NAME, and returns the name and its route.
func (c *command) parseSecretName(args []string) (name, path string, err error) {
	pos, err := c.parse(args, "NAME")
	if err != nil {
		return "", "", err
	}
	path, err = secretPath(pos[0])
	return pos[0], path, err
}

func secretPath(name string) (string, error) {
	if err := latchkey.ValidateSecretName(name); err != nil {
		return "", err
	}
	return "/v1/secrets/" + url.PathEscape(name), nil
}

// trimNewline drops one trailing line end, which files and here-strings
// add and no provider key holds.
func trimNewline(s string) string {
	s = strings.TrimSuffix(s, "\n")
	return strings.TrimSuffix(s, "\r")
}

func secretsPut(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "secrets put", "NAME --from-env VAR|--from-file F|--stdin [flags]")
	fromEnv := c.fs.String("from-env", "", "read the value from this environment variable")
	fromFile := c.fs.String("from-file", "", "read the value from this file (one trailing newline dropped)")
	stdin := c.fs.Bool("stdin", false, "read the value from standard input (one trailing newline dropped)")
	expires := c.fs.String("expires-in", "", "how long clients may cache the value, e.g. 30m (default: the server's, 1h)")
	var meta metaFlag
	c.fs.Var(&meta, "meta", "metadata key=value (repeatable)")
	_, path, err := c.parseSecretName(args)
	if err != nil {
		return err
	}
	sources := 0
	for _, set := range []bool{c.set("from-env"), c.set("from-file"), *stdin} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return latchkey.Errorf(latchkey.EInvalid, "give the value with exactly one of --from-env VAR, --from-file F or --stdin")
	}
	var value string
	switch {
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
	body := map[string]any{"value": value}
	if *expires != "" {
		d, err := parseDurationFlag("expires-in", *expires)
		if err != nil {
			return err
		}
		if d < time.Second || d%time.Second != 0 {
			return latchkey.Errorf(latchkey.EInvalid, "--expires-in must be whole seconds, at least 1s")
		}
		body["expires_in"] = int64(d / time.Second)
	}
	if meta != nil {
		m := make(map[string]string, len(meta))
		for k, v := range meta {
			m[k] = fmt.Sprint(v)
		}
		body["meta"] = m
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var out latchkey.Secret
	raw, err := cl.call(ctx, "PUT", path, nil, body, &out)
	if err != nil {
		return err
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	fmt.Fprintf(e.stdout, "Stored secret %s version %d (clients cache it for %ds)\n", out.Name, out.Version, out.ExpiresIn)
	return nil
}

func secretsGet(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "secrets get", "NAME [--version N]")
	ver := c.fs.Int64("version", 0, "read this version (default: the newest)")
	_, path, err := c.parseSecretName(args)
	if err != nil {
		return err
	}
	q := url.Values{}
	if c.set("version") {
		if *ver < 1 {
			return latchkey.Errorf(latchkey.EInvalid, "--version must be at least 1")
		}
		q.Set("version", strconv.FormatInt(*ver, 10))
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var out latchkey.Secret
	raw, err := cl.call(ctx, "GET", path, q, nil, &out)
	if err != nil {
		return err
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
	q, err := pf.query(c)
	if err != nil {
		return err
	}
	return runList(ctx, e, c, pf, q, "/v1/secrets", "secrets", listTable[latchkey.SecretInfo]{
		header: "NAME\tVERSION\tKEPT\tEXPIRES_IN\tUPDATED",
		row: func(s *latchkey.SecretInfo) string {
			return fmt.Sprintf("%s\t%d\t%d\t%ds\t%s", s.Name, s.Version, s.Versions, s.ExpiresIn, fmtTime(s.UpdatedAt, "-"))
		},
	})
}

func secretsVersions(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "secrets versions", "NAME")
	_, path, err := c.parseSecretName(args)
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var out struct {
		Versions []latchkey.Secret `json:"versions"`
	}
	raw, err := cl.call(ctx, "GET", path+"/versions", nil, nil, &out)
	if err != nil {
		return err
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "VERSION\tCREATED\tCREATED_BY\tEXPIRES_IN")
	for _, v := range out.Versions {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%ds\n", v.Version, fmtTime(v.CreatedAt, "-"), orDash(v.CreatedBy), v.ExpiresIn)
	}
	return tw.Flush()
}

func secretsRm(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "secrets rm", "NAME")
	name, path, err := c.parseSecretName(args)
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	if _, err := cl.call(ctx, "DELETE", path, nil, nil, nil); err != nil {
		return err
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

func printKeyringStatus(e *env, raw []byte, asJSON bool) error {
	if asJSON {
		return printJSON(e.stdout, raw)
	}
	var st keyring.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return latchkey.Errorf(latchkey.EInternal, "the server's keyring status is not what this client expects")
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
	return keyringCall(ctx, e, args, "keyring status", "GET", "/v1/keyring")
}

func keyringRotate(ctx context.Context, e *env, args []string) error {
	return keyringCall(ctx, e, args, "keyring rotate", "POST", "/v1/keyring/rotate")
}

// keyringCall runs a keyring command without arguments: one request whose
// answer is the keyring's status.
func keyringCall(ctx context.Context, e *env, args []string, name, method, path string) error {
	c := newCommand(e, name, "[flags]")
	if _, err := c.parse(args); err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	raw, err := cl.call(ctx, method, path, nil, nil, nil)
	if err != nil {
		return err
	}
	return printKeyringStatus(e, raw, c.client.json)
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
	var out keyring.RewrapResult
	raw, err := cl.call(ctx, "POST", "/v1/keyring/rewrap", nil, map[string]any{"new_master_key_file": *file}, &out)
	if err != nil {
		return err
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
