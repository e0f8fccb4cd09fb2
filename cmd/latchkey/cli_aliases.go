package main

// The words people bring from the key tools Latchkey replaces (issue 12,
// item 7). They make a key with a "generate" command, read its use with
// "key-stats", and call whoever holds a key its client (a client_id),
// where Latchkey says owner. So:
//
//	latchkey keys generate …        is  latchkey keys create …
//	latchkey keys key-stats ID …    is  latchkey keys stats ID …
//	--client ID, --client-id ID     are --owner ID, on keys list, create and generate
//
// The verbs are entries of keysCommands that point at the same functions
// as the verbs they stand for. The flags are rewritten to the flag they
// stand for before the command parses its arguments, so an alias behaves
// exactly as the command it aliases: the same output, --json, errors and
// exit status.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
)

// ownerFlagAliases are the other names of --owner.
var ownerFlagAliases = map[string]string{"client": "owner", "client-id": "owner"}

var (
	// keysCreateAliased is `keys create`, also named `keys generate`.
	keysCreateAliased = withFlagAliases(keysCreate, ownerFlagAliases)
	// keysListAliased is `keys list`, taking --client for --owner.
	keysListAliased = withFlagAliases(keysList, ownerFlagAliases)
)

// withFlagAliases returns cmd accepting the flags of aliases (alias name →
// the name of one of cmd's flags) as well as its own. Its -h lists them
// after cmd's flags.
func withFlagAliases(cmd cmdFunc, aliases map[string]string) cmdFunc {
	flags := sync.OnceValue(func() map[string]cmdFlag {
		m := map[string]cmdFlag{}
		for _, f := range commandFlags(cmd) {
			m[f.name] = f
		}
		return m
	})
	return func(ctx context.Context, e *env, args []string) error {
		err := cmd(ctx, e, rewriteFlagAliases(args, aliases, flags()))
		if errors.Is(err, errHelpShown) {
			printFlagAliases(e.stderr, aliases, flags())
		}
		return err
	}
}

// rewriteFlagAliases returns args with every alias flag renamed to the
// flag it stands for. It reads args as the flag package does (parseArgs):
// a flag's value is the next argument unless the flag is boolean or
// written -flag=value, "-" is an argument, and what follows "--" is left
// alone; so a value that happens to look like an alias is not renamed.
// flags are the command's own, by name.
func rewriteFlagAliases(args []string, aliases map[string]string, flags map[string]cmdFlag) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) < 2 || a[0] != '-' {
			out = append(out, a)
			continue
		}
		dashes := "-"
		if a[1] == '-' {
			dashes = "--"
		}
		name, value, hasValue := strings.Cut(a[len(dashes):], "=")
		if to, ok := aliases[name]; ok {
			name, a = to, dashes+to
			if hasValue {
				a += "=" + value
			}
		}
		out = append(out, a)
		if f, ok := flags[name]; ok && f.typ != "" && !hasValue && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}

// printFlagAliases lists aliases the way flag.PrintDefaults lists flags,
// so that completion reads them from -h as it reads the others.
func printFlagAliases(w io.Writer, aliases map[string]string, flags map[string]cmdFlag) {
	names := make([]string, 0, len(aliases))
	for a := range aliases {
		names = append(names, a)
	}
	slices.Sort(names)
	fmt.Fprintln(w, "\nAliases:")
	for _, a := range names {
		to := aliases[a]
		typ := ""
		if t := flags[to].typ; t != "" {
			typ = " " + t
		}
		fmt.Fprintf(w, "  -%s%s\n    \tthe same as -%s\n", a, typ, to)
	}
}
