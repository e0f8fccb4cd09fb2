package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/httpapi"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/leaks"
	"github.com/latchkeyhq/latchkey/wire"
)

// Bounds of latchkey scan.
const (
	// defaultScanMaxSize is the largest file scanned unless --max-size
	// says otherwise: keys sit in sources and configuration, not in
	// gigabyte dumps.
	defaultScanMaxSize = 32 << 20
	// binarySniff is how much of a file is looked at for a NUL byte,
	// which marks it binary (as git and grep decide).
	binarySniff = 8000
)

// skippedDirs are not descended into: version control's own stores hold
// compressed objects, where no key is readable anyway.
var skippedDirs = map[string]bool{".git": true, ".hg": true, ".svn": true}

// scanFinding is one key found: where, and its display start. The key
// itself is never printed.
type scanFinding struct {
	Path    string `json:"path"`
	Line    int    `json:"line"`
	Prefix  string `json:"prefix"`
	Start   string `json:"start"`
	Outcome string `json:"outcome,omitempty"`
	KeyID   string `json:"key_id,omitempty"`

	token latchkey.Token
}

// scanFound ends a scan that found keys: exit status 1, with the findings
// already printed.
type scanFound struct{ n int }

func (e *scanFound) Error() string { return fmt.Sprintf("%d keys found", e.n) }

// Is lets errors.Is(err, errAlreadyReported) find it.
func (e *scanFound) Is(target error) bool { return target == errAlreadyReported }

// runScan is latchkey scan: it finds Latchkey keys in files by their
// format and checksum, offline, prints where (file:line, the key's
// prefix and start), and with --revoke reports them to the server (POST
// /v1/leaks), which revokes the live ones of the caller's tenant.
func runScan(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "scan", "[--revoke] [--max-size BYTES] PATH…\n\nFinds Latchkey keys in files (format and checksum, offline) and prints file:line and each key's start;\nexits 1 when it finds any. --revoke reports them to the server (admin key with keys:write), which\nrevokes the live keys of your tenant.")
	revoke := c.fs.Bool("revoke", false, "report the keys found to the server, which revokes (or suspends) the live keys of your tenant")
	maxSize := c.fs.Int64("max-size", defaultScanMaxSize, "skip files larger than this many bytes")
	pos, err := parseArgs(c.fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return errHelpShown
	}
	if err != nil {
		return errUsageShown
	}
	if len(pos) == 0 {
		fmt.Fprintln(e.stderr, "latchkey scan: name at least one file or directory")
		c.fs.Usage()
		return errUsageShown
	}
	if *maxSize <= 0 {
		return latchkey.Errorf(latchkey.EInvalid, "--max-size must be positive")
	}
	var cl *cliClient
	if *revoke {
		if cl, err = c.client.newClient(e, true); err != nil {
			return err
		}
	}
	sc := scanner{maxSize: *maxSize, stderr: e.stderr}
	for _, p := range pos {
		if err := ctx.Err(); err != nil {
			return err
		}
		sc.walk(ctx, p)
	}
	if *revoke && len(sc.found) > 0 {
		if err := reportFound(ctx, cl, sc.found); err != nil {
			return err
		}
	}
	if c.client.json {
		out := struct {
			Findings []scanFinding `json:"findings"`
			Files    int           `json:"files_scanned"`
			Skipped  int           `json:"files_skipped"`
			Errors   int           `json:"read_errors"`
		}{orEmpty(sc.found), sc.files, sc.skipped, sc.errors}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		for _, f := range sc.found {
			line := fmt.Sprintf("%s:%d: %s… (prefix %s)", f.Path, f.Line, f.Start, f.Prefix)
			if f.Outcome != "" {
				line += " " + f.Outcome
				if f.KeyID != "" {
					line += " " + f.KeyID
				}
			}
			fmt.Fprintln(e.stdout, line)
		}
		fmt.Fprintf(e.stderr, "%d keys found; %d files scanned, %d skipped (binary or larger than --max-size), %d unreadable\n",
			len(sc.found), sc.files, sc.skipped, sc.errors)
	}
	switch {
	case len(sc.found) > 0:
		return &scanFound{len(sc.found)}
	case sc.errors > 0:
		return fmt.Errorf("%d files could not be read", sc.errors)
	}
	return nil
}

func orEmpty(f []scanFinding) []scanFinding {
	if f == nil {
		return []scanFinding{}
	}
	return f
}

// scanner walks paths and collects the keys their files hold.
type scanner struct {
	maxSize                int64
	stderr                 io.Writer
	found                  []scanFinding
	files, skipped, errors int
}

// walk scans a file, or every regular file under a directory, without
// following the symbolic links inside it.
func (sc *scanner) walk(ctx context.Context, root string) {
	if fi, err := os.Stat(root); err == nil && fi.Mode().IsRegular() {
		sc.file(root) // a file named on the command line, even through a link
		return
	}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			sc.errors++
			fmt.Fprintf(sc.stderr, "latchkey scan: %s: %s\n", path, readCause(err))
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && skippedDirs[d.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		sc.file(path)
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		sc.errors++
		fmt.Fprintf(sc.stderr, "latchkey scan: %s: %s\n", root, readCause(err))
	}
}

// file scans one file: skipped when it is larger than maxSize or binary.
func (sc *scanner) file(path string) {
	f, err := os.Open(path)
	if err != nil {
		sc.errors++
		fmt.Fprintf(sc.stderr, "latchkey scan: %s: %s\n", path, readCause(err))
		return
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, sc.maxSize+1))
	if err != nil {
		sc.errors++
		fmt.Fprintf(sc.stderr, "latchkey scan: %s: %s\n", path, readCause(err))
		return
	}
	if int64(len(data)) > sc.maxSize || bytes.IndexByte(data[:min(len(data), binarySniff)], 0) >= 0 {
		sc.skipped++
		return
	}
	sc.files++
	for _, k := range leaks.FindKeys(data) {
		sc.found = append(sc.found, scanFinding{Path: path, Line: k.Line, Prefix: k.Token.Prefix(), Start: k.Token.Start(), token: k.Token})
	}
}

// reportFound sends the keys found to POST /v1/leaks, one request per
// file (its path is the report's url), at most httpapi.MaxLeakTokens keys
// a request, and notes each key's outcome.
func reportFound(ctx context.Context, cl *cliClient, found []scanFinding) error {
	for i := 0; i < len(found); {
		j := i
		for j < len(found) && found[j].Path == found[i].Path && j-i < httpapi.MaxLeakTokens {
			j++
		}
		batch := found[i:j]
		tokens := make([]string, len(batch))
		for k, f := range batch {
			tokens[k] = f.token.Reveal()
		}
		res, err := postLeaks(ctx, cl, tokens, batch[0].Path)
		if err != nil {
			return err
		}
		if len(res) != len(batch) {
			return latchkey.Errorf(latchkey.EInternal, "the server answered %d results for %d keys", len(res), len(batch))
		}
		for k := range batch {
			batch[k].Outcome, batch[k].KeyID = res[k].Outcome, res[k].KeyID
		}
		i = j
	}
	return nil
}

// postLeaks is one POST /v1/leaks. The admin client has no method for it
// yet, so it speaks HTTP with the client's settings.
func postLeaks(ctx context.Context, cl *cliClient, tokens []string, url string) ([]httpapi.LeakOutcome, error) {
	body, err := json.Marshal(map[string]any{"tokens": tokens, "url": url, "source": "latchkey scan"})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cl.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cl.base+"/v1/leaks", bytes.NewReader(body))
	if err != nil {
		return nil, latchkey.Errorf(latchkey.EInvalid, "--server %q: %s", cl.base, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+cl.key)
	req.Header.Set("User-Agent", "latchkey-cli/"+version)
	resp, err := cl.http.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, cl.timedOut()
		}
		return nil, latchkey.Errorf(latchkey.EUnavailable, "cannot reach %s — is 'latchkey server' running? (%s)", cl.base, readCause(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, latchkey.Errorf(latchkey.EUnavailable, "POST /v1/leaks: the answer broke off: %s", readCause(err))
	}
	if resp.StatusCode != http.StatusOK {
		var eb wire.ErrorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error.Code == "" {
			return nil, latchkey.Errorf(latchkey.EInternal, "POST /v1/leaks answered %s (is %s a Latchkey server?)", resp.Status, cl.base)
		}
		msg := eb.Error.Message
		if eb.Error.RequestID != "" {
			msg += " (request_id " + eb.Error.RequestID + ")"
		}
		return nil, &refusedError{&latchkey.Error{Code: eb.Error.Code, Message: msg}}
	}
	var out struct {
		Results []httpapi.LeakOutcome `json:"results"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, latchkey.Errorf(latchkey.EInternal, "POST /v1/leaks: the answer is not the API's")
	}
	return out.Results, nil
}

// leakConfig is the server's leak routes' configuration from its flags:
// the verifier of GitHub's alerts when --leak-report-keys names a file or
// URL, and --leak-action. Errors: EInvalid.
func leakConfig(ctx context.Context, cfg serverConfig, log *slog.Logger) (httpapi.LeakConfig, error) {
	action, err := keys.ParseLeakAction(cfg.LeakAction)
	if err != nil {
		return httpapi.LeakConfig{}, latchkey.Errorf(latchkey.EInvalid, "--leak-action: %s", latchkey.ErrorMessage(err))
	}
	lc := httpapi.LeakConfig{Action: action}
	loc := strings.TrimSpace(cfg.LeakReportKeys)
	if loc == "" {
		return lc, nil
	}
	v, err := leaks.NewVerifier(ctx, leaks.Options{Location: loc, Logger: log})
	if err != nil {
		return httpapi.LeakConfig{}, fmt.Errorf("--leak-report-keys: %w", err)
	}
	lc.Verifier = v
	log.Info("taking GitHub secret-scanning alerts at POST /v1/leaks/github", "leak_report_keys", loc, "leak_action", string(action))
	return lc, nil
}
