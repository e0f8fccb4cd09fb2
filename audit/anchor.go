package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Anchor anchors every tenant's audit chain outside the database.
//
// At each append (AppendAudit), in the append's transaction, the new head
// is stored as a checkpoint (tenant, seq, hash, a counter that grows across
// all tenants, and the first tampering found, if any) with an HMAC-SHA256
// under a key the database does not hold: the keyring derives it from its
// master key. Someone with the database file alone can therefore add,
// remove or rewrite events, and rewrite the head, but cannot sign the head
// that results. A rewind to an older, genuinely signed state is caught by
// the copy of every tenant's latest checkpoint that the anchor keeps in a
// file outside the database (beside the master key file): a checkpoint in
// the database whose counter is below the file's is older than one the
// server wrote. The file is written from committed checkpoints at most one
// interval (Sync; one second by default) after them.
//
// The anchor also remembers, per tenant, the tampering found since the
// process started (by an append, a verify, or the scan at start), which
// /readyz reports.
type Anchor struct {
	path string // "" keeps the anchor in memory only
	log  *slog.Logger

	keyMu     sync.RWMutex
	key, prev []byte // prev: the key before a rewrap, until it commits

	mu       sync.Mutex
	heads    map[string]latchkey.AuditCheckpoint // what the file holds
	max      int64                               // highest counter in heads
	seen     int64                               // highest counter read from the database
	findings map[string]AuditFinding             // tampering found, per tenant
	loaded   bool                                // the file existed at start

	syncMu sync.Mutex
	dirty  atomic.Bool
}

// AuditFinding is latchkey.AuditFinding.
type AuditFinding = latchkey.AuditFinding

// NewAnchor returns an anchor that signs with key (32 bytes or more)
// and keeps its copy of the heads in the file at path ("" for none: tests).
// A file that exists must parse (EInvalid otherwise).
func NewAnchor(key []byte, path string, log *slog.Logger) (*Anchor, error) {
	if len(key) < 32 {
		return nil, latchkey.Errorf(latchkey.EInvalid, "an audit anchor key must be at least 32 bytes")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Anchor{path: path, log: log, key: slices.Clone(key), heads: map[string]latchkey.AuditCheckpoint{}, findings: map[string]AuditFinding{}}
	if path == "" {
		return a, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit anchor file %s: %w", path, err)
	}
	cps, err := ParseAnchorFile(b)
	if err != nil {
		return nil, latchkey.Errorf(latchkey.EInvalid, "audit anchor file %s: %s (restore it from the server's host, or move it away to start a new one from the database's checkpoints)", path, latchkey.ErrorMessage(err))
	}
	for _, cp := range cps {
		a.heads[cp.Tenant] = cp
		a.max = max(a.max, cp.Counter)
	}
	a.seen, a.loaded = a.max, true
	return a, nil
}

// anchorFile is the file's form.
type anchorFile struct {
	V     int                        `json:"v"`
	Heads []latchkey.AuditCheckpoint `json:"heads"`
}

// ParseAnchorFile reads an audit anchor file. Errors are EInvalid and do
// not quote the input.
func ParseAnchorFile(b []byte) ([]latchkey.AuditCheckpoint, error) {
	var f anchorFile
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, latchkey.Errorf(latchkey.EInvalid, "not an audit anchor file (it does not parse)")
	}
	if dec.More() {
		return nil, latchkey.Errorf(latchkey.EInvalid, "not an audit anchor file (data after its end)")
	}
	if f.V != 1 {
		return nil, latchkey.Errorf(latchkey.EInvalid, "audit anchor file version %d is not 1", f.V)
	}
	seen := make(map[string]bool, len(f.Heads))
	for i, cp := range f.Heads {
		if cp.Tenant == "" || seen[cp.Tenant] || cp.Seq < 0 || cp.Counter <= 0 || cp.TamperSeq < 0 {
			return nil, latchkey.Errorf(latchkey.EInvalid, "audit anchor file entry %d is malformed", i+1)
		}
		seen[cp.Tenant] = true
	}
	return f.Heads, nil
}

// mac is the hex HMAC-SHA256 of cp's message under key.
func mac(key []byte, cp *latchkey.AuditCheckpoint) string {
	h := hmac.New(sha256.New, key)
	h.Write(cp.Message())
	return hex.EncodeToString(h.Sum(nil))
}

func (a *Anchor) sign(cp *latchkey.AuditCheckpoint) {
	a.keyMu.RLock()
	defer a.keyMu.RUnlock()
	cp.MAC = mac(a.key, cp)
}

// Valid reports whether cp's MAC verifies.
func (a *Anchor) Valid(cp *latchkey.AuditCheckpoint) bool {
	a.keyMu.RLock()
	defer a.keyMu.RUnlock()
	want, err := hex.DecodeString(cp.MAC)
	if err != nil {
		return false
	}
	for _, k := range [][]byte{a.key, a.prev} {
		if k == nil {
			continue
		}
		got, _ := hex.DecodeString(mac(k, cp))
		if hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

// anchored returns the file's checkpoint of tenant; nil if it has none.
func (a *Anchor) anchored(tenant string) *latchkey.AuditCheckpoint {
	a.mu.Lock()
	defer a.mu.Unlock()
	cp, ok := a.heads[tenant]
	if !ok {
		return nil
	}
	return &cp
}

func (a *Anchor) maxCounter() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.max
}

// found remembers tampering in tenant's log and reports whether it is new
// (not the finding already remembered).
func (a *Anchor) found(tenant string, f AuditFinding) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	old, ok := a.findings[tenant]
	a.findings[tenant] = f
	return !ok || old.Kind != f.Kind || old.Seq != f.Seq
}

func (a *Anchor) clear(tenant string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.findings, tenant)
}

// Findings returns the tampering found since the start, by tenant.
func (a *Anchor) Findings() map[string]AuditFinding {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]AuditFinding, len(a.findings))
	for t, f := range a.findings {
		out[t] = f
	}
	return out
}

// AuditLog is latchkey.AuditLog.
type AuditLog = latchkey.AuditLog

// The anchor is the latchkey.AuditSigner an append signs checkpoints with.
var _ latchkey.AuditSigner = (*Anchor)(nil)

// Anchored returns the head the anchor file holds for tenant (nil if
// none), for latchkey.AppendAudit.
func (a *Anchor) Anchored(tenant string) *latchkey.AuditCheckpoint { return a.anchored(tenant) }

// MaxCounter is the highest checkpoint counter the anchor has seen.
func (a *Anchor) MaxCounter() int64 { return a.maxCounter() }

// Sign sets cp's MAC and marks the anchor file out of date (Sync copies
// the new checkpoint once committed).
func (a *Anchor) Sign(cp *latchkey.AuditCheckpoint) {
	a.sign(cp)
	a.dirty.Store(true)
}

// FoundOnAppend remembers tampering an append found in tenant's log, and
// logs it: the append goes on, continuing the log and keeping the
// evidence.
func (a *Anchor) FoundOnAppend(tenant string, f latchkey.AuditFinding) {
	a.found(tenant, f)
	a.log.Error("the audit log was tampered with; the append continues it and keeps the evidence",
		"tenant", tenant, "finding", f.Kind, "seq", f.Seq, "reason", f.Reason)
}

// Sync copies the checkpoints committed since the last Sync to the anchor
// file (atomically: a temporary file renamed over it). A checkpoint whose
// MAC does not verify is not copied; it is remembered as a finding.
func (a *Anchor) Sync(ctx context.Context, st latchkey.Store[Tx]) error {
	a.syncMu.Lock()
	defer a.syncMu.Unlock()
	a.dirty.Store(false)
	a.mu.Lock()
	after := a.seen
	a.mu.Unlock()
	var cps []*latchkey.AuditCheckpoint
	if err := st.View(ctx, func(tx Tx) error {
		var err error
		cps, err = tx.AuditCheckpoints(after)
		return err
	}); err != nil {
		a.dirty.Store(true)
		return err
	}
	changed := false
	for _, cp := range cps {
		if !a.Valid(cp) {
			a.found(cp.Tenant, AuditFinding{Kind: latchkey.AuditCheckpointForged, Seq: cp.Seq, Reason: "the checkpoint's MAC does not verify with the keyring's key"})
			continue
		}
		a.mu.Lock()
		a.seen = max(a.seen, cp.Counter)
		if old, ok := a.heads[cp.Tenant]; !ok || cp.Counter > old.Counter {
			a.heads[cp.Tenant] = *cp
			a.max = max(a.max, cp.Counter)
			changed = true
		}
		a.mu.Unlock()
	}
	if !changed || a.path == "" {
		return nil
	}
	if err := a.write(); err != nil {
		a.dirty.Store(true)
		return err
	}
	return nil
}

// write replaces the file with the heads held.
func (a *Anchor) write() error {
	a.mu.Lock()
	f := anchorFile{V: 1, Heads: make([]latchkey.AuditCheckpoint, 0, len(a.heads))}
	for _, cp := range a.heads {
		f.Heads = append(f.Heads, cp)
	}
	a.mu.Unlock()
	slices.SortFunc(f.Heads, func(x, y latchkey.AuditCheckpoint) int { return strings.Compare(x.Tenant, y.Tenant) })
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	dir := filepath.Dir(a.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(a.path)+".*")
	if err != nil {
		return fmt.Errorf("audit anchor file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), a.path)
	}
	if err != nil {
		return fmt.Errorf("audit anchor file %s: %w", a.path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Rewrap signs every valid checkpoint again with newKey, in tx (the
// keyring's rewrap transaction), and signs with newKey from now on. The
// returned function ends the change: committed or rolled back.
func (a *Anchor) Rewrap(tx latchkey.CheckpointStore, newKey []byte) (func(committed bool), error) {
	cps, err := tx.AuditCheckpoints(0)
	if err != nil {
		return nil, err
	}
	for _, cp := range cps {
		if !a.Valid(cp) {
			continue // stays forged: the new key must not bless it
		}
		cp.MAC = mac(newKey, cp)
		if err := tx.PutAuditCheckpoint(cp); err != nil {
			return nil, err
		}
	}
	a.keyMu.Lock()
	a.prev, a.key = a.key, slices.Clone(newKey)
	a.keyMu.Unlock()
	return func(committed bool) {
		a.keyMu.Lock()
		defer a.keyMu.Unlock()
		if !committed {
			a.key = a.prev
		}
		a.prev = nil
	}, nil
}

// Check runs at start: it compares every tenant's checkpoint with the
// file, signs the heads of logs from before checkpoints, and writes the
// file. Tampering found is remembered (for /readyz), logged and raised as
// a security event.
func (a *Anchor) Check(ctx context.Context, st latchkey.Store[Tx], now time.Time) error {
	var cps []*latchkey.AuditCheckpoint
	if err := st.View(ctx, func(tx Tx) error {
		var err error
		cps, err = tx.AuditCheckpoints(0)
		return err
	}); err != nil {
		return err
	}
	if !a.loaded && len(cps) > 0 && a.path != "" {
		a.log.Warn("the audit anchor file is missing; starting a new one from the database's checkpoints (a rewind of the database before now cannot be detected)", "path", a.path)
	}
	have := map[string]bool{}
	type raised struct {
		tenant string
		f      AuditFinding
	}
	var events []raised
	for _, cp := range cps {
		have[cp.Tenant] = true
		var c latchkey.ChainCheck
		c.Seed(cp.Seq, cp.Hash)
		c.Checkpoint(cp, a.Valid(cp), a.anchored(cp.Tenant), cp.Seq, cp.Hash)
		if c.BrokenAt == 0 {
			continue
		}
		f := AuditFinding{Kind: c.Kind, Seq: c.BrokenAt, Reason: c.Reason}
		a.found(cp.Tenant, f)
		a.log.Error("the audit log was tampered with", "tenant", cp.Tenant, "finding", f.Kind, "seq", f.Seq, "reason", f.Reason)
		if cp.TamperKind == "" || c.Kind != cp.TamperKind {
			events = append(events, raised{cp.Tenant, f})
		}
	}
	a.mu.Lock()
	for t, cp := range a.heads {
		if !have[t] {
			f := AuditFinding{Kind: latchkey.AuditCheckpointMissing, Seq: cp.Seq, Reason: "the log has no checkpoint, but the anchor outside the database holds one"}
			a.findings[t] = f
			events = append(events, raised{t, f})
		}
	}
	a.mu.Unlock()
	if len(events) > 0 {
		if err := st.Update(ctx, func(tx Tx) error {
			for _, r := range events {
				// A tenant the anchor knows but the database no longer
				// holds (its rows deleted) cannot hold the event: the
				// operator's tenant gets it, naming the tenant.
				tenant, f := r.tenant, r.f
				if _, err := tx.Tenant(tenant); latchkey.ErrorCode(err) == latchkey.ENotFound {
					f.Reason = "tenant " + tenant + " is gone from the database: " + f.Reason
					tenant = latchkey.OperatorTenant
				} else if err != nil {
					return err
				}
				if err := tx.AppendEvent(latchkey.AuditTamperEvent(tenant, f, now)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return a.Sync(ctx, st)
}
