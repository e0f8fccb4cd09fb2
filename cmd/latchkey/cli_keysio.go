package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client/admin"
	"github.com/latchkeyhq/latchkey/keys"
)

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
	body, err := cl.ExportKeys(ctx)
	if err != nil {
		return cl.fail(err)
	}
	defer body.Close()
	w := e.stdout
	var f *os.File
	if *out != "" {
		// An export holds the hashes that make the keys work elsewhere.
		if f, err = os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			return latchkey.Errorf(latchkey.EInvalid, "--out: %s", err)
		}
		w = f
	}
	n, err := io.Copy(w, body)
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
	p := admin.ImportParams{Format: f}
	if c.set("owner") {
		p.Owner = owner
	}
	if c.set("name") {
		p.Name = name
	}
	if c.set("env") {
		p.Environment = envTag
	}
	if c.set("scopes") {
		p.Scopes = nonNil(scopes)
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
	var raw []byte
	r, err := cl.ImportKeys(ctx, in, p, admin.Raw(&raw))
	bar.stop()
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
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
