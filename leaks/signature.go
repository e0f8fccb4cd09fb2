package leaks

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// GitHub's signature headers, and where GitHub publishes its keys.
const (
	HeaderKeyID     = "GITHUB-PUBLIC-KEY-IDENTIFIER"
	HeaderSignature = "GITHUB-PUBLIC-KEY-SIGNATURE"
	// GitHubKeysURL serves GitHub's secret-scanning public keys.
	GitHubKeysURL = "https://api.github.com/meta/public_keys/secret_scanning"
)

// Bounds of what a verifier reads.
const (
	// maxKeysFile bounds a public-key file or answer.
	maxKeysFile = 1 << 20
	// maxKeys bounds the keys one file may list.
	maxKeys = 100
	// maxKeyIDLen and maxSignatureLen bound the headers: an ASN.1 P-256
	// signature is at most 72 bytes, 96 in base64.
	maxKeyIDLen     = 256
	maxSignatureLen = 256
)

// KeySet maps a key_identifier to its P-256 public key.
type KeySet map[string]*ecdsa.PublicKey

// ParsePublicKeys reads public keys in GitHub's format:
//
//	{"public_keys": [{"key_identifier": "…", "key": "-----BEGIN PUBLIC KEY-----…", "is_current": true}]}
//
// Every key must be a PEM "PUBLIC KEY" holding an ECDSA P-256 key, and
// identifiers must be unique and non-empty; a file with anything else, or
// with no key, is refused whole, so a mistake shows when it is loaded
// rather than as refused reports. is_current is not consulted: GitHub
// signs with any key it still lists. Errors: EInvalid.
func ParsePublicKeys(data []byte) (KeySet, error) {
	if len(data) > maxKeysFile {
		return nil, latchkey.Errorf(latchkey.EInvalid, "public keys: larger than %d bytes", maxKeysFile)
	}
	var doc struct {
		PublicKeys []struct {
			KeyIdentifier string `json:"key_identifier"`
			Key           string `json:"key"`
			IsCurrent     bool   `json:"is_current"`
		} `json:"public_keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, latchkey.Errorf(latchkey.EInvalid, `public keys: expected {"public_keys": [{"key_identifier": …, "key": PEM}]}`)
	}
	if len(doc.PublicKeys) == 0 {
		return nil, latchkey.Errorf(latchkey.EInvalid, "public keys: public_keys lists no key")
	}
	if len(doc.PublicKeys) > maxKeys {
		return nil, latchkey.Errorf(latchkey.EInvalid, "public keys: at most %d keys", maxKeys)
	}
	set := make(KeySet, len(doc.PublicKeys))
	for i, k := range doc.PublicKeys {
		if k.KeyIdentifier == "" || len(k.KeyIdentifier) > maxKeyIDLen {
			return nil, latchkey.Errorf(latchkey.EInvalid, "public keys: key %d: key_identifier must be 1-%d characters", i, maxKeyIDLen)
		}
		if _, dup := set[k.KeyIdentifier]; dup {
			return nil, latchkey.Errorf(latchkey.EInvalid, "public keys: key_identifier %.70q is listed twice", k.KeyIdentifier)
		}
		pub, err := parseP256(k.Key)
		if err != nil {
			return nil, latchkey.Errorf(latchkey.EInvalid, "public keys: key %.70q: %s", k.KeyIdentifier, latchkey.ErrorMessage(err))
		}
		set[k.KeyIdentifier] = pub
	}
	return set, nil
}

func parseP256(s string) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, latchkey.Errorf(latchkey.EInvalid, "key is not a PEM PUBLIC KEY block")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, latchkey.Errorf(latchkey.EInvalid, "key does not parse as a public key")
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, latchkey.Errorf(latchkey.EInvalid, "key is not an ECDSA P-256 key")
	}
	return pub, nil
}

// VerifySignature checks sig (base64 of an ASN.1 DER ECDSA signature, as
// GitHub sends it) over SHA-256 of body with the key of set named keyID.
// Errors: EUnauthenticated (no key id or signature, an unknown key id, a
// signature that does not decode or does not match).
func VerifySignature(set KeySet, keyID, sig string, body []byte) error {
	if keyID == "" || sig == "" {
		return latchkey.Errorf(latchkey.EUnauthenticated, "a report needs the %s and %s headers", HeaderKeyID, HeaderSignature)
	}
	pub, ok := set[keyID]
	if !ok {
		return latchkey.Errorf(latchkey.EUnauthenticated, "the report is signed with a key this server does not trust")
	}
	if len(sig) > maxSignatureLen {
		return latchkey.Errorf(latchkey.EUnauthenticated, "the report's signature does not match it")
	}
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sig))
	if err != nil {
		return latchkey.Errorf(latchkey.EUnauthenticated, "the report's signature is not base64")
	}
	digest := sha256.Sum256(body)
	if !ecdsa.VerifyASN1(pub, digest[:], der) {
		return latchkey.Errorf(latchkey.EUnauthenticated, "the report's signature does not match it")
	}
	return nil
}

// Options configure a Verifier.
type Options struct {
	// Location is a file holding the public keys, or an http(s) URL
	// serving them (GitHubKeysURL in production).
	Location string
	// Client fetches a URL (default: one with a 10 s timeout).
	Client *http.Client
	// TTL is how long fetched keys are used before they are fetched
	// again (default 1h). A report signed with a key id the set does not
	// hold fetches again at once, at most once per MinRefetch (default
	// 1m), so a rotated key is picked up without a flood of fetches.
	TTL, MinRefetch time.Duration
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Verifier checks the signature of partner alerts against public keys
// from a file (re-read when it changes) or a URL (cached). It is safe for
// concurrent use.
type Verifier struct {
	o      Options
	isURL  bool
	mu     sync.Mutex // guards what follows; held while keys are (re)loaded
	set    KeySet
	loaded time.Time // when set was read or fetched
	tried  time.Time // when the URL was last fetched, successfully or not
	mod    time.Time // the file's modification time and size when read
	size   int64
	etag   string
}

// NewVerifier returns a verifier for o.Location and loads its keys once.
// A file that cannot be read or parsed is an error (EInvalid); a URL that
// cannot be fetched now is only logged, and fetched again by the next
// report, so a node starts while GitHub's API does not answer.
func NewVerifier(ctx context.Context, o Options) (*Verifier, error) {
	if o.Location == "" {
		return nil, latchkey.Errorf(latchkey.EInvalid, "leak report keys: give a file or an https URL")
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.TTL <= 0 {
		o.TTL = time.Hour
	}
	if o.MinRefetch <= 0 {
		o.MinRefetch = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	v := &Verifier{o: o, isURL: strings.HasPrefix(o.Location, "https://") || strings.HasPrefix(o.Location, "http://")}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.isURL {
		if err := v.fetch(ctx); err != nil {
			o.Logger.Warn("cannot fetch the leak report keys yet; the next report tries again", "url", o.Location, "err", err)
		}
		return v, nil
	}
	if err := v.readFile(); err != nil {
		return nil, err
	}
	return v, nil
}

// Verify checks a report's signature before anything of it is read.
// Errors: EUnauthenticated (see VerifySignature), EUnavailable (the keys
// cannot be had: a URL that has never answered).
func (v *Verifier) Verify(ctx context.Context, keyID, sig string, body []byte) error {
	if len(keyID) > maxKeyIDLen {
		keyID = ""
	}
	set, err := v.keys(ctx, keyID)
	if err != nil {
		return err
	}
	return VerifySignature(set, keyID, sig, body)
}

// keys returns the key set to check a signature by keyID with, reloading
// it first when it may be stale.
func (v *Verifier) keys(ctx context.Context, keyID string) (KeySet, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.isURL {
		if err := v.readFile(); err != nil {
			if v.set == nil {
				return nil, err
			}
			// Keep trusting what was read before; the operator hears of it.
			v.o.Logger.Error("cannot read the leak report keys again; using the keys read before", "file", v.o.Location, "err", err)
		}
		return v.set, nil
	}
	now := v.o.Now()
	_, known := v.set[keyID]
	stale := v.set == nil || now.Sub(v.loaded) >= v.o.TTL || keyID != "" && !known
	if stale && now.Sub(v.tried) >= v.o.MinRefetch || v.set == nil && v.tried.IsZero() {
		if err := v.fetch(ctx); err != nil {
			v.o.Logger.Error("cannot fetch the leak report keys", "url", v.o.Location, "err", err)
		}
	}
	if v.set == nil {
		return nil, latchkey.Errorf(latchkey.EUnavailable, "the public keys to check reports with cannot be fetched; try again later")
	}
	return v.set, nil
}

// readFile reads the key file when it changed since it was last read.
func (v *Verifier) readFile() error {
	fi, err := os.Stat(v.o.Location)
	if err != nil {
		return latchkey.Errorf(latchkey.EInvalid, "leak report keys: cannot read %s", v.o.Location)
	}
	if v.set != nil && fi.ModTime().Equal(v.mod) && fi.Size() == v.size {
		return nil
	}
	f, err := os.Open(v.o.Location)
	if err != nil {
		return latchkey.Errorf(latchkey.EInvalid, "leak report keys: cannot read %s", v.o.Location)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeysFile+1))
	if err != nil {
		return latchkey.Errorf(latchkey.EInvalid, "leak report keys: cannot read %s", v.o.Location)
	}
	set, err := ParsePublicKeys(data)
	if err != nil {
		return latchkey.Errorf(latchkey.EInvalid, "leak report keys %s: %s", v.o.Location, latchkey.ErrorMessage(err))
	}
	v.set, v.mod, v.size, v.loaded = set, fi.ModTime(), fi.Size(), v.o.Now()
	return nil
}

// fetch gets the keys from the URL, with the ETag of the last answer so
// an unchanged set costs GitHub's API no rate limit. On failure the keys
// fetched before stay.
func (v *Verifier) fetch(ctx context.Context) error {
	v.tried = v.o.Now()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.o.Location, nil)
	if err != nil {
		return fmt.Errorf("bad URL: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if v.etag != "" && v.set != nil {
		req.Header.Set("If-None-Match", v.etag)
	}
	resp, err := v.o.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && v.set != nil {
		v.loaded = v.o.Now()
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("answered %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxKeysFile+1))
	if err != nil {
		return err
	}
	set, err := ParsePublicKeys(bytes.TrimSpace(data))
	if err != nil {
		return errors.New(latchkey.ErrorMessage(err))
	}
	v.set, v.loaded, v.etag = set, v.o.Now(), resp.Header.Get("ETag")
	return nil
}
