package secrets

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/latchkeyhq/latchkey"
)

// A secret source is a reference a secret version holds instead of a
// value: "env:NAME" (the server's environment variable), "file:/path" (a
// file on the server's host) or "exec:/program arg…" (a program's
// standard output). The reference is stored; the value it names is read
// when the version is opened and never reaches the database
// (docs/secrets.md, "Secret sources").

// Source kinds, as they appear before the colon of a reference and in
// audit events.
const (
	SourceEnv  = "env"
	SourceFile = "file"
	SourceExec = "exec"
)

// Meta fields a secret version written from a source carries, so that
// lists and version answers show the reference (never a value). The
// service sets them; a PUT may not.
const (
	MetaSource  = "source"
	MetaRefresh = "refresh"
)

// Bounds of a source.
const (
	// DefaultSourceRefresh is the refresh interval of a source written
	// without one.
	DefaultSourceRefresh = time.Minute
	MinSourceRefresh     = time.Second
	MaxSourceRefresh     = 24 * time.Hour
	// maxSourceRef bounds the length of a reference.
	maxSourceRef = 4096
	// DefaultExecTimeout bounds one run of an exec: source's program.
	DefaultExecTimeout = 10 * time.Second
)

// sourceMarker starts the sealed payload of a version written from a
// source, followed by the JSON of sourceRecord. A value cannot be told
// apart from it by its bytes alone: a version is read as a source only
// when its meta names one too, and PUT refuses that meta field.
const sourceMarker = "\x00latchkey-source-v1\x00"

// sourceRecord is what a source version seals.
type sourceRecord struct {
	Ref     string `json:"source"`
	Refresh int64  `json:"refresh_ms"`
}

// Source is a parsed source reference.
type Source struct {
	// Kind is SourceEnv, SourceFile or SourceExec.
	Kind string
	// Ref is the reference as written ("file:/run/secrets/openai").
	Ref string
	// Name is the environment variable (env), Path the file or program
	// (file, exec), Args the program's arguments (exec).
	Name string
	Path string
	Args []string
}

// ParseSource parses a source reference; errors are EInvalid. It checks
// the syntax only: whether the operator allows the source is
// SourceAllow.Check's question.
func ParseSource(ref string) (*Source, error) {
	if len(ref) > maxSourceRef || !utf8.ValidString(ref) || strings.ContainsRune(ref, 0) {
		return nil, latchkey.Errorf(latchkey.EInvalid, "source must be at most %d bytes of UTF-8 text", maxSourceRef)
	}
	kind, rest, ok := strings.Cut(ref, ":")
	if !ok {
		return nil, latchkey.Errorf(latchkey.EInvalid, "source %.70q must start with env:, file: or exec:", ref)
	}
	s := &Source{Kind: kind, Ref: ref}
	switch kind {
	case SourceEnv:
		if !validEnvName(rest) {
			return nil, latchkey.Errorf(latchkey.EInvalid, "source %.70q: an environment variable name is letters, digits and _, not starting with a digit", ref)
		}
		s.Name = rest
	case SourceFile:
		if !filepath.IsAbs(rest) {
			return nil, latchkey.Errorf(latchkey.EInvalid, "source %.70q: the file must be an absolute path", ref)
		}
		s.Path = rest
	case SourceExec:
		f := strings.Fields(rest)
		if len(f) == 0 || !filepath.IsAbs(f[0]) {
			return nil, latchkey.Errorf(latchkey.EInvalid, "source %.70q: the program must be an absolute path", ref)
		}
		s.Path, s.Args = f[0], f[1:]
	default:
		return nil, latchkey.Errorf(latchkey.EInvalid, "source %.70q must start with env:, file: or exec:", ref)
	}
	return s, nil
}

func validEnvName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// SourceAllow is what the operator allows sources to reach
// (--secret-source-allow): environment variables by name or name prefix,
// files inside directories (or single files), and programs by exact path.
// The zero value (and nil) allows nothing.
type SourceAllow struct {
	envExact  []string
	envPrefix []string
	fileDirs  []string // cleaned, no trailing slash ("/" for everything)
	files     []string
	programs  []string
}

// ParseSourceAllow parses a comma-separated allowlist such as
// "env:PREFIX_*,file:/run/secrets/,exec:/usr/local/bin/op". An env entry
// ending in * allows every name with that prefix; a file entry ending in
// / allows every file below that directory, otherwise that one file; an
// exec entry allows exactly that program. Paths must be absolute. The
// empty string allows nothing.
func ParseSourceAllow(spec string) (*SourceAllow, error) {
	a := &SourceAllow{}
	for _, e := range strings.Split(spec, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		kind, rest, _ := strings.Cut(e, ":")
		switch kind {
		case SourceEnv:
			if p, ok := strings.CutSuffix(rest, "*"); ok {
				if p != "" && !validEnvName(p) {
					return nil, fmt.Errorf("secret source allowlist: %q: not an environment variable name prefix", e)
				}
				a.envPrefix = append(a.envPrefix, p)
			} else if validEnvName(rest) {
				a.envExact = append(a.envExact, rest)
			} else {
				return nil, fmt.Errorf("secret source allowlist: %q: not an environment variable name", e)
			}
		case SourceFile:
			if !filepath.IsAbs(rest) {
				return nil, fmt.Errorf("secret source allowlist: %q: the path must be absolute", e)
			}
			if strings.HasSuffix(rest, "/") {
				a.fileDirs = append(a.fileDirs, filepath.Clean(rest))
			} else {
				a.files = append(a.files, filepath.Clean(rest))
			}
		case SourceExec:
			if !filepath.IsAbs(rest) || strings.ContainsAny(rest, " \t") {
				return nil, fmt.Errorf("secret source allowlist: %q: the program must be an absolute path without arguments", e)
			}
			a.programs = append(a.programs, filepath.Clean(rest))
		default:
			return nil, fmt.Errorf("secret source allowlist: %q must start with env:, file: or exec:", e)
		}
	}
	return a, nil
}

// reservedEnvPrefix starts the server's own environment variables
// (LATCHKEY_MASTER_KEY among them): no allowlist lets a source read them.
const reservedEnvPrefix = "LATCHKEY_"

// Empty reports whether the allowlist allows nothing.
func (a *SourceAllow) Empty() bool {
	return a == nil || len(a.envExact)+len(a.envPrefix)+len(a.fileDirs)+len(a.files)+len(a.programs) == 0
}

// Check reports whether the operator allows src; EForbidden otherwise.
// File and program paths are compared after resolving symbolic links and
// "..", on both sides, so that neither a link inside an allowed directory
// nor a path that climbs out of it reaches anything else. A file that
// does not exist yet is checked by the nearest directory above it that
// does, resolved.
func (a *SourceAllow) Check(src *Source) error {
	if a.allows(src) {
		return nil
	}
	return latchkey.Errorf(latchkey.EForbidden, "source %.70q is outside what the operator allows (--secret-source-allow)", src.Ref)
}

func (a *SourceAllow) allows(src *Source) bool {
	if a == nil {
		return false
	}
	switch src.Kind {
	case SourceEnv:
		if strings.HasPrefix(src.Name, reservedEnvPrefix) {
			return false // the server's own settings, its master key among them
		}
		for _, n := range a.envExact {
			if src.Name == n {
				return true
			}
		}
		for _, p := range a.envPrefix {
			if strings.HasPrefix(src.Name, p) {
				return true
			}
		}
	case SourceFile:
		p := resolvePath(src.Path)
		for _, f := range a.files {
			if p == resolvePath(f) {
				return true
			}
		}
		for _, d := range a.fileDirs {
			if inside(p, resolvePath(d)) {
				return true
			}
		}
	case SourceExec:
		p := resolvePath(src.Path)
		for _, prog := range a.programs {
			if p == resolvePath(prog) {
				return true
			}
		}
	}
	return false
}

// inside reports whether the clean path p lies below the clean directory
// dir (not dir itself).
func inside(p, dir string) bool {
	if dir == "/" {
		return p != "/"
	}
	return strings.HasPrefix(p, dir+"/")
}

// resolvePath returns p cleaned with its symbolic links resolved. When p
// or some of its last components do not exist, the longest existing
// prefix is resolved and the rest appended, cleaned: a ".." after a
// missing component cannot climb out of what is checked, because Clean
// removes it lexically first.
func resolvePath(p string) string {
	p = filepath.Clean(p)
	var rest []string
	for range 256 { // bounded: each step removes one component
		r, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(append([]string{r}, rest...)...)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			// Unreadable: keep the lexical form, which a link cannot
			// redirect since nothing below can be read either.
			return filepath.Join(append([]string{p}, rest...)...)
		}
		dir, base := filepath.Split(p)
		if base == "" || dir == p {
			break
		}
		rest = append([]string{base}, rest...)
		p = filepath.Clean(dir)
	}
	return filepath.Join(append([]string{p}, rest...)...)
}

// sealSource returns the payload a source version seals.
func sealSource(ref string, refresh time.Duration) []byte {
	b, _ := json.Marshal(sourceRecord{Ref: ref, Refresh: refresh.Milliseconds()})
	return append([]byte(sourceMarker), b...)
}

// openSource reads a payload sealed by sealSource; ok is false for a value.
func openSource(v *latchkey.SecretVersion, p []byte) (rec sourceRecord, ok bool, err error) {
	if v.Meta[MetaSource] == "" || !strings.HasPrefix(string(p), sourceMarker) {
		return rec, false, nil
	}
	if err := json.Unmarshal(p[len(sourceMarker):], &rec); err != nil {
		return rec, true, fmt.Errorf("secrets: secret %s/%s version %d: the sealed source does not parse: %w", v.Tenant, v.Name, v.Version, err)
	}
	return rec, true, nil
}

// formatRefresh shows a refresh interval as it is written ("5m", "90s").
func formatRefresh(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// trimNewline drops one trailing newline ("\n" or "\r\n"): it is not
// part of a file's or a program's value.
func trimNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// checkSourceValue checks what a source gave as a value would be checked
// when written; the error never shows it.
func checkSourceValue(b []byte) error {
	switch {
	case len(b) == 0:
		return errors.New("the value is empty")
	case len(b) > MaxSecretValue:
		return fmt.Errorf("the value is longer than %d bytes", MaxSecretValue)
	case !utf8.Valid(b):
		return errors.New("the value is not UTF-8 text")
	}
	return nil
}

// lookupEnv is the default Options.LookupEnv.
var lookupEnv = os.LookupEnv
