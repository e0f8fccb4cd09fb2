package keys_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// tokenURLSafe is Python's secrets.token_urlsafe(32): 43 characters of
// the URL-safe base64 alphabet.
func tokenURLSafe(t testing.TB) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (f *fixture) importKeys(t testing.TB, a *latchkey.Actor, format, body string, set keys.Settings) keys.ImportResult {
	t.Helper()
	res, err := f.svc.ImportKeys(context.Background(), a, strings.NewReader(body), keys.ImportParams{Format: format, Settings: set})
	if err != nil {
		t.Fatalf("import %s: %v", format, err)
	}
	return res
}

func TestImportForeignKeysVerifyAndOwnFormatStaysOffline(t *testing.T) {
	f := newFixture(t)
	ours, _ := latchkey.GenerateToken("", nil)
	foreign := []string{tokenURLSafe(t), tokenURLSafe(t), "abcdefghijklmnop"}
	// One character of ours changed (to one it is not, or the line would
	// be ours again): its checksum no longer matches.
	flip := "X"
	if ours.Reveal()[10] == 'X' {
		flip = "Y"
	}
	body := strings.Join(append(foreign, ours.Reveal(), "", "# a comment", "short_key", ours.Reveal()[:10]+flip+ours.Reveal()[11:]), "\n")
	res := f.importKeys(t, f.admin, keys.ImportPlain, body, keys.Settings{Owner: ptr("legacy"), Scopes: &[]string{"data:read"}})
	if res.Imported != 4 || res.Skipped != 0 || res.Invalid != 2 || len(res.Errors) != 2 || res.Errors[0].Line != 7 || res.Errors[1].Line != 8 {
		t.Fatalf("result %+v", res)
	}
	for _, p := range res.Errors {
		for _, k := range append(foreign, ours.Reveal()) {
			if strings.Contains(p.Error, k) {
				t.Fatal("an invalid line's reason shows a key")
			}
		}
	}
	for _, k := range append(foreign, ours.Reveal()) {
		v := f.verify(t, k, "data:read")
		if v.Code != latchkey.CodeValid || v.Entry.Key.Owner != "legacy" || v.Entry.Key.Tenant != "acme" {
			t.Fatalf("imported key: %s %+v", v.Code, v.Entry)
		}
	}
	reads := f.svc.StoreReads()
	// A mistyped key of our shape is MALFORMED without a lookup; keys
	// outside the foreign bounds too.
	typo := []byte(ours.Reveal())
	typo[10] ^= 1
	for _, k := range []string{string(typo), "short", strings.Repeat("a", 257), "sixteen chars\x01!"} {
		if v := f.verify(t, k); v.Code != latchkey.CodeMalformed {
			t.Fatalf("%q: %s, want MALFORMED", k, v.Code)
		}
	}
	if f.svc.StoreReads() != reads {
		t.Fatal("a malformed key read the store")
	}
	// Unknown foreign garbage: one store read, then the negative cache.
	for range 3 {
		if v := f.verify(t, "garbage-garbage-garbage"); v.Code != latchkey.CodeNotFound {
			t.Fatalf("garbage: %s", v.Code)
		}
	}
	if got := f.svc.StoreReads() - reads; got != 1 {
		t.Fatalf("three identical garbage keys read the store %d times, want 1", got)
	}
	// Re-running imports nothing.
	res = f.importKeys(t, f.admin, keys.ImportPlain, body, keys.Settings{})
	if res.Imported != 0 || res.Skipped != 4 || res.Invalid != 2 {
		t.Fatalf("re-import %+v", res)
	}
}

func TestImportDropsNegativeCacheEntries(t *testing.T) {
	f := newFixture(t)
	k := tokenURLSafe(t)
	if v := f.verify(t, k); v.Code != latchkey.CodeNotFound {
		t.Fatal(v.Code)
	}
	f.importKeys(t, f.admin, keys.ImportSHA256, latchkey.HashHex(latchkey.HashKey(k))+"\n", keys.Settings{})
	if v := f.verify(t, k); v.Code != latchkey.CodeValid {
		t.Fatalf("a key imported by hash right after a NOT_FOUND: %s", v.Code)
	}
}

func TestImportEnvClientIDsBecomeOwners(t *testing.T) {
	f := newFixture(t)
	a, b := tokenURLSafe(t), tokenURLSafe(t)
	env := "# settings\nDEBUG=1\nexport API_KEYS='{\n  \"" + a + "\": \"acme_corp\",\n  \"" + b + "\": \"widget_co\",\n  \"xyz789_real_key\": \"too_short\"\n}'\nOTHER=2\n"
	res := f.importKeys(t, f.admin, keys.ImportEnv, env, keys.Settings{})
	if res.Imported != 2 || res.Invalid != 1 || res.Errors[0].Line != 3 {
		t.Fatalf("result %+v", res)
	}
	for k, owner := range map[string]string{a: "acme_corp", b: "widget_co"} {
		if v := f.verify(t, k); v.Code != latchkey.CodeValid || v.Entry.Key.Owner != owner {
			t.Fatalf("%s: %s", owner, v.Code)
		}
	}
	_, err := f.svc.ImportKeys(context.Background(), f.admin, strings.NewReader("A=1\n"), keys.ImportParams{Format: keys.ImportEnv})
	if latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("no API_KEYS line: %v", err)
	}
}

func TestImportRefusesScopesBeyondTheActor(t *testing.T) {
	f := newFixture(t)
	_, err := f.svc.ImportKeys(context.Background(), f.admin, strings.NewReader(tokenURLSafe(t)+"\n"),
		keys.ImportParams{Format: keys.ImportPlain, Settings: keys.Settings{Scopes: &[]string{"tenants:admin"}}})
	if latchkey.ErrorCode(err) != latchkey.EForbidden {
		t.Fatalf("import granting tenants:admin: %v", err)
	}
	line, _ := json.Marshal(map[string]any{"name": "x", "scopes": []string{"tenants:admin"}, "hash": latchkey.HashHex(latchkey.HashKey(tokenURLSafe(t)))})
	res := f.importKeys(t, f.admin, keys.ImportJSONL, string(line), keys.Settings{})
	if res.Imported != 0 || res.Invalid != 1 {
		t.Fatalf("jsonl line granting tenants:admin: %+v", res)
	}
}

func TestImportLineTooLong(t *testing.T) {
	f := newFixture(t)
	_, err := f.svc.ImportKeys(context.Background(), f.admin, strings.NewReader(strings.Repeat("a", keys.MaxImportLine+10)), keys.ImportParams{Format: keys.ImportPlain})
	if latchkey.ErrorCode(err) != latchkey.ETooLarge {
		t.Fatalf("a line over the bound: %v", err)
	}
}

func TestExportImportRoundTripKeepsKeysVerifying(t *testing.T) {
	src, dst := newFixture(t), newFixture(t)
	foreign := tokenURLSafe(t)
	src.importKeys(t, src.admin, keys.ImportPlain, foreign, keys.Settings{Owner: ptr("o1"), Scopes: &[]string{"data:read"}})
	_, ours := src.create(t, keys.CreateParams{Settings: keys.Settings{Owner: ptr("o2"), Scopes: &[]string{"data:write"}, RateLimits: &[]latchkey.RateLimit{{Limit: 5, Window: latchkey.Duration(60e9)}}}})
	revokedKey, revoked := src.create(t, keys.CreateParams{})
	if _, err := src.svc.RevokeKey(context.Background(), src.admin, revokedKey.ID, "test"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n := 0
	if err := src.svc.ExportKeys(context.Background(), src.admin, func(k *latchkey.Key) error {
		n++
		return json.NewEncoder(&buf).Encode(keys.NewExportedKey(k))
	}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{foreign, ours, revoked} {
		if strings.Contains(buf.String(), k) {
			t.Fatal("the export holds a plaintext key")
		}
	}
	res := dst.importKeys(t, dst.other, keys.ImportJSONL, buf.String(), keys.Settings{})
	if res.Imported != int64(n) || res.Invalid != 0 {
		t.Fatalf("round trip: %d exported, %+v", n, res)
	}
	if v := dst.verify(t, foreign, "data:read"); v.Code != latchkey.CodeValid || v.Entry.Key.Owner != "o1" || v.Entry.Key.Tenant != "globex" {
		t.Fatalf("foreign after round trip: %s", v.Code)
	}
	if v := dst.verify(t, ours, "data:write"); v.Code != latchkey.CodeValid || v.Entry.Key.Owner != "o2" || len(v.Entry.Key.RateLimits) != 1 {
		t.Fatalf("ours after round trip: %s", v.Code)
	}
	if v := dst.verify(t, revoked); v.Code != latchkey.CodeRevoked {
		t.Fatalf("revoked after round trip: %s", v.Code)
	}
}

func FuzzParsePlainLine(f *testing.F) {
	ours, _ := latchkey.GenerateToken("", nil)
	for _, s := range []string{"", "# c", ours.Reveal(), "  abcdefghijklmnopq  \r", "short", strings.Repeat("x", 300), "é" + strings.Repeat("a", 20)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, _, start, skip, err := keys.ParsePlainLine(s)
		if skip || err != nil {
			return
		}
		k := strings.TrimSpace(s)
		if h != latchkey.HashKey(k) || len(start) > 4+1+latchkey.MaxPrefixLen {
			t.Fatalf("%q: wrong hash or start", s)
		}
		if _, err := latchkey.PresentedKeyHash(k); err != nil {
			t.Fatalf("%q imports but would not verify: %v", s, err)
		}
	})
}

func FuzzParseHashLine(f *testing.F) {
	for _, s := range []string{"", "#", latchkey.HashHex(latchkey.HashKey("x")), strings.ToUpper(latchkey.HashHex(latchkey.HashKey("x"))), "zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, skip, err := keys.ParseHashLine(s)
		if skip || err != nil {
			return
		}
		if !strings.EqualFold(latchkey.HashHex(h), strings.TrimSpace(s)) {
			t.Fatalf("%q decoded to %x", s, h)
		}
	})
}

func FuzzParseExportLine(f *testing.F) {
	k := &latchkey.Key{Name: "n", Scopes: []string{"a"}, Hash: latchkey.HashKey("x")}
	b, _ := json.Marshal(keys.NewExportedKey(k))
	for _, s := range []string{"", "{}", string(b), `{"hash": 1}`, "null"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		e, skip, err := keys.ParseExportLine(line)
		if skip || err != nil {
			return
		}
		if len(e.Hash) != 64 {
			t.Fatalf("accepted hash %q", e.Hash)
		}
	})
}

func FuzzParseEnv(f *testing.F) {
	for _, s := range []string{"", "API_KEYS={}", "API_KEYS={\"a\":\"b\"}", "export API_KEYS='{\n\"k\": \"c\"\n}'", "API_KEYS=[1]", "X=1\nAPI_KEYS = {\"a\": 1}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		last := int64(0)
		_ = keys.ParseEnv(strings.NewReader(s), func(entry int64, key, client string) error {
			if entry != last+1 {
				t.Fatalf("entry %d after %d", entry, last)
			}
			last = entry
			return nil
		})
	})
}

// BenchmarkImport imports plaintext keys (token_urlsafe form) into SQLite
// through the service, batch by batch; keys/s is the figure to read.
func BenchmarkImport(b *testing.B) {
	f := newFixture(b)
	const perOp = 10_000
	var buf bytes.Buffer
	b.ReportAllocs()
	b.ResetTimer()
	total := 0
	for range b.N {
		b.StopTimer()
		buf.Reset()
		for range perOp {
			buf.WriteString(tokenURLSafe(b))
			buf.WriteByte('\n')
		}
		b.StartTimer()
		res, err := f.svc.ImportKeys(context.Background(), f.admin, &buf, keys.ImportParams{Format: keys.ImportPlain})
		if err != nil || res.Imported != perOp {
			b.Fatal(err, res)
		}
		total += perOp
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "keys/s")
}
