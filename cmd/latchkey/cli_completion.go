package main

// `latchkey completion bash|zsh`: a shell completion script generated
// from the tables the CLI dispatches from, so that a command added to a
// group's table (keysCommands, …) is completed without more work. A
// command's flags are read from the command itself: it is called with -h,
// which every command answers by printing its flag set and returning
// before it does anything else; the server's flag set is built directly.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// cmdFunc is the signature of every command and subcommand.
type cmdFunc = func(context.Context, *env, []string) error

// completionEntry is one top-level command: a group with its table of
// subcommands, or a command of its own (run, or flags for one whose flag
// set can be built without running it); args are the words completed for
// its first argument.
type completionEntry struct {
	name  string
	group map[string]cmdFunc
	run   cmdFunc
	flags func(*env) *flag.FlagSet
	args  []string
}

// completionTable lists what run in main.go dispatches, in the order of
// its usage text. A test compares it with run's switch, so that a
// top-level command cannot be added without completion.
func completionTable() []completionEntry {
	return []completionEntry{
		{name: "server", flags: func(e *env) *flag.FlagSet { _, fs := serverFlags(e); return fs }},
		{name: "keys", group: keysCommands},
		{name: "apply", run: runApply},
		{name: "tenants", group: tenantsCommands},
		{name: "policies", group: policiesCommands},
		{name: "owners", group: ownersCommands},
		{name: "secrets", group: secretsCommands},
		{name: "keyring", group: keyringCommands},
		{name: "audit", group: auditCommands},
		{name: "events", run: runEvents},
		{name: "reports", group: reportsCommands},
		{name: "webhooks", group: webhooksCommands},
		{name: "idp", group: idpCommands},
		{name: "exec", run: runExec},
		{name: "health", run: runHealth},
		{name: "scan", run: runScan},
		{name: "completion", args: completionShells},
		{name: "version"},
		{name: "help"},
	}
}

// completionShells are the shells `latchkey completion` writes for.
var completionShells = []string{"bash", "zsh"}

const completionUsage = `Usage: latchkey completion bash|zsh

Prints a completion script for the shell: commands, each group's
subcommands and each command's flags. Load it in the current shell:

  source <(latchkey completion bash)        # bash 4 or later
  source <(latchkey completion zsh)         # zsh (runs compinit if not yet done)

or install it for every new shell:

  latchkey completion bash > ~/.local/share/bash-completion/completions/latchkey
  latchkey completion zsh > "${fpath[1]}/_latchkey"
`

// runCompletion runs `latchkey completion SHELL`.
func runCompletion(_ context.Context, e *env, args []string) error {
	if len(args) == 1 {
		switch args[0] {
		case "help", "-h", "-help", "--help":
			fmt.Fprint(e.stdout, completionUsage)
			return nil
		case "bash", "zsh":
			script, err := completionScript(args[0])
			if err != nil {
				return err
			}
			_, err = io.WriteString(e.stdout, script)
			return err
		}
	}
	switch {
	case len(args) == 0:
		fmt.Fprint(e.stderr, "latchkey completion: name a shell\n\n"+completionUsage)
	case len(args) > 1:
		fmt.Fprintf(e.stderr, "latchkey completion: unexpected argument %q\n\n%s", args[1], completionUsage)
	default:
		fmt.Fprintf(e.stderr, "latchkey completion: unknown shell %q; use bash or zsh\n\n%s", args[0], completionUsage)
	}
	return errUsageShown
}

// cmdFlag is a flag as a command's -h shows it.
type cmdFlag struct {
	name string
	typ  string // the value's name in the help, e.g. "string"; "" for a boolean flag
}

// flagLine matches a flag in flag.PrintDefaults' output: "  -name type"
// for a flag taking a value, "  -name" for a boolean one, followed by the
// end of the line or, for a short name, a tab and the usage.
var flagLine = regexp.MustCompile(`^  -([^-\s=][^\s=]*)(?: (\S+))?(?:\t.*)?$`)

// parseFlagHelp reads the flags from a command's -h output.
func parseFlagHelp(help string) []cmdFlag {
	var fl []cmdFlag
	for l := range strings.SplitSeq(help, "\n") {
		if m := flagLine.FindStringSubmatch(l); m != nil {
			fl = append(fl, cmdFlag{name: m[1], typ: m[2]})
		}
	}
	return fl
}

// introspectionEnv is the environment in which a command prints its
// flags: no variables (so that no default read from one shows), no input,
// and its output kept in buf.
func introspectionEnv(buf *bytes.Buffer) *env {
	return &env{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: buf, stderr: buf}
}

// commandFlags returns the flags of a command by asking it for its help:
// with -h a command builds its flag set, prints it and returns before it
// reads a file or makes a request. The context is already cancelled, so a
// command that tried anyway would fail at once.
func commandFlags(run cmdFunc) []cmdFlag {
	var buf bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = run(ctx, introspectionEnv(&buf), []string{"-h"})
	return parseFlagHelp(buf.String())
}

// flagSetFlags returns the flags of a flag set.
func flagSetFlags(fs *flag.FlagSet) []cmdFlag {
	var fl []cmdFlag
	fs.VisitAll(func(f *flag.Flag) {
		typ, _ := flag.UnquoteUsage(f)
		fl = append(fl, cmdFlag{name: f.Name, typ: typ})
	})
	return fl
}

// completionSpec is what a script completes: the top-level commands, a
// group's subcommands, a command's flags (keyed "keys create", "apply")
// and the words of a command's first argument.
type completionSpec struct {
	commands []string
	groups   map[string][]string
	flags    map[string][]string
	args     map[string][]string
}

// completionWord is what the scripts can hold unquoted, in a case pattern
// as in a word list.
var completionWord = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// buildCompletionSpec reads the tables and every command's flags.
// Errors: a name the scripts cannot hold, which is a bug in a table.
func buildCompletionSpec() (*completionSpec, error) {
	s := &completionSpec{groups: map[string][]string{}, flags: map[string][]string{}, args: map[string][]string{}}
	var bad []string
	check := func(words ...string) {
		for _, w := range words {
			if !completionWord.MatchString(w) {
				bad = append(bad, w)
			}
		}
	}
	setFlags := func(path string, fl []cmdFlag) {
		names := []string{}
		for _, f := range fl {
			check(f.name)
			if len(f.name) == 1 {
				names = append(names, "-"+f.name) // -f, -n: the form the usage shows
			} else {
				names = append(names, "--"+f.name)
			}
		}
		names = append(names, "--help")
		slices.Sort(names)
		s.flags[path] = slices.Compact(names)
	}
	for _, c := range completionTable() {
		check(c.name)
		s.commands = append(s.commands, c.name)
		switch {
		case c.group != nil:
			subs := make([]string, 0, len(c.group))
			for sub, run := range c.group {
				check(sub)
				subs = append(subs, sub)
				setFlags(c.name+" "+sub, commandFlags(run))
			}
			slices.Sort(subs)
			s.groups[c.name] = subs
		case c.run != nil:
			setFlags(c.name, commandFlags(c.run))
		case c.flags != nil:
			var buf bytes.Buffer
			setFlags(c.name, flagSetFlags(c.flags(introspectionEnv(&buf))))
		}
		if len(c.args) > 0 {
			check(c.args...)
			s.args[c.name] = c.args
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("completion: %q cannot be completed (use letters, digits, '.', '_' and '-')", bad)
	}
	return s, nil
}

// completionScript returns the script for shell, "bash" or "zsh".
func completionScript(shell string) (string, error) {
	s, err := buildCompletionSpec()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	switch shell {
	case "bash":
		b.WriteString(bashCompletionHead)
		s.writeWords(&b)
		b.WriteString(bashCompletionBody)
	case "zsh":
		b.WriteString(zshCompletionHead)
		s.writeWords(&b)
		b.WriteString(zshCompletionBody)
	default:
		return "", fmt.Errorf("completion: no script for %q", shell)
	}
	return b.String(), nil
}

// writeWords writes _latchkey_words, the table both scripts complete
// from, in the syntax bash and zsh share: given "commands", "group CMD",
// "flags CMD [SUB]" or "args CMD", it prints the words and succeeds, or
// fails for a key it does not know.
func (s *completionSpec) writeWords(b *strings.Builder) {
	line := func(key string, words []string) {
		fmt.Fprintf(b, "    '%s') echo '%s' ;;\n", key, strings.Join(words, " "))
	}
	b.WriteString("_latchkey_words() {\n    case $1 in\n")
	line("commands", s.commands)
	for _, c := range s.commands {
		if subs, ok := s.groups[c]; ok {
			line("group "+c, subs)
		}
	}
	for _, path := range sortedKeys(s.flags) {
		line("flags "+path, s.flags[path])
	}
	for _, c := range sortedKeys(s.args) {
		line("args "+c, s.args[c])
	}
	b.WriteString("    *) return 1 ;;\n    esac\n}\n")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

const bashCompletionHead = `# bash completion for latchkey, written by 'latchkey completion bash'.
# Load it with: source <(latchkey completion bash)
# or save it as ~/.local/share/bash-completion/completions/latchkey.

`

// The words after "--" belong to the command exec runs; a word that is
// not a flag falls back to file names (complete -o default), which is
// what apply -f, keys import and --out take.
const bashCompletionBody = `
_latchkey() {
    local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]} lk_path= lk_words= i
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        [[ ${COMP_WORDS[i]} == -- ]] && return 0
    done
    if ((COMP_CWORD == 1)); then
        lk_words=$(_latchkey_words commands)
    elif lk_words=$(_latchkey_words "group $cmd"); then
        if ((COMP_CWORD > 2)); then
            lk_path="$cmd ${COMP_WORDS[2]}"
            lk_words=
        fi
    else
        lk_path=$cmd
        lk_words=
    fi
    if [[ -n $lk_path ]]; then
        if [[ $cur == -* ]]; then
            lk_words=$(_latchkey_words "flags $lk_path")
        elif ((COMP_CWORD == 2)); then
            lk_words=$(_latchkey_words "args $lk_path")
        fi
    fi
    if [[ -n $lk_words ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$lk_words" -- "$cur")
    fi
    return 0
}

complete -o default -F _latchkey latchkey
`

const zshCompletionHead = `#compdef latchkey
# zsh completion for latchkey, written by 'latchkey completion zsh'.
# Load it with: source <(latchkey completion zsh)
# or save it as _latchkey in a directory of $fpath, before compinit runs.

`

// In zsh, words[1] is "latchkey" and CURRENT the index of the word being
// completed. The file works both sourced (it registers _latchkey with
// compdef, running compinit first if the shell has not) and autoloaded
// from $fpath (it then completes at once).
const zshCompletionBody = `
_latchkey() {
    local cmd=${words[2]} lk_path= lk_words= i
    for ((i = 2; i < CURRENT; i++)); do
        if [[ ${words[i]} == -- ]]; then
            _files
            return
        fi
    done
    if ((CURRENT == 2)); then
        lk_words=$(_latchkey_words commands)
    elif lk_words=$(_latchkey_words "group $cmd"); then
        if ((CURRENT > 3)); then
            lk_path="$cmd ${words[3]}"
            lk_words=
        fi
    else
        lk_path=$cmd
        lk_words=
    fi
    if [[ -n $lk_path ]]; then
        if [[ $PREFIX == -* ]]; then
            lk_words=$(_latchkey_words "flags $lk_path")
        elif ((CURRENT == 3)); then
            lk_words=$(_latchkey_words "args $lk_path")
        fi
    fi
    if [[ -n $lk_words ]]; then
        compadd -- ${=lk_words}
    else
        _files
    fi
}

if [[ ${funcstack[1]-} == _latchkey ]]; then
    _latchkey "$@"
else
    if ! whence compdef >/dev/null; then
        autoload -Uz compinit && compinit
    fi
    compdef _latchkey latchkey
fi
`
