package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client"
	"github.com/latchkeyhq/latchkey/client/admin"
)

// maxManifestFile bounds the manifest read from disk (the server refuses
// larger ones too).
const maxManifestFile = 1 << 20

// runApply runs `latchkey apply -f app_manifest.yml`: the plan, then the
// keys it minted, printed once or appended to --out.
func runApply(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "apply", "-f app_manifest.yml [--env E] [--dry-run] [--prune] [--out keys.env]")
	file := c.fs.String("f", "", "the app manifest (YAML or JSON; - for stdin)")
	envName := c.fs.String("env", "", "apply this environment's keys (keys naming none take it; --prune touches only its keys)")
	dry := c.fs.Bool("dry-run", false, "show the plan and change nothing")
	prune := c.fs.Bool("prune", false, "revoke the app's keys the manifest no longer declares")
	out := c.fs.String("out", "", "append new keys to FILE (created 0600) as NAME=KEY lines instead of printing them")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if *file == "" {
		fmt.Fprintln(e.stderr, "latchkey apply: -f FILE is required")
		c.fs.Usage()
		return errUsageShown
	}
	var in io.Reader = e.stdin
	name := "app_manifest.yml"
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return latchkey.Errorf(latchkey.EInvalid, "%s", err)
		}
		defer f.Close()
		in, name = f, filepath.Base(*file)
	}
	data, err := io.ReadAll(io.LimitReader(in, maxManifestFile+1))
	if err != nil {
		return latchkey.Errorf(latchkey.EInvalid, "reading %s: %s", name, err)
	}
	if len(data) > maxManifestFile {
		return latchkey.Errorf(latchkey.ETooLarge, "%s is larger than %d bytes", name, maxManifestFile)
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	res, err := cl.Apply(ctx, data, admin.ApplyParams{DryRun: *dry, Prune: *prune, Env: *envName, File: name}, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if *out != "" && len(res.Keys) > 0 {
		if err := appendKeys(*out, res.Keys); err != nil {
			// The keys exist now and are shown nowhere else: print them
			// rather than lose them.
			fmt.Fprintf(e.stderr, "latchkey apply: writing %s failed (%s); the new keys follow, shown once:\n", *out, err)
			printMinted(e.stderr, res.Keys)
			return latchkey.Errorf(latchkey.EInvalid, "--out: %s", err)
		}
	}
	if c.client.json {
		if err := printJSON(e.stdout, raw); err != nil {
			return err
		}
	} else {
		printPlan(e.stdout, res, *dry)
		switch {
		case len(res.Keys) == 0:
		case *out != "":
			fmt.Fprintf(e.stdout, "\n%d new key(s) appended to %s.\n", len(res.Keys), *out)
		default:
			fmt.Fprintln(e.stdout, "\nNew keys (shown once; store them now):")
			printMinted(e.stdout, res.Keys)
		}
	}
	failed := 0
	for _, s := range res.Plan {
		if s.Error != "" {
			failed++
		}
	}
	if failed > 0 {
		return latchkey.Errorf(latchkey.EConflict, "%d of %d steps failed", failed, len(res.Plan))
	}
	return nil
}

func printPlan(w io.Writer, res *admin.ApplyResult, dry bool) {
	if dry {
		fmt.Fprintln(w, "Plan (dry run, nothing changed):")
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tAGENT\tKEY\tID\tCHANGES")
	counts := map[string]int{}
	for _, s := range res.Plan {
		counts[s.Action]++
		detail := strings.Join(s.Changes, ",")
		if s.Error != "" {
			detail = "FAILED: " + s.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Action, s.Agent, s.KeyName, orDash(s.KeyID), orDash(detail))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d to create, %d to update, %d unchanged, %d to revoke\n",
		counts["create"], counts["update"], counts["unchanged"], counts["revoke"])
}

func printMinted(w io.Writer, ks []admin.MintedKey) {
	for _, k := range ks {
		fmt.Fprintf(w, "  %s (%s, %s): %s\n", k.Agent, k.KeyName, k.KeyID, k.Key)
	}
}

// appendKeys appends NAME=KEY lines (dotenv) for ks to path, creating it
// with mode 0600. NAME is the agent's name (and the key's, when one agent
// has several keys) as the Go client names a provider's variable:
// dataProcessor → DATAPROCESSOR_API_KEY.
func appendKeys(path string, ks []admin.MintedKey) error {
	perAgent := map[string]int{}
	for _, k := range ks {
		perAgent[k.Agent]++
	}
	var b strings.Builder
	for _, k := range ks {
		name := k.Agent
		if perAgent[k.Agent] > 1 {
			name += "-" + k.KeyName
		}
		fmt.Fprintf(&b, "%s=%s\n", client.EnvName(name), k.Key)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
		f.Close()
		return fmt.Errorf("%s is readable by others (mode %v); make it 0600 first", path, st.Mode().Perm())
	}
	if _, err := io.WriteString(f, b.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
