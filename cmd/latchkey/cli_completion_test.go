package main

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dispatchedCommands returns the top-level commands of run in main.go, read
// from the source: the string cases of its switch on args[0], without the
// spellings that start with "-" (--help, --version).
func dispatchedCommands(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	ast.Inspect(f, func(n ast.Node) bool {
		fd, ok := n.(*ast.FuncDecl)
		if !ok || fd.Name.Name != "run" {
			return true
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			sw, ok := n.(*ast.SwitchStmt)
			if !ok {
				return true
			}
			if ix, ok := sw.Tag.(*ast.IndexExpr); !ok || identName(ix.X) != "args" {
				return true
			}
			for _, st := range sw.Body.List {
				for _, e := range st.(*ast.CaseClause).List {
					if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						s, _ := strconv.Unquote(lit.Value)
						if !strings.HasPrefix(s, "-") {
							cmds = append(cmds, s)
						}
					}
				}
			}
			return false
		})
		return false
	})
	if len(cmds) == 0 {
		t.Fatal("found no switch on args[0] in run (main.go)")
	}
	return cmds
}

// identName is the name of an identifier ("" for any other expression).
func identName(e ast.Expr) string {
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// TestCompletionCoversEveryCommand: every command run dispatches is in
// the completion table, and every table entry is one run dispatches, with
// the group table the group runs on. A command added to main.go without
// completion fails here; one added to a group's table is completed
// without more ado.
func TestCompletionCoversEveryCommand(t *testing.T) {
	var table []string
	for _, c := range completionTable() {
		table = append(table, c.name)
	}
	got, want := slices.Sorted(slices.Values(table)), slices.Sorted(slices.Values(dispatchedCommands(t)))
	if !slices.Equal(got, want) {
		t.Fatalf("completion table has %q; run in main.go dispatches %q", got, want)
	}
	for _, c := range completionTable() {
		for sub, cmd := range c.group {
			// The group runs this table: `latchkey GROUP SUB -h` prints
			// what the table's entry prints.
			var direct, viaRun bytes.Buffer
			_ = cmd(context.Background(), introspectionEnv(&direct), []string{"-h"})
			err := run(context.Background(), []string{c.name, sub, "-h"}, func(string) string { return "" }, strings.NewReader(""), &viaRun, &viaRun)
			if err != nil || viaRun.String() != direct.String() {
				t.Errorf("latchkey %s %s -h: %v\n%s\nwant the table entry's help:\n%s", c.name, sub, err, viaRun.String(), direct.String())
			}
		}
	}
}

// TestCompletionReadsEveryCommandsFlags: each command's flags are found,
// the shared client flags among them, so a command whose -h cannot be read
// does not go uncompleted silently.
func TestCompletionReadsEveryCommandsFlags(t *testing.T) {
	s, err := buildCompletionSpec()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range completionTable() {
		var paths []string
		switch {
		case c.group != nil:
			for sub := range c.group {
				paths = append(paths, c.name+" "+sub)
			}
		case c.run != nil || c.flags != nil:
			paths = append(paths, c.name)
		}
		for _, p := range paths {
			want := "--server"
			if p == "server" {
				want = "--addr"
			}
			if !slices.Contains(s.flags[p], want) {
				t.Errorf("completion of latchkey %s: flags %q lack %s", p, s.flags[p], want)
			}
		}
	}
	for path, want := range map[string][]string{
		"keys create":    {"--name", "--owner", "--client", "--client-id", "--scopes", "--json"},
		"keys generate":  {"--name", "--owner", "--client", "--client-id", "--scopes", "--json"},
		"keys list":      {"--owner", "--client", "--client-id", "--state", "--all"},
		"keys stats":     {"--bucket", "--since"},
		"keys key-stats": {"--bucket", "--since"},
		"apply":          {"-f", "--dry-run", "--prune"},
		"audit tail":     {"-n", "--follow"},
		"server":         {"--db", "--init", "--redis"},
	} {
		for _, f := range want {
			if !slices.Contains(s.flags[path], f) {
				t.Errorf("completion of latchkey %s: flags %q lack %s", path, s.flags[path], f)
			}
		}
	}
}

// bashComplete runs the bash script in bash and returns, for each command
// line (its last word the one being completed), what _latchkey offers.
func bashComplete(t *testing.T, script string, lines [][]string) [][]string {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	file := filepath.Join(t.TempDir(), "latchkey.bash")
	if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	var prog strings.Builder
	prog.WriteString("source " + shellQuote(file) + " || exit 3\n")
	prog.WriteString(`t() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _latchkey || echo "status $?"; printf "%s\n" "${COMPREPLY[*]}"; }` + "\n")
	for _, l := range lines {
		prog.WriteString("t")
		for _, w := range l {
			prog.WriteString(" " + shellQuote(w))
		}
		prog.WriteString("\n")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, "--norc", "--noprofile", "-c", prog.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("bash: %v\n%s", err, stderr.String())
	}
	res := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(res) != len(lines) {
		t.Fatalf("bash printed %d results for %d lines:\n%s", len(res), len(lines), out)
	}
	offers := make([][]string, len(res))
	for i, r := range res {
		offers[i] = strings.Fields(r)
	}
	return offers
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestCompletionBash runs the generated script in bash as its completion
// would run: COMP_WORDS and COMP_CWORD set, _latchkey called.
func TestCompletionBash(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"completion", "bash"}, func(string) string { return "" }, strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("latchkey completion bash: %v\n%s", err, out.String())
	}
	script := out.String()
	if !strings.Contains(script, "complete -o default -F _latchkey latchkey") {
		t.Fatalf("the script does not register _latchkey:\n%s", script)
	}

	t.Run("Examples", func(t *testing.T) {
		cases := []struct {
			line []string
			want []string // exactly these
		}{
			{[]string{"latchkey", "k"}, []string{"keys", "keyring"}},
			{[]string{"latchkey", "comp"}, []string{"completion"}},
			{[]string{"latchkey", "keys", "cr"}, []string{"create"}},
			{[]string{"latchkey", "keys", "gen"}, []string{"generate"}},
			{[]string{"latchkey", "keys", "key-"}, []string{"key-stats"}},
			{[]string{"latchkey", "keys", "create", "--ow"}, []string{"--owner"}},
			{[]string{"latchkey", "keys", "generate", "--name", "x", "--ow"}, []string{"--owner"}},
			{[]string{"latchkey", "keys", "list", "--cli"}, []string{"--client", "--client-id"}},
			{[]string{"latchkey", "keys", "key-stats", "key_1", "--buc"}, []string{"--bucket"}},
			{[]string{"latchkey", "keys", "revoke", "key_1", "--rea"}, []string{"--reason"}},
			{[]string{"latchkey", "apply", "--dr"}, []string{"--dry-run"}},
			{[]string{"latchkey", "server", "--ad"}, []string{"--addr"}},
			{[]string{"latchkey", "completion", ""}, []string{"bash", "zsh"}},
			{[]string{"latchkey", "completion", "z"}, []string{"zsh"}},
			// Not a flag: file names, by complete -o default.
			{[]string{"latchkey", "apply", "-f", "app"}, nil},
			{[]string{"latchkey", "keys", "import", "ke"}, nil},
			// After "--" the words are exec's command's.
			{[]string{"latchkey", "exec", "--secrets", "openai", "--", "--se"}, nil},
			{[]string{"latchkey", "nosuchcommand", "--s"}, nil},
			{[]string{"latchkey", "keys", "nosuchverb", "--s"}, nil},
		}
		lines := make([][]string, len(cases))
		for i, c := range cases {
			lines[i] = c.line
		}
		for i, got := range bashComplete(t, script, lines) {
			if !slices.Equal(got, cases[i].want) {
				t.Errorf("%s<TAB>: offers %q, want %q", strings.Join(cases[i].line, " "), got, cases[i].want)
			}
		}
	})

	// Every command, subcommand and flag the CLI has, each completed from
	// its full name: a batch (or any other) command added to a table shows
	// up here without a change to the completion.
	t.Run("EveryCommandSubcommandAndFlag", func(t *testing.T) {
		s, err := buildCompletionSpec()
		if err != nil {
			t.Fatal(err)
		}
		var lines, wants [][]string
		add := func(want string, line ...string) {
			lines = append(lines, line)
			wants = append(wants, []string{want})
		}
		for _, c := range s.commands {
			add(c, "latchkey", c)
			if subs, ok := s.groups[c]; ok {
				for _, sub := range subs {
					add(sub, "latchkey", c, sub)
					for _, f := range s.flags[c+" "+sub] {
						add(f, "latchkey", c, sub, "x", f)
					}
				}
			}
			for _, f := range s.flags[c] {
				add(f, "latchkey", c, f)
			}
		}
		if !slices.Contains(s.groups["keys"], "generate") || !slices.Contains(s.groups["keys"], "key-stats") {
			t.Fatalf("keys subcommands %q lack the aliases", s.groups["keys"])
		}
		for i, got := range bashComplete(t, script, lines) {
			if !slices.Contains(got, wants[i][0]) {
				t.Errorf("%s<TAB>: offers %q, want %s among them", strings.Join(lines[i], " "), got, wants[i][0])
			}
		}
	})
}

// TestCompletionZsh checks that the zsh script parses, registers
// _latchkey with compdef when sourced, and picks the right words (with
// compadd and _files stubbed: zsh's own completion needs a terminal).
// zsh is not one of the programs make test provides, so without it the
// test is skipped.
func TestCompletionZsh(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"completion", "zsh"}, func(string) string { return "" }, strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("latchkey completion zsh: %v\n%s", err, out.String())
	}
	script := out.String()
	if !strings.HasPrefix(script, "#compdef latchkey\n") || !strings.Contains(script, "compdef _latchkey latchkey") {
		t.Fatalf("the script lacks #compdef or compdef:\n%s", script)
	}
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		t.Skip("zsh is not installed; the zsh script was generated but not run")
	}
	file := filepath.Join(t.TempDir(), "_latchkey")
	if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if b, err := exec.CommandContext(ctx, zsh, "-n", file).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, b)
	}
	prog := `compdef() { print -r -- "compdef $*"; }
compadd() { [[ $1 == -- ]] && shift; print -r -- "$*"; }
_files() { print -r -- FILES; }
source ` + shellQuote(file) + `
t() { words=("$@"); CURRENT=$#; PREFIX=${words[CURRENT]}; _latchkey; }
t latchkey k
t latchkey keys cr
t latchkey keys create --ow
t latchkey keys list --cli
t latchkey completion ''
t latchkey apply -f app
t latchkey exec --secrets a -- --s
`
	b, err := exec.CommandContext(ctx, zsh, "-f", "-c", prog).CombinedOutput()
	if err != nil {
		t.Fatalf("zsh: %v\n%s", err, b)
	}
	got := strings.Split(strings.TrimSpace(string(b)), "\n")
	checks := []func(string) bool{
		func(l string) bool { return l == "compdef _latchkey latchkey" },
		func(l string) bool {
			return slices.Contains(strings.Fields(l), "keys") && slices.Contains(strings.Fields(l), "completion")
		},
		func(l string) bool {
			return slices.Contains(strings.Fields(l), "create") && slices.Contains(strings.Fields(l), "generate")
		},
		func(l string) bool {
			return slices.Contains(strings.Fields(l), "--owner") && slices.Contains(strings.Fields(l), "--client")
		},
		func(l string) bool {
			return slices.Contains(strings.Fields(l), "--client") && slices.Contains(strings.Fields(l), "--state")
		},
		func(l string) bool { return l == "bash zsh" },
		func(l string) bool { return l == "FILES" },
		func(l string) bool { return l == "FILES" },
	}
	if len(got) != len(checks) {
		t.Fatalf("zsh printed %d lines, want %d:\n%s", len(got), len(checks), b)
	}
	for i, ok := range checks {
		if !ok(got[i]) {
			t.Errorf("zsh line %d: %q", i+1, got[i])
		}
	}
}

// TestCompletionCommandLine: the command's own usage and its mistakes.
func TestCompletionCommandLine(t *testing.T) {
	for _, c := range []struct {
		args     []string
		exit     int
		stdout   string // a prefix of it
		inStderr string
	}{
		{[]string{"completion", "bash"}, 0, "# bash completion for latchkey", ""},
		{[]string{"completion", "zsh"}, 0, "#compdef latchkey", ""},
		{[]string{"completion", "-h"}, 0, "Usage: latchkey completion bash|zsh", ""},
		{[]string{"completion"}, 2, "", "name a shell"},
		{[]string{"completion", "fish"}, 2, "", `unknown shell "fish"`},
		{[]string{"completion", "bash", "zsh"}, 2, "", `unexpected argument "zsh"`},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), c.args, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr)
		if got := exitCode(err); err != nil && got != c.exit || err == nil && c.exit != 0 {
			t.Errorf("latchkey %s: exit %d (%v), want %d", strings.Join(c.args, " "), got, err, c.exit)
		}
		if !strings.HasPrefix(stdout.String(), c.stdout) || c.stdout == "" && stdout.Len() > 0 {
			t.Errorf("latchkey %s: stdout %.80q, want it to start with %q", strings.Join(c.args, " "), stdout.String(), c.stdout)
		}
		if !strings.Contains(stderr.String(), c.inStderr) || c.inStderr == "" && stderr.Len() > 0 {
			t.Errorf("latchkey %s: stderr %q, want %q in it", strings.Join(c.args, " "), stderr.String(), c.inStderr)
		}
	}
	var help bytes.Buffer
	if err := run(context.Background(), []string{"help"}, func(string) string { return "" }, strings.NewReader(""), &help, &help); err != nil || !strings.Contains(help.String(), "latchkey completion bash|zsh") {
		t.Errorf("latchkey help does not list completion: %v\n%s", err, help.String())
	}
}
