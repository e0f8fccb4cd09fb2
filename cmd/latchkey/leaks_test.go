package main

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
	"errors"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/testenv"
)

// withLeakReportKeys starts the server trusting the GitHub public keys in
// the file at path, as --leak-report-keys does.
func withLeakReportKeys(path string) serverOption {
	return func(c *serverConfig, _ *serverHooks) { c.LeakReportKeys = path }
}

// githubStandIn signs reports as GitHub does, with a key of its own.
type githubStandIn struct {
	id  string
	key *ecdsa.PrivateKey
}

func newGitHubStandIn(t *testing.T) githubStandIn {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return githubStandIn{id: "test-key-1", key: k}
}

// keyFile writes GitHub's public_keys document for the stand-in.
func (g githubStandIn) keyFile(t *testing.T) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&g.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{{
		"key_identifier": g.id, "key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), "is_current": true,
	}}})
	path := filepath.Join(t.TempDir(), "github-keys.json")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (g githubStandIn) sign(t *testing.T, body []byte) string {
	t.Helper()
	d := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, g.key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// postAlert sends a partner alert as GitHub does: body signed by sigOf,
// key id in the header. The answer's body is raw (a JSON array).
func postAlert(t *testing.T, ts *testServer, keyID, sig string, body []byte) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", ts.URL+"/v1/leaks/github", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if keyID != "" {
		req.Header.Set("GITHUB-PUBLIC-KEY-IDENTIFIER", keyID)
	}
	if sig != "" {
		req.Header.Set("GITHUB-PUBLIC-KEY-SIGNATURE", sig)
	}
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	recordExchange(exchangeOf(req, body, res, raw))
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if res.StatusCode != http.StatusOK {
		_ = json.Unmarshal(raw, &e)
	}
	return res.StatusCode, e.Error.Code, raw
}

func alertBody(t *testing.T, tokens ...string) []byte {
	t.Helper()
	var ms []map[string]string
	for i, tok := range tokens {
		ms = append(ms, map[string]string{"token": tok, "type": "latchkey_api_key",
			"url": "https://github.com/acme/app/blob/0123abc/config/" + string(rune('a'+i)) + ".env", "source": "content"})
	}
	b, err := json.Marshal(ms)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hashHex(s string) string { return latchkey.HashHex(sha256.Sum256([]byte(s))) }

func TestE2ELeakReportFromGitHubRevokesTheKeyAtOnce(t *testing.T) {
	gh := newGitHubStandIn(t)
	ts := startServer(t, withLeakReportKeys(gh.keyFile(t)))
	admin := ts.mustTenant(t, "acme")
	id, key := ts.mustCreate(t, admin, map[string]any{})
	goneID, gone := ts.mustCreate(t, admin, map[string]any{})
	if r := ts.call(t, "POST", "/v1/keys/"+goneID+"/revoke", admin, map[string]any{"reason": "retired"}); r.Status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.Status, r.Raw)
	}
	foreign, _ := latchkey.GenerateToken("lk", nil) // shaped like ours, issued by nobody
	registerKey(foreign.Reveal())
	// Verified once, the key is in the verify cache: the report must
	// reach it there.
	if c := ts.verifyCode(t, map[string]any{"key": key}); c != latchkey.CodeValid {
		t.Fatalf("before the report: %s", c)
	}

	body := alertBody(t, key, foreign.Reveal(), gone, "not a key at all")
	refused := []struct {
		name, keyID, sig string
		body             []byte
	}{
		{"TamperedBody", gh.id, gh.sign(t, alertBody(t, "lk_other")), body},
		{"UnknownKeyID", "someone-else", gh.sign(t, body), body},
		{"NoSignature", gh.id, "", body},
		{"NoKeyID", "", gh.sign(t, body), body},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			status, code, raw := postAlert(t, ts, tt.keyID, tt.sig, tt.body)
			if status != http.StatusUnauthorized || code != latchkey.EUnauthenticated {
				t.Fatalf("%d %s, want 401 unauthenticated", status, raw)
			}
			if c := ts.verifyCode(t, map[string]any{"key": key}); c != latchkey.CodeValid {
				t.Fatalf("after a refused report the key is %s, want VALID", c)
			}
		})
	}
	if r := ts.call(t, "GET", "/v1/audit?action=key.leaked", admin, nil); len(r.Body["events"].([]any)) != 0 {
		t.Fatalf("refused reports were audited: %s", r.Raw)
	}

	status, _, raw := postAlert(t, ts, gh.id, gh.sign(t, body), body)
	if status != http.StatusOK {
		t.Fatalf("genuine report: %d %s", status, raw)
	}
	if c := ts.verifyCode(t, map[string]any{"key": key}); c != latchkey.CodeRevoked {
		t.Fatalf("after the report the key is %s, want REVOKED at once", c)
	}
	var analysis []map[string]string
	if err := json.Unmarshal(raw, &analysis); err != nil {
		t.Fatalf("answer %s: %v", raw, err)
	}
	want := []map[string]string{
		{"token_hash": hashHex(key), "token_type": "latchkey_api_key", "label": "true_positive"},
		{"token_hash": hashHex(foreign.Reveal()), "token_type": "latchkey_api_key", "label": "false_positive"},
		{"token_hash": hashHex(gone), "token_type": "latchkey_api_key", "label": "true_positive"},
		{"token_hash": hashHex("not a key at all"), "token_type": "latchkey_api_key", "label": "false_positive"},
	}
	if len(analysis) != len(want) {
		t.Fatalf("analysis = %s", raw)
	}
	for i := range want {
		for f, v := range want[i] {
			if analysis[i][f] != v {
				t.Errorf("analysis[%d].%s = %q, want %q", i, f, analysis[i][f], v)
			}
		}
	}
	if bytes.Contains(raw, []byte(key)) {
		t.Fatal("the answer holds the plaintext key")
	}
	// The key already revoked is as it was.
	if r := ts.call(t, "GET", "/v1/keys/"+goneID, admin, nil); r.str("state") != "revoked" || r.str("state_reason") != "retired" {
		t.Fatalf("the revoked key changed: %s", r.Raw)
	}
	r := ts.call(t, "GET", "/v1/audit?action=key.leaked", admin, nil)
	evs, _ := r.Body["events"].([]any)
	if len(evs) != 1 {
		t.Fatalf("key.leaked audit events: %s", r.Raw)
	}
	ev := evs[0].(map[string]any)
	details, _ := ev["details"].(map[string]any)
	if ev["target_key_id"] != id || details["url"] != "https://github.com/acme/app/blob/0123abc/config/a.env" || details["source"] != "content" {
		t.Fatalf("key.leaked event = %v", ev)
	}
	// Sent again (GitHub retries), nothing more happens.
	if status, _, _ := postAlert(t, ts, gh.id, gh.sign(t, body), body); status != http.StatusOK {
		t.Fatalf("repeated report: %d", status)
	}
	if r := ts.call(t, "GET", "/v1/audit?action=key.leaked", admin, nil); len(r.Body["events"].([]any)) != 1 {
		t.Fatalf("a repeated report was audited again: %s", r.Raw)
	}
	if bytes.Contains(ts.Log.Bytes(), []byte(key)) {
		t.Fatal("the server log holds the reported key")
	}
}

// scanTree plants keys in a file tree at known lines, beside look-alikes,
// a binary file, a .git directory and a few MB of random base62 text.
type scanTree struct {
	dir, random string
	// want is "relative path:line" of each planted key, in scan order.
	want []string
}

func plantTree(t *testing.T, a, b, c string) scanTree {
	t.Helper()
	dir := t.TempDir()
	write := func(rel string, data []byte) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	typo := []byte(a)
	typo[len(typo)-10] ^= 1
	write("app/.env", []byte("# settings\nDEBUG=1\nLATCHKEY_KEY="+a+"\n"))
	write("src/config.yml", []byte(strings.Repeat("x: 1\n", 9)+"key: \""+b+"\"\n\nother: '"+c+"'\n"))
	write("docs/README.md", []byte("A mistyped key is not a key: "+string(typo)+"\n"))
	write("bin/blob.dat", append([]byte{0, 1, 2}, []byte(a)...))
	write(".git/objects/ab/cdef", []byte(a))
	r := mrand.New(mrand.NewPCG(37, 14))
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	random := make([]byte, 3<<20)
	for i := range random {
		switch x := r.IntN(100); {
		case x == 0:
			random[i] = '\n'
		case x < 3:
			random[i] = '_'
		default:
			random[i] = alphabet[r.IntN(len(alphabet))]
		}
	}
	write("random/base62.txt", random)
	return scanTree{dir: dir, random: filepath.Join(dir, "random"),
		want: []string{"app/.env:3", "src/config.yml:10", "src/config.yml:12"}}
}

// scanCLI runs latchkey scan against ts with key in LATCHKEY_KEY.
func scanCLI(ts *testServer, key string, args ...string) (stdout, stderr string, err error) {
	var out, errOut syncBuffer
	getenv := func(k string) string { return map[string]string{"LATCHKEY_ADDR": ts.URL, "LATCHKEY_KEY": key}[k] }
	err = run(context.Background(), append([]string{"scan"}, args...), getenv, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestE2EScanFindsPlantedKeysAndRevokesOnlyTheTenantsOwn(t *testing.T) {
	ts := startServer(t)
	acme, globex := ts.mustTenant(t, "acme"), ts.mustTenant(t, "globex")
	_, a := ts.mustCreate(t, acme, map[string]any{})
	_, b := ts.mustCreate(t, acme, map[string]any{"prefix": "sk_live"})
	_, c := ts.mustCreate(t, globex, map[string]any{})
	tree := plantTree(t, a, b, c)

	// Offline: no server needed, and none is asked.
	out, errOut, err := scanCLI(&testServer{URL: "http://127.0.0.1:1"}, "", tree.dir)
	if !errors.Is(err, errAlreadyReported) || exitCode(err) != 1 {
		t.Fatalf("scan with keys: %v (exit %d), want exit 1\n%s", err, exitCode(err), errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(tree.want) {
		t.Fatalf("found %d keys, want %d:\n%s", len(lines), len(tree.want), out)
	}
	for i, w := range tree.want {
		if !strings.HasPrefix(lines[i], filepath.Join(tree.dir, filepath.FromSlash(strings.Split(w, ":")[0]))+":"+strings.Split(w, ":")[1]+": ") {
			t.Errorf("finding %d: %q, want %s", i, lines[i], w)
		}
	}
	for _, k := range []string{a, b, c} {
		if strings.Contains(out+errOut, k) {
			t.Fatal("scan printed a whole key")
		}
	}
	if !strings.Contains(lines[1], b[:len("sk_live_")+4]) || !strings.Contains(lines[1], "prefix sk_live") {
		t.Errorf("finding %q does not show the key's start and prefix", lines[1])
	}

	// A few MB of random base62 text hold none.
	if out, errOut, err := scanCLI(ts, "", tree.random); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("random text: %v\n%s%s", err, out, errOut)
	}

	// JSON names the same findings.
	out, _, _ = scanCLI(ts, "", "--json", tree.dir)
	var js struct {
		Findings []struct {
			Path   string `json:"path"`
			Line   int    `json:"line"`
			Prefix string `json:"prefix"`
			Start  string `json:"start"`
		} `json:"findings"`
		Skipped int `json:"files_skipped"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || len(js.Findings) != 3 || js.Findings[0].Line != 3 || js.Findings[0].Prefix != "lk" || js.Skipped != 1 {
		t.Fatalf("--json: %v\n%s", err, out)
	}

	// --revoke with acme's admin key: acme's keys are revoked, globex's
	// is not touched (nor is it named).
	out, _, err = scanCLI(ts, acme, "--revoke", tree.dir)
	if !errors.Is(err, errAlreadyReported) {
		t.Fatalf("scan --revoke: %v", err)
	}
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], " revoked key_") || !strings.Contains(lines[1], " revoked key_") || !strings.HasSuffix(lines[2], " unknown") {
		t.Fatalf("scan --revoke output:\n%s", out)
	}
	for k, want := range map[string]string{a: latchkey.CodeRevoked, b: latchkey.CodeRevoked, c: latchkey.CodeValid} {
		if got := ts.verifyCode(t, map[string]any{"key": k}); got != want {
			t.Errorf("after scan --revoke: %s, want %s", got, want)
		}
	}
	r := ts.call(t, "GET", "/v1/audit?action=key.leaked", acme, nil)
	if evs, _ := r.Body["events"].([]any); len(evs) != 2 {
		t.Fatalf("key.leaked audit: %s", r.Raw)
	}
	if r := ts.call(t, "GET", "/v1/audit?action=key.leaked", globex, nil); len(r.Body["events"].([]any)) != 0 {
		t.Fatalf("globex's audit has a leak: %s", r.Raw)
	}
}

func TestE2ELeakRoutesRefuseWhatTheyCannotTake(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	_, key := ts.mustCreate(t, admin, map[string]any{})
	// Without --leak-report-keys, GitHub's route is not there.
	if status, code, raw := postAlert(t, ts, "k", "c2ln", alertBody(t, key)); status != http.StatusNotFound || code != latchkey.ENotFound {
		t.Fatalf("without --leak-report-keys: %d %s, want 404 not_found", status, raw)
	}
	for _, body := range []string{"garbage", "null", `{"bogus": 1}`, `[]`, `{} {}`, `{"tokens": []}`} {
		if r := ts.call(t, "POST", "/v1/leaks", admin, body); r.Status != http.StatusBadRequest || r.errCode() != latchkey.EInvalid {
			t.Errorf("POST /v1/leaks %q: %d %s, want 400 invalid", body, r.Status, r.Raw)
		}
	}
	if r := ts.call(t, "POST", "/v1/leaks", "", map[string]any{"tokens": []string{key}}); r.Status != http.StatusUnauthorized {
		t.Fatalf("without an admin key: %d %s", r.Status, r.Raw)
	}
	reader := ts.call(t, "POST", "/v1/keys", admin, map[string]any{"name": "reader", "scopes": []string{"keys:read"}}).str("key")
	if r := ts.call(t, "POST", "/v1/leaks", reader, map[string]any{"tokens": []string{key}}); r.Status != http.StatusForbidden {
		t.Fatalf("with keys:read only: %d %s, want 403", r.Status, r.Raw)
	}
	if c := ts.verifyCode(t, map[string]any{"key": key}); c != latchkey.CodeValid {
		t.Fatalf("after refused reports: %s", c)
	}
}

// TestE2ELeakReportReachesEveryNodeOnPostgres: two nodes share a
// PostgreSQL database; a report taken by one is refused by the other at
// once, though the other had the key in its verify cache (the change feed,
// as for any revocation).
func TestE2ELeakReportReachesEveryNodeOnPostgres(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	dsn, master := pg.NewDatabase(t), newMasterKey(t)
	gh := newGitHubStandIn(t)
	a := startServer(t, withPostgres(t, dsn, master), withLeakReportKeys(gh.keyFile(t)))
	b := startServer(t, withPostgres(t, dsn, master))
	admin := a.mustTenant(t, "acme")
	_, key := a.mustCreate(t, admin, map[string]any{})
	if c := b.verifyCode(t, map[string]any{"key": key}); c != latchkey.CodeValid {
		t.Fatalf("node b before the report: %s", c)
	}
	body := alertBody(t, key)
	if status, _, raw := postAlert(t, a, gh.id, gh.sign(t, body), body); status != http.StatusOK {
		t.Fatalf("report: %d %s", status, raw)
	}
	deadline := time.Now().Add(time.Second)
	for {
		c := b.verifyCode(t, map[string]any{"key": key})
		if c == latchkey.CodeRevoked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node b a second after the report: %s, want REVOKED", c)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
