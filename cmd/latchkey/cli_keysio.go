package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// stream sends one request whose body (if any) is read as it goes and
// returns the 2xx answer for the caller to read and close. Unlike call it
// has no overall time limit; headerTimeout (0: none) bounds the wait for
// the answer's headers once the body is sent. An import needs none: the
// server is still working through what the connection's buffers hold.
func (c *apiClient) stream(ctx context.Context, method, path string, query url.Values, body io.Reader, contentType string, headerTimeout time.Duration) (*http.Response, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("User-Agent", "latchkey-cli/"+version)
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	t, _ := c.http.Transport.(*http.Transport)
	if t == nil {
		t = http.DefaultTransport.(*http.Transport)
	}
	t = t.Clone()
	t.ResponseHeaderTimeout = headerTimeout
	res, err := (&http.Client{Transport: t}).Do(req)
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		defer res.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(res.Body, maxResponse))
		return nil, responseError(res, raw)
	}
	return res, nil
}

func keysExport(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "keys export", "[--out FILE]")
	out := c.fs.String("out", "", "write to FILE (created 0600) instead of stdout")
	if _, err := c.parse(args); err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	res, err := cl.stream(ctx, "GET", "/v1/keys/export", nil, nil, "", cl.timeout)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	w := e.stdout
	var f *os.File
	if *out != "" {
		// An export holds the hashes that make the keys work elsewhere.
		if f, err = os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			return latchkey.Errorf(latchkey.EInvalid, "--out: %s", err)
		}
		w = f
	}
	n, err := io.Copy(w, res.Body)
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return latchkey.Errorf(latchkey.EUnavailable, "the export broke off after %d bytes: %s", n, err)
	}
	return nil
}

// importFormatOf guesses an import's format from its file name.
func importFormatOf(name string) string {
	base := filepath.Base(name)
	switch {
	case strings.HasSuffix(base, ".jsonl"), strings.HasSuffix(base, ".ndjson"):
		return keys.ImportJSONL
	case base == ".env", strings.HasSuffix(base, ".env"):
		return keys.ImportEnv
	}
	return keys.ImportPlain
}

func keysImport(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "keys import", "FILE|- [--format auto|jsonl|plaintext|sha256|env] [--owner O] [--scopes a,b] [--name N] [--env E]")
	format := c.fs.String("format", "", "auto, jsonl (an export), plaintext (a key per line), sha256 (a hex hash per line) or env (a .env API_KEYS line); auto (the default) goes by the file name (.jsonl, .env), else plaintext")
	owner := c.fs.String("owner", "", "owner of every imported key (env: the client ids are the owners)")
	name := c.fs.String("name", "", `name of every imported key (default "imported")`)
	envTag := c.fs.String("env", "", "environment of every imported key")
	var scopes listFlag
	c.fs.Var(&scopes, "scopes", "scopes of every imported key, comma-separated")
	pos, err := c.parse(args, "FILE")
	if err != nil {
		return err
	}
	f := *format
	if f == "" || f == "auto" {
		f = importFormatOf(pos[0])
	}
	f, ok := keys.ImportFormat(f)
	if !ok {
		return latchkey.Errorf(latchkey.EInvalid, "--format %q: use auto, jsonl, plaintext, sha256 or env", f)
	}
	q := url.Values{"format": {f}}
	for flagName, param := range map[string]string{"owner": "owner", "name": "name", "env": "environment"} {
		if c.set(flagName) {
			q.Set(param, map[string]string{"owner": *owner, "name": *name, "env": *envTag}[flagName])
		}
	}
	if c.set("scopes") {
		q.Set("scopes", strings.Join(scopes, ","))
	}
	var in io.Reader = e.stdin
	var size int64 = -1
	if pos[0] != "-" {
		file, err := os.Open(pos[0])
		if err != nil {
			return latchkey.Errorf(latchkey.EInvalid, "%s", err)
		}
		defer file.Close()
		if st, err := file.Stat(); err == nil && st.Mode().IsRegular() {
			size = st.Size()
		}
		in = file
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var bar *progressBar
	if !c.client.json && isTerminal(e.stderr) {
		bar = startProgress(e.stderr, size)
		in = bar.reader(in)
	}
	res, err := cl.stream(ctx, "POST", "/v1/keys/import", q, in, "text/plain", 0)
	bar.stop()
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxResponse))
	if err != nil {
		return latchkey.Errorf(latchkey.EUnavailable, "the answer broke off: %s", readCause(err))
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	var r keys.ImportResult
	if err := json.Unmarshal(raw, &r); err != nil {
		return latchkey.Errorf(latchkey.EInternal, "the answer is not the JSON this client expects")
	}
	fmt.Fprintf(e.stdout, "imported %d, skipped %d (already stored), invalid %d\n", r.Imported, r.Skipped, r.Invalid)
	for _, p := range r.Errors {
		fmt.Fprintf(e.stdout, "  line %d: %s\n", p.Line, p.Error)
	}
	if int64(len(r.Errors)) < r.Invalid {
		fmt.Fprintf(e.stdout, "  … and %d more\n", r.Invalid-int64(len(r.Errors)))
	}
	return nil
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressBar redraws one stderr line with the bytes sent so far.
type progressBar struct {
	w     io.Writer
	size  int64
	mu    sync.Mutex
	sent  int64
	start time.Time
	done  chan struct{}
	wg    sync.WaitGroup
}

func startProgress(w io.Writer, size int64) *progressBar {
	b := &progressBar{w: w, size: size, start: time.Now(), done: make(chan struct{})}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-b.done:
				b.draw()
				fmt.Fprintln(b.w)
				return
			case <-t.C:
				b.draw()
			}
		}
	}()
	return b
}

func (b *progressBar) draw() {
	b.mu.Lock()
	sent := b.sent
	b.mu.Unlock()
	el := time.Since(b.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(sent) / el / (1 << 20)
	}
	if b.size > 0 {
		pct := float64(sent) * 100 / float64(b.size)
		const width = 30
		fill := min(int(pct*width/100), width)
		fmt.Fprintf(b.w, "\rimporting [%s%s] %5.1f%% %.1f MiB/s", strings.Repeat("#", fill), strings.Repeat(".", width-fill), pct, rate)
		return
	}
	fmt.Fprintf(b.w, "\rimporting %.1f MiB sent, %.1f MiB/s", float64(sent)/(1<<20), rate)
}

func (b *progressBar) reader(r io.Reader) io.Reader { return &countingReader{r: r, b: b} }

// stop ends the bar (nil: none).
func (b *progressBar) stop() {
	if b == nil {
		return
	}
	close(b.done)
	b.wg.Wait()
}

type countingReader struct {
	r io.Reader
	b *progressBar
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.b.mu.Lock()
	c.b.sent += int64(n)
	c.b.mu.Unlock()
	return n, err
}
