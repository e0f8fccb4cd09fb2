package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client/admin"
)

// batchDone says what a batch operation did to a key, and would do on a
// dry run.
var batchDone = map[string][2]string{
	admin.BatchRevoke:    {"revoked", "would revoke"},
	admin.BatchSuspend:   {"suspended", "would suspend"},
	admin.BatchResume:    {"resumed", "would resume"},
	admin.BatchRotate:    {"rotated", "would rotate"},
	admin.BatchSetPolicy: {"policy set", "would set policy"},
}

// keysBatch runs `latchkey keys batch OP [ID…] [filter flags]`: one
// operation on many keys, a table of what happened to each, and the new
// keys of a rotation, shown once. It fails (conflict) when any key was
// not changed.
func keysBatch(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "keys batch", "revoke|suspend|resume|rotate|set_policy [ID…] [--owner O] [--env E] [--state S] [--with-policy P] [--agent NAME|--resource R] [--all] [--dry-run] [--reason R] [--for 2h] [--grace 1h] [--policy P]")
	owner := c.fs.String("owner", "", "select the keys of this owner")
	envTag := c.fs.String("env", "", "select the keys of this environment")
	state := c.fs.String("state", "", "select the keys in this state: active, suspended, revoked or expired (default: every state but revoked)")
	agent := c.fs.String("agent", "", "select the keys that may act on this agent (resource agent:NAME)")
	resource := c.fs.String("resource", "", "select the keys whose resources cover this resource")
	withPolicy := c.fs.String("with-policy", "", "select the keys that name this policy")
	all := c.fs.Bool("all", false, "select every key of the tenant (but the one making the request)")
	dry := c.fs.Bool("dry-run", false, "show which keys the batch selects and change nothing")
	reason := c.fs.String("reason", "", "why (revoke, suspend), kept with the keys and in the audit trail")
	dur := c.fs.String("for", "", "how long a suspension lasts, e.g. 2h or 7d (default: until resumed)")
	grace := c.fs.String("grace", "", `how long rotated keys keep working, e.g. 1h; "0s" ends them at once (default: the server's, 1h)`)
	policy := c.fs.String("policy", "", `set_policy: the policy each key names from now on ("" removes it)`)
	pos, err := parseArgs(c.fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return errHelpShown
	case err != nil:
		return errUsageShown
	case len(pos) == 0:
		fmt.Fprintf(e.stderr, "%s: missing OP (revoke, suspend, resume, rotate or set_policy)\n", c.fs.Name())
		c.fs.Usage()
		return errUsageShown
	}
	p := admin.BatchParams{Op: pos[0], DryRun: *dry, Reason: *reason}
	if ids := pos[1:]; len(ids) > 0 {
		p.IDs = ids
	}
	if err := batchFlagsFit(c, p.Op); err != nil {
		return err
	}
	if p.Op == admin.BatchSetPolicy {
		if !c.set("policy") {
			return latchkey.Errorf(latchkey.EInvalid, `set_policy needs --policy NAME (--policy "" removes the keys' policy)`)
		}
		if *policy != "" && !latchkey.ValidPolicyName(*policy) {
			return latchkey.Errorf(latchkey.EInvalid, "--policy %q: use 1-63 of a-z, 0-9, '_' and '-'", clipFlag(*policy))
		}
		p.Policy = policy
	}
	if *agent != "" && *resource != "" {
		return latchkey.Errorf(latchkey.EInvalid, "give --agent or --resource, not both")
	}
	if *agent != "" {
		*resource = "agent:" + *agent
	}
	if *state != "" && !latchkey.ValidState(latchkey.State(*state)) {
		return latchkey.Errorf(latchkey.EInvalid, "--state %q: use active, suspended, revoked or expired", *state)
	}
	filtered := false
	for _, name := range []string{"owner", "env", "state", "with-policy", "agent", "resource", "all"} {
		filtered = filtered || c.set(name)
	}
	switch {
	case filtered && p.IDs != nil:
		return latchkey.Errorf(latchkey.EInvalid, "give key ids or filter flags, not both")
	case filtered:
		p.Filter = &admin.BatchFilter{Owner: *owner, Environment: *envTag, State: latchkey.State(*state), Policy: *withPolicy, Resource: *resource, All: *all}
	case p.IDs == nil:
		return latchkey.Errorf(latchkey.EInvalid, "give the keys: their ids, filter flags (--owner, --env, --state, --with-policy, --agent, --resource) or --all")
	}
	if c.set("for") {
		d, err := parseDurationFlag("for", *dur)
		if err != nil {
			return err
		}
		if d <= 0 {
			return latchkey.Errorf(latchkey.EInvalid, "--for must be positive; leave it out to suspend until resumed")
		}
		p.For = d
	}
	if c.set("grace") {
		d, err := parseDurationFlag("grace", *grace)
		if err != nil {
			return err
		}
		p.Grace = &d
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	res, err := cl.BatchKeys(ctx, p, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		if err := printJSON(e.stdout, raw); err != nil {
			return err
		}
	} else {
		printBatch(e.stdout, p, res)
	}
	if failed := res.Failed(); failed > 0 {
		if p.DryRun {
			return latchkey.Errorf(latchkey.EConflict, "%d of %d keys would not be changed", failed, len(res.Results))
		}
		return latchkey.Errorf(latchkey.EConflict, "%d of %d keys failed", failed, len(res.Results))
	}
	return nil
}

// batchFlagsFit refuses the flags op does not take (an unknown op is the
// server's to refuse). Errors: EInvalid.
func batchFlagsFit(c *command, op string) error {
	if _, known := batchDone[op]; !known {
		return nil
	}
	takes := map[string]bool{
		"reason": op == admin.BatchRevoke || op == admin.BatchSuspend,
		"for":    op == admin.BatchSuspend,
		"grace":  op == admin.BatchRotate,
		"policy": op == admin.BatchSetPolicy,
	}
	for _, name := range []string{"reason", "for", "grace", "policy"} {
		if c.set(name) && !takes[name] {
			return latchkey.Errorf(latchkey.EInvalid, "--%s does not apply to %s", name, op)
		}
	}
	return nil
}

// printBatch prints a table of what the batch did to each key, a summary
// line, and the new keys of a rotation, shown once.
func printBatch(w io.Writer, p admin.BatchParams, res *admin.BatchResult) {
	done := batchDone[p.Op]
	if p.DryRun {
		fmt.Fprintln(w, "Dry run, nothing changed:")
	}
	if len(res.Results) > 0 {
		tw := newTable(w)
		fmt.Fprintln(tw, "ID\tRESULT\tDETAIL")
		for _, it := range res.Results {
			result, detail := done[0], ""
			if p.DryRun {
				result = done[1]
			}
			if it.SuccessorID != "" {
				detail = "new key " + it.SuccessorID
			}
			if !it.OK {
				result, detail = "FAILED", it.ErrorCode+": "+it.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", it.ID, orDash(result), orDash(detail))
		}
		tw.Flush()
	}
	failed := res.Failed()
	if p.DryRun {
		fmt.Fprintf(w, "%s: %d key(s) matched, %d would change, %d would not\n", p.Op, res.Matched, len(res.Results)-failed, failed)
	} else {
		fmt.Fprintf(w, "%s: %d key(s) matched, %d %s, %d failed\n", p.Op, res.Matched, len(res.Results)-failed, orDash(done[0]), failed)
	}
	var minted []admin.BatchItem
	for _, it := range res.Results {
		if it.Key != "" {
			minted = append(minted, it)
		}
	}
	if len(minted) > 0 {
		fmt.Fprintln(w, "\nNew keys (shown once; store them now):")
		for _, it := range minted {
			fmt.Fprintf(w, "  %s (replaces %s): %s\n", it.SuccessorID, it.ID, it.Key)
		}
	}
}
