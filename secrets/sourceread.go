package secrets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// sourceFailBackoff is how long a failed source is not tried again (or
// its refresh interval, if shorter): reads meanwhile fail at once, so a
// burst of reads of a broken exec: source does not start a process each.
const sourceFailBackoff = time.Second

// maxSourceEntries bounds the resolved sources kept; when full, an
// arbitrary one is forgotten.
const maxSourceEntries = 10_000

// execEnv is the whole environment an exec: program runs with: nothing of
// the server's own (its master key may be there) but a search path.
var execEnv = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}

// sourceReader resolves source references to values, keeping each value
// for its refresh interval, per secret version: a new version reads its
// source afresh, and two secrets naming the same program run it each. One
// resolution of a version runs at a time; its other readers wait for it.
type sourceReader struct {
	allow   *SourceAllow
	getenv  func(string) (string, bool)
	timeout time.Duration

	mu      sync.Mutex
	entries map[sourceKey]*sourceEntry
}

type sourceKey struct {
	tenant, name string
	version      int64
}

type sourceEntry struct {
	mu      sync.Mutex
	value   string
	err     error
	fetched time.Time // when value (or err) was read
	until   time.Time // value or err is trusted until then
	// A file's identity when it was read: a change shows before refresh.
	mod  time.Time
	size int64
	file os.FileInfo
}

func newSourceReader(allow *SourceAllow, getenv func(string) (string, bool), timeout time.Duration) *sourceReader {
	return &sourceReader{allow: allow, getenv: getenv, timeout: timeout, entries: make(map[sourceKey]*sourceEntry)}
}

func (r *sourceReader) entry(k sourceKey) *sourceEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[k]
	if e == nil {
		if len(r.entries) >= maxSourceEntries {
			for old := range r.entries {
				delete(r.entries, old)
				break
			}
		}
		e = &sourceEntry{}
		r.entries[k] = e
	}
	return e
}

// forget drops what was read for the versions of a tenant's secret, when
// it is written or deleted.
func (r *sourceReader) forget(tenant, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.entries {
		if k.tenant == tenant && k.name == name {
			delete(r.entries, k)
		}
	}
}

// clear drops everything read.
func (r *sourceReader) clear() {
	r.mu.Lock()
	clear(r.entries)
	r.mu.Unlock()
}

// read returns the value src names, from memory while it is younger than
// refresh (and, for a file, unchanged on disk). The allowlist is checked
// on every resolution, not only when the reference was written: the
// operator may have narrowed it since, and a link may have been changed.
// Errors say why without the value; the caller logs them.
func (r *sourceReader) read(k sourceKey, src *Source, refresh time.Duration, now time.Time) (string, error) {
	if src.Kind == SourceEnv {
		// Reading the environment costs nothing: no cache, so that a
		// changed variable (in tests; a process's environment is fixed
		// otherwise) shows at once.
		if err := r.allow.Check(src); err != nil {
			return "", errOutsideAllow
		}
		v, ok := r.getenv(src.Name)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", src.Name)
		}
		if err := checkSourceValue([]byte(v)); err != nil {
			return "", err
		}
		return v, nil
	}
	e := r.entry(k)
	e.mu.Lock()
	defer e.mu.Unlock()
	if now.Before(e.until) {
		if e.err != nil {
			return "", e.err
		}
		if src.Kind != SourceFile || e.sameFile(src.Path) {
			return e.value, nil
		}
	}
	var v []byte
	var err error
	if err = r.allow.Check(src); err != nil {
		err = errOutsideAllow
	} else if src.Kind == SourceFile {
		v, err = e.readFile(src.Path)
	} else {
		v, err = r.run(src)
	}
	if err == nil {
		v = trimNewline(v)
		err = checkSourceValue(v)
	}
	e.fetched = now
	if err != nil {
		e.value, e.err = "", err
		e.until = now.Add(min(refresh, sourceFailBackoff))
		clear(v)
		return "", err
	}
	e.value, e.err, e.until = string(v), nil, now.Add(refresh)
	clear(v)
	return e.value, nil
}

// errOutsideAllow is a source the allowlist no longer allows when read.
var errOutsideAllow = errors.New("the source is outside --secret-source-allow")

// sameFile reports whether the file read last is still what path
// resolves to, with the same size and modification time.
func (e *sourceEntry) sameFile(path string) bool {
	if e.file == nil {
		return false
	}
	fi, err := os.Stat(path)
	return err == nil && os.SameFile(fi, e.file) && fi.Size() == e.size && fi.ModTime().Equal(e.mod)
}

// readFile reads a regular file at most MaxSecretValue bytes long (and a
// newline). The path is resolved and the file opened; that what was
// opened is what the resolved path names (not a link put there since) is
// checked after opening.
func (e *sourceEntry) readFile(path string) ([]byte, error) {
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(resolved)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", resolved)
	}
	if li, err := os.Lstat(resolved); err != nil || !os.SameFile(fi, li) {
		return nil, fmt.Errorf("%s changed while it was opened", resolved)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSecretValue+3))
	if err != nil {
		return nil, err
	}
	e.file, e.size, e.mod = fi, fi.Size(), fi.ModTime()
	return b, nil
}

// run runs an exec: source's program, resolved (so that a link changed
// since the check does not matter), without a shell, with no standard
// input, a minimal environment, a timeout, and standard output bounded.
// Its standard error is discarded: it may hold the value.
func (r *sourceReader) run(src *Source) ([]byte, error) {
	prog, err := filepath.EvalSymlinks(src.Path)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, src.Args...)
	cmd.Env = execEnv
	cmd.Dir = "/"
	out := &boundedBuffer{max: MaxSecretValue + 2}
	cmd.Stdout = out
	// A program that leaves a child holding its output open does not hold
	// the read past the timeout.
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		clear(out.b)
		return nil, fmt.Errorf("%s did not finish within %v", prog, r.timeout)
	}
	if err != nil {
		clear(out.b)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("%s failed: %s", prog, ee.ProcessState)
		}
		return nil, err
	}
	if out.over {
		clear(out.b)
		return nil, fmt.Errorf("%s wrote more than %d bytes", prog, MaxSecretValue)
	}
	return out.b, nil
}

// boundedBuffer keeps at most max bytes and notes that more came; it
// never fails a write, so the program is not stopped by a broken pipe
// but runs to its end (or the timeout).
type boundedBuffer struct {
	b    []byte
	max  int
	over bool
}

func (w *boundedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if room := w.max - len(w.b); len(p) > room {
		w.over = true
		p = p[:max(room, 0)]
	}
	w.b = append(w.b, p...)
	return n, nil
}
