package keyring_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

func openStore(t *testing.T) (*sqlite.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "latchkey.db")
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

func masterKey(t *testing.T) []byte {
	t.Helper()
	k, err := keyring.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openKeyring(t *testing.T, s keys.Store, master []byte) *keyring.Keyring {
	t.Helper()
	k, err := keyring.Open(t.Context(), latchkey.Narrow[keyring.Tx](s), master, keyring.Options{})
	if err != nil {
		t.Fatalf("keyring.Open: %v", err)
	}
	return k
}

func seal(t *testing.T, k *keyring.Keyring, aad, plain string) []byte {
	t.Helper()
	ct, err := k.Seal([]byte(aad), []byte(plain))
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func mustOpen(t *testing.T, k *keyring.Keyring, aad string, ct []byte, want string) {
	t.Helper()
	p, err := k.Open([]byte(aad), ct)
	if err != nil {
		t.Fatalf("Open(%q): %v", aad, err)
	}
	if string(p) != want {
		t.Fatalf("Open(%q) = %q, want %q", aad, p, want)
	}
}

// Vault's barrier tests, ported: what is stored is not the plaintext, and
// two seals of one value differ (random nonces).
func TestSealedBytesDifferFromPlaintext(t *testing.T) {
	db, _ := openStore(t)
	k := openKeyring(t, latchkey.Narrow[keys.Tx](db), masterKey(t))
	plain := "sk-proj-plaintext-provider-key-0123456789"
	a, b := seal(t, k, "acme/openai/1", plain), seal(t, k, "acme/openai/1", plain)
	if bytes.Contains(a, []byte(plain)) || bytes.Contains(a, []byte(plain[:16])) {
		t.Fatal("sealed bytes contain the plaintext")
	}
	if bytes.Equal(a, b) {
		t.Fatal("two seals of one value are equal: nonces repeat")
	}
	if len(a) != len(plain)+keyring.Overhead {
		t.Fatalf("sealed length %d, want %d", len(a), len(plain)+keyring.Overhead)
	}
	mustOpen(t, k, "acme/openai/1", a, plain)
}

func TestFlippedByteFailsToOpen(t *testing.T) {
	db, _ := openStore(t)
	k := openKeyring(t, latchkey.Narrow[keys.Tx](db), masterKey(t))
	ct := seal(t, k, "acme/openai/1", "value")
	for i := range ct {
		for _, bit := range []byte{0x01, 0x80} {
			c := bytes.Clone(ct)
			c[i] ^= bit
			if p, err := k.Open([]byte("acme/openai/1"), c); err == nil {
				t.Fatalf("byte %d flipped (^%#x) still opens: %q", i, bit, p)
			}
		}
	}
	for n := range ct {
		if _, err := k.Open([]byte("acme/openai/1"), ct[:n]); err == nil {
			t.Fatalf("ciphertext cut to %d bytes opens", n)
		}
	}
}

// A ciphertext copied to another secret's row (other name, version or
// tenant in the associated data) does not open there.
func TestCiphertextMovedToAnotherRowFailsToOpen(t *testing.T) {
	db, _ := openStore(t)
	k := openKeyring(t, latchkey.Narrow[keys.Tx](db), masterKey(t))
	ct := seal(t, k, "acme\x00openai\x001", "value")
	for _, aad := range []string{"acme\x00anthropic\x001", "acme\x00openai\x002", "other\x00openai\x001", ""} {
		if _, err := k.Open([]byte(aad), ct); !errors.Is(err, keyring.ErrOpen) {
			t.Fatalf("moved to %q: %v, want ErrOpen", aad, err)
		}
	}
	// Another keyring (another database's data keys) cannot open it either.
	db2, _ := openStore(t)
	k2 := openKeyring(t, latchkey.Narrow[keys.Tx](db2), masterKey(t))
	if _, err := k2.Open([]byte("acme\x00openai\x001"), ct); err == nil {
		t.Fatal("another keyring opens the ciphertext")
	}
}

func TestWrongMasterKeyFailsClearly(t *testing.T) {
	db, _ := openStore(t)
	openKeyring(t, latchkey.Narrow[keys.Tx](db), masterKey(t))
	_, err := keyring.Open(t.Context(), latchkey.Narrow[keyring.Tx](db), masterKey(t), keyring.Options{})
	if !errors.Is(err, keyring.ErrWrongMasterKey) || latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("Open with another master key: %v, want ErrWrongMasterKey", err)
	}
	if _, err := keyring.Open(t.Context(), latchkey.Narrow[keyring.Tx](db), []byte("short"), keyring.Options{}); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("Open with a short master key: %v, want invalid", err)
	}
}

func TestRestartOpensWhatWasSealed(t *testing.T) {
	db, _ := openStore(t)
	m := masterKey(t)
	ct := seal(t, openKeyring(t, latchkey.Narrow[keys.Tx](db), m), "aad", "value")
	mustOpen(t, openKeyring(t, latchkey.Narrow[keys.Tx](db), m), "aad", ct, "value")
	if ok, err := keyring.Initialized(t.Context(), latchkey.Narrow[keyring.Tx](db)); err != nil || !ok {
		t.Fatalf("Initialized = %v, %v", ok, err)
	}
	empty, _ := openStore(t)
	if ok, err := keyring.Initialized(t.Context(), latchkey.Narrow[keyring.Tx](empty)); err != nil || ok {
		t.Fatalf("Initialized on an empty store = %v, %v", ok, err)
	}
}

// readers open every sealed value in a loop until stop, counting failures.
func readers(t *testing.T, k *keyring.Keyring, sealed map[string][]byte, stop <-chan struct{}) (wait func() int64) {
	var wg sync.WaitGroup
	var fails, reads atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for aad, ct := range sealed {
					p, err := k.Open([]byte(aad), ct)
					reads.Add(1)
					if err != nil || string(p) != "v:"+aad {
						fails.Add(1)
					}
				}
			}
		}()
	}
	return func() int64 {
		wg.Wait()
		if reads.Load() == 0 {
			t.Error("the readers read nothing")
		}
		return fails.Load()
	}
}

// Rotation and rewrap keep every value readable while readers run: the
// data keys of old terms stay, and rewrap changes only their wrapping.
func TestRotateAndRewrapKeepEveryValueReadableUnderLoad(t *testing.T) {
	db, _ := openStore(t)
	m := masterKey(t)
	k := openKeyring(t, latchkey.Narrow[keys.Tx](db), m)
	sealed := map[string][]byte{}
	for i := range 5 {
		aad := fmt.Sprintf("t\x00s%d\x001", i)
		sealed[aad] = seal(t, k, aad, "v:"+aad)
	}
	stop := make(chan struct{})
	wait := readers(t, k, sealed, stop)
	later := map[string][]byte{}

	var masters [][]byte
	masters = append(masters, m)
	for round := range 3 {
		term, err := k.Rotate(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if term != int64(round+2) || k.Status().Active != term {
			t.Fatalf("rotate %d: term %d, active %d", round, term, k.Status().Active)
		}
		aad := fmt.Sprintf("t\x00after-rotate-%d\x001", round)
		ct := seal(t, k, aad, "v:"+aad)
		mustOpen(t, k, aad, ct, "v:"+aad)
		later[aad] = ct // the readers' map stays as it was

		nm := masterKey(t)
		n, err := k.Rewrap(t.Context(), nm, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n != round+2 {
			t.Fatalf("rewrap rewrapped %d terms, want %d", n, round+2)
		}
		masters = append(masters, nm)
	}
	close(stop)
	if fails := wait(); fails != 0 {
		t.Fatalf("%d reads failed during rotation and rewrap", fails)
	}
	// A restart needs the newest master key; every older one is refused.
	last := masters[len(masters)-1]
	for _, old := range masters[:len(masters)-1] {
		if _, err := keyring.Open(t.Context(), latchkey.Narrow[keyring.Tx](db), old, keyring.Options{}); !errors.Is(err, keyring.ErrWrongMasterKey) {
			t.Fatalf("restart with a replaced master key: %v, want ErrWrongMasterKey", err)
		}
	}
	k2 := openKeyring(t, latchkey.Narrow[keys.Tx](db), last)
	for aad, ct := range later {
		sealed[aad] = ct
	}
	for aad, ct := range sealed {
		mustOpen(t, k2, aad, ct, "v:"+aad)
	}
	if st := k2.Status(); st.Active != 4 || len(st.Terms) != 4 {
		t.Fatalf("status after restart: %+v", st)
	}
}

func TestRewrapRefusesTheCurrentKey(t *testing.T) {
	db, _ := openStore(t)
	m := masterKey(t)
	k := openKeyring(t, latchkey.Narrow[keys.Tx](db), m)
	if _, err := k.Rewrap(t.Context(), m, nil); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("rewrap under the current key: %v, want invalid", err)
	}
	if _, err := k.Rewrap(t.Context(), []byte("short"), nil); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("rewrap under a short key: %v, want invalid", err)
	}
}

// What runs within a rotation or rewrap shares its transaction: when it
// fails, nothing changes.
func TestRotateAndRewrapRollBackWithWithin(t *testing.T) {
	db, _ := openStore(t)
	m := masterKey(t)
	k := openKeyring(t, latchkey.Narrow[keys.Tx](db), m)
	boom := latchkey.Errorf(latchkey.EUnavailable, "audit down")
	if _, err := k.Rotate(t.Context(), func(keyring.Tx, int64) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("rotate: %v", err)
	}
	if _, err := k.Rewrap(t.Context(), masterKey(t), func(keyring.Tx, int) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("rewrap: %v", err)
	}
	k2 := openKeyring(t, latchkey.Narrow[keys.Tx](db), m) // the old master still opens: no rewrap happened
	if st := k2.Status(); st.Active != 1 || len(st.Terms) != 1 {
		t.Fatalf("terms after failed rotation: %+v", st)
	}
}

// A node meets a value sealed with a term another node added, and reads
// the terms again to open it.
func TestOtherNodesTermIsPickedUp(t *testing.T) {
	db, _ := openStore(t)
	m := masterKey(t)
	a, b := openKeyring(t, latchkey.Narrow[keys.Tx](db), m), openKeyring(t, latchkey.Narrow[keys.Tx](db), m)
	if _, err := a.Rotate(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	ct := seal(t, a, "x", "sealed by term 2")
	mustOpen(t, b, "x", ct, "sealed by term 2")
	if st := b.Status(); st.Active != 2 {
		t.Fatalf("b's active term after learning term 2: %d", st.Active)
	}
	// A term no node has is an error, not a panic or a hang.
	ct[1], ct[2], ct[3], ct[4] = 0, 0, 0, 99
	if _, err := b.Open([]byte("x"), ct); !errors.Is(err, keyring.ErrOpen) {
		t.Fatalf("unknown term: %v", err)
	}
}

func TestMasterKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "master.key")
	k, err := keyring.CreateMasterKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("master key file mode %v, %v; want 0600", fi.Mode(), err)
	}
	got, err := keyring.ReadMasterKeyFile(path)
	if err != nil || !bytes.Equal(got, k) {
		t.Fatalf("read back %v", err)
	}
	if _, err := keyring.CreateMasterKeyFile(path); err == nil {
		t.Fatal("CreateMasterKeyFile replaced an existing key")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := keyring.ReadMasterKeyFile(path); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("world-readable key file: %v, want invalid", err)
	}
	nk := masterKey(t)
	if err := keyring.WriteMasterKeyFile(path, nk); err != nil {
		t.Fatal(err)
	}
	if got, err := keyring.ReadMasterKeyFile(path); err != nil || !bytes.Equal(got, nk) {
		t.Fatalf("after WriteMasterKeyFile: %v", err)
	}
	if _, err := keyring.ReadMasterKeyFile(filepath.Join(dir, "missing")); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("missing file: %v, want not_found", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad"), []byte("not base64!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := keyring.ReadMasterKeyFile(filepath.Join(dir, "bad")); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("garbage file: %v, want invalid", err)
	}
}

// RewrapFromFile replaces the server's own key file, so a restart with the
// same flags uses the new key.
func TestRewrapFromFileReplacesOwnKeyFile(t *testing.T) {
	db, _ := openStore(t)
	dir := t.TempDir()
	own := filepath.Join(dir, "own.key")
	m, err := keyring.CreateMasterKeyFile(own)
	if err != nil {
		t.Fatal(err)
	}
	k, err := keyring.Open(t.Context(), latchkey.Narrow[keyring.Tx](db), m, keyring.Options{MasterKeyFile: own})
	if err != nil {
		t.Fatal(err)
	}
	ct := seal(t, k, "a", "v")
	newPath := filepath.Join(dir, "new.key")
	nk, err := keyring.CreateMasterKeyFile(newPath)
	if err != nil {
		t.Fatal(err)
	}
	res, err := k.RewrapFromFile(context.Background(), newPath, nil)
	if err != nil || res.Terms != 1 || res.MasterKeyFile != own {
		t.Fatalf("RewrapFromFile = %+v, %v", res, err)
	}
	got, err := keyring.ReadMasterKeyFile(own)
	if err != nil || !bytes.Equal(got, nk) {
		t.Fatalf("own key file after rewrap: %v", err)
	}
	mustOpen(t, openKeyring(t, latchkey.Narrow[keys.Tx](db), got), "a", ct, "v")
	if err := os.Chmod(newPath, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := k.RewrapFromFile(context.Background(), newPath, nil); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("group-readable new key file: %v, want invalid", err)
	}
}

func FuzzParseMasterKey(f *testing.F) {
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	f.Add("  AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")
	f.Add("not base64")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := keyring.ParseMasterKey(s)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("error %v is not invalid", err)
			}
			const fixed = "a master key is 32 bytes in base64; this is not base64; this one is bytes"
			if len(s) >= 8 && strings.Contains(err.Error(), s) && !strings.Contains(fixed, s) {
				t.Fatalf("error shows the input: %v", err)
			}
			return
		}
		if len(k) != keyring.KeySize {
			t.Fatalf("key of %d bytes accepted", len(k))
		}
	})
}

func BenchmarkOpen(b *testing.B) {
	path := filepath.Join(b.TempDir(), "latchkey.db")
	db, err := sqlite.Open(b.Context(), path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	m, _ := keyring.GenerateMasterKey()
	k, err := keyring.Open(b.Context(), latchkey.Narrow[keyring.Tx](db), m, keyring.Options{})
	if err != nil {
		b.Fatal(err)
	}
	aad := []byte("acme\x00openai\x001")
	ct, _ := k.Seal(aad, []byte("sk-proj-0123456789abcdef0123456789abcdef"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Open(aad, ct); err != nil {
			b.Fatal(err)
		}
	}
}

// A node whose master key another node has replaced keeps opening values
// with the data keys it holds, but may not add a term it alone could
// unwrap.
func TestRotateRefusedAfterAnotherNodeRewrapped(t *testing.T) {
	db, _ := openStore(t)
	m := masterKey(t)
	a, b := openKeyring(t, latchkey.Narrow[keys.Tx](db), m), openKeyring(t, latchkey.Narrow[keys.Tx](db), m)
	ct := seal(t, a, "x", "v")
	nm := masterKey(t)
	if _, err := a.Rewrap(t.Context(), nm, nil); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, b, "x", ct, "v")
	if _, err := b.Rotate(t.Context(), nil); !errors.Is(err, keyring.ErrWrongMasterKey) {
		t.Fatalf("rotate with a replaced master key: %v, want ErrWrongMasterKey", err)
	}
	if _, err := b.Rewrap(t.Context(), masterKey(t), nil); !errors.Is(err, keyring.ErrWrongMasterKey) {
		t.Fatalf("rewrap with a replaced master key: %v, want ErrWrongMasterKey", err)
	}
	if st := openKeyring(t, latchkey.Narrow[keys.Tx](db), nm).Status(); st.Active != 1 {
		t.Fatalf("terms after the refused rotation: %+v", st)
	}
}

// The audit checkpoint key is derived from the master key: the same after
// a restart and a rotation, another for another master key, and the new
// master key's after a rewrap, which tells OnRewrap so inside its
// transaction and whether it committed.
func TestAuditKeyFollowsTheMasterKey(t *testing.T) {
	db, _ := openStore(t)
	m := masterKey(t)
	k := openKeyring(t, latchkey.Narrow[keys.Tx](db), m)
	first := k.AuditKey()
	if len(first) != 32 || bytes.Equal(first, m) {
		t.Fatalf("audit key of %d bytes, equal to the master key: %v", len(first), bytes.Equal(first, m))
	}
	if _, err := k.Rotate(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.AuditKey(), first) || !bytes.Equal(openKeyring(t, latchkey.Narrow[keys.Tx](db), m).AuditKey(), first) {
		t.Fatal("the audit key changed with a rotation or a restart")
	}
	other, _ := openStore(t)
	if bytes.Equal(openKeyring(t, latchkey.Narrow[keys.Tx](other), masterKey(t)).AuditKey(), first) {
		t.Fatal("two master keys give one audit key")
	}
	var told [][]byte
	var committed []bool
	k.OnRewrap(func(_ latchkey.CheckpointStore, newKey []byte) (func(bool), error) {
		told = append(told, newKey)
		return func(ok bool) { committed = append(committed, ok) }, nil
	})
	boom := latchkey.Errorf(latchkey.EUnavailable, "audit down")
	if _, err := k.Rewrap(t.Context(), masterKey(t), func(keyring.Tx, int) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("rewrap: %v", err)
	}
	if !bytes.Equal(k.AuditKey(), first) || len(committed) != 1 || committed[0] {
		t.Fatalf("a failed rewrap: audit key changed %v, told %v", !bytes.Equal(k.AuditKey(), first), committed)
	}
	nm := masterKey(t)
	if _, err := k.Rewrap(t.Context(), nm, nil); err != nil {
		t.Fatal(err)
	}
	now := k.AuditKey()
	if bytes.Equal(now, first) || !bytes.Equal(now, told[1]) || len(committed) != 2 || !committed[1] ||
		!bytes.Equal(openKeyring(t, latchkey.Narrow[keys.Tx](db), nm).AuditKey(), now) {
		t.Fatal("after a rewrap the audit key is not the new master key's, or OnRewrap was not told")
	}
}
