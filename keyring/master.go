package keyring

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/latchkeyhq/latchkey"
)

// ParseMasterKey reads a master key written in base64 (standard or URL
// alphabet, padded or not, surrounding white space ignored): 32 bytes.
// Errors are EInvalid and never show the input.
func ParseMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != KeySize {
				clear(b)
				return nil, latchkey.Errorf(latchkey.EInvalid, "a master key is %d bytes in base64; this one is %d bytes", KeySize, len(b))
			}
			return b, nil
		}
	}
	return nil, latchkey.Errorf(latchkey.EInvalid, "a master key is %d bytes in base64; this is not base64", KeySize)
}

// GenerateMasterKey returns a new random master key.
func GenerateMasterKey() ([]byte, error) {
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return b, nil
}

// EncodeMasterKey writes a master key as a master key file holds it.
func EncodeMasterKey(key []byte) string { return base64.StdEncoding.EncodeToString(key) + "\n" }

// ReadMasterKeyFile reads a master key file. The file must be readable by
// its owner only (mode 0600 or stricter), as ssh demands of private keys:
// a key that others could read is refused rather than used. Errors are
// EInvalid (ENotFound when the file does not exist).
func ReadMasterKeyFile(path string) ([]byte, error) {
	if !filepath.IsAbs(path) {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, latchkey.Errorf(latchkey.EInvalid, "master key file %q: %v", path, err)
		}
		path = abs
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, latchkey.Errorf(latchkey.ENotFound, "master key file %s does not exist", path)
	}
	if err != nil {
		return nil, latchkey.Errorf(latchkey.EInvalid, "master key file %s: %v", path, unwrapPathErr(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, latchkey.Errorf(latchkey.EInvalid, "master key file %s: %v", path, unwrapPathErr(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, latchkey.Errorf(latchkey.EInvalid, "master key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, latchkey.Errorf(latchkey.EInvalid, "master key file %s has mode %04o: others may read it; chmod 600 it", path, perm)
	}
	buf := make([]byte, 256)
	n, err := f.Read(buf)
	if err != nil && n == 0 {
		return nil, latchkey.Errorf(latchkey.EInvalid, "master key file %s is empty", path)
	}
	defer clear(buf)
	k, err := ParseMasterKey(string(buf[:n]))
	if err != nil {
		return nil, latchkey.Errorf(latchkey.EInvalid, "master key file %s: %s", path, latchkey.ErrorMessage(err))
	}
	return k, nil
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// CreateMasterKeyFile writes a new random master key to path, which must
// not exist, with mode 0600, and returns the key.
func CreateMasterKeyFile(path string) ([]byte, error) {
	k, err := GenerateMasterKey()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create master key file: %w", err)
	}
	if _, err := f.WriteString(EncodeMasterKey(k)); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("write master key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("write master key file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write master key file %s: %w", path, err)
	}
	syncDir(filepath.Dir(path))
	return k, nil
}

// WriteMasterKeyFile replaces path's content with key atomically (a 0600
// file beside it renamed over it), so a crash leaves the old key or the new
// one, never half of either.
func WriteMasterKeyFile(path string, key []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".latchkey-master-key-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.WriteString(EncodeMasterKey(key)); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	syncDir(dir)
	return nil
}

// syncDir makes a new or renamed directory entry durable; where a
// directory cannot be synced, the rename is still atomic.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
