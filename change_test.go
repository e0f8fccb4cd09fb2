package latchkey_test

import (
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
)

// Every change a node can send reads back as itself.
func TestChangePayloadRoundTrips(t *testing.T) {
	for _, c := range []latchkey.Change{
		{Kind: latchkey.ChangeKey, Hash: sha256.Sum256([]byte("lk_some_key"))},
		{Kind: latchkey.ChangeNewKeys},
		{Kind: latchkey.ChangeSecret, Tenant: "acme", Name: "openai"},
		{Kind: latchkey.ChangeSecret, Tenant: "operator", Name: "azure_openai-2"},
		{Kind: latchkey.ChangeReset},
		{Kind: latchkey.ChangePolicy, Tenant: "acme", Name: "production"},
		{Kind: latchkey.ChangeOwner, Tenant: "acme", Name: "client:42 / EU"},
	} {
		p := c.Payload()
		got, err := latchkey.ParseChange(p)
		if err != nil || got != c {
			t.Errorf("ParseChange(%q) = %+v, %v; want %+v", p, got, err, c)
		}
	}
}

func TestParseChangeRefusesWhatNoNodeSends(t *testing.T) {
	h := sha256.Sum256([]byte("x"))
	valid := latchkey.Change{Kind: latchkey.ChangeKey, Hash: h}.Payload()
	for _, p := range []string{
		"", "x", "k:", "k:" + strings.Repeat("g", 64), valid[:len(valid)-1], valid + "0",
		"k:" + strings.ToUpper(valid[2:]), "s:", "s:acme", "s:acme:", "s::openai", "s:acme:Open AI",
		"s:acme:openai:extra", "nn", "p:acme", "p:acme:Prod", "p::prod", "o:acme:", "o:acme", "o:Acme:x", "o:acme:a\x01", "r ", strings.Repeat("s", latchkey.MaxChangePayload+1),
	} {
		if c, err := latchkey.ParseChange(p); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("ParseChange(%.40q) = %+v, %v; want invalid", p, c, err)
		}
	}
}

func FuzzParseChange(f *testing.F) {
	f.Add("k:" + strings.Repeat("ab", 32))
	f.Add("s:acme:openai")
	f.Add("n")
	f.Add("r")
	f.Fuzz(func(t *testing.T, p string) {
		c, err := latchkey.ParseChange(p)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("error code %q", latchkey.ErrorCode(err))
			}
			return
		}
		// What parses is exactly what a node sends for it.
		if c.Payload() != p {
			t.Fatalf("ParseChange(%q) = %+v, which encodes as %q", p, c, c.Payload())
		}
	})
}
