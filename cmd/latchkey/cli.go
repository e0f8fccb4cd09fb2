package main

// The client half of the binary: flags every client command shares, the
// connection all of them use (a client/admin.Client, whose errors fail
// turns into the CLI's), and the printing helpers. The commands
// themselves are in the other cli_*.go files.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client/admin"
)

// defaultServer is where a client looks for a node when neither --server nor
// LATCHKEY_ADDR says otherwise; it matches the server's default listen
// address.
const defaultServer = "http://127.0.0.1:8080"

// errAlreadyReported marks a failure whose outcome the command has already
// printed, such as a verification that did not answer VALID: the process
// must exit non-zero, but a second "latchkey: …" line would only repeat it.
// main should skip printing errors that match it, as it does errUsageShown.
var errAlreadyReported = errors.New("already reported")

// deniedError is the result of `keys verify` for a key that is not VALID.
// Code is the verification code (latchkey.CodeRevoked, …).
type deniedError struct{ Code string }

func (e *deniedError) Error() string { return e.Code }

// Is lets errors.Is(err, errAlreadyReported) find a denial.
func (e *deniedError) Is(target error) bool { return target == errAlreadyReported }

// clientFlags are the flags every client command accepts.
type clientFlags struct {
	server  string
	key     string
	json    bool
	timeout string
	cacert  string
}

// addClientFlags registers the shared client flags on fs. The key's default
// is read from the environment only after parsing, so that -h never prints
// it.
func addClientFlags(fs *flag.FlagSet, e *env) *clientFlags {
	c := &clientFlags{}
	fs.StringVar(&c.server, "server", envOr(e, "LATCHKEY_ADDR", defaultServer), "server URL; host:port and :port mean http://… (env LATCHKEY_ADDR)")
	fs.StringVar(&c.key, "key", "", "admin API key (default $LATCHKEY_KEY, which is safer: a flag shows in ps)")
	fs.BoolVar(&c.json, "json", false, "print the server's JSON response instead of text")
	fs.StringVar(&c.timeout, "timeout", "10s", "how long to wait for the server")
	fs.StringVar(&c.cacert, "cacert", e.getenv("LATCHKEY_CACERT"), "PEM file of the CA that signed an https server's certificate, trusted besides the system's (env LATCHKEY_CACERT)")
	return c
}

// tlsConfig trusts, besides the system's roots, the CA certificates in the
// PEM file --cacert names; nil without one. Errors: EInvalid.
func (c *clientFlags) tlsConfig() (*tls.Config, error) {
	if c.cacert == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(c.cacert)
	if err != nil {
		return nil, latchkey.Errorf(latchkey.EInvalid, "--cacert: %s", readCause(err))
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, latchkey.Errorf(latchkey.EInvalid, "--cacert %q: no PEM certificate in the file", c.cacert)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// newClient checks the shared flags and returns a client for the server
// they name. With needKey, a missing key is an EUnauthenticated error here
// rather than a round trip later. Errors: EInvalid, EUnauthenticated.
func (c *clientFlags) newClient(e *env, needKey bool) (*cliClient, error) {
	timeout, err := parseDurationFlag("timeout", c.timeout)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		return nil, latchkey.Errorf(latchkey.EInvalid, "--timeout must be positive")
	}
	base, err := normalizeServer(c.server)
	if err != nil {
		return nil, err
	}
	key := c.key
	if key == "" {
		key = e.getenv("LATCHKEY_KEY")
	}
	// A key read from a file or pasted often carries a newline.
	key = strings.TrimSpace(key)
	if needKey && key == "" {
		return nil, latchkey.Errorf(latchkey.EUnauthenticated, "no API key: pass --key or set LATCHKEY_KEY")
	}
	if !needKey {
		// Routes that need no key never receive one: the admin key has no
		// business travelling with a verification.
		key = ""
	}
	hc := &http.Client{Timeout: timeout}
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = tc
		hc.Transport = t
	}
	ac, err := admin.New(base, key, admin.WithHTTPClient(hc), admin.WithTimeout(timeout), admin.WithUserAgent("latchkey-cli/"+version))
	cl := &cliClient{Client: ac, base: base, key: key, timeout: timeout, http: hc}
	if err != nil {
		return nil, cl.fail(err)
	}
	return cl, nil
}

// normalizeServer turns a --server or LATCHKEY_ADDR value into a base URL.
// The server reads the same variable as its listen address, so listen forms
// are accepted too: ":9000" and "0.0.0.0:9000" mean http://127.0.0.1:9000.
// Errors: EInvalid.
func normalizeServer(s string) (string, error) {
	raw := s
	s = strings.TrimSpace(s)
	bad := func() (string, error) {
		return "", latchkey.Errorf(latchkey.EInvalid, "--server %q: expected a URL such as http://127.0.0.1:8080", raw)
	}
	if s == "" {
		return bad()
	}
	if !strings.Contains(s, "://") {
		host, port, err := net.SplitHostPort(s)
		if err == nil {
			switch host {
			case "", "0.0.0.0":
				host = "127.0.0.1"
			case "::":
				host = "::1"
			}
			s = net.JoinHostPort(host, port)
		}
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return bad()
	}
	// A path is kept: a node may sit behind a proxy under a prefix.
	return strings.TrimRight(u.String(), "/"), nil
}

// parseDurationFlag reads a duration flag in the API's forms ("90s", "30d",
// "1y"), so that a typo fails here, naming the flag, before any request.
// Errors: EInvalid.
func parseDurationFlag(name, v string) (time.Duration, error) {
	d, err := latchkey.ParseDuration(v)
	if err != nil {
		return 0, latchkey.Errorf(latchkey.EInvalid, "--%s: %s", name, latchkey.ErrorMessage(err))
	}
	return d, nil
}

// parseTimeFlag reads an RFC 3339 time, or a date meaning its midnight UTC.
// Errors: EInvalid.
func parseTimeFlag(name, v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, latchkey.Errorf(latchkey.EInvalid, "--%s %q: expected an RFC 3339 time such as 2030-01-02T15:04:05Z, or a date such as 2030-01-02", name, v)
}

// cliClient is a command's connection to the server: the typed admin
// client (package client/admin), through which every client command
// speaks HTTP, and the settings it was made from, which exec hands to the
// Go client.
type cliClient struct {
	*admin.Client
	base    string
	key     string
	timeout time.Duration
	http    *http.Client
}

// fail turns an error of the admin client into the CLI's: a refusal into
// a *refusedError holding the server's code and message with its request
// id; no answer into EUnavailable naming what to check (transportError);
// an answer that is not the API's into EInternal. An interruption by the
// user is returned as it is, so that nothing more is said.
func (c *cliClient) fail(err error) error {
	var ae *admin.Error
	var te *admin.TransportError
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return err
	case errors.As(err, &te):
		return c.transportError(te)
	case errors.Is(err, context.DeadlineExceeded):
		return c.timedOut()
	case errors.As(err, &ae) && ae.Refused():
		e := &latchkey.Error{Code: ae.Code, Message: ae.Message}
		if ae.RequestID != "" {
			e.Message += " (request_id " + ae.RequestID + ")"
		}
		return &refusedError{e}
	case errors.As(err, &ae) && ae.Status != 0:
		return latchkey.Errorf(latchkey.EInternal, "%s (is %s a Latchkey server?)", ae.Message, c.base)
	case errors.As(err, &ae):
		return latchkey.Errorf(ae.Code, "%s", ae.Message)
	}
	return err
}

func (c *cliClient) timedOut() error {
	return latchkey.Errorf(latchkey.EUnavailable, "%s did not answer within %s (set --timeout)", c.base, latchkey.FormatDuration(c.timeout))
}

// transportError explains a request that got no complete answer. The
// usual cause is a server that is not running, so that is what the
// message says.
func (c *cliClient) transportError(te *admin.TransportError) error {
	err := te.Err
	var ne net.Error
	if te.Timeout || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return c.timedOut()
	}
	if te.Status != 0 {
		return latchkey.Errorf(latchkey.EUnavailable, "%s %s: the answer broke off: %s", te.Method, strings.TrimPrefix(te.URL, c.base), readCause(err))
	}
	var dns *net.DNSError
	if errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &dns) {
		return latchkey.Errorf(latchkey.EUnavailable, "cannot reach %s — is 'latchkey server' running? (set --server or LATCHKEY_ADDR)", c.base)
	}
	var unknownCA x509.UnknownAuthorityError
	var certErr *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	if errors.As(err, &unknownCA) || errors.As(err, &certErr) || errors.As(err, &hostErr) || errors.As(err, &invalidCert) {
		return latchkey.Errorf(latchkey.EUnavailable, "cannot reach %s: %s — if the server's certificate comes from your own CA, pass its PEM file with --cacert FILE or LATCHKEY_CACERT", c.base, readCause(err))
	}
	// Other failures: the cause is what the user needs to see.
	return latchkey.Errorf(latchkey.EUnavailable, "cannot reach %s: %s (set --server or LATCHKEY_ADDR)", c.base, readCause(err))
}

// readCause strips the request line that *url.Error adds, which repeats
// the URL already in the message.
func readCause(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// refusedError is an answer in which the server refused a request. It
// unwraps to the server's *latchkey.Error; exitCode gives it status 1
// whatever its code, so that a request the server found invalid is not
// taken for a mistake in the command line (status 2).
type refusedError struct{ err *latchkey.Error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// parseArgs parses flags wherever they stand among args and returns the
// positional arguments. The flag package alone stops at the first
// non-flag, which would make `keys revoke key_1 --reason leaked` treat
// "--reason" as an argument. Everything after "--" is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// command is a client subcommand: its flags, with the shared client flags
// among them, and the environment it prints to.
type command struct {
	fs     *flag.FlagSet
	client *clientFlags
	e      *env
}

// newCommand returns a command named "latchkey <group> <name>" whose usage
// (printed for -h and for flag errors) shows synopsis and every flag.
func newCommand(e *env, name, synopsis string) *command {
	fs := flag.NewFlagSet("latchkey "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	c := &command{fs: fs, e: e}
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: latchkey %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	c.client = addClientFlags(fs, e)
	return c
}

// errHelpShown is returned by parse when -h printed the usage: the command
// stops, and dispatch turns it into success.
var errHelpShown = errors.New("help shown")

// dispatch runs the subcommand args[0] of a command group ("keys",
// "tenants"). Without one, or with an unknown one, it prints the group's
// usage on stderr; "help" prints it on stdout.
func dispatch(ctx context.Context, e *env, group, usage string, cmds map[string]func(context.Context, *env, []string) error, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return errUsageShown
	}
	switch args[0] {
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, usage)
		return nil
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "latchkey %s: unknown command %q\n\n%s", group, args[0], usage)
		return errUsageShown
	}
	if err := cmd(ctx, e, args[1:]); !errors.Is(err, errHelpShown) {
		return err
	}
	return nil
}

// parse parses args and checks that there are exactly as many positional
// arguments as names. Usage mistakes print the usage and return
// errUsageShown; -h returns errHelpShown.
func (c *command) parse(args []string, names ...string) ([]string, error) {
	pos, err := parseArgs(c.fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, errHelpShown
	}
	if err != nil {
		return nil, errUsageShown // the flag package has printed the problem and the usage
	}
	if len(pos) != len(names) {
		if len(pos) < len(names) {
			fmt.Fprintf(c.e.stderr, "%s: missing %s\n", c.fs.Name(), names[len(pos)])
		} else {
			fmt.Fprintf(c.e.stderr, "%s: unexpected argument %q\n", c.fs.Name(), pos[len(names)])
		}
		c.fs.Usage()
		return nil, errUsageShown
	}
	return pos, nil
}

// set reports whether the flag name was given on the command line.
func (c *command) set(name string) bool {
	found := false
	c.fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			found = true
		}
	})
	return found
}

// listFlag collects a list from repeated flags, each of which may also be
// comma-separated: --scopes a,b --scopes c is [a b c]. An empty value adds
// nothing, so --scopes "" asks for an empty list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	if *l == nil {
		*l = []string{}
	}
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// repeatedFlag collects a flag given several times, each value whole
// (a time window's day list has commas of its own).
type repeatedFlag []string

func (r *repeatedFlag) String() string { return strings.Join(*r, " ") }

func (r *repeatedFlag) Set(v string) error {
	*r = append(*r, v)
	return nil
}

// metaFlag collects repeated --meta key=value pairs.
type metaFlag map[string]any

func (m *metaFlag) String() string { return "" }

func (m *metaFlag) Set(v string) error {
	if *m == nil {
		*m = metaFlag{}
	}
	if v == "" {
		return nil // --meta "" alone asks for empty meta
	}
	k, val, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return errors.New("expected key=value")
	}
	(*m)[strings.TrimSpace(k)] = val
	return nil
}

// printJSON writes a server answer indented, for --json.
func printJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		return latchkey.Errorf(latchkey.EInternal, "the server's answer is not JSON")
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// newTable returns a tabwriter for aligned columns; callers Flush it.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// orDash shows an empty value as "-" so table columns stay aligned.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// fmtTime shows a time to the second in RFC 3339 UTC, or none for the zero
// time.
func fmtTime(t time.Time, none string) string {
	if t.IsZero() {
		return none
	}
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
}

// joinList shows a list comma-separated, or "-" when empty.
func joinList(l []string) string { return orDash(strings.Join(l, ",")) }

// printShownOnce prints a new plaintext key. It is the only place the CLI
// prints one (besides --json, which prints the server's answer as it is).
func printShownOnce(w io.Writer, key string) {
	fmt.Fprintf(w, "\n  %s\n\nThis key is shown only this once and cannot be recovered; Latchkey keeps only its hash. Store it now.\n", key)
}
