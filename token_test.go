package latchkey_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/big"
	"regexp"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
)

// keyPattern is the regex a secret scanner can use for default-prefix keys.
var keyPattern = regexp.MustCompile(`^lk_[0-9A-Za-z]{49}$`)

// TestTokenFormatMatchesPublishedSpec recomputes the format with math/big,
// independently of the encoder, so that a change to either is caught.
func TestTokenFormatMatchesPublishedSpec(t *testing.T) {
	raw := bytes.Repeat([]byte{0xA5}, 32)
	tok, err := latchkey.GenerateToken("sk_live", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	enc := func(n *big.Int, width int) string {
		n = new(big.Int).Set(n)
		out := make([]byte, width)
		sixtyTwo := big.NewInt(62)
		for i := width - 1; i >= 0; i-- {
			m := new(big.Int)
			n.DivMod(n, sixtyTwo, m)
			out[i] = alphabet[m.Int64()]
		}
		return string(out)
	}
	random := enc(new(big.Int).SetBytes(raw), 43)
	head := "sk_live_" + random
	want := head + enc(big.NewInt(int64(crc32.ChecksumIEEE([]byte(head)))), 6)
	if got := tok.Reveal(); got != want {
		t.Fatalf("token = %s\nwant    %s", got, want)
	}
	if tok.Prefix() != "sk_live" || tok.Start() != "sk_live_"+random[:4] {
		t.Fatalf("prefix/start = %q/%q", tok.Prefix(), tok.Start())
	}
	if _, err := latchkey.ParseToken(want); err != nil {
		t.Fatalf("parse own token: %v", err)
	}
}

func TestGeneratedTokensParseAndDiffer(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		tok, err := latchkey.GenerateToken("", nil)
		if err != nil {
			t.Fatal(err)
		}
		s := tok.Reveal()
		if !keyPattern.MatchString(s) {
			t.Fatalf("token %q does not match the published pattern", s)
		}
		if seen[s] {
			t.Fatal("duplicate token")
		}
		seen[s] = true
		back, err := latchkey.ParseToken(s)
		if err != nil || !back.Equal(tok) {
			t.Fatalf("round trip failed: %v", err)
		}
	}
}

func TestParseTokenErrors(t *testing.T) {
	good, _ := latchkey.GenerateToken("agent_key", nil)
	g := good.Reveal()
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	max := "lk_" + strings.Repeat("z", 43) + "000000"
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"Empty", "", latchkey.ErrTokenEmpty},
		{"TooShort", g[:len(g)-1], latchkey.ErrTokenLength},
		{"NoSeparator", strings.Repeat("a", 60), latchkey.ErrTokenLength},
		{"PrefixLongerThan16", strings.Repeat("a", 17) + "_" + g[len(g)-49:], latchkey.ErrTokenLength},
		{"UpperCasePrefix", "LK" + g[len("agent_key"):], latchkey.ErrTokenPrefix},
		{"PrefixEndsInUnderscore", "lk__" + g[len(g)-49:], latchkey.ErrTokenPrefix},
		{"BadCharacter", g[:len(g)-10] + "-" + g[len(g)-9:], latchkey.ErrTokenCharset},
		{"MistypedRandom", flip(g, len(g)-20), latchkey.ErrTokenChecksum},
		{"MistypedCheck", flip(g, len(g)-1), latchkey.ErrTokenChecksum},
		{"WrongPrefixSameBody", "lk" + g[len("agent_key"):], latchkey.ErrTokenChecksum},
		{"RandomAbove256Bits", max, latchkey.ErrTokenRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := latchkey.ParseToken(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseToken(%q) = %v, want %v", tt.in, err, tt.want)
			}
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("code = %s", latchkey.ErrorCode(err))
			}
		})
	}
}

func TestTokenNeverPrintsItself(t *testing.T) {
	tok, _ := latchkey.GenerateToken("", nil)
	plain := tok.Reveal()
	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("issued", "key", tok)
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("issued", "key", tok)
	js, _ := json.Marshal(map[string]any{"k": tok, "p": &tok})
	outs := []string{
		fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s %q %x", tok, tok, tok, tok, tok, tok),
		fmt.Sprintf("%v", struct{ K latchkey.Token }{tok}), fmt.Sprintf("%#v", &tok),
		string(js), logBuf.String(), fmt.Errorf("wrap: %v", tok).Error(),
	}
	body := plain[len(plain)-45:]
	for _, o := range outs {
		if strings.Contains(o, body) {
			t.Fatalf("plaintext leaked in %q", o)
		}
	}
	if !strings.Contains(outs[0], tok.Start()) {
		t.Fatalf("redacted form %q should show the start %q", outs[0], tok.Start())
	}
}

func TestTokenEqualIsByValue(t *testing.T) {
	a, _ := latchkey.GenerateToken("", nil)
	b, _ := latchkey.ParseToken(a.Reveal())
	c, _ := latchkey.GenerateToken("", nil)
	if !a.Equal(b) || a.Equal(c) {
		t.Fatal("Equal compares wrong")
	}
	if a.Hash() != latchkey.HashKey(a.Reveal()) {
		t.Fatal("Hash differs from HashKey")
	}
}

func FuzzParseToken(f *testing.F) {
	good, _ := latchkey.GenerateToken("", nil)
	f.Add(good.Reveal())
	f.Add("sk_live_" + strings.Repeat("0", 49))
	f.Add("")
	f.Add("_")
	f.Add(strings.Repeat("_", 70))
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := latchkey.ParseToken(s)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("error %v has code %s", err, latchkey.ErrorCode(err))
			}
			return
		}
		// Anything accepted must be exactly the published shape.
		if tok.Reveal() != s || !latchkey.ValidPrefix(tok.Prefix()) || len(s)-len(tok.Prefix()) != 50 {
			t.Fatalf("accepted %q with prefix %q", s, tok.Prefix())
		}
		head := s[:len(s)-6]
		if crc32.ChecksumIEEE([]byte(head)) == 0 && !strings.HasSuffix(s, "000000") {
			t.Fatalf("checksum not enforced for %q", s)
		}
	})
}

func BenchmarkParseAndHash(b *testing.B) {
	tok, _ := latchkey.GenerateToken("", nil)
	s := tok.Reveal()
	b.ReportAllocs()
	for b.Loop() {
		t, err := latchkey.ParseToken(s)
		if err != nil {
			b.Fatal(err)
		}
		_ = t.Hash()
	}
}
