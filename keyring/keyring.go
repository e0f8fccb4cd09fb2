// Package keyring seals secrets for storage (it implements latchkey.Sealer).
//
// A master key (32 bytes, kept outside the database: an environment
// variable or a 0600 file) wraps the data keys, which are stored in the
// database in numbered terms. Each value is sealed with AES-256-GCM under
// the newest term's data key, with associated data that names where it is
// stored, so that a ciphertext moved to another row does not open.
//
// Rotate adds a term online: new values are sealed with it, values sealed
// with older terms still open. Rewrap wraps every term under a new master
// key, online; the data keys, and so the stored values, do not change. A
// key-check value sealed by the master key is stored with the terms, so a
// node started with the wrong master key fails at once with a clear error.
//
// Several nodes may share a database: a node that meets a value sealed with
// a term it does not know (another node rotated) reads the terms again.
package keyring

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// KeySize is the size of the master key and of every data key: AES-256.
const KeySize = 32

// Sealed values: a version byte, the term (uint32, big endian), a 12-byte
// nonce, then the AES-GCM ciphertext and its 16-byte tag. The header is
// authenticated with the caller's associated data.
const (
	formatV1   = 1
	headerSize = 1 + 4
	nonceSize  = 12
	tagSize    = 16
	// Overhead is how many bytes sealing adds to a value.
	Overhead = headerSize + nonceSize + tagSize
)

// ErrOpen is returned (wrapped) when a ciphertext does not open: it was
// changed, moved to another row, or sealed by another keyring.
var ErrOpen = errors.New("keyring: ciphertext does not open (changed, moved from another row, or from another keyring)")

// ErrWrongMasterKey is returned by Open when the master key does not open
// the database's key-check value.
var ErrWrongMasterKey = latchkey.Errorf(latchkey.EInvalid,
	"the master key does not open this database's keyring (key-check failed): start the server with the master key the keyring was created or last rewrapped with")

// checkPlain is what the key-check value holds, sealed by the master key.
var checkPlain = []byte("latchkey keyring key-check v1")

const checkAAD = "latchkey keyring check"

// auditKeyLabel names the key derived from the master key for audit
// checkpoints, so it is unlike any other use of the master key.
const auditKeyLabel = "latchkey audit checkpoint key v1"

func deriveAuditKey(master []byte) []byte {
	h := hmac.New(sha256.New, master)
	h.Write([]byte(auditKeyLabel))
	return h.Sum(nil)
}

func termAAD(term int64) []byte {
	return []byte("latchkey keyring term " + strconv.FormatInt(term, 10))
}

// Options configures a Keyring.
type Options struct {
	// Now is the clock for term creation times (default time.Now).
	Now func() time.Time
	// Rand is the source of keys and nonces (default crypto/rand).
	Rand io.Reader
	// MasterKeyFile, when set, is the file the master key was read from:
	// RewrapFromFile replaces its content with the new master key once the
	// terms are rewrapped, so the next start uses the new key.
	MasterKeyFile string
}

// Tx is latchkey.KeyringTx: what the keyring needs of a store's
// transaction.
type Tx = latchkey.KeyringTx

// Keyring seals and opens values. Seal and Open are safe for concurrent use
// and take no lock; Rotate, Rewrap and the reload of unknown terms are
// serialized among themselves.
type Keyring struct {
	store      latchkey.Store[Tx]
	now        func() time.Time
	rand       io.Reader
	masterFile string

	mu sync.Mutex // serializes Rotate, Rewrap and reloads
	st atomic.Pointer[state]

	onRewrap func(tx latchkey.CheckpointStore, newAuditKey []byte) (func(committed bool), error)
}

// state is replaced whole (copy on write) when terms or the master change.
type state struct {
	master cipher.AEAD
	terms  map[int64]cipher.AEAD
	active int64
	times  map[int64]time.Time

	// auditKey signs audit checkpoints: HMAC-SHA256 of auditKeyLabel
	// under the master key (AuditKey).
	auditKey []byte
}

// Status, TermInfo and RewrapResult are the root's, so that the admin
// routes show them without importing this package.
type (
	Status       = latchkey.KeyringStatus
	TermInfo     = latchkey.KeyringTermInfo
	RewrapResult = latchkey.RewrapResult
)

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, latchkey.Errorf(latchkey.EInvalid, "a keyring key must be %d bytes, not %d", KeySize, len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// Open loads the keyring from store with the master key, creating it (term
// 1 and the key-check value) on a database that has none. A master key
// that does not match the stored key-check value is ErrWrongMasterKey.
func Open(ctx context.Context, store latchkey.Store[Tx], master []byte, o Options) (*Keyring, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	m, err := newAEAD(master)
	if err != nil {
		return nil, err
	}
	k := &Keyring{store: store, now: o.Now, rand: o.Rand, masterFile: o.MasterKeyFile}
	var check []byte
	if err := store.View(ctx, func(tx Tx) error {
		check, err = tx.KeyringCheck()
		return err
	}); err != nil {
		return nil, err
	}
	if check == nil {
		if err := k.create(ctx, m); err != nil {
			return nil, err
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.reloadLocked(ctx, m); err != nil {
		return nil, err
	}
	st := *k.st.Load()
	st.auditKey = deriveAuditKey(master)
	k.st.Store(&st)
	return k, nil
}

// AuditKey returns the key that signs audit checkpoints (the audit anchor):
// derived from the master key, so the database does not hold it. A rewrap
// changes it; OnRewrap is how its user follows.
func (k *Keyring) AuditKey() []byte { return slices.Clone(k.st.Load().auditKey) }

// OnRewrap sets fn to run inside every rewrap's transaction with the audit
// key of the new master key; the function it returns is told whether the
// rewrap committed.
func (k *Keyring) OnRewrap(fn func(tx latchkey.CheckpointStore, newAuditKey []byte) (func(committed bool), error)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.onRewrap = fn
}

// Initialized reports whether store holds a keyring already, so that a
// missing master key file is an error rather than a reason to make a new
// key.
func Initialized(ctx context.Context, store latchkey.Store[Tx]) (bool, error) {
	var check []byte
	err := store.View(ctx, func(tx Tx) error {
		var err error
		check, err = tx.KeyringCheck()
		return err
	})
	return check != nil, err
}

// create stores the key-check value and term 1, unless another node did
// meanwhile.
func (k *Keyring) create(ctx context.Context, m cipher.AEAD) error {
	return k.store.Update(ctx, func(tx Tx) error {
		check, err := tx.KeyringCheck()
		if err != nil || check != nil {
			return err
		}
		terms, err := tx.KeyringTerms()
		if err != nil {
			return err
		}
		if len(terms) > 0 {
			return fmt.Errorf("keyring: the database holds keyring terms but no key-check value; it was changed outside Latchkey")
		}
		if check, err = k.seal(m, []byte(checkAAD), checkPlain); err != nil {
			return err
		}
		if err := tx.SetKeyringCheck(check); err != nil {
			return err
		}
		return k.addTerm(tx, m, 1)
	})
}

// addTerm makes a data key, wraps it under m and stores it as term.
func (k *Keyring) addTerm(tx Tx, m cipher.AEAD, term int64) error {
	dk := make([]byte, KeySize)
	if _, err := io.ReadFull(k.rand, dk); err != nil {
		return fmt.Errorf("keyring: data key: %w", err)
	}
	wrapped, err := k.seal(m, termAAD(term), dk)
	clear(dk)
	if err != nil {
		return err
	}
	return tx.AddKeyringTerm(latchkey.KeyringTerm{Term: term, Wrapped: wrapped, CreatedAt: k.now().UTC().Truncate(time.Microsecond)})
}

// seal is nonce || AES-GCM(plain, aad) under a (for wrapping and checks).
func (k *Keyring) seal(a cipher.AEAD, aad, plain []byte) ([]byte, error) {
	out := make([]byte, nonceSize, nonceSize+len(plain)+tagSize)
	if _, err := io.ReadFull(k.rand, out); err != nil {
		return nil, fmt.Errorf("keyring: nonce: %w", err)
	}
	return a.Seal(out, out, plain, aad), nil
}

func open(a cipher.AEAD, aad, sealed []byte) ([]byte, error) {
	if len(sealed) < nonceSize+tagSize {
		return nil, ErrOpen
	}
	p, err := a.Open(nil, sealed[:nonceSize], sealed[nonceSize:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return p, nil
}

// reloadLocked reads the check value and every term and unwraps them with
// m; k.mu is held.
func (k *Keyring) reloadLocked(ctx context.Context, m cipher.AEAD) error {
	var check []byte
	var terms []latchkey.KeyringTerm
	err := k.store.View(ctx, func(tx Tx) error {
		var err error
		if check, err = tx.KeyringCheck(); err != nil {
			return err
		}
		terms, err = tx.KeyringTerms()
		return err
	})
	if err != nil {
		return err
	}
	if p, err := open(m, []byte(checkAAD), check); err != nil || subtle.ConstantTimeCompare(p, checkPlain) != 1 {
		return ErrWrongMasterKey
	}
	if len(terms) == 0 {
		return fmt.Errorf("keyring: the database holds a key-check value but no keyring terms; it was changed outside Latchkey")
	}
	st := &state{master: m, terms: make(map[int64]cipher.AEAD, len(terms)), times: make(map[int64]time.Time, len(terms))}
	old := k.st.Load()
	if old != nil {
		st.auditKey = old.auditKey
	}
	for _, t := range terms {
		st.times[t.Term] = t.CreatedAt
		st.active = max(st.active, t.Term)
		if old != nil && old.terms[t.Term] != nil {
			st.terms[t.Term] = old.terms[t.Term]
			continue
		}
		dk, err := open(m, termAAD(t.Term), t.Wrapped)
		if err != nil {
			return fmt.Errorf("keyring: term %d does not unwrap with this master key (was the keyring rewrapped by another node?): %w", t.Term, ErrWrongMasterKey)
		}
		a, err := newAEAD(dk)
		clear(dk)
		if err != nil {
			return err
		}
		st.terms[t.Term] = a
	}
	k.st.Store(st)
	return nil
}

// Seal encrypts plaintext with the active term; aad must be given again to
// Open it.
func (k *Keyring) Seal(aad, plaintext []byte) ([]byte, error) {
	st := k.st.Load()
	a := st.terms[st.active]
	out := make([]byte, headerSize+nonceSize, Overhead+len(plaintext))
	out[0] = formatV1
	binary.BigEndian.PutUint32(out[1:headerSize], uint32(st.active))
	if _, err := io.ReadFull(k.rand, out[headerSize:]); err != nil {
		return nil, fmt.Errorf("keyring: nonce: %w", err)
	}
	return a.Seal(out, out[headerSize:], plaintext, fullAAD(out[:headerSize], aad)), nil
}

// fullAAD authenticates the header with the caller's associated data.
func fullAAD(header, aad []byte) []byte {
	b := make([]byte, 0, len(header)+len(aad))
	return append(append(b, header...), aad...)
}

// Open decrypts what Seal returned for the same aad. A ciphertext sealed
// with a term this node does not know makes it read the terms again
// (another node rotated). Errors wrap ErrOpen.
func (k *Keyring) Open(aad, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) < Overhead || ciphertext[0] != formatV1 {
		return nil, ErrOpen
	}
	term := int64(binary.BigEndian.Uint32(ciphertext[1:headerSize]))
	a := k.st.Load().terms[term]
	if a == nil {
		var err error
		if a, err = k.learn(term); err != nil {
			return nil, err
		}
	}
	p, err := a.Open(nil, ciphertext[headerSize:headerSize+nonceSize], ciphertext[headerSize+nonceSize:], fullAAD(ciphertext[:headerSize], aad))
	if err != nil {
		return nil, ErrOpen
	}
	return p, nil
}

// learn reloads the terms to find one this node has not seen.
func (k *Keyring) learn(term int64) (cipher.AEAD, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.st.Load()
	if a := st.terms[term]; a != nil {
		return a, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := k.reloadLocked(ctx, st.master); err != nil {
		return nil, fmt.Errorf("keyring: reading the terms for term %d: %w", term, err)
	}
	if a := k.st.Load().terms[term]; a != nil {
		return a, nil
	}
	return nil, fmt.Errorf("keyring: term %d is not in the database: %w", term, ErrOpen)
}

// Status returns the terms this node knows.
func (k *Keyring) Status() Status {
	st := k.st.Load()
	s := Status{Active: st.active, Terms: make([]TermInfo, 0, len(st.times))}
	for t := int64(1); t <= st.active; t++ {
		if at, ok := st.times[t]; ok {
			s.Terms = append(s.Terms, TermInfo{Term: t, CreatedAt: at})
		}
	}
	return s
}

// Rotate adds a term with a new data key and makes it the one new values
// are sealed with; values sealed with older terms keep opening. within, if
// set, runs in the same transaction (to audit the rotation) and is told the
// new term.
func (k *Keyring) Rotate(ctx context.Context, within func(tx Tx, term int64) error) (int64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.st.Load()
	var term int64
	err := k.store.Update(ctx, func(tx Tx) error {
		// A term wrapped under a master key the database no longer
		// holds (another node rewrapped) could never be unwrapped again.
		if err := checkMaster(tx, st.master); err != nil {
			return err
		}
		terms, err := tx.KeyringTerms()
		if err != nil {
			return err
		}
		term = 1
		if len(terms) > 0 {
			term = terms[len(terms)-1].Term + 1
		}
		if term > 1<<32-1 {
			return latchkey.Errorf(latchkey.EConflict, "the keyring has no term numbers left")
		}
		if err := k.addTerm(tx, st.master, term); err != nil {
			return err
		}
		if within != nil {
			return within(tx, term)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	// The term is committed: load it even if the caller has gone.
	if err := k.reloadLocked(context.WithoutCancel(ctx), st.master); err != nil {
		return 0, err
	}
	return term, nil
}

// checkMaster fails with ErrWrongMasterKey unless m opens the stored
// key-check value.
func checkMaster(tx Tx, m cipher.AEAD) error {
	check, err := tx.KeyringCheck()
	if err != nil {
		return err
	}
	if p, err := open(m, []byte(checkAAD), check); err != nil || subtle.ConstantTimeCompare(p, checkPlain) != 1 {
		return fmt.Errorf("keyring: the stored key-check value does not open with this node's master key (another node rewrapped?): %w", ErrWrongMasterKey)
	}
	return nil
}

// Rewrap wraps every term, and the key-check value, under newMaster in one
// transaction; from then on this node uses newMaster. Stored values are
// untouched (their data keys do not change), so reads go on throughout.
// within, if set, runs in the same transaction. Errors: EInvalid for a
// malformed key or the current one.
func (k *Keyring) Rewrap(ctx context.Context, newMaster []byte, within func(tx Tx, terms int) error) (int, error) {
	nm, err := newAEAD(newMaster)
	if err != nil {
		return 0, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.st.Load()
	var n int
	newAudit := deriveAuditKey(newMaster)
	var done func(committed bool)
	defer func() {
		if done != nil {
			done(err == nil)
		}
	}()
	err = k.store.Update(ctx, func(tx Tx) error {
		check, err := tx.KeyringCheck()
		if err != nil {
			return err
		}
		if p, err := open(nm, []byte(checkAAD), check); err == nil && subtle.ConstantTimeCompare(p, checkPlain) == 1 {
			return latchkey.Errorf(latchkey.EInvalid, "the new master key is the one in use; make a new one")
		}
		if err := checkMaster(tx, st.master); err != nil {
			return err
		}
		terms, err := tx.KeyringTerms()
		if err != nil {
			return err
		}
		for _, t := range terms {
			dk, err := open(st.master, termAAD(t.Term), t.Wrapped)
			if err != nil {
				return fmt.Errorf("keyring: term %d does not unwrap with this node's master key: %w", t.Term, ErrWrongMasterKey)
			}
			wrapped, err := k.seal(nm, termAAD(t.Term), dk)
			clear(dk)
			if err != nil {
				return err
			}
			if err := tx.RewrapKeyringTerm(t.Term, wrapped); err != nil {
				return err
			}
		}
		if check, err = k.seal(nm, []byte(checkAAD), checkPlain); err != nil {
			return err
		}
		if err := tx.SetKeyringCheck(check); err != nil {
			return err
		}
		n = len(terms)
		if k.onRewrap != nil && done == nil {
			if done, err = k.onRewrap(tx, newAudit); err != nil {
				return err
			}
		}
		if within != nil {
			return within(tx, n)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	// Committed: from now on this node wraps with the new key, whatever
	// happens to the caller. The data keys are the ones already loaded.
	next := *k.st.Load()
	next.master, next.auditKey = nm, newAudit
	k.st.Store(&next)
	return n, nil
}

// RewrapFromFile reads a new master key from a file on this host (see
// ReadMasterKeyFile) and rewraps the keyring under it. If this keyring's
// master key came from a file (Options.MasterKeyFile), that file is then
// replaced with the new key, so a restart needs nothing else.
func (k *Keyring) RewrapFromFile(ctx context.Context, path string, within func(tx Tx, terms int) error) (RewrapResult, error) {
	nm, err := ReadMasterKeyFile(path)
	if err != nil {
		return RewrapResult{}, err
	}
	defer clear(nm)
	n, err := k.Rewrap(ctx, nm, within)
	if err != nil {
		return RewrapResult{}, err
	}
	res := RewrapResult{Terms: n}
	if k.masterFile != "" {
		if err := WriteMasterKeyFile(k.masterFile, nm); err != nil {
			return res, fmt.Errorf("keyring: rewrapped, but replacing %s with the new key failed (start with the new key file instead): %w", k.masterFile, err)
		}
		res.MasterKeyFile = k.masterFile
	}
	return res, nil
}
