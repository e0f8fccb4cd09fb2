package leaks_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/leaks"
)

// signer is a test stand-in for GitHub: a P-256 key and its identifier.
type signer struct {
	id  string
	key *ecdsa.PrivateKey
}

func newSigner(t testing.TB, id string) signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{id: id, key: k}
}

func (s signer) sign(t testing.TB, body []byte) string {
	t.Helper()
	d := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func pemOf(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// keyFile is GitHub's public_keys document for signers.
func keyFile(t testing.TB, ss ...signer) []byte {
	t.Helper()
	type entry struct {
		ID      string `json:"key_identifier"`
		Key     string `json:"key"`
		Current bool   `json:"is_current"`
	}
	var doc struct {
		Keys []entry `json:"public_keys"`
	}
	for i, s := range ss {
		doc.Keys = append(doc.Keys, entry{s.id, pemOf(t, &s.key.PublicKey), i == 0})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifySignature(t *testing.T) {
	gh := newSigner(t, "kid-current")
	other := newSigner(t, "kid-other")
	set, err := leaks.ParsePublicKeys(keyFile(t, gh))
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`[{"token":"lk_x","type":"latchkey_api_key","url":"https://github.com/a/b","source":"content"}]`)
	good := gh.sign(t, body)
	tests := []struct {
		name, kid, sig string
		body           []byte
		want           string // "" for success
	}{
		{"GenuineReportAccepted", gh.id, good, body, ""},
		{"TamperedBodyRefused", gh.id, good, bytes.Replace(body, []byte("content"), []byte("commit!"), 1), latchkey.EUnauthenticated},
		{"ReformattedBodyRefused", gh.id, good, append([]byte(" "), body...), latchkey.EUnauthenticated},
		{"UnknownKeyIDRefused", "kid-nobody", good, body, latchkey.EUnauthenticated},
		{"OtherKeysSignatureRefused", gh.id, other.sign(t, body), body, latchkey.EUnauthenticated},
		{"MissingKeyIDRefused", "", good, body, latchkey.EUnauthenticated},
		{"MissingSignatureRefused", gh.id, "", body, latchkey.EUnauthenticated},
		{"SignatureNotBase64Refused", gh.id, "not base64!!", body, latchkey.EUnauthenticated},
		{"SignatureGarbageRefused", gh.id, base64.StdEncoding.EncodeToString([]byte("garbage")), body, latchkey.EUnauthenticated},
		{"HugeSignatureRefused", gh.id, strings.Repeat("A", 10000), body, latchkey.EUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := leaks.VerifySignature(set, tt.kid, tt.sig, tt.body)
			if got := latchkey.ErrorCode(err); err != nil && got != tt.want || err == nil && tt.want != "" {
				t.Fatalf("error = %v, want code %q", err, tt.want)
			}
		})
	}
}

// GitHub's own documented test vector: a payload, its signature and the
// public key it was made with.
func TestVerifySignatureGitHubsExample(t *testing.T) {
	const pub = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsz9ugWDj5jK5ELBK42ynytbo38gP\nHzZFI03Exwz8Lh/tCfL3YxwMdLjB+bMznsanlhK0RwcGP3IDb34kQDIo3Q==\n-----END PUBLIC KEY-----\n"
	doc, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{{"key_identifier": "f9525bf080f75b3506ca1ead061add62b8633a346606dc5fe544e29231c6ee0d", "key": pub, "is_current": true}}})
	set, err := leaks.ParsePublicKeys(doc)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`[{"token":"some_token","type":"some_type","url":"some_url","source":"some_source"}]`)
	sig := "MEUCIFLZzeK++IhS+y276SRk2Pe5LfDrfvTXu6iwKKcFGCrvAiEAhHN2kDOhy2I6eGkOFmxNkOJ+L2y8oQ9A2T9GGJo6WJY="
	if err := leaks.VerifySignature(set, "f9525bf080f75b3506ca1ead061add62b8633a346606dc5fe544e29231c6ee0d", sig, body); err != nil {
		t.Fatalf("GitHub's example does not verify: %v", err)
	}
}

func TestParsePublicKeysRefusesWhatIsNotAP256KeyList(t *testing.T) {
	gh := newSigner(t, "a")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	doc := func(entries ...map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{"public_keys": entries})
		return b
	}
	good := map[string]any{"key_identifier": "a", "key": pemOf(t, &gh.key.PublicKey)}
	tests := []struct {
		name string
		data []byte
	}{
		{"NotJSON", []byte("public_keys: []")},
		{"NoKeys", doc()},
		{"EmptyObject", []byte(`{}`)},
		{"EmptyKeyID", doc(map[string]any{"key_identifier": "", "key": pemOf(t, &gh.key.PublicKey)})},
		{"DuplicateKeyID", doc(good, good)},
		{"NotPEM", doc(map[string]any{"key_identifier": "a", "key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"})},
		{"RSAKey", doc(map[string]any{"key_identifier": "a", "key": pemOf(t, &rsaKey.PublicKey)})},
		{"P384Key", doc(map[string]any{"key_identifier": "a", "key": pemOf(t, &p384.PublicKey)})},
		{"PrivateKeyBlock", doc(map[string]any{"key_identifier": "a", "key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := leaks.ParsePublicKeys(tt.data); latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("error = %v, want invalid", err)
			}
		})
	}
	set, err := leaks.ParsePublicKeys(doc(good, map[string]any{"key_identifier": "b", "key": pemOf(t, &newSigner(t, "b").key.PublicKey), "is_current": false}))
	if err != nil || len(set) != 2 {
		t.Fatalf("two good keys: %d keys, %v", len(set), err)
	}
}

func TestParseReport(t *testing.T) {
	ms, err := leaks.ParseReport([]byte(`[
		{"token":"lk_abc","type":"latchkey_api_key","url":"https://github.com/o/r/blob/1/a.env","source":"content","future_field":1},
		{"token":"x"}
	]`))
	if err != nil {
		t.Fatal(err)
	}
	want := []leaks.Match{{Token: "lk_abc", Type: "latchkey_api_key", URL: "https://github.com/o/r/blob/1/a.env", Source: "content"}, {Token: "x"}}
	if len(ms) != len(want) || ms[0] != want[0] || ms[1] != want[1] {
		t.Fatalf("matches = %+v, want %+v", ms, want)
	}
	if ms, err := leaks.ParseReport([]byte(` [] `)); err != nil || ms == nil || len(ms) != 0 {
		t.Fatalf("empty report: %v, %v", ms, err)
	}
	long, err := leaks.ParseReport([]byte(`[{"token":"t","url":"` + strings.Repeat("é", 3000) + `"}]`))
	if err != nil || len(long[0].URL) > leaks.MaxURLLen || !json.Valid([]byte(`"`+long[0].URL+`"`)) {
		t.Fatalf("a long url is cut to %d bytes of valid UTF-8: %d bytes, %v", leaks.MaxURLLen, len(long[0].URL), err)
	}
	for _, bad := range []string{``, `{}`, `null`, `"x"`, `[1]`, `[{"type":"t"}]`, `[{"token":5}]`, `[{"token":"a"}] []`, `[{"token":"a"}`, `[` + strings.Repeat(`{"token":"a"},`, leaks.MaxMatches) + `{"token":"a"}]`} {
		if _, err := leaks.ParseReport([]byte(bad)); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("ParseReport(%.40q) = %v, want invalid", bad, err)
		}
	}
}

func TestAnalyzeNamesTheTokenByItsHash(t *testing.T) {
	a := leaks.Analyze(leaks.Match{Token: "lk_secret", Type: "latchkey_api_key"}, true)
	h := sha256.Sum256([]byte("lk_secret"))
	if a.Label != leaks.TruePositive || a.TokenType != "latchkey_api_key" || a.TokenHash != latchkey.HashHex(h) {
		t.Fatalf("analysis = %+v", a)
	}
	b, _ := json.Marshal(leaks.Analyze(leaks.Match{Token: "nope", Type: "t"}, false))
	if string(b) != `{"token_hash":"`+latchkey.HashHex(sha256.Sum256([]byte("nope")))+`","token_type":"t","label":"false_positive"}` {
		t.Fatalf("JSON = %s", b)
	}
}

func TestVerifierRereadsItsFileWhenItChanges(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	first, second := newSigner(t, "first"), newSigner(t, "second")
	if err := os.WriteFile(path, keyFile(t, first), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := leaks.NewVerifier(context.Background(), leaks.Options{Location: path})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`[]`)
	if err := v.Verify(context.Background(), first.id, first.sign(t, body), body); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(context.Background(), second.id, second.sign(t, body), body); latchkey.ErrorCode(err) != latchkey.EUnauthenticated {
		t.Fatalf("a key not in the file yet: %v", err)
	}
	// The operator adds GitHub's new key: the next report sees it.
	if err := os.WriteFile(path, keyFile(t, second, first), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(context.Background(), second.id, second.sign(t, body), body); err != nil {
		t.Fatalf("after the file changed: %v", err)
	}
	// A broken edit keeps the keys read before.
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(context.Background(), second.id, second.sign(t, body), body); err != nil {
		t.Fatalf("after a broken edit: %v", err)
	}
	if _, err := leaks.NewVerifier(context.Background(), leaks.Options{Location: path}); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("starting on a broken file: %v, want invalid", err)
	}
	if _, err := leaks.NewVerifier(context.Background(), leaks.Options{Location: filepath.Join(dir, "missing.json")}); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("starting on a missing file: %v, want invalid", err)
	}
}

func TestVerifierFetchesAndCachesAURL(t *testing.T) {
	first, second := newSigner(t, "first"), newSigner(t, "second")
	var serving atomic.Value
	serving.Store(keyFile(t, first))
	var fetches atomic.Int32
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		b := serving.Load().([]byte)
		etag := `"` + latchkey.HashHex(sha256.Sum256(b)) + `"`
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Write(b)
	}))
	defer srv.Close()
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	ctx := context.Background()
	v, err := leaks.NewVerifier(ctx, leaks.Options{Location: srv.URL, Now: clock, TTL: time.Hour, MinRefetch: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`[{"token":"t"}]`)
	for range 5 {
		if err := v.Verify(ctx, first.id, first.sign(t, body), body); err != nil {
			t.Fatal(err)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1: the keys are cached", n)
	}
	// GitHub rotates: a report with the new key id fetches again at once.
	serving.Store(keyFile(t, second, first))
	now = now.Add(2 * time.Minute)
	if err := v.Verify(ctx, second.id, second.sign(t, body), body); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	// Unknown key ids do not turn into a flood of fetches.
	for range 5 {
		if err := v.Verify(ctx, "forged", first.sign(t, body), body); latchkey.ErrorCode(err) != latchkey.EUnauthenticated {
			t.Fatalf("unknown key id: %v", err)
		}
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
	// Past the TTL it asks again (an unchanged set costs a 304); while
	// the URL is down the keys fetched before still serve.
	now = now.Add(2 * time.Hour)
	if err := v.Verify(ctx, first.id, first.sign(t, body), body); err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	now = now.Add(2 * time.Hour)
	if err := v.Verify(ctx, first.id, first.sign(t, body), body); err != nil {
		t.Fatalf("while the URL is down: %v", err)
	}
	// A node that never got the keys answers unavailable, not unauthenticated.
	cold, err := leaks.NewVerifier(ctx, leaks.Options{Location: srv.URL, Now: clock})
	if err != nil {
		t.Fatalf("a URL that does not answer at start is not fatal: %v", err)
	}
	if err := cold.Verify(ctx, first.id, first.sign(t, body), body); latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Fatalf("without keys: %v, want unavailable", err)
	}
}

// plant returns a fresh key with the prefix.
func plant(t testing.TB, prefix string) latchkey.Token {
	t.Helper()
	tok, err := latchkey.GenerateToken(prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestFindKeys(t *testing.T) {
	a, b, c, d := plant(t, "lk"), plant(t, "sk_live"), plant(t, "agent_key"), plant(t, "lk")
	bad := []byte(a.Reveal())
	bad[10] ^= 1 // a typo: the checksum no longer matches
	text := strings.Join([]string{
		"# config",
		"LATCHKEY_KEY=" + a.Reveal(),
		`{"key": "` + b.Reveal() + `", "other": "` + c.Reveal() + `"}`,
		"typo: " + string(bad),
		"too long: " + d.Reveal() + "X",
		"glued: x" + d.Reveal(),
		"",
	}, "\n")
	got := leaks.FindKeys([]byte(text))
	type hit struct {
		line int
		tok  latchkey.Token
	}
	want := []hit{{2, a}, {3, b}, {3, c}, {6, d}}
	if len(got) != len(want) {
		t.Fatalf("found %d keys, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Line != w.line || !got[i].Token.Equal(w.tok) {
			t.Errorf("key %d: line %d %v, want line %d %v", i, got[i].Line, got[i].Token, w.line, w.tok)
		}
	}
}

// randomText is n bytes of base62 words with '_', '=' and newlines among
// them: the characters keys are made of, so a scanner has look-alikes to
// refuse, from a fixed seed.
func randomText(n int) []byte {
	r := mrand.New(mrand.NewPCG(14, 4))
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	for i := range b {
		switch x := r.IntN(200); {
		case x == 0:
			b[i] = '\n'
		case x < 4:
			b[i] = '_'
		case x == 4:
			b[i] = '='
		default:
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
	}
	return b
}

func TestFindKeysFindsNoneInRandomText(t *testing.T) {
	text := randomText(4 << 20)
	// The text is full of candidates: '_' followed by 49 base62 characters.
	cand := 0
	for i := 0; i+50 <= len(text); i++ {
		if text[i] == '_' && !bytes.ContainsAny(text[i+1:i+50], "_=\n") {
			cand++
		}
	}
	if cand < 10000 {
		t.Fatalf("only %d look-alikes in the random text; the test proves little", cand)
	}
	if got := leaks.FindKeys(text); len(got) != 0 {
		t.Fatalf("found %d keys in random text: %v", len(got), got)
	}
}

func BenchmarkFindKeys(b *testing.B) {
	text := randomText(1 << 20)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		leaks.FindKeys(text)
	}
}

func FuzzParseReport(f *testing.F) {
	f.Add([]byte(`[{"token":"lk_x","type":"t","url":"u","source":"content"}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"token":null}]`))
	f.Add([]byte(`{"token":"x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ms, err := leaks.ParseReport(body)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("error %v is not invalid", err)
			}
			return
		}
		if len(ms) > leaks.MaxMatches {
			t.Fatalf("%d matches", len(ms))
		}
		for _, m := range ms {
			if len(m.URL) > leaks.MaxURLLen || len(m.Type) > leaks.MaxFieldLen || len(m.Source) > leaks.MaxFieldLen {
				t.Fatalf("a field is over its bound: %+v", m)
			}
		}
	})
}

func FuzzParsePublicKeys(f *testing.F) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(keyFile(f, signer{id: "a", key: k}))
	f.Add([]byte(`{"public_keys":[]}`))
	f.Add([]byte(`{"public_keys":[{"key_identifier":"a","key":"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := leaks.ParsePublicKeys(data)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("error %v is not invalid", err)
			}
			return
		}
		if len(set) == 0 {
			t.Fatal("a key set without keys was accepted")
		}
		for id, pub := range set {
			if id == "" || pub.Curve != elliptic.P256() {
				t.Fatalf("key %q accepted", id)
			}
			// A signature by no key of the set never verifies.
			if err := leaks.VerifySignature(set, id, base64.StdEncoding.EncodeToString(fakeSig()), data); err == nil {
				t.Fatal("a made-up signature verified")
			}
		}
	})
}

func fakeSig() []byte {
	type sig struct{ R, S *big.Int }
	b, _ := asn1.Marshal(sig{big.NewInt(1), big.NewInt(1)})
	return b
}

func FuzzFindKeys(f *testing.F) {
	k, _ := latchkey.GenerateToken("lk", nil)
	f.Add([]byte("KEY=" + k.Reveal() + "\n"))
	f.Add([]byte("lk_" + strings.Repeat("0", 49)))
	f.Add([]byte("_" + strings.Repeat("a", 60)))
	f.Fuzz(func(t *testing.T, text []byte) {
		lines := 1 + bytes.Count(text, []byte("\n"))
		for _, found := range leaks.FindKeys(text) {
			if _, err := latchkey.ParseToken(found.Token.Reveal()); err != nil {
				t.Fatalf("found a key that does not parse: %v", err)
			}
			if !bytes.Contains(text, []byte(found.Token.Reveal())) {
				t.Fatal("found a key the text does not hold")
			}
			if found.Line < 1 || found.Line > lines {
				t.Fatalf("line %d of %d", found.Line, lines)
			}
		}
	})
}
