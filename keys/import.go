package keys

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Import formats (docs/api.md).
const (
	// ImportJSONL is the export of GET /v1/keys/export: one key per line.
	ImportJSONL = "jsonl"
	// ImportPlain is one plaintext key per line.
	ImportPlain = "plaintext"
	// ImportSHA256 is one hex SHA-256 of a key per line.
	ImportSHA256 = "sha256"
	// ImportEnv is a .env file whose API_KEYS line maps keys to client ids
	// (the client ids become owners).
	ImportEnv = "env"
)

const (
	// MaxImportLine bounds one line of an import.
	MaxImportLine = 64 << 10
	// ImportBatch is how many keys one transaction imports. Each key
	// dirties a random page of the hash index, and every dirty page is
	// written to the WAL (and checkpointed) once per transaction however
	// many keys share it: larger batches write less per key once the
	// index is large (1,000,000 keys: ~2,400 keys/s at 5,000 a batch,
	// 20,000 a batch wrote the WAL three times as long as 100,000). A
	// batch holds the writer for a few seconds.
	ImportBatch = 100_000
	// maxImportProblems is how many invalid lines an import reports.
	maxImportProblems = 20
	// maxEnvImport bounds the API_KEYS object of an env import, which
	// may stand on one line.
	maxEnvImport = 1 << 30
	// exportPage is how many keys an export reads per store read.
	exportPage = 1000
)

// ImportParams configure an import.
type ImportParams struct {
	Format string
	// Settings apply to every key of the plain, sha256 and env formats
	// (Name defaults to "imported"; an env import's client id replaces
	// Owner). A jsonl line carries its own.
	Settings
	// Progress, if set, is called before each batch is written (an HTTP
	// handler extends its deadlines: a batch may take seconds).
	Progress func()
}

// ImportResult counts what an import did. Lines (or, for env, entries of
// API_KEYS) are numbered from 1; a problem never shows the key.
type ImportResult struct {
	Imported int64           `json:"imported"`
	Skipped  int64           `json:"skipped"`
	Invalid  int64           `json:"invalid"`
	Errors   []ImportProblem `json:"errors"`
}

// ImportProblem names an invalid line and why it is invalid.
type ImportProblem struct {
	Line  int64  `json:"line"`
	Error string `json:"error"`
}

// ExportedKey is one line of an export: a key's configuration and the
// hex SHA-256 of its plaintext, never the plaintext.
type ExportedKey struct {
	latchkey.Key
	Hash string `json:"hash"`
}

// ImportFormat is the import format f names: "plain" is taken for
// "plaintext". ok is false for a name that is no format.
func ImportFormat(f string) (string, bool) {
	if f == "plain" {
		f = ImportPlain
	}
	return f, ValidImportFormat(f)
}

// ValidImportFormat reports whether f names an import format.
func ValidImportFormat(f string) bool {
	switch f {
	case ImportJSONL, ImportPlain, ImportSHA256, ImportEnv:
		return true
	}
	return false
}

// ParsePlainLine reads one line of a plaintext list: its key's hash and
// the display prefix and start kept with it. skip is true for a blank line
// or a comment (#). A key shaped like a Latchkey key must pass its
// checksum; any other must be 16-256 printable ASCII characters. Errors
// never quote the key.
func ParsePlainLine(line string) (h [32]byte, prefix, start string, skip bool, err error) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return h, "", "", true, nil
	}
	if h, err = latchkey.PresentedKeyHash(line); err != nil {
		return h, "", "", false, err
	}
	if latchkey.OwnShape(line) {
		tok, _ := latchkey.ParseToken(line)
		return h, tok.Prefix(), tok.Start(), false, nil
	}
	return h, "", foreignStart(line), false, nil
}

// foreignStart is the display start of a foreign key: its first four
// characters, as much as a Latchkey key's start shows of its random part.
func foreignStart(s string) string { return strings.Clone(s[:4]) }

// ParseHashLine reads one line of a SHA-256 list (64 hex digits). skip is
// true for a blank line or a comment (#).
func ParseHashLine(line string) (h [32]byte, skip bool, err error) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return h, true, nil
	}
	if len(line) != 64 {
		return h, false, latchkey.Errorf(latchkey.EInvalid, "a hash must be 64 hex digits")
	}
	if _, err := hex.Decode(h[:], []byte(line)); err != nil {
		return h, false, latchkey.Errorf(latchkey.EInvalid, "a hash must be 64 hex digits")
	}
	return h, false, nil
}

// ParseExportLine reads one line of an export. skip is true for a blank
// line.
func ParseExportLine(line []byte) (e *ExportedKey, skip bool, err error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil, true, nil
	}
	e = new(ExportedKey)
	if err := json.Unmarshal(line, e); err != nil {
		return nil, false, latchkey.Errorf(latchkey.EInvalid, "not a key of an export: %s", clipReason(err.Error()))
	}
	if _, _, err := ParseHashLine(e.Hash); err != nil || e.Hash == "" {
		return nil, false, latchkey.Errorf(latchkey.EInvalid, "hash must be 64 hex digits")
	}
	return e, false, nil
}

func clipReason(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// ParseEnv finds the API_KEYS line of a .env file (API_KEYS={"key":
// "client_id", …}, the JSON object possibly quoted, spanning lines and
// preceded by "export ") and calls fn for each pair with its position in
// the object (from 1), in order. Lines before it are skipped; what follows
// the object is ignored. Errors: EInvalid when there is no API_KEYS line or
// its value is not a JSON object of strings.
func ParseEnv(r io.Reader, fn func(entry int64, key, client string) error) error {
	br := bufio.NewReaderSize(r, MaxImportLine)
	for {
		// A line longer than the buffer comes in pieces; only its first
		// piece can start API_KEYS=, the others are skipped.
		frag, err := br.ReadSlice('\n')
		t := bytes.TrimLeft(frag, " \t")
		if rest, ok := bytes.CutPrefix(t, []byte("export ")); ok {
			t = bytes.TrimLeft(rest, " \t")
		}
		if v, ok := bytes.CutPrefix(t, []byte("API_KEYS")); ok {
			v = bytes.TrimLeft(v, " \t")
			if v, ok = bytes.CutPrefix(v, []byte("=")); ok {
				v = bytes.TrimLeft(v, " \t'")
				// This piece and everything after it.
				return envObject(io.MultiReader(bytes.NewReader(bytes.Clone(v)), br), fn)
			}
		}
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = br.ReadSlice('\n')
		}
		if err == io.EOF {
			return latchkey.Errorf(latchkey.EInvalid, "no API_KEYS= line in the input")
		}
		if err != nil {
			return readError(err)
		}
	}
}

func envObject(r io.Reader, fn func(entry int64, key, client string) error) error {
	dec := json.NewDecoder(io.LimitReader(r, maxEnvImport))
	bad := func() error {
		return latchkey.Errorf(latchkey.EInvalid, "API_KEYS must be a JSON object of key → client id strings (at most %d bytes)", maxEnvImport)
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return bad()
	}
	var entry int64
	for dec.More() {
		entry++
		k, err := dec.Token()
		if err != nil {
			return bad()
		}
		v, err := dec.Token()
		if err != nil {
			return bad()
		}
		ks, ok1 := k.(string)
		vs, ok2 := v.(string)
		if !ok1 || !ok2 {
			return bad()
		}
		if err := fn(entry, ks, vs); err != nil {
			return err
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return bad()
	}
	return nil
}

// importer collects keys into batches and writes each in a transaction.
type importer struct {
	s        *Service
	ctx      context.Context
	actor    *latchkey.Actor
	now      time.Time
	format   string
	progress func()
	tmpl     latchkey.Key
	ids      *latchkey.IDSequence // the keys' ids, given in the order they are stored
	pending  []*latchkey.Key
	// slabs hold the keys newKey makes, a thousand to an allocation, used
	// again by the next batch once one is stored: a million keys cost the
	// garbage collector a batch's worth of memory, not a million objects.
	slabs [][]latchkey.Key
	slab  int // the slab newKey takes from
	res   ImportResult
}

const importSlab = 1024

func (im *importer) invalid(line int64, err error) {
	im.res.Invalid++
	if len(im.res.Errors) < maxImportProblems {
		im.res.Errors = append(im.res.Errors, ImportProblem{Line: line, Error: latchkey.ErrorMessage(err)})
	}
}

func (im *importer) add(k *latchkey.Key) error {
	im.pending = append(im.pending, k)
	if len(im.pending) >= ImportBatch {
		return im.flush()
	}
	return nil
}

// flush writes the pending keys and one audit event with their counts.
func (im *importer) flush() error {
	if len(im.pending) == 0 {
		return nil
	}
	if err := im.ctx.Err(); err != nil {
		return latchkey.Errorf(latchkey.EUnavailable, "import stopped: %s", err)
	}
	if im.progress != nil {
		im.progress()
	}
	batch := im.pending
	// In hash order, the batch walks the hash index once, front to back.
	slices.SortFunc(batch, func(a, b *latchkey.Key) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	// And in id order too: ids given now, in sequence, land at the end
	// of the indexes on id (with random ids, a million keys took 28 %
	// longer to store).
	for _, k := range batch {
		k.ID = im.ids.Next()
	}
	var created int
	err := im.s.store.Update(im.ctx, func(tx Tx) error {
		var err error
		if created, err = tx.ImportKeys(batch); err != nil {
			return err
		}
		return im.s.record(tx, latchkey.NewAuditEvent(im.actor, im.actor.Tenant, "keys.imported", "", im.now, map[string]string{
			"format":  im.format,
			"created": strconv.Itoa(created),
			"skipped": strconv.Itoa(len(batch) - created),
		}))
	})
	if err != nil {
		return err
	}
	hashes := make([][32]byte, len(batch))
	for i, k := range batch {
		hashes[i] = k.Hash
	}
	// Forget "no such key" answers cached for the hashes just stored.
	im.s.cache.invalidate(hashes...)
	im.res.Imported += int64(created)
	im.res.Skipped += int64(len(batch) - created)
	im.pending = im.pending[:0]
	for i := range im.slabs {
		clear(im.slabs[i]) // the keys' strings and lists go with them
		im.slabs[i] = im.slabs[i][:0]
	}
	im.slab = 0
	return nil
}

// newKey is the template with the hash; flush gives it its id.
func (im *importer) newKey(h [32]byte, prefix, start string) *latchkey.Key {
	if im.slab == len(im.slabs) {
		im.slabs = append(im.slabs, make([]latchkey.Key, 0, importSlab))
	}
	sl := &im.slabs[im.slab]
	*sl = append(*sl, im.tmpl)
	k := &(*sl)[len(*sl)-1]
	if len(*sl) == importSlab {
		im.slab++
	}
	k.Hash, k.Prefix, k.Start = h, prefix, start
	return k
}

// ImportKeys reads keys in the format from r into the actor's tenant, in
// transactions of ImportBatch keys, each audited by one keys.imported
// event. A key whose hash is stored already is skipped, so a re-run
// imports nothing twice; an invalid line is counted and reported by number
// and does not stop the import. Plaintexts are hashed as they are read and
// kept nowhere. Errors: EInvalid (format or settings), EForbidden (scopes
// beyond the actor's), ETooLarge (a line over MaxImportLine), the store's;
// the batches before an error stay imported.
func (s *Service) ImportKeys(ctx context.Context, actor *latchkey.Actor, r io.Reader, p ImportParams) (ImportResult, error) {
	if !ValidImportFormat(p.Format) {
		return ImportResult{}, latchkey.Errorf(latchkey.EInvalid, "format must be jsonl, plain, sha256 or env")
	}
	now := s.now()
	im := &importer{s: s, ctx: ctx, actor: actor, now: now, format: p.Format, progress: p.Progress,
		ids: latchkey.NewIDSequence("key", now), pending: make([]*latchkey.Key, 0, ImportBatch)}
	// However the import ends, the store lets go of what it kept for it.
	defer func() {
		_ = s.store.Update(context.WithoutCancel(ctx), func(tx Tx) error {
			_, err := tx.ImportKeys(nil)
			return err
		})
	}()
	im.res.Errors = []ImportProblem{}
	if p.Format != ImportJSONL {
		tmpl := s.newKey(latchkey.Token{}, actor.Tenant, now)
		if p.Name == nil {
			name := "imported"
			p.Name = &name
		}
		if err := p.apply(tmpl, actor, now, s.policyEnv()); err != nil {
			return ImportResult{}, err
		}
		im.tmpl = *tmpl
	}
	var err error
	switch p.Format {
	case ImportEnv:
		err = ParseEnv(r, func(entry int64, key, client string) error {
			h, prefix, start, skip, perr := ParsePlainLine(key)
			if skip {
				perr = latchkey.Errorf(latchkey.EInvalid, "the key is empty")
			}
			if perr == nil {
				perr = latchkey.ValidateText("owner", client, latchkey.MaxNameLen, false)
			}
			if perr != nil {
				im.invalid(entry, perr)
				return nil
			}
			k := im.newKey(h, prefix, start)
			k.Owner = client
			return im.add(k)
		})
	default:
		err = eachLine(r, func(n int64, line []byte) error {
			k, skip, perr := im.parseLine(line)
			switch {
			case skip:
				return nil
			case perr != nil:
				im.invalid(n, perr)
				return nil
			}
			return im.add(k)
		})
	}
	if err == nil {
		err = im.flush()
	}
	if err != nil {
		return im.res, err
	}
	return im.res, nil
}

// parseLine turns one line of a line format into a key.
func (im *importer) parseLine(line []byte) (*latchkey.Key, bool, error) {
	switch im.format {
	case ImportPlain:
		h, prefix, start, skip, err := ParsePlainLine(string(line))
		if skip || err != nil {
			return nil, skip, err
		}
		return im.newKey(h, prefix, start), false, nil
	case ImportSHA256:
		h, skip, err := ParseHashLine(string(line))
		if skip || err != nil {
			return nil, skip, err
		}
		return im.newKey(h, "", ""), false, nil
	}
	e, skip, err := ParseExportLine(line)
	if skip || err != nil {
		return nil, skip, err
	}
	k, err := im.s.exportedKey(e, im.actor, im.now)
	return k, false, err
}

// exportedKey validates an export line as a new key would be, in the
// actor's tenant, with a new id; its hash, state and times are kept.
// Rotation and parent links are not (they name keys of the exporting
// tenant).
func (s *Service) exportedKey(e *ExportedKey, actor *latchkey.Actor, now time.Time) (*latchkey.Key, error) {
	src := &e.Key
	ips := make([]string, len(src.IPAllow))
	for i, p := range src.IPAllow {
		ips[i] = p.String()
	}
	set := Settings{
		Name: &src.Name, Owner: &src.Owner, Environment: &src.Environment,
		Scopes: &src.Scopes, Resources: &src.Resources, Meta: &src.Meta, IPAllow: &ips,
		Countries: &src.Countries, TimeWindows: &src.TimeWindows, RateLimits: &src.RateLimits,
		Quota: src.Quota, MaxConcurrent: &src.MaxConcurrent, Condition: &src.Condition,
	}
	if src.Scopes == nil {
		set.Scopes = &[]string{}
	}
	if src.Resources == nil {
		set.Resources = &[]string{}
	}
	if src.LeaseTTL != 0 {
		d := time.Duration(src.LeaseTTL)
		set.LeaseTTL = &d
	}
	k := s.newKey(latchkey.Token{}, actor.Tenant, now)
	if err := set.apply(k, actor, now, s.policyEnv()); err != nil {
		return nil, err
	}
	if src.Prefix != "" && !latchkey.ValidPrefix(src.Prefix) {
		return nil, latchkey.Errorf(latchkey.EInvalid, "prefix is not a valid key prefix")
	}
	if err := latchkey.ValidateText("start", src.Start, 4+1+latchkey.MaxPrefixLen, false); err != nil {
		return nil, err
	}
	if err := latchkey.ValidateText("state_reason", src.StateReason, latchkey.MaxNameLen, false); err != nil {
		return nil, err
	}
	k.Prefix, k.Start = src.Prefix, src.Start
	_, _ = hex.Decode(k.Hash[:], []byte(e.Hash))
	switch src.State {
	case latchkey.StateActive, latchkey.StateExpired, "":
	case latchkey.StateSuspended:
		k.State, k.StateReason = latchkey.StateSuspended, src.StateReason
		k.SuspendedUntil = src.SuspendedUntil.UTC().Truncate(time.Microsecond)
	case latchkey.StateRevoked:
		k.State, k.StateReason = latchkey.StateRevoked, src.StateReason
		k.RevokedAt = src.RevokedAt.UTC().Truncate(time.Microsecond)
		if k.RevokedAt.IsZero() {
			k.RevokedAt = now
		}
	default:
		return nil, latchkey.Errorf(latchkey.EInvalid, "state must be active, suspended, revoked or expired")
	}
	k.ExpiresAt = src.ExpiresAt.UTC().Truncate(time.Microsecond)
	if !src.CreatedAt.IsZero() && src.CreatedAt.Before(now) {
		k.CreatedAt = src.CreatedAt.UTC().Truncate(time.Microsecond)
	}
	return k, nil
}

// eachLine calls fn with every line of r (without its line break) and its
// number from 1. Errors: ETooLarge for a line longer than MaxImportLine.
func eachLine(r io.Reader, fn func(n int64, line []byte) error) error {
	br := bufio.NewReaderSize(r, MaxImportLine+1)
	var n int64
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return latchkey.Errorf(latchkey.ETooLarge, "line %d is longer than %d bytes (the lines before it were imported; a re-run skips them)", n+1, MaxImportLine)
		}
		if len(line) > 0 {
			n++
			if ferr := fn(n, line); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return readError(err)
		}
	}
}

// readError is an error reading an import's input: the body's own
// *latchkey.Error (a size limit) or EInvalid.
func readError(err error) error {
	var le *latchkey.Error
	if errors.As(err, &le) {
		return le
	}
	return latchkey.Errorf(latchkey.EInvalid, "cannot read the input: %s", clipReason(err.Error()))
}

// ExportKeys calls fn with every key of the actor's tenant in id order,
// reading the store a page at a time (so the tenant is never held in
// memory); the export is audited (keys.exported) before the first key.
// An error of fn stops it and is returned.
func (s *Service) ExportKeys(ctx context.Context, actor *latchkey.Actor, fn func(*latchkey.Key) error) error {
	now := s.now()
	if err := s.store.Update(ctx, func(tx Tx) error {
		return s.record(tx, latchkey.NewAuditEvent(actor, actor.Tenant, "keys.exported", "", now, nil))
	}); err != nil {
		return err
	}
	after := ""
	for {
		var page []*latchkey.Key
		err := s.store.View(ctx, func(tx Tx) error {
			var err error
			page, err = tx.Keys(actor.Tenant, latchkey.KeyFilter{Page: latchkey.Page{After: after, Limit: exportPage}})
			return err
		})
		if err != nil {
			return err
		}
		for _, k := range page {
			if err := fn(k); err != nil {
				return err
			}
		}
		if len(page) < exportPage {
			return nil
		}
		after = page[len(page)-1].ID
	}
}

// NewExportedKey is k as an export line shows it.
func NewExportedKey(k *latchkey.Key) ExportedKey {
	return ExportedKey{Key: *k, Hash: latchkey.HashHex(k.Hash)}
}
