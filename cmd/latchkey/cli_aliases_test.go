package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestAliasRewriteFlags: alias flags are renamed as the flag package would
// read them, and nothing else is.
func TestAliasRewriteFlags(t *testing.T) {
	flags := map[string]cmdFlag{"name": {"name", "string"}, "owner": {"owner", "string"}, "json": {"json", ""}}
	for _, c := range []struct{ in, want string }{
		{"--client acme", "--owner acme"},
		{"-client acme", "-owner acme"},
		{"--client=acme --json", "--owner=acme --json"},
		{"--client-id acme", "--owner acme"},
		// A value that looks like an alias is a value.
		{"--name --client --client x", "--name --client --owner x"},
		{"--name=a --json --client x", "--name=a --json --owner x"},
		// Positionals anywhere, "-" among them; nothing after "--".
		{"key_1 - --client x -- --client y", "key_1 - --owner x -- --client y"},
		{"--clients x", "--clients x"},
		{"--client", "--owner"},
	} {
		got := strings.Join(rewriteFlagAliases(strings.Fields(c.in), ownerFlagAliases, flags), " ")
		if got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
}

// TestCLIAliases: the seeds' words behave exactly as the commands they
// stand for: output, --json, usage errors, refusals and exit status.
func TestCLIAliases(t *testing.T) {
	n := startCLINode(t)

	t.Run("GenerateIsCreate", func(t *testing.T) {
		gen := n.ok(t, "keys", "generate", "--name", "gen", "--client", "acme", "--scopes", "read")
		cre := n.ok(t, "keys", "create", "--name", "cre", "--owner", "acme", "--scopes", "read")
		if len(plaintexts(gen.stdout)) != 1 || !strings.HasPrefix(gen.stdout, "Created key key_") {
			t.Fatalf("keys generate printed:\n%s", gen.stdout)
		}
		// The same text but for the id, the name and the key.
		norm := func(s, name string) string {
			s = keyIDShape.ReplaceAllString(s, "ID")
			s = strings.ReplaceAll(s, plaintexts(s)[0], "KEY")
			return strings.ReplaceAll(s, "("+name+")", "(NAME)")
		}
		if norm(gen.stdout, "gen") != norm(cre.stdout, "cre") {
			t.Errorf("keys generate printed\n%s\nkeys create printed\n%s", gen.stdout, cre.stdout)
		}
		m := n.okJSON(t, "keys", "generate", "--name", "json", "--client-id", "acme")
		if m["owner"] != "acme" || m["key"] == nil || m["name"] != "json" {
			t.Errorf("keys generate --json: %v", m)
		}
	})

	t.Run("ListClientIsListOwner", func(t *testing.T) {
		n.createKey(t, "--name", "other", "--owner", "other")
		for _, form := range [][]string{{"--client", "acme"}, {"--client=acme"}, {"--client-id", "acme"}} {
			for _, js := range [][]string{nil, {"--json"}} {
				args := append(append([]string{"keys", "list"}, form...), js...)
				got := n.ok(t, args...)
				want := n.ok(t, append([]string{"keys", "list", "--owner", "acme"}, js...)...)
				if got.stdout != want.stdout {
					t.Errorf("latchkey %s printed\n%s\nwant, as with --owner acme,\n%s", strings.Join(args, " "), got.stdout, want.stdout)
				}
			}
		}
		var l struct{ Keys []struct{ Owner string } }
		if err := json.Unmarshal([]byte(n.ok(t, "keys", "list", "--client", "acme", "--json").stdout), &l); err != nil || len(l.Keys) != 3 {
			t.Fatalf("keys list --client acme: %v, %d keys, want 3", err, len(l.Keys))
		}
		for _, k := range l.Keys {
			if k.Owner != "acme" {
				t.Errorf("keys list --client acme listed a key of %q", k.Owner)
			}
		}
	})

	t.Run("KeyStatsIsStats", func(t *testing.T) {
		id, key := n.createKey(t, "--name", "used", "--owner", "acme")
		n.verify(t, key)
		got := n.okJSON(t, "keys", "key-stats", id, "--bucket", "day")
		want := n.okJSON(t, "keys", "stats", id, "--bucket", "day")
		if got["key_id"] != id || !jsonEqual(got["totals"], want["totals"]) {
			t.Errorf("keys key-stats --json = %v\nkeys stats --json = %v", got, want)
		}
		text := n.ok(t, "keys", "key-stats", id)
		if !strings.HasPrefix(text.stdout, "key "+id) {
			t.Errorf("keys key-stats printed:\n%s", text.stdout)
		}
	})

	// Mistakes and refusals: the same message and exit status as the
	// command aliased.
	t.Run("SameErrors", func(t *testing.T) {
		for _, pair := range [][2][]string{
			{{"keys", "generate"}, {"keys", "create"}},
			{{"keys", "generate", "--name", "x", "--nosuchflag"}, {"keys", "create", "--name", "x", "--nosuchflag"}},
			{{"keys", "generate", "--name", "x", "--client", "a", "--scopes", "Not A Scope"}, {"keys", "create", "--name", "x", "--owner", "a", "--scopes", "Not A Scope"}},
			{{"keys", "key-stats"}, {"keys", "stats"}},
			{{"keys", "key-stats", "key_00000000000000000000000000"}, {"keys", "stats", "key_00000000000000000000000000"}},
			{{"keys", "list", "--client"}, {"keys", "list", "--owner"}},
			{{"keys", "generate", "-h"}, {"keys", "create", "-h"}},
			{{"keys", "key-stats", "-h"}, {"keys", "stats", "-h"}},
		} {
			a, b := n.run(t, pair[0]...), n.run(t, pair[1]...)
			if exitCode(a.err) != exitCode(b.err) || cliErrCode(a.err) != cliErrCode(b.err) || a.stdout != b.stdout || stripRequestID(a.stderr) != stripRequestID(b.stderr) {
				t.Errorf("latchkey %s: exit %d (%v)\n%s\nlatchkey %s: exit %d (%v)\n%s",
					strings.Join(pair[0], " "), exitCode(a.err), a.err, a.stderr, strings.Join(pair[1], " "), exitCode(b.err), b.err, b.stderr)
			}
		}
		if r := n.run(t, "keys", "generate"); exitCode(r.err) != 2 {
			t.Errorf("keys generate without --name: exit %d, want 2", exitCode(r.err))
		}
	})

	t.Run("HelpListsAliases", func(t *testing.T) {
		r := n.ok(t, "keys", "list", "-h")
		for _, want := range []string{"-owner string", "-client string", "-client-id string", "the same as -owner"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("keys list -h lacks %q:\n%s", want, r.stderr)
			}
		}
		usage := n.ok(t, "keys", "help").stdout
		for _, want := range []string{"generate", "key-stats", "--client"} {
			if !strings.Contains(usage, want) {
				t.Errorf("keys help lacks %q", want)
			}
		}
		top := n.ok(t, "help").stdout
		i := slices.IndexFunc(strings.Split(top, "\n"), func(l string) bool { return strings.Contains(l, "latchkey keys ") })
		if line := strings.Split(top, "\n")[i]; !strings.Contains(line, "|generate|") || !strings.Contains(line, "|key-stats|") {
			t.Errorf("latchkey help's keys line lacks the aliases: %q", line)
		}
	})
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// stripRequestID drops the request id a refusal carries, which differs
// between two requests.
func stripRequestID(s string) string {
	if i := strings.Index(s, " (request_id "); i >= 0 {
		if j := strings.Index(s[i:], ")"); j >= 0 {
			return s[:i] + s[i+j+1:]
		}
	}
	return s
}
