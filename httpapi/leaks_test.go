package httpapi

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/leaks"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// countingVerifier is a real verifier that also counts its calls, so a
// test can tell what reached the signature check.
type countingVerifier struct {
	v     *leaks.Verifier
	calls atomic.Int32
}

func (c *countingVerifier) Verify(ctx context.Context, keyID, sig string, body []byte) error {
	c.calls.Add(1)
	return c.v.Verify(ctx, keyID, sig, body)
}

type leakServer struct {
	t       *testing.T
	url     string
	svc     *keys.Service
	key     *ecdsa.PrivateKey
	keyID   string
	counter *countingVerifier
	admin   *latchkey.Actor
}

func newLeakServer(t *testing.T, action keys.LeakAction, maxBody int64) *leakServer {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "l.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db)})
	root, _, _, err := svc.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	op, err := svc.Authenticate(ctx, root.Reveal(), netip.Addr{}, "tenants:admin")
	if err != nil {
		t.Fatal(err)
	}
	_, _, tok, err := svc.CreateTenant(ctx, op, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := svc.Authenticate(ctx, tok.Reveal(), netip.Addr{}, "keys:write")
	if err != nil {
		t.Fatal(err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	doc, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{{"key_identifier": "kid-1", "key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}}})
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := leaks.NewVerifier(ctx, leaks.Options{Location: path})
	if err != nil {
		t.Fatal(err)
	}
	cv := &countingVerifier{v: v}
	srv := httptest.NewServer(New(Config{Keys: svc, MaxBody: maxBody, Leaks: LeakConfig{Verifier: cv, Action: action}}))
	t.Cleanup(srv.Close)
	return &leakServer{t: t, url: srv.URL, svc: svc, key: k, keyID: "kid-1", counter: cv, admin: admin}
}

func (ls *leakServer) sign(body []byte) string {
	d := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, ls.key, d[:])
	if err != nil {
		ls.t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func (ls *leakServer) post(keyID, sig string, body []byte) (int, []byte) {
	ls.t.Helper()
	req, _ := http.NewRequest("POST", ls.url+"/v1/leaks/github", bytes.NewReader(body))
	req.Header.Set(leaks.HeaderKeyID, keyID)
	req.Header.Set(leaks.HeaderSignature, sig)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		ls.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, raw
}

func (ls *leakServer) newKey() string {
	ls.t.Helper()
	name := "k"
	_, tok, err := ls.svc.CreateKey(context.Background(), ls.admin, keys.CreateParams{Settings: keys.Settings{Name: &name}})
	if err != nil {
		ls.t.Fatal(err)
	}
	return tok.Reveal()
}

func (ls *leakServer) code(key string) string {
	ls.t.Helper()
	v, err := ls.svc.Verify(context.Background(), keys.VerifyRequest{Key: key})
	if err != nil {
		ls.t.Fatal(err)
	}
	return v.Code
}

func errCodeOf(raw []byte) string {
	var b struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(raw, &b)
	return b.Error.Code
}

func TestGitHubLeaksChecksTheSignatureBeforeReadingTheBody(t *testing.T) {
	ls := newLeakServer(t, keys.LeakRevoke, 4096)
	key := ls.newKey()
	// Not JSON at all, and unsigned: refused as unauthenticated, never as
	// invalid, because nothing of it is parsed before the signature.
	if st, raw := ls.post(ls.keyID, ls.sign([]byte("other")), []byte("{{{ not json")); st != http.StatusUnauthorized || errCodeOf(raw) != latchkey.EUnauthenticated {
		t.Fatalf("unsigned garbage: %d %s, want 401", st, raw)
	}
	// Signed garbage is invalid.
	garbage := []byte(`{"token": "x"}`)
	if st, raw := ls.post(ls.keyID, ls.sign(garbage), garbage); st != http.StatusBadRequest || errCodeOf(raw) != latchkey.EInvalid {
		t.Fatalf("signed garbage: %d %s, want 400", st, raw)
	}
	// A body over --max-body is refused before anything else.
	big := []byte(`[{"token":"` + strings.Repeat("a", 5000) + `"}]`)
	calls := ls.counter.calls.Load()
	if st, raw := ls.post(ls.keyID, ls.sign(big), big); st != http.StatusRequestEntityTooLarge || errCodeOf(raw) != latchkey.ETooLarge {
		t.Fatalf("too large: %d %s, want 413", st, raw)
	}
	if ls.counter.calls.Load() != calls {
		t.Fatal("a body over the limit reached the signature check")
	}
	if c := ls.code(key); c != latchkey.CodeValid {
		t.Fatalf("after refused reports: %s", c)
	}
	body, _ := json.Marshal([]leaks.Match{{Token: key, Type: "latchkey_api_key", URL: "https://github.com/o/r", Source: "commit"}})
	st, raw := ls.post(ls.keyID, ls.sign(body), body)
	if st != http.StatusOK {
		t.Fatalf("genuine: %d %s", st, raw)
	}
	var got []leaks.Analysis
	if err := json.Unmarshal(raw, &got); err != nil || len(got) != 1 || got[0].Label != leaks.TruePositive || got[0].TokenHash != latchkey.HashHex(sha256.Sum256([]byte(key))) {
		t.Fatalf("answer %s (%v)", raw, err)
	}
	if c := ls.code(key); c != latchkey.CodeRevoked {
		t.Fatalf("after the report: %s, want REVOKED", c)
	}
}

func TestGitHubLeaksSuspendsWithLeakActionSuspend(t *testing.T) {
	ls := newLeakServer(t, keys.LeakSuspend, 0)
	key := ls.newKey()
	body, _ := json.Marshal([]leaks.Match{{Token: key, Type: "t"}})
	if st, raw := ls.post(ls.keyID, ls.sign(body), body); st != http.StatusOK {
		t.Fatalf("%d %s", st, raw)
	}
	if c := ls.code(key); c != latchkey.CodeSuspended {
		t.Fatalf("after the report: %s, want SUSPENDED", c)
	}
}

func TestGitHubLeaksNotServedWithoutKeys(t *testing.T) {
	srv := httptest.NewServer(New(Config{}))
	defer srv.Close()
	res, err := http.Post(srv.URL+"/v1/leaks/github", "application/json", strings.NewReader(`[]`))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound || errCodeOf(raw) != latchkey.ENotFound {
		t.Fatalf("%d %s, want 404 not_found", res.StatusCode, raw)
	}
}

func TestDecodeLeaks(t *testing.T) {
	b, err := decodeLeaks([]byte(`{"tokens": ["a", "b"], "url": "x.env", "source": "ci"}`))
	if err != nil || len(b.Tokens) != 2 || b.URL != "x.env" || b.Source != "ci" {
		t.Fatalf("%+v, %v", b, err)
	}
	many, _ := json.Marshal(map[string]any{"tokens": make([]string, MaxLeakTokens+1)})
	for _, bad := range []string{``, `[]`, `null`, `{}`, `{"tokens": []}`, `{"tokens": "a"}`, `{"tokens": ["a"], "bogus": 1}`,
		`{"tokens": ["a"], "url": "` + strings.Repeat("u", leaks.MaxURLLen+1) + `"}`, string(many)} {
		if _, err := decodeLeaks([]byte(bad)); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("decodeLeaks(%.40q) = %v, want invalid", bad, err)
		}
	}
}

func FuzzDecodeLeaks(f *testing.F) {
	f.Add([]byte(`{"tokens": ["lk_x"], "url": "a", "source": "b"}`))
	f.Add([]byte(`{"tokens": []}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := decodeLeaks(data)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("error %v is not invalid", err)
			}
			return
		}
		if len(b.Tokens) == 0 || len(b.Tokens) > MaxLeakTokens || len(b.URL) > leaks.MaxURLLen || len(b.Source) > leaks.MaxFieldLen {
			t.Fatalf("accepted %+v", b)
		}
	})
}
