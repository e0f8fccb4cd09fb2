package main

import (
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// Part of the leak scan campaign: keys imported from another system (any
// printable string of 16 to 256 characters, not Latchkey's format) sent
// everywhere a client could put one — the credential headers, the query
// parameters other APIs take keys in, the request id, the path of every
// kind of route, a verify body — appear in no log line. Each request is
// logged (the server logs at debug level), and the paths show
// "[redacted]" where the key was while the route words and ids around it
// stay readable.
func TestCampaignLeakForeignKeysInRequests(t *testing.T) {
	// Most requests below fail their key check on purpose; the guard would
	// block the test's address after 20 of them.
	ts := startServer(t, withGuard(10_000))
	admin := ts.mustTenant(t, "acme")
	urlsafe := tokenURLSafe(t) // secrets.token_urlsafe(32): 43 characters
	// A standard base64 key whose fifth character is a '/': its first
	// piece, when it is put in a path as it is, is 4 characters long. One
	// with "//" in it would make an empty segment, which the log pattern
	// below does not expect (and no route has): draw again.
	var b64 string
	for b64 == "" || strings.Contains(b64, "//") {
		var b [33]byte
		if _, err := rand.Read(b[:]); err != nil {
			t.Fatal(err)
		}
		b[3] = 0xff
		b64 = base64.StdEncoding.EncodeToString(b[:])
	}
	registerKey(b64)
	r := ts.call(t, "POST", "/v1/keys/import?format=plaintext&scopes=data:read", admin, urlsafe+"\n"+b64+"\n")
	if c, _, i := importCounts(t, r); c != 2 || i != 0 {
		t.Fatalf("import: %s", r.Raw)
	}
	// Both keys work, so every request below carries a real key.
	for _, k := range []string{urlsafe, b64} {
		if r := do(t, "GET", ts.URL+"/v1/auth?scope=data:read", map[string]string{"X-API-Key": k}, nil); r.Status != 200 {
			t.Fatalf("imported key: forward-auth answered %d %s", r.Status, r.Raw)
		}
	}
	_, lk := ts.mustCreate(t, admin, map[string]any{"scopes": []string{"data:read"}})

	sent := 0
	send := func(method, path string, headers map[string]string, body any) {
		t.Helper()
		do(t, method, ts.URL+path, headers, body)
		sent++
	}
	for _, k := range []string{urlsafe, b64, lk} {
		q := url.QueryEscape(k)
		p := url.PathEscape(k)
		for _, h := range []map[string]string{
			{"Authorization": "Bearer " + k},
			{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(k+":"))},
			{"Authorization": k},
			{"X-API-Key": k},
			{"X-Request-Id": k, "Authorization": "Bearer " + k},
			{"X-Forwarded-For": k, "X-Real-IP": k},
			{"X-Original-URI": "/api?api_key=" + q, "X-Latchkey-Scope": k},
		} {
			for _, path := range []string{"/v1/auth?scope=data:read", "/v1/keys", "/keys/openai", "/v1/usage"} {
				send("GET", path, h, nil)
			}
			send("POST", "/v1/keys/verify", h, map[string]any{"key": "x"})
		}
		for _, param := range []string{"api_key", "key", "token", "access_token", "apikey", "auth", "scope", "resource"} {
			for _, path := range []string{"/v1/auth", "/v1/keys", "/keys/openai", "/v1/keys/export", "/nowhere"} {
				send("GET", path+"?"+param+"="+q, nil, nil)
				send("GET", path+"?"+param+"="+q, map[string]string{"Authorization": "Bearer " + admin}, nil)
			}
		}
		for _, path := range []string{"/keys/" + p, "/v1/keys/" + p, "/v1/keys/" + p + "/usage", "/v1/secrets/" + p, "/" + p, "/v1/" + p + "/keys",
			"/keys/" + k, "/v1/keys/" + k + "/rotate"} {
			send("GET", path, map[string]string{"Authorization": "Bearer " + admin}, nil)
			send("POST", path, map[string]string{"Authorization": "Bearer " + admin}, map[string]any{})
			send("DELETE", path, nil, nil)
		}
		send("POST", "/v1/keys/verify", nil, map[string]any{"key": k, "scopes": []string{"data:read"}})
		send("POST", "/v1/keys/verify", nil, `{"key":"`+k+`","bogus":1}`)
		send("POST", "/v1/keys/verify", nil, `{"key":`+k+`}`)
		send("POST", "/v1/keys", map[string]string{"Authorization": "Bearer " + admin}, map[string]any{"name": k, "owner": k, "meta": map[string]string{"k": k}, "scopes": []string{k}})
	}
	logs := ts.Log.Bytes()
	for name, k := range map[string]string{"token_urlsafe key": urlsafe, "base64 key": b64, "Latchkey key": lk} {
		if hit := strings.Contains(string(logs), k); hit {
			t.Errorf("the %s appears in the server's log", name)
		}
	}
	// The requests were logged, with the key's place redacted and the
	// route words around it kept.
	for _, want := range []string{`"path":"/keys/\[redacted\]"`, `"path":"/v1/keys/\[redacted\]/usage"`, `"path":"/v1/keys/(\[redacted\]/){2,}rotate"`, `"path":"/v1/keys"`} {
		if !regexp.MustCompile(want).Match(logs) {
			t.Errorf("no log line matches %s", want)
		}
	}
	if t.Failed() {
		return
	}
	campaignReport(t, "leak-foreign", "requests=%d keys=3 (token_urlsafe, base64 with '/', Latchkey) log_bytes=%d hits=0", sent, len(logs))
}
