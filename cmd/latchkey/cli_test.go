package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// The CLI tests start a real node in this process and drive the client
// through run(), exactly as a shell would, with a fake environment. Every
// command's output is recorded; when a test ends, its node checks that no
// plaintext key appears anywhere but in the output of the commands that
// hand one out.

// cliNode is a running server and the record of every CLI run against it.
type cliNode struct {
	URL  string // http://127.0.0.1:port
	Addr string // 127.0.0.1:port
	Root string // the operator's root key
	log  *syncBuffer

	mu   sync.Mutex
	runs []cliRun
}

// cliRun is one CLI invocation and what it printed.
type cliRun struct {
	args           []string
	stdout, stderr string
	err            error
}

// shownOnce reports whether the run is one of the commands whose standard
// output carries a new plaintext key.
func (r cliRun) shownOnce() bool {
	if r.err != nil || len(r.args) < 2 {
		return false
	}
	if r.args[0] == "apply" {
		return true
	}
	switch r.args[0] + " " + r.args[1] {
	case "keys create", "keys generate", "keys rotate", "keys derive", "keys batch", "tenants create":
		return true
	}
	return false
}

// startCLINode starts a server as the end-to-end tests do (startServer,
// but on the wall clock, which CLI flags like --since count from) and checks, when the test ends, that no plaintext key was printed but by
// the commands that hand one out.
func startCLINode(t *testing.T, opts ...serverOption) *cliNode {
	t.Helper()
	ts := startServer(t, append([]serverOption{withRealClock()}, opts...)...)
	n := &cliNode{URL: ts.URL, Addr: strings.TrimPrefix(ts.URL, "http://"), Root: ts.Root, log: ts.Log}
	t.Cleanup(func() { n.checkPlaintextOnlyShownOnce(t) })
	return n
}

// env returns the environment a shell would give the CLI: this node's
// address and root key, changed by pairs of name and value.
func (n *cliNode) env(kv ...string) map[string]string {
	m := map[string]string{"LATCHKEY_ADDR": n.URL, "LATCHKEY_KEY": n.Root}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// run runs the CLI with the root key against this node.
func (n *cliNode) run(t *testing.T, args ...string) cliRun {
	t.Helper()
	return n.runEnv(t, n.env(), args...)
}

// runEnv runs the CLI with the given environment and records its output.
func (n *cliNode) runEnv(t *testing.T, vars map[string]string, args ...string) cliRun {
	t.Helper()
	return n.runStdin(t, vars, "", args...)
}

func (n *cliNode) runStdin(t *testing.T, vars map[string]string, stdin string, args ...string) cliRun {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, args, func(k string) string { return vars[k] }, strings.NewReader(stdin), &stdout, &stderr)
	r := cliRun{args: args, stdout: stdout.String(), stderr: stderr.String(), err: err}
	n.mu.Lock()
	n.runs = append(n.runs, r)
	n.mu.Unlock()
	return r
}

// ok runs the CLI with the root key and fails the test unless it succeeds.
func (n *cliNode) ok(t *testing.T, args ...string) cliRun {
	t.Helper()
	r := n.run(t, args...)
	if r.err != nil {
		t.Fatalf("latchkey %s: %v\nstderr: %s", strings.Join(args, " "), r.err, r.stderr)
	}
	return r
}

// okJSON runs a command with --json and decodes its output.
func (n *cliNode) okJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	r := n.ok(t, append(args, "--json")...)
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("latchkey %s --json: output is not a JSON object: %v\n%s", strings.Join(args, " "), err, r.stdout)
	}
	return m
}

// createKey creates a key and returns its id and plaintext.
func (n *cliNode) createKey(t *testing.T, args ...string) (id, key string) {
	t.Helper()
	m := n.okJSON(t, append([]string{"keys", "create"}, args...)...)
	id, _ = m["id"].(string)
	key, _ = m["key"].(string)
	if id == "" || key == "" {
		t.Fatalf("keys create --json: no id or key in %v", m)
	}
	return id, key
}

// verify runs `keys verify` for key and returns the code it reports,
// checking that the exit error agrees with it: none for VALID, else a
// denial carrying the same code that main need not print again.
func (n *cliNode) verify(t *testing.T, key string, args ...string) string {
	t.Helper()
	r := n.runEnv(t, n.env("LATCHKEY_KEY", ""), append([]string{"keys", "verify", key, "--json"}, args...)...)
	var v struct{ Code string }
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Code == "" {
		t.Fatalf("keys verify: no code in output %q (err %v, stderr %s)", r.stdout, r.err, r.stderr)
	}
	var denied *deniedError
	switch {
	case v.Code == latchkey.CodeValid && r.err != nil:
		t.Fatalf("keys verify answered VALID but failed: %v", r.err)
	case v.Code != latchkey.CodeValid && (!errors.As(r.err, &denied) || denied.Code != v.Code || !errors.Is(r.err, errAlreadyReported)):
		t.Fatalf("keys verify answered %s but returned %v", v.Code, r.err)
	}
	return v.Code
}

// cliErrCode is the code of a *latchkey.Error in err's chain ("" if none).
func cliErrCode(err error) string {
	var e *latchkey.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

var (
	// tokenShape matches anything that looks like a plaintext key; candidates
	// are confirmed with ParseToken.
	tokenShape = regexp.MustCompile(`[a-z0-9_]{1,16}_[0-9A-Za-z]{49}`)
	keyIDShape = regexp.MustCompile(`key_[0-9A-Z]{26}`)
)

// plaintexts returns the well-formed keys in s.
func plaintexts(s string) []string {
	var out []string
	for _, m := range tokenShape.FindAllString(s, -1) {
		// The match may have swallowed preceding identifier characters.
		for i := 0; i < len(m); i++ {
			if _, err := latchkey.ParseToken(m[i:]); err == nil {
				out = append(out, m[i:])
				break
			}
		}
	}
	return out
}

// checkPlaintextOnlyShownOnce fails the test if any plaintext key appears
// in any output but the standard output of the commands that issue keys.
func (n *cliNode) checkPlaintextOnlyShownOnce(t *testing.T) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	known := []string{n.Root}
	for _, r := range n.runs {
		if r.shownOnce() {
			known = append(known, plaintexts(r.stdout)...)
		}
	}
	for _, r := range n.runs {
		outputs := map[string]string{"stderr": r.stderr}
		if r.err != nil {
			outputs["error"] = r.err.Error()
		}
		if !r.shownOnce() {
			outputs["stdout"] = r.stdout
		}
		for where, text := range outputs {
			if found := plaintexts(text); len(found) > 0 {
				t.Errorf("latchkey %s: a plaintext key (%.8s…) appears in its %s", redactArgs(r.args, known), found[0], where)
			}
			for _, k := range known {
				if strings.Contains(text, k) {
					t.Errorf("latchkey %s: plaintext key %.8s… appears in its %s", redactArgs(r.args, known), k, where)
				}
			}
		}
	}
}

// redactArgs shows a command line without the keys passed on it, so that
// the test's own failure messages do not print them either.
func redactArgs(args, keys []string) string {
	out := slices.Clone(args)
	for i, a := range out {
		if slices.Contains(keys, a) {
			out[i] = a[:min(len(a), 8)] + "…"
		}
	}
	return strings.Join(out, " ")
}

func TestCLICreateShowList(t *testing.T) {
	n := startCLINode(t)
	created := n.ok(t, "keys", "create", "--name", "billing", "--owner", "acme", "--scopes", "read,data:write",
		"--env", "production", "--expires", "30d", "--ip", "10.0.0.0/8,192.0.2.1", "--meta", "team=pay")
	id := keyIDShape.FindString(created.stdout)
	keys := plaintexts(created.stdout)
	if id == "" || len(keys) != 1 {
		t.Fatalf("keys create printed id %q and %d keys, want one of each:\n%s", id, len(keys), created.stdout)
	}
	shown := n.okJSON(t, "keys", "show", id)
	n.createKey(t, "--name", "forever", "--owner", "other")
	for i := range 3 {
		n.createKey(t, "--name", "paged", "--owner", "pager", "--meta", "n="+string(rune('a'+i)))
	}

	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, r cliRun)
	}{
		{"CreatePrintsIDScopesAndKeyOnce", nil, func(t *testing.T, _ cliRun) {
			for _, want := range []string{id, "billing", "*:read", "data:write"} {
				if !strings.Contains(created.stdout, want) {
					t.Errorf("create output lacks %q:\n%s", want, created.stdout)
				}
			}
			if c := strings.Count(created.stdout, keys[0]); c != 1 {
				t.Errorf("create printed the key %d times, want once", c)
			}
		}},
		{"ShowPrintsEveryField", []string{"keys", "show", id}, func(t *testing.T, r cliRun) {
			exp, _ := time.Parse(time.RFC3339, shown["expires_at"].(string))
			for _, want := range append(slices.Clone(keyFields), id, "billing", "acme", "production",
				"10.0.0.0/8", "192.0.2.1/32", `"team":"pay"`, exp.UTC().Truncate(time.Second).Format(time.RFC3339)) {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("show output lacks %q:\n%s", want, r.stdout)
				}
			}
		}},
		{"ShowWithoutExpiryPrintsNever", []string{"keys", "list", "--owner", "other", "--json"}, func(t *testing.T, r cliRun) {
			var l struct{ Keys []struct{ ID string } }
			if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || len(l.Keys) != 1 {
				t.Fatalf("list --owner other: %v %s", err, r.stdout)
			}
			s := n.ok(t, "keys", "show", l.Keys[0].ID)
			if !regexp.MustCompile(`(?m)^expires_at:\s+never$`).MatchString(s.stdout) {
				t.Errorf("show of a key without expiry:\n%s", s.stdout)
			}
		}},
		{"ListTableHasKey", []string{"keys", "list"}, func(t *testing.T, r cliRun) {
			lines := strings.Split(r.stdout, "\n")
			if got := strings.Fields(lines[0]); !slices.Equal(got, []string{"ID", "NAME", "OWNER", "ENV", "STATE", "SCOPES", "EXPIRES", "CREATED"}) {
				t.Errorf("header = %q", got)
			}
			row := ""
			for _, l := range lines {
				if strings.HasPrefix(l, id) {
					row = l
				}
			}
			if f := strings.Fields(row); len(f) != 8 || f[1] != "billing" || f[2] != "acme" || f[3] != "production" || f[4] != "active" || f[5] != "*:read,data:write" {
				t.Errorf("row for %s = %q", id, row)
			}
		}},
		{"ListJSONParses", []string{"keys", "list", "--json"}, func(t *testing.T, r cliRun) {
			var l struct {
				Keys       []latchkey.Key `json:"keys"`
				NextCursor *string        `json:"next_cursor"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || l.NextCursor == nil {
				t.Fatalf("list --json: %v\n%s", err, r.stdout)
			}
			if !slices.ContainsFunc(l.Keys, func(k latchkey.Key) bool { return k.ID == id }) {
				t.Errorf("list --json lacks %s", id)
			}
		}},
		{"ListFiltersByOwner", []string{"keys", "list", "--owner", "acme", "--json"}, func(t *testing.T, r cliRun) {
			var l struct{ Keys []latchkey.Key }
			if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
				t.Fatal(err)
			}
			if len(l.Keys) != 1 || l.Keys[0].ID != id {
				t.Errorf("list --owner acme = %d keys, want only %s", len(l.Keys), id)
			}
		}},
		{"ListAllFollowsCursor", []string{"keys", "list", "--owner", "pager", "--limit", "1", "--all", "--json"}, func(t *testing.T, r cliRun) {
			var l struct {
				Keys       []latchkey.Key
				NextCursor string `json:"next_cursor"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
				t.Fatal(err)
			}
			if len(l.Keys) != 3 || l.NextCursor != "" {
				t.Errorf("list --limit 1 --all = %d keys, next %q; want 3 and no cursor", len(l.Keys), l.NextCursor)
			}
			table := n.ok(t, "keys", "list", "--owner", "pager", "--limit", "1", "--all")
			if rows := strings.Count(strings.TrimSpace(table.stdout), "\n"); rows != 3 {
				t.Errorf("list --all table has %d rows, want 3:\n%s", rows, table.stdout)
			}
		}},
		{"ListOnePageHintsAtCursor", []string{"keys", "list", "--owner", "pager", "--limit", "1"}, func(t *testing.T, r cliRun) {
			page := n.okJSON(t, "keys", "list", "--owner", "pager", "--limit", "1")
			next, _ := page["next_cursor"].(string)
			if next == "" {
				t.Fatal("a one-key page of three has no next_cursor")
			}
			if rows := strings.Count(strings.TrimSpace(r.stdout), "\n"); rows != 1 {
				t.Errorf("one page has %d rows, want 1:\n%s", rows, r.stdout)
			}
			if !strings.Contains(r.stderr, next) {
				t.Errorf("no hint with the cursor %q on stderr: %q", next, r.stderr)
			}
		}},
		{"FlagsBeforeOrAfterArguments", []string{"keys", "show", "--json", id}, func(t *testing.T, r cliRun) {
			after := n.ok(t, "keys", "show", id, "--json")
			var a, b map[string]any
			if json.Unmarshal([]byte(r.stdout), &a) != nil || json.Unmarshal([]byte(after.stdout), &b) != nil || a["id"] != id || b["id"] != id {
				t.Errorf("show --json ID and show ID --json differ:\n%s\n%s", r.stdout, after.stdout)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r cliRun
			if tt.args != nil {
				r = n.ok(t, tt.args...)
			}
			tt.check(t, r)
		})
	}
}

func TestCLIUpdateChangesOnlyGivenFields(t *testing.T) {
	n := startCLINode(t)
	tests := []struct {
		name string
		args []string
		want map[string]any // changed fields; a nil value means the field is gone
	}{
		{"RenameKeepsEverythingElse", []string{"--name", "renamed"}, map[string]any{"name": "renamed"}},
		{"ScopesReplacedOthersKept", []string{"--scopes", "data:read", "--scopes", "agent:activate"}, map[string]any{"scopes": []string{"data:read", "agent:activate"}}},
		{"EmptyResourcesClears", []string{"--resources", ""}, map[string]any{"resources": []string{}}},
		{"NoExpiryRemovesExpiry", []string{"--no-expiry"}, map[string]any{"expires_at": nil}},
		{"ExpiresAtSetsTime", []string{"--expires-at", "2031-01-02T03:04:05Z"}, map[string]any{"expires_at": "2031-01-02T03:04:05Z"}},
		{"NoIPClearsAllowlist", []string{"--no-ip"}, map[string]any{"ip_allow": []string{}}},
		{"MetaReplaced", []string{"--meta", "a=b", "--owner", "bob"}, map[string]any{"meta": map[string]any{"a": "b"}, "owner": "bob"}},
		{"EnvironmentOnly", []string{"--env", "staging"}, map[string]any{"environment": "staging"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, _ := n.createKey(t, "--name", "orig", "--owner", "alice", "--scopes", "data:*", "--resources", "agent:report",
				"--env", "production", "--expires", "30d", "--ip", "10.0.0.0/8", "--meta", "team=pay")
			before := n.okJSON(t, "keys", "show", id)
			args := append([]string{"keys", "update", id}, tt.args...)
			n.okJSON(t, args...)
			after := n.okJSON(t, "keys", "show", id)
			fields := map[string]bool{}
			for f := range before {
				fields[f] = true
			}
			for f := range after {
				fields[f] = true
			}
			for f := range fields {
				if f == "updated_at" {
					continue
				}
				want, changed := tt.want[f]
				if !changed {
					want = before[f]
				}
				if got := after[f]; !reflect.DeepEqual(jsonValue(t, got), jsonValue(t, want)) {
					t.Errorf("%s = %v, want %v", f, got, want)
				}
			}
		})
	}
}

// jsonValue normalises v to what encoding/json decodes it to.
func jsonValue(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCLIRotateKeepsOldKeyDuringGrace(t *testing.T) {
	n := startCLINode(t)
	id, oldKey := n.createKey(t, "--name", "svc", "--scopes", "data:read")
	r := n.ok(t, "keys", "rotate", id, "--grace", "1h")
	var newKey string
	for _, k := range plaintexts(r.stdout) {
		if k != oldKey {
			newKey = k
		}
	}
	if newKey == "" {
		t.Fatalf("rotate printed no new key:\n%s", r.stdout)
	}
	old := n.okJSON(t, "keys", "show", id)
	graceUntil, err := time.Parse(time.RFC3339, old["grace_until"].(string))
	if err != nil {
		t.Fatalf("old key's grace_until: %v", err)
	}
	newID, _ := old["rotated_to"].(string)
	third := n.okJSON(t, "keys", "rotate", newID, "--grace", "0", "--expires", "90d")
	thirdKey, _ := third["key"].(string)

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"PrintsNewKeyOnceAndWhenOldStops", func(t *testing.T) {
			if c := strings.Count(r.stdout, newKey); c != 1 {
				t.Errorf("rotate printed the new key %d times", c)
			}
			if strings.Contains(r.stdout, oldKey) {
				t.Error("rotate printed the old key")
			}
			if want := graceUntil.UTC().Truncate(time.Second).Format(time.RFC3339); !strings.Contains(r.stdout, want) {
				t.Errorf("rotate output lacks grace_until %s:\n%s", want, r.stdout)
			}
			if d := time.Until(graceUntil); d < 55*time.Minute || d > time.Hour {
				t.Errorf("grace_until is %v away, want about 1h", d)
			}
		}},
		{"OldKeyVerifiesDuringGrace", func(t *testing.T) {
			if c := n.verify(t, oldKey, "--scope", "data:read"); c != latchkey.CodeValid {
				t.Errorf("old key = %s", c)
			}
		}},
		{"ZeroGraceEndsPredecessorAtOnce", func(t *testing.T) {
			if c := n.verify(t, newKey); c != latchkey.CodeRevoked {
				t.Errorf("key rotated with --grace 0 = %s, want REVOKED", c)
			}
		}},
		{"NewKeyVerifies", func(t *testing.T) {
			if c := n.verify(t, thirdKey, "--scope", "data:read"); c != latchkey.CodeValid {
				t.Errorf("new key = %s", c)
			}
		}},
		{"ExpiresSetsSuccessorLifetime", func(t *testing.T) {
			exp, err := time.Parse(time.RFC3339, third["expires_at"].(string))
			if d := time.Until(exp); err != nil || d < 89*24*time.Hour || d > 90*24*time.Hour {
				t.Errorf("successor expires in %v (%v), want about 90d", d, err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}
}

func TestCLISuspendResumeRevoke(t *testing.T) {
	n := startCLINode(t)
	id, key := n.createKey(t, "--name", "worker")
	// Steps run in order on one key; each names the behaviour it shows.
	steps := []struct {
		name       string
		args       []string
		wantErr    string // latchkey error code of the command
		wantVerify string
	}{
		{"SuspendDeniesKey", []string{"keys", "suspend", id, "--reason", "audit"}, "", latchkey.CodeSuspended},
		{"ResumeRestoresKey", []string{"keys", "resume", id}, "", latchkey.CodeValid},
		{"TimedSuspensionDeniesKey", []string{"keys", "suspend", id, "--for", "2h"}, "", latchkey.CodeSuspended},
		{"ResumeEndsTimedSuspension", []string{"keys", "resume", id}, "", latchkey.CodeValid},
		{"RevokeWithReasonAfterID", []string{"keys", "revoke", id, "--reason", "leaked"}, "", latchkey.CodeRevoked},
		{"ResumeOfRevokedKeyConflicts", []string{"keys", "resume", id}, latchkey.EConflict, latchkey.CodeRevoked},
		{"SuspendOfRevokedKeyConflicts", []string{"keys", "suspend", id}, latchkey.EConflict, latchkey.CodeRevoked},
		{"UnknownKeyNotFound", []string{"keys", "revoke", "key_00000000000000000000000000"}, latchkey.ENotFound, latchkey.CodeRevoked},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r := n.run(t, st.args...)
			if got := cliErrCode(r.err); got != st.wantErr || (st.wantErr == "" && r.err != nil) {
				t.Fatalf("error = %v (code %q), want code %q", r.err, got, st.wantErr)
			}
			if c := n.verify(t, key); c != st.wantVerify {
				t.Errorf("verify = %s, want %s", c, st.wantVerify)
			}
		})
	}

	t.Run("TimedSuspensionShowsUntil", func(t *testing.T) {
		id, _ := n.createKey(t, "--name", "paused")
		k := n.okJSON(t, "keys", "suspend", id, "--for", "2h", "--reason", "maintenance")
		until, err := time.Parse(time.RFC3339, k["suspended_until"].(string))
		if d := time.Until(until); err != nil || d < 119*time.Minute || d > 2*time.Hour {
			t.Errorf("suspended_until is %v away (%v), want about 2h", d, err)
		}
		if k["state"] != string(latchkey.StateSuspended) || k["state_reason"] != "maintenance" {
			t.Errorf("state %v, reason %v", k["state"], k["state_reason"])
		}
		show := n.ok(t, "keys", "show", id)
		if !strings.Contains(show.stdout, until.UTC().Truncate(time.Second).Format(time.RFC3339)) {
			t.Errorf("show lacks suspended_until:\n%s", show.stdout)
		}
	})
}

func TestCLIDerive(t *testing.T) {
	n := startCLINode(t)
	parent, _ := n.createKey(t, "--name", "agent", "--scopes", "data:read,data:write", "--expires", "7d")
	tests := []struct {
		name      string
		args      []string
		wantErr   string
		wantUsage bool
		verify    map[string]string // scope → code for the child key
	}{
		{"ChildWithinParentVerifies", []string{"--name", "reader", "--scopes", "data:read", "--expires", "1d"}, "", false,
			map[string]string{"data:read": latchkey.CodeValid, "data:write": latchkey.CodeInsufficientScope}},
		{"ScopeBeyondParentForbidden", []string{"--name", "greedy", "--scopes", "keys:read"}, latchkey.EForbidden, false, nil},
		{"ExpiryBeyondParentForbidden", []string{"--name", "late", "--expires", "30d"}, latchkey.EForbidden, false, nil},
		{"NameRequired", []string{"--scopes", "data:read"}, "", true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"keys", "derive", parent}, tt.args...)
			if tt.wantErr != "" || tt.wantUsage {
				r := n.run(t, args...)
				if tt.wantUsage && !errors.Is(r.err, errUsageShown) {
					t.Fatalf("error = %v, want usage", r.err)
				}
				if !tt.wantUsage && cliErrCode(r.err) != tt.wantErr {
					t.Fatalf("error = %v, want code %s", r.err, tt.wantErr)
				}
				return
			}
			r := n.ok(t, args...)
			keys := plaintexts(r.stdout)
			if len(keys) != 1 {
				t.Fatalf("derive printed %d keys:\n%s", len(keys), r.stdout)
			}
			for scope, want := range tt.verify {
				if got := n.verify(t, keys[0], "--scope", scope); got != want {
					t.Errorf("child with scope %s = %s, want %s", scope, got, want)
				}
			}
			kids := n.okJSON(t, "keys", "list", "--parent", parent)
			if l, _ := kids["keys"].([]any); len(l) != 1 {
				t.Errorf("list --parent = %d keys, want 1", len(l))
			}
		})
	}
}

func TestCLITenants(t *testing.T) {
	n := startCLINode(t)
	created := n.ok(t, "tenants", "create", "acme", "--name", "Acme Corp")
	keys := plaintexts(created.stdout)
	if len(keys) != 1 {
		t.Fatalf("tenants create printed %d keys:\n%s", len(keys), created.stdout)
	}
	admin := keys[0]
	asAdmin := n.env("LATCHKEY_KEY", admin)
	unreachable := closedAddr(t)

	tests := []struct {
		name    string
		vars    map[string]string
		args    []string
		wantErr string
		check   func(t *testing.T, r cliRun)
	}{
		{"ListShowsTenant", n.env(), []string{"tenants", "list"}, "", func(t *testing.T, r cliRun) {
			if !regexp.MustCompile(`(?m)^acme\s+Acme Corp\s+\S+$`).MatchString(r.stdout) {
				t.Errorf("tenants list:\n%s", r.stdout)
			}
		}},
		{"ListJSONParses", n.env(), []string{"tenants", "list", "--json", "--all", "--limit", "1"}, "", func(t *testing.T, r cliRun) {
			var l struct{ Tenants []latchkey.Tenant }
			if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
				t.Fatal(err)
			}
			ids := []string{}
			for _, tn := range l.Tenants {
				ids = append(ids, tn.ID)
			}
			if !slices.Equal(ids, []string{"acme", latchkey.OperatorTenant}) {
				t.Errorf("tenants = %v", ids)
			}
		}},
		{"AdminKeyWorksInItsTenant", asAdmin, []string{"keys", "create", "--name", "first", "--json"}, "", func(t *testing.T, r cliRun) {
			var k latchkey.Key
			if err := json.Unmarshal([]byte(r.stdout), &k); err != nil || k.Tenant != "acme" {
				t.Errorf("key made with the tenant's admin key: tenant %q (%v)", k.Tenant, err)
			}
		}},
		{"DuplicateConflicts", n.env(), []string{"tenants", "create", "acme"}, latchkey.EConflict, nil},
		{"TenantAdminCannotCreateTenants", asAdmin, []string{"tenants", "create", "other"}, latchkey.EForbidden, nil},
		{"BadIDInvalidBeforeRequest", n.env("LATCHKEY_ADDR", unreachable), []string{"tenants", "create", "Not An ID"}, latchkey.EInvalid, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := n.runEnv(t, tt.vars, tt.args...)
			if got := cliErrCode(r.err); got != tt.wantErr || (tt.wantErr == "" && r.err != nil) {
				t.Fatalf("error = %v, want code %q\nstderr: %s", r.err, tt.wantErr, r.stderr)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

// closedAddr returns a loopback address on which nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestCLIClientErrors(t *testing.T) {
	n := startCLINode(t)
	down := closedAddr(t)
	_, port, _ := net.SplitHostPort(n.Addr)
	unknown, _ := latchkey.GenerateToken("lk", nil)

	tests := []struct {
		name       string
		vars       map[string]string
		args       []string
		wantErr    string // latchkey error code
		wantUsage  bool
		wantInErr  string // data the error must carry, such as a URL
		wantStderr string
	}{
		{"UnreachableServerNamesURL", n.env(), []string{"keys", "list", "--server", "http://" + down}, latchkey.EUnavailable, false, "http://" + down, ""},
		{"AddrWithoutSchemeMeansHTTP", n.env("LATCHKEY_ADDR", down), []string{"keys", "list"}, latchkey.EUnavailable, false, "http://" + down, ""},
		{"ColonPortMeansLoopback", n.env("LATCHKEY_ADDR", ":"+port), []string{"keys", "list"}, "", false, "", ""},
		{"MissingKeyBeforeRequest", n.env("LATCHKEY_KEY", "", "LATCHKEY_ADDR", down), []string{"keys", "list"}, latchkey.EUnauthenticated, false, "", ""},
		{"UnknownKeyUnauthenticated", n.env("LATCHKEY_KEY", unknown.Reveal()), []string{"keys", "list"}, latchkey.EUnauthenticated, false, "", ""},
		{"KeyFlagOverridesEnv", n.env("LATCHKEY_KEY", unknown.Reveal()), []string{"keys", "list", "--key", n.Root}, "", false, "", ""},
		{"ServerErrorKeepsCode", n.env(), []string{"keys", "show", "key_00000000000000000000000000"}, latchkey.ENotFound, false, "", ""},
		{"BadDurationInvalidBeforeRequest", n.env("LATCHKEY_ADDR", down), []string{"keys", "create", "--name", "x", "--expires", "3fortnights"}, latchkey.EInvalid, false, "--expires", ""},
		{"BadGraceInvalid", n.env("LATCHKEY_ADDR", down), []string{"keys", "rotate", "key_1", "--grace", "soon"}, latchkey.EInvalid, false, "--grace", ""},
		{"SuspendForWithoutUnitInvalid", n.env("LATCHKEY_ADDR", down), []string{"keys", "suspend", "key_1", "--for", "2"}, latchkey.EInvalid, false, "--for", ""},
		{"BadTimeoutInvalid", n.env("LATCHKEY_ADDR", down), []string{"keys", "list", "--timeout", "forever"}, latchkey.EInvalid, false, "--timeout", ""},
		{"BadExpiresAtInvalid", n.env("LATCHKEY_ADDR", down), []string{"keys", "create", "--name", "x", "--expires-at", "tomorrow"}, latchkey.EInvalid, false, "--expires-at", ""},
		{"ExpiresWithNoExpiryInvalid", n.env("LATCHKEY_ADDR", down), []string{"keys", "update", "key_1", "--expires", "1d", "--no-expiry"}, latchkey.EInvalid, false, "", ""},
		{"BadIPInvalid", n.env("LATCHKEY_ADDR", down), []string{"keys", "create", "--name", "x", "--ip", "10.0.0.0/33"}, latchkey.EInvalid, false, "--ip", ""},
		{"BadStateInvalid", n.env("LATCHKEY_ADDR", down), []string{"keys", "list", "--state", "sleeping"}, latchkey.EInvalid, false, "--state", ""},
		{"BadServerURLInvalid", n.env(), []string{"keys", "list", "--server", "ftp://example.com"}, latchkey.EInvalid, false, "--server", ""},
		{"ServerRejectsBadScope", n.env(), []string{"keys", "create", "--name", "x", "--scopes", "Not A Scope"}, latchkey.EInvalid, false, "", ""},
		{"UnknownSubcommandShowsUsage", n.env(), []string{"keys", "frobnicate"}, "", true, "", "frobnicate"},
		{"GroupWithoutCommandShowsUsage", n.env(), []string{"tenants"}, "", true, "", "create"},
		{"MissingIDShowsUsage", n.env(), []string{"keys", "show"}, "", true, "", "ID"},
		{"ExtraArgumentShowsUsage", n.env(), []string{"keys", "show", "key_1", "key_2"}, "", true, "", "key_2"},
		{"UnknownFlagShowsUsage", n.env(), []string{"keys", "list", "--bogus"}, "", true, "", "bogus"},
		{"CreateWithoutNameShowsUsage", n.env(), []string{"keys", "create"}, "", true, "", "-name"},
		{"UpdateWithoutFieldsShowsUsage", n.env(), []string{"keys", "update", "key_1"}, "", true, "", "-no-expiry"},
		{"MetaWithoutEqualsShowsUsage", n.env(), []string{"keys", "create", "--name", "x", "--meta", "team"}, "", true, "", "-meta"},
		{"HelpPrintsFlags", n.env(), []string{"keys", "create", "-h"}, "", false, "", "-expires-at"},
		{"HelpOnVerifyPrintsFlags", n.env(), []string{"keys", "verify", "--help"}, "", false, "", "-scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := n.runEnv(t, tt.vars, tt.args...)
			switch {
			case tt.wantUsage:
				if !errors.Is(r.err, errUsageShown) {
					t.Fatalf("error = %v, want usage", r.err)
				}
			case cliErrCode(r.err) != tt.wantErr || (tt.wantErr == "" && r.err != nil):
				t.Fatalf("error = %v (code %q), want code %q\nstderr: %s", r.err, cliErrCode(r.err), tt.wantErr, r.stderr)
			}
			if tt.wantInErr != "" && !strings.Contains(r.err.Error(), tt.wantInErr) {
				t.Errorf("error %q does not mention %q", r.err, tt.wantInErr)
			}
			if tt.wantStderr != "" && !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantStderr, r.stderr)
			}
		})
	}
}

func TestCLIVerify(t *testing.T) {
	n := startCLINode(t)
	_, key := n.createKey(t, "--name", "reporter", "--scopes", "data:read", "--resources", "agent:report-generator", "--ip", "192.0.2.0/24")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"ValidWithScopeResourceAndIP", []string{"--scope", "data:read", "--resource", "agent:report-generator", "--ip", "192.0.2.7"}, latchkey.CodeValid},
		{"RepeatedAndCommaScopes", []string{"--scope", "data:read,data:read", "--scope", "data:read", "--ip", "192.0.2.7"}, latchkey.CodeValid},
		{"MissingScope", []string{"--scope", "data:read,data:write", "--ip", "192.0.2.7"}, latchkey.CodeInsufficientScope},
		{"OtherResource", []string{"--resource", "agent:other", "--ip", "192.0.2.7"}, latchkey.CodeResourceNotAllowed},
		{"AddressOutsideAllowlist", []string{"--ip", "198.51.100.1"}, latchkey.CodeIPNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := n.verify(t, key, tt.args...); got != tt.want {
				t.Errorf("verify = %s, want %s", got, tt.want)
			}
		})
	}
	t.Run("MalformedKey", func(t *testing.T) {
		if got := n.verify(t, "lk_not-a-key"); got != latchkey.CodeMalformed {
			t.Errorf("verify = %s, want MALFORMED", got)
		}
	})
	t.Run("KeyFromStdin", func(t *testing.T) {
		r := n.runStdin(t, n.env("LATCHKEY_KEY", ""), key+"\n", "keys", "verify", "-", "--ip", "192.0.2.7")
		if r.err != nil || !strings.HasPrefix(r.stdout, latchkey.CodeValid+"\n") {
			t.Errorf("verify - = %v:\n%s", r.err, r.stdout)
		}
	})
	t.Run("TextOutputStartsWithCode", func(t *testing.T) {
		r := n.runEnv(t, n.env("LATCHKEY_KEY", ""), "keys", "verify", key, "--scope", "data:write", "--ip", "192.0.2.7")
		var denied *deniedError
		if !errors.As(r.err, &denied) || denied.Code != latchkey.CodeInsufficientScope {
			t.Fatalf("error = %v, want a denial", r.err)
		}
		if first, _, _ := strings.Cut(r.stdout, "\n"); first != latchkey.CodeInsufficientScope || !strings.Contains(r.stdout, "data:write") {
			t.Errorf("verify output:\n%s", r.stdout)
		}
	})
}

// TestCLIPrintsPlaintextKeysOnlyWhereShownOnce runs every command that
// handles a key, including failing ones, and then relies on the node's
// check: no key may appear outside the output of the command that issued
// it. It also checks that each issuing command prints its key exactly once.
func TestCLIPrintsPlaintextKeysOnlyWhereShownOnce(t *testing.T) {
	n := startCLINode(t)
	var issued []string
	once := func(args ...string) string {
		t.Helper()
		r := n.ok(t, args...)
		keys := plaintexts(r.stdout)
		if len(keys) != 1 || strings.Count(r.stdout, keys[0]) != 1 {
			t.Fatalf("latchkey %s printed %d keys; want one, once", args[0]+" "+args[1], len(keys))
		}
		issued = append(issued, keys[0])
		return keys[0]
	}
	once("tenants", "create", "acme")
	key := once("keys", "create", "--name", "a", "--scopes", "data:read")
	jsonRun := n.ok(t, "keys", "create", "--name", "b", "--json")
	if ks := plaintexts(jsonRun.stdout); len(ks) != 1 {
		t.Fatalf("create --json printed %d keys", len(ks))
	}
	ids := keyIDShape.FindAllString(n.ok(t, "keys", "list").stdout, -1)
	var aID string
	for _, id := range ids {
		if m := n.okJSON(t, "keys", "show", id); m["name"] == "a" {
			aID = id
		}
	}
	once("keys", "derive", aID, "--name", "child")
	once("keys", "rotate", aID, "--grace", "1h")

	// Everything below must print no key at all.
	for _, k := range issued {
		n.verify(t, k)
		n.runEnv(t, n.env("LATCHKEY_KEY", ""), "keys", "verify", k, "--scope", "keys:write")
		n.runEnv(t, n.env("LATCHKEY_KEY", k), "keys", "list")
		n.runEnv(t, n.env("LATCHKEY_KEY", k), "keys", "show", aID, "--json")
		n.runEnv(t, n.env("LATCHKEY_KEY", k, "LATCHKEY_ADDR", closedAddr(t)), "keys", "list")
		n.runEnv(t, n.env("LATCHKEY_KEY", k), "keys", "create", "-h")
		n.runEnv(t, n.env("LATCHKEY_KEY", k), "tenants", "list")
	}
	n.run(t, "keys", "list", "--json", "--all")
	n.run(t, "keys", "update", aID, "--name", "renamed", "--json")
	n.run(t, "keys", "revoke", aID, "--reason", "leaked")
	n.runEnv(t, n.env("LATCHKEY_KEY", ""), "keys", "verify", key[:len(key)-1], "--json")
	n.runEnv(t, n.env("LATCHKEY_KEY", ""), "keys", "verify", key, "--scope", "Bad Scope")
	n.run(t, "keys", "list", "--key", key)
	n.run(t, "keys", "list", "--key", key+"x")
	if len(issued) < 4 {
		t.Fatalf("only %d keys issued; the check would prove little", len(issued))
	}
	// startCLINode's cleanup now checks every output recorded above.
}

func TestNormalizeServer(t *testing.T) {
	tests := []struct {
		in, want string // want "" means EInvalid
	}{
		{":9000", "http://127.0.0.1:9000"},
		{"127.0.0.1:9000", "http://127.0.0.1:9000"},
		{"0.0.0.0:9000", "http://127.0.0.1:9000"},
		{"[::]:9000", "http://[::1]:9000"},
		{"localhost:8080", "http://localhost:8080"},
		{"lk.example.com", "http://lk.example.com"},
		{"https://lk.example.com/", "https://lk.example.com"},
		{"http://proxy.example.com/latchkey/", "http://proxy.example.com/latchkey"},
		{" http://127.0.0.1:8080 ", "http://127.0.0.1:8080"},
		{"", ""},
		{"ftp://example.com", ""},
		{"http://", ""},
		{"http://h/?q=1", ""},
		{"http://user:pw@h", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := normalizeServer(tt.in)
			if tt.want == "" {
				if cliErrCode(err) != latchkey.EInvalid {
					t.Fatalf("normalizeServer(%q) = %q, %v; want invalid", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("normalizeServer(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseArgsAllowsFlagsAnywhere(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantPos    []string
		wantReason string
		wantJSON   bool
	}{
		{"FlagsAfterArgument", []string{"key_1", "--reason", "leaked", "--json"}, []string{"key_1"}, "leaked", true},
		{"FlagsBeforeArgument", []string{"--json", "--reason=x", "key_1"}, []string{"key_1"}, "x", true},
		{"FlagsBetweenArguments", []string{"a", "--reason", "r", "b"}, []string{"a", "b"}, "r", false},
		{"DashIsAnArgument", []string{"-", "--json"}, []string{"-"}, "", true},
		{"DoubleDashEndsFlags", []string{"a", "--", "--json", "-b"}, []string{"a", "--json", "-b"}, "", false},
		{"NoArguments", []string{"--json"}, nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			reason := fs.String("reason", "", "")
			js := fs.Bool("json", false, "")
			pos, err := parseArgs(fs, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pos, tt.wantPos) || *reason != tt.wantReason || *js != tt.wantJSON {
				t.Errorf("parseArgs(%q) = %q reason %q json %v", tt.args, pos, *reason, *js)
			}
		})
	}
}
