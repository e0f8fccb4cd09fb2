package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// verifyFastSeeds are bodies where a hand decoder is most likely to part
// from encoding/json: case-folded and escaped names, repeated fields, null
// in every place, escapes, invalid UTF-8, numbers at the edges of int64,
// whitespace and trailing data.
var verifyFastSeeds = []string{
	`{"key":"lk_x","request":{"method":"GET","path":"/a","headers":{"X-A":"b"}}}`,
	`{"key":"lk_x","REQUEST":null}`,
	`{"key":"lk_x","request":{"method":1}}`,
	`{"key":"lk_x","scopes":["data:read"]}`,
	` {"key" : "lk_x" , "scopes" : [ "data:read" , "b" ] , "resource" : "agent:a" , "cost" : 0 , "ip" : "10.0.0.1" } `,
	"\t{\"key\":\"k\"}\r\n", `{"key":"k"}x`, `{"key":"k"}{}`, `{"key":"k"} null`, `{"key":"k",}`, `{,}`, `{"key"}`, `{"key":"k"`,
	`{"KEY":"k"}`, `{"Key":"k","SCOPES":["a"],"Resource":"r","CoSt":2,"iP":"::1"}`, `{"\u212aey":"k"}`, `{"ſcopes":["a"]}`,
	`{"İp":"10.0.0.1"}`, `{"\u0130p":"10.0.0.1"}`, `{"\u006bey":"k"}`, `{"k\u0065y":"k"}`, `{"key\u0000":"k"}`, `{"ke":"k"}`, `{"keys":"k"}`,
	`{"key":"a","key":"b"}`, `{"key":"a","key":null}`, `{"key":null}`, `{"cost":5,"cost":null}`, `{"cost":null}`,
	`{"cost":99999999999,"cost":1}`, `{"cost":9223372036854775807}`, `{"cost":9223372036854775808,"cost":1}`,
	`{"cost":-9223372036854775808,"cost":1}`, `{"cost":-9223372036854775809,"cost":1}`, `{"cost":-0}`, `{"cost":-}`, `{"cost":01}`,
	`{"cost":1.0}`, `{"cost":1e3}`, `{"cost":1E3,"cost":1}`, `{"cost":"1"}`, `{"cost":true}`, `{"cost":1000000000}`, `{"cost":1000000001}`,
	`{"scopes":null}`, `{"scopes":[]}`, `{"scopes":[null]}`, `{"scopes":["a","b"],"scopes":[null,"c"]}`,
	`{"scopes":["a","b","c"],"scopes":["d"],"scopes":[null,null,null]}`, `{"scopes":["a"],"scopes":[],"scopes":[null]}`,
	`{"scopes":["a"],"scopes":null,"scopes":[null,"b"]}`, `{"scopes":[1]}`, `{"scopes":"a"}`, `{"scopes":["a",]}`, `{"scopes":[,"a"]}`,
	`{"scopes":[["a"]]}`, `{"scopes":[{}]}`, `{"scopes":["Bad Scope"],"scopes":["a"]}`,
	`{"scopes":["a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a"]}`,
	`{"scopes":["a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a"],"scopes":["b"]}`,
	`{"key":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}`, `{"key":"\ud83d"}`, `{"key":"\ude00\ud83d"}`, `{"key":"\ud83dx"}`, `{"key":"\ud83d\u0041"}`,
	`{"key":"\x"}`, `{"key":"\u12"}`, `{"key":"\u12g4"}`, `{"key":"\'"}`, "{\"key\":\"a\x01\"}", "{\"key\":\"a\x7f\"}",
	"{\"key\":\"\xff\xfe\"}", "{\"key\":\"\xc3\xa9\"}", "{\"k\xffy\":\"a\"}", "{\"key\":\"a\"}\xff", "\xef\xbb\xbf{}",
	`{"resource":"agent:a","resource":null}`, `{"resource":"bad resource"}`, `{"ip":""}`, `{"ip":"10.0.0.300"}`, `{"ip":"fe80::1%eth0"}`,
	`{"ip":"::ffff:10.0.0.1"}`, `{"ip":null}`, `{"ip":1}`, `{"key":true}`, `{"key":nul}`, `{"key":nullx}`, `{"key":null,}`,
	`{"bogus":null}`, `{"key":"k","bogus":1}`, `{}`, ` {} `, ``, ` `, `null`, `[]`, `"x"`, `{"key":"k"}}`,
	// Named costs.
	`{"key":"k","limits":[{"name":"tokens","cost":1200}]}`, ` {"limits" : [ { "name" : "a" , "cost" : 1 } , {"cost":2,"name":"b"} ] } `,
	`{"limits":null}`, `{"limits":[]}`, `{"limits":[null]}`, `{"limits":[{}]}`, `{"limits":[{"name":"a"}]}`, `{"limits":[{"cost":1}]}`,
	`{"LIMITS":[{"NAME":"a","Cost":1}]}`, `{"limitſ":[]}`, `{"limits":[{"ſame":"a"}]}`, `{"limits":[{"name":"a","cost":1,"name":"b"}]}`,
	`{"limits":[{"name":"a","cost":1,"cost":null}]}`, `{"limits":[{"name":"a","cost":5,"name":null}]}`,
	`{"limits":[{"name":"a","cost":1},{"name":"b","cost":2}],"limits":[null,{"cost":3}]}`,
	`{"limits":[{"name":"a","cost":1},{"name":"b","cost":2},{"name":"c","cost":3}],"limits":[{"name":"d"}],"limits":[null,null,null]}`,
	`{"limits":[{"name":"a","cost":1}],"limits":[],"limits":[null]}`, `{"limits":[{"name":"a","cost":1}],"limits":null,"limits":[null]}`,
	`{"limits":[{"name":"a","cost":1},{"name":"a","cost":2}]}`, `{"limits":[{"name":"","cost":1}]}`, `{"limits":[{"name":"a","cost":-1}]}`,
	`{"limits":[{"name":"a","cost":1000000001}]}`, `{"limits":[{"name":"a","cost":1.5}]}`, `{"limits":[{"name":"a","cost":"1"}]}`,
	`{"limits":[{"name":1,"cost":1}]}`, `{"limits":[{"name":"a","cost":1,"extra":0}]}`, `{"limits":[{"name":"a","cost":1},]}`, `{"limits":[,]}`,
	`{"limits":{"name":"a","cost":1}}`, `{"limits":["a"]}`, `{"limits":[[]]}`, `{"limits":[{"name":"a","cost":1}`, `{"limits":[{"name":"a" "cost":1}]}`,
	`{"limits":[{"name":"\u0074okens","cost":9}]}`, `{"limits":[{"name":"` + strings.Repeat("n", 65) + `","cost":1}]}`,
	`{"limits":[{"name":"a","cost":1},{"name":"b","cost":1},{"name":"c","cost":1},{"name":"d","cost":1},{"name":"e","cost":1},{"name":"f","cost":1},{"name":"g","cost":1},{"name":"h","cost":1},{"name":"i","cost":1}]}`,
	`{"limits":[{"name":"a","cost":1},{"name":"b","cost":1},{"name":"c","cost":1},{"name":"d","cost":1},{"name":"e","cost":1},{"name":"f","cost":1},{"name":"g","cost":1},{"name":"h","cost":1},{"name":"i","cost":1}],"limits":[null,null]}`,
}

// FuzzDecodeVerifyFastMatchesJSON holds the fast path's hand decoder to
// decodeVerify (encoding/json): for every body both accept or both
// refuse, and when they accept they make the same request.
func FuzzDecodeVerifyFastMatchesJSON(f *testing.F) {
	for _, s := range verifyFastSeeds {
		f.Add([]byte(s))
	}
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var buf [maxVerifyScopes]string
		var named [latchkey.MaxNamedCosts]latchkey.NamedCost
		fast, ferr := decodeVerifyFast(b, &buf, &named)
		slow, serr := decodeVerify(b)
		if errors.Is(ferr, errSlowPath) {
			return // left to decodeVerify, which the route then calls
		}
		if (ferr == nil) != (serr == nil) {
			t.Fatalf("%q: hand decoder says %v, encoding/json says %v", b, ferr, serr)
		}
		if ferr != nil {
			if !errors.Is(ferr, errNotFast) && latchkey.ErrorCode(ferr) != latchkey.ErrorCode(serr) {
				t.Fatalf("%q: hand decoder refuses with %s, encoding/json with %s", b, latchkey.ErrorCode(ferr), latchkey.ErrorCode(serr))
			}
			return
		}
		if fast.Key != slow.Key || !slices.Equal(fast.Scopes, slow.Scopes) || fast.Resource != slow.Resource ||
			fast.IP != slow.IP || fast.Cost != slow.Cost || !slices.Equal(fast.Named, slow.Named) {
			t.Fatalf("%q: hand decoder reads %+v, encoding/json %+v", b, fast, slow)
		}
	})
}

// TestVerifyFastSeedsAreDecidedBothWays: the seeds exercise both answers,
// so the fuzz target starts from accepted and refused bodies alike.
func TestVerifyFastSeedsAreDecidedBothWays(t *testing.T) {
	var accepted, refused int
	for _, s := range verifyFastSeeds {
		if _, err := decodeVerify([]byte(s)); err == nil {
			accepted++
		} else {
			refused++
		}
	}
	if accepted < 20 || refused < 20 {
		t.Fatalf("%d seeds accepted, %d refused", accepted, refused)
	}
}

// verifyResponse is the answer to a verdict as the route built it before
// appendVerify, for encoding/json to encode: the reference
// TestVerifyAnswerMatchesEncodingJSON holds appendVerify to.
func verifyResponse(v *keys.Verdict) VerifyResponse {
	resp := VerifyResponse{Valid: v.Valid(), Code: v.Code, Missing: v.Missing}
	if e := v.Entry; e != nil {
		resp.verifyIdentity = identityOf(&e.Key)
	}
	resp.RateLimit = limitView(v.Admission.RateLimit)
	resp.Quota = limitView(v.Admission.Quota)
	resp.LeaseID = v.Admission.LeaseID
	if v.Admission.Owner {
		resp.LimitedBy = "owner"
	}
	if v.Admission.RetryAfter > 0 {
		resp.RetryAfter = retrySeconds(v.Admission.RetryAfter)
	}
	return resp
}

// TestVerifyAnswerMatchesEncodingJSON holds the hand-encoded verify answer
// to what encoding/json wrote before it (writeJSON of VerifyResponse):
// every verify code, with and without a key, limits with and without a
// reset, lease ids, retry times, missing scopes and strings that need
// escaping. Each verdict is encoded twice, the second time from the
// identity cached on the entry.
func TestVerifyAnswerMatchesEncodingJSON(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	reset := time.Date(2030, 1, 2, 3, 4, 5, 600_000_000, berlin)
	full := latchkey.Key{
		ID: "key_01J9Z3", Tenant: "acme", Owner: `o"w<n>e&r` + "\u2028\x01", Name: "bench ✓", Environment: "production",
		Scopes: []string{"data:read", "agent:*"}, Resources: []string{"agent:a", "tool:<b>"},
		Meta:      map[string]any{"team": "core", "n": 3.5, "list": []any{1.0, "x", nil, true}, "obj": map[string]any{"b": "<&>", "a": nil}},
		ExpiresAt: time.Date(2031, 5, 6, 7, 8, 9, 123456789, berlin),
	}
	bare := latchkey.Key{ID: "key_2", Tenant: "t"}
	invalidUTF8 := latchkey.Key{ID: "key_3", Tenant: "t", Owner: "a\xffb", Meta: map[string]any{}}
	admissions := []latchkey.Admission{
		{},
		{RateLimit: latchkey.LimitState{Limit: 10, Remaining: 9, ResetAt: reset}},
		{RateLimit: latchkey.LimitState{Limit: 10, Remaining: -1, ResetAt: reset}, RetryAfter: 1200 * time.Millisecond},
		{Quota: latchkey.LimitState{Limit: 1000, Remaining: 0}, RetryAfter: time.Nanosecond},
		{RateLimit: latchkey.LimitState{Limit: 5, Remaining: 4, ResetAt: reset.UTC()}, Quota: latchkey.LimitState{Limit: 7, Remaining: 7, ResetAt: reset}, LeaseID: "lease_01J9\"x"},
		{LeaseID: "lease_only"},
		{RateLimit: latchkey.LimitState{Limit: 100, Remaining: 0, ResetAt: reset}, RetryAfter: 3 * time.Second, Owner: true, Code: latchkey.CodeRateLimited},
		{Quota: latchkey.LimitState{Limit: 10, Remaining: 0, ResetAt: reset}, Owner: true},
	}
	var verdicts []keys.Verdict
	for _, code := range latchkey.VerifyCodes {
		for _, k := range []*latchkey.Key{nil, &full, &bare, &invalidUTF8} {
			for _, adm := range admissions {
				for _, missing := range []string{"", "data:write", `res"ource<>` + "\u2029"} {
					v := keys.Verdict{Code: code, Missing: missing, Admission: adm}
					if k != nil {
						v.Entry = keys.NewEntry(k)
					}
					verdicts = append(verdicts, v)
				}
			}
		}
	}
	for _, v := range verdicts {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(verifyResponse(&v)); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if got := appendVerify(nil, &v); string(got) != want.String() {
				t.Fatalf("verdict %+v:\nhand:          %s\nencoding/json: %s", v, got, want.String())
			}
		}
	}
	if !strings.Contains(string(appendVerify(nil, &verdicts[len(verdicts)-1])), `"code":"CONCURRENCY_EXCEEDED"`) {
		t.Fatal("the last verdict is not the last code")
	}
}

// TestPlainASCIIMatchesByteCheck holds the eight-bytes-at-a-time check of
// appendQuoted's fast path to the byte-by-byte one: every byte value at
// every position of strings of 1 to 19 bytes.
func TestPlainASCIIMatchesByteCheck(t *testing.T) {
	for n := 1; n < 20; n++ {
		for pos := range n {
			for c := range 256 {
				b := []byte(strings.Repeat("a", n))
				b[pos] = byte(c)
				want := c >= 0x20 && c < 0x80 && c != '"' && c != '\\'
				if got := plainASCII(string(b)); got != want {
					t.Fatalf("plainASCII(%q) = %v, want %v", b, got, want)
				}
			}
		}
	}
}
