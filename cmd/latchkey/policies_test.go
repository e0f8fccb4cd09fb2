package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
)

// latchkey policies: create with every flag, list (presets included), get,
// update (a scope change reaches the key's next verification, a quota is
// cleared), delete refused while a key names the policy, and the keys'
// --policy and batch set_policy.
func TestCLIPolicies(t *testing.T) {
	n := startCLINode(t)
	r := n.ok(t, "policies", "create", "svc", "--description", "services", "--scopes", "data:read,data:write",
		"--rate", "100/m,tokens=10000/h:on_request", "--quota", "10000/30d", "--expires-after", "30d", "--max-concurrent", "4",
		"--ip-allow", "0.0.0.0/0")
	for _, want := range []string{"Created policy svc", "tokens 10000/1h on request", "10000 per 30d", "30d"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("create lacks %q:\n%s", want, r.stdout)
		}
	}
	if r := n.run(t, "policies", "create", "svc"); cliErrCode(r.err) != latchkey.EConflict {
		t.Fatalf("create twice: %v", r.err)
	}
	for _, args := range [][]string{
		{"policies", "create", "Bad Name"},
		{"policies", "create", "x", "--rate", "tokens=10/h:sometimes"},
		{"policies", "create", "x", "--rate", "=10/h"},
		{"policies", "create", "x", "--uses", "2", "--quota", "5/30d"},
		{"policies", "update", "svc"},
		{"policies", "update", "svc", "--clear-quota", "--quota", "5/30d"},
		{"owners", "set", "o", "--quota", "500"},
	} {
		if r := n.run(t, args...); cliErrCode(r.err) != latchkey.EInvalid {
			t.Errorf("latchkey %s: %v", strings.Join(args, " "), r.err)
		}
	}

	list := n.ok(t, "policies", "list")
	for _, want := range []string{"svc", "development", "production", "integration", "emergency", "yes"} {
		if !strings.Contains(list.stdout, want) {
			t.Fatalf("list lacks %q:\n%s", want, list.stdout)
		}
	}
	var page struct {
		Policies []struct {
			Name   string
			Preset bool
		}
	}
	if err := json.Unmarshal([]byte(n.ok(t, "policies", "list", "--all", "--json").stdout), &page); err != nil || len(page.Policies) != 5 {
		t.Fatalf("list --json: %v %+v", err, page)
	}
	if p := n.okJSON(t, "policies", "get", "production"); p["preset"] != true {
		t.Fatalf("get production: %v", p)
	}
	if r := n.run(t, "policies", "get", "nope"); cliErrCode(r.err) != latchkey.ENotFound {
		t.Fatalf("get nope: %v", r.err)
	}

	id, key := n.createKey(t, "--name", "svc key", "--policy", "svc")
	if code := n.verify(t, key, "--scope", "data:write"); code != latchkey.CodeValid {
		t.Fatalf("a key of svc writing: %s", code)
	}
	p := n.okJSON(t, "policies", "update", "svc", "--scopes", "data:read", "--clear-quota")
	if _, ok := p["quota"]; ok {
		t.Fatalf("update --clear-quota: %v", p)
	}
	if code := n.verify(t, key, "--scope", "data:write"); code != latchkey.CodeInsufficientScope {
		t.Fatalf("after narrowing svc: %s", code)
	}
	if r := n.run(t, "policies", "delete", "svc"); cliErrCode(r.err) != latchkey.EConflict {
		t.Fatalf("delete while a key names it: %v", r.err)
	}

	// batch set_policy moves the keys of svc to the production preset.
	r = n.ok(t, "keys", "batch", "set_policy", "--with-policy", "svc", "--policy", "production")
	if !strings.Contains(r.stdout, "1 key(s) matched, 1 policy set, 0 failed") {
		t.Fatalf("batch set_policy:\n%s", r.stdout)
	}
	if k := n.okJSON(t, "keys", "show", id); k["policy"] != "production" {
		t.Fatalf("after set_policy: %v", k["policy"])
	}
	n.ok(t, "keys", "update", id, "--policy", "")
	if k := n.okJSON(t, "keys", "show", id); k["policy"] != nil {
		t.Fatalf("after --policy \"\": %v", k["policy"])
	}
	if r := n.ok(t, "policies", "delete", "svc"); !strings.Contains(r.stdout, "Deleted policy svc") {
		t.Fatalf("delete:\n%s", r.stdout)
	}
	if r := n.run(t, "policies", "delete", "svc"); cliErrCode(r.err) != latchkey.ENotFound {
		t.Fatalf("delete again: %v", r.err)
	}
}

// latchkey owners: set shared limits (three keys of one owner share a
// window of two), get with usage totals, usage, list and delete.
func TestCLIOwners(t *testing.T) {
	n := startCLINode(t)
	var keys []string
	for _, name := range []string{"a", "b", "c"} {
		_, k := n.createKey(t, "--name", name, "--owner", "client 7")
		keys = append(keys, k)
	}
	r := n.ok(t, "owners", "set", "client 7", "--rate", "2/m", "--quota", "100000/30d", "--meta", "plan=pro")
	for _, want := range []string{"Set owner client 7", "2/1m", "100000 per 30d", "plan=pro"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("set lacks %q:\n%s", want, r.stdout)
		}
	}
	valid := 0
	for _, k := range keys {
		if n.verify(t, k) == latchkey.CodeValid {
			valid++
		}
	}
	if valid != 2 {
		t.Fatalf("%d of 3 verifications admitted under the owner's 2 a minute", valid)
	}

	r = n.ok(t, "owners", "get", "client 7", "--bucket", "minute")
	if !strings.Contains(r.stdout, "client 7") || !strings.Contains(r.stdout, "Usage from") {
		t.Fatalf("get:\n%s", r.stdout)
	}
	if u := n.okJSON(t, "owners", "usage", "client 7", "--bucket", "hour"); u["owner"] != "client 7" {
		t.Fatalf("usage: %v", u)
	}
	if u := n.okJSON(t, "owners", "usage", "nobody"); u["owner"] != "nobody" {
		t.Fatalf("usage of an owner without a record: %v", u)
	}
	if r := n.ok(t, "owners", "list"); !strings.Contains(r.stdout, "client 7") {
		t.Fatalf("list:\n%s", r.stdout)
	}
	if r := n.run(t, "owners", "get", "nobody"); cliErrCode(r.err) != latchkey.ENotFound {
		t.Fatalf("get nobody: %v", r.err)
	}
	if r := n.run(t, "owners", "usage", "x", "--bucket", "fortnight"); cliErrCode(r.err) != latchkey.EInvalid {
		t.Fatalf("usage --bucket fortnight: %v", r.err)
	}
	n.ok(t, "owners", "delete", "client 7")
	if r := n.run(t, "owners", "delete", "client 7"); cliErrCode(r.err) != latchkey.ENotFound {
		t.Fatalf("delete again: %v", r.err)
	}
}

// latchkey keys verify --limit spends named costs of an on-request window.
func TestCLIVerifyNamedCosts(t *testing.T) {
	n := startCLINode(t)
	_, key := n.createKey(t, "--name", "llm", "--rate", "tokens=10000/h:on_request")
	for i := range 9 {
		want := latchkey.CodeValid
		if i == 8 {
			want = latchkey.CodeRateLimited
		}
		if code := n.verify(t, key, "--limit", "tokens=1200"); code != want {
			t.Fatalf("verification %d of 1200 tokens: %s, want %s", i+1, code, want)
		}
	}
	if code := n.verify(t, key); code != latchkey.CodeValid {
		t.Fatalf("without a named cost: %s", code)
	}
	if r := n.run(t, "keys", "verify", key, "--limit", "tokens"); cliErrCode(r.err) != latchkey.EInvalid {
		t.Fatalf("--limit tokens: %v", r.err)
	}
}

// The --rate parser: plain windows as latchkey.ParseRates reads them,
// names and the on-request mark on top.
func TestParseRateFlag(t *testing.T) {
	rls, err := parseRateFlag("rate", "100/m, tokens=10000/h:on_request ,burst=5/s")
	if err != nil {
		t.Fatal(err)
	}
	if len(rls) != 3 || rls[0].Limit != 100 || rls[0].Apply != "" ||
		rls[1].Name != "tokens" || rls[1].Limit != 10000 || rls[1].Apply != latchkey.ApplyOnRequest ||
		rls[2].Name != "burst" || rls[2].Apply != "" {
		t.Fatalf("parsed %+v", rls)
	}
	if rls, err := parseRateFlag("rate", " "); err != nil || rls == nil || len(rls) != 0 {
		t.Fatalf("blank: %v %v", rls, err)
	}
	for _, bad := range []string{"x", "10/h:always", "=10/h", "a=10", "0/m"} {
		if _, err := parseRateFlag("rate", bad); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// --condition on keys and policies: the expression is checked when saved
// and decides each verification.
func TestCLIConditions(t *testing.T) {
	n := startCLINode(t)
	_, key := n.createKey(t, "--name", "agents only", "--condition", `resource.startsWith("agent:")`)
	if code := n.verify(t, key, "--resource", "agent:report"); code != latchkey.CodeValid {
		t.Fatalf("an agent resource: %s", code)
	}
	if code := n.verify(t, key, "--resource", "workflow:nightly"); code != latchkey.CodeConditionFailed {
		t.Fatalf("a workflow resource: %s, want %s", code, latchkey.CodeConditionFailed)
	}
	for _, args := range [][]string{
		{"keys", "create", "--name", "broken", "--condition", `request.method ==`},
		{"policies", "create", "broken", "--condition", `1 + 1`},
	} {
		if r := n.run(t, args...); cliErrCode(r.err) != latchkey.EInvalid {
			t.Fatalf("%v: %v, want invalid", args, r.err)
		}
	}
	n.ok(t, "policies", "create", "gets", "--condition", `request.method in ["GET", "HEAD"]`)
	if r := n.ok(t, "policies", "get", "gets", "--json"); !strings.Contains(r.stdout, `request.method in`) {
		t.Fatalf("the policy's condition is not kept:\n%s", r.stdout)
	}
}
