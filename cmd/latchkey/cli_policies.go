package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client/admin"
)

const policiesUsage = `Usage: latchkey policies <command> [flags]

Commands:
  create NAME [flags]   create a policy (a preset's name makes the tenant's own version)
  list                  list the tenant's policies, the presets among them
  get NAME              one policy
  update NAME [flags]   change the settings given; keys of it see the change at once
  delete NAME           delete a policy (refused while keys that are not revoked name it)

Flags of create and update: --description D, --scopes a,b, --resources r,
--ip-allow CIDR,…, --countries DE,FR, --window mon-fri@09:00-17:00@TZ,
--rate 100/m,tokens=10000/h:on_request, --quota 10000/30d, --uses N,
--max-concurrent N, --expires-after 30d; update also --clear-quota.

A key takes a policy with 'latchkey keys create --policy NAME'; its own
settings may only narrow the policy's. Presets: development, production,
integration, emergency. The commands need a key with policies:read or
policies:write. Every command takes --server URL, --key KEY, --json and
--timeout.
`

var policiesCommands = map[string]func(context.Context, *env, []string) error{
	"create": policiesCreate,
	"list":   policiesList,
	"get":    policiesGet,
	"update": policiesUpdate,
	"delete": policiesDelete,
}

// runPolicies runs `latchkey policies …`.
func runPolicies(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "policies", policiesUsage, policiesCommands, args)
}

// policyFlags are the flags of a policy's settings.
type policyFlags struct {
	c                   *command
	description         string
	scopes, resources   listFlag
	ipAllow, countries  listFlag
	windows             repeatedFlag
	rates, quota        string
	uses                int64
	maxConcurrent       int
	expiresAfter        string
	clearQuota, noQuota bool
	condition           string
}

func addPolicyFlags(c *command, forUpdate bool) *policyFlags {
	p := &policyFlags{c: c}
	fs := c.fs
	fs.StringVar(&p.description, "description", "", "what the policy is for")
	fs.Var(&p.scopes, "scopes", "scopes, comma-separated or repeated; presets read, execute, manage, full")
	fs.Var(&p.resources, "resources", "resources the keys are limited to, comma-separated or repeated")
	fs.Var(&p.ipAllow, "ip-allow", "addresses and CIDR ranges the keys may be used from, comma-separated")
	fs.Var(&p.countries, "countries", "ISO country codes the keys may be used from (needs the server's --geoip-db)")
	fs.Var(&p.windows, "window", `when the keys work, e.g. mon-fri@09:00-17:00@Europe/Berlin; repeatable ("" removes them)`)
	fs.StringVar(&p.rates, "rate", "", rateFlagHelp)
	fs.StringVar(&p.quota, "quota", "", "each key's quota, e.g. 10000/30d, 500/daily; or a credit balance, e.g. 500")
	fs.Int64Var(&p.uses, "uses", 0, "each key works this many times (a credit balance)")
	fs.IntVar(&p.maxConcurrent, "max-concurrent", 0, "each key's requests in flight at once (0: no limit)")
	fs.StringVar(&p.expiresAfter, "expires-after", "", "each key ends this long after its creation, e.g. 30d (0s: no expiry)")
	fs.StringVar(&p.condition, "condition", "", `a CEL expression every key's requests must satisfy ("" removes it)`)
	if forUpdate {
		fs.BoolVar(&p.clearQuota, "clear-quota", false, "remove the quota")
		fs.BoolVar(&p.noQuota, "no-quota", false, "the same as --clear-quota")
	}
	return p
}

// settings returns the policy fields of exactly the flags given, and
// whether there was one. Errors: EInvalid.
func (p *policyFlags) settings() (s admin.PolicySettings, given bool, err error) {
	c := p.c
	if c.set("description") {
		d := p.description
		s.Description, given = &d, true
	}
	if c.set("condition") {
		cond := p.condition
		s.Condition, given = &cond, true
	}
	if c.set("scopes") {
		s.Scopes, given = nonNil(p.scopes), true
	}
	if c.set("resources") {
		s.Resources, given = nonNil(p.resources), true
	}
	if c.set("ip-allow") {
		if _, err := latchkey.ParseIPAllow(p.ipAllow); err != nil {
			return s, false, latchkey.Errorf(latchkey.EInvalid, "--ip-allow: %s", latchkey.ErrorMessage(err))
		}
		s.IPAllow, given = nonNil(p.ipAllow), true
	}
	if c.set("countries") {
		s.Countries, given = nonNil(p.countries), true
	}
	if c.set("window") {
		ws := []latchkey.TimeWindow{}
		for _, w := range p.windows {
			if strings.TrimSpace(w) == "" {
				continue
			}
			tw, err := latchkey.ParseTimeWindowFlag(w)
			if err != nil {
				return s, false, latchkey.Errorf(latchkey.EInvalid, "--window: %s", latchkey.ErrorMessage(err))
			}
			ws = append(ws, tw)
		}
		s.TimeWindows, given = ws, true
	}
	if c.set("rate") {
		if s.RateLimits, err = parseRateFlag("rate", p.rates); err != nil {
			return s, false, err
		}
		given = true
	}
	clear := p.clearQuota || p.noQuota
	switch {
	case c.set("uses") && (c.set("quota") || clear):
		return s, false, latchkey.Errorf(latchkey.EInvalid, "give --uses or --quota, not both")
	case c.set("quota") && clear:
		return s, false, latchkey.Errorf(latchkey.EInvalid, "give --quota or --clear-quota, not both")
	case c.set("uses"):
		if p.uses < 1 {
			return s, false, latchkey.Errorf(latchkey.EInvalid, "--uses must be at least 1")
		}
		n := p.uses
		s.Uses, given = &n, true
	case c.set("quota"):
		q, err := latchkey.ParseQuotaFlag(p.quota)
		if err != nil {
			return s, false, latchkey.Errorf(latchkey.EInvalid, "--quota: %s", latchkey.ErrorMessage(err))
		}
		s.Quota, given = q, true
	case clear:
		s.NoQuota, given = true, true
	}
	if c.set("max-concurrent") {
		n := p.maxConcurrent
		s.MaxConcurrent, given = &n, true
	}
	if c.set("expires-after") {
		d, err := parseDurationFlag("expires-after", p.expiresAfter)
		if err != nil {
			return s, false, err
		}
		if d < 0 {
			return s, false, latchkey.Errorf(latchkey.EInvalid, "--expires-after must not be negative")
		}
		s.ExpiresAfter, given = &d, true
	}
	return s, given, nil
}

// rateFlagHelp describes the --rate flag of keys, policies and owners.
const rateFlagHelp = `rate windows, comma-separated: LIMIT/WINDOW (100/m, 1000/1h), named NAME=LIMIT/WINDOW, ` +
	`and counted only by requests that name them with :on_request (tokens=10000/h:on_request); "" removes them`

// parseRateFlag reads a --rate value: comma-separated windows, each
// [NAME=]LIMIT/WINDOW[:on_request]. latchkey.ParseRates reads the
// LIMIT/WINDOW part; the name and the on-request mark are the CLI's.
// "" (or blanks) is no windows, which removes them on update.
func parseRateFlag(flag, v string) ([]latchkey.RateLimit, error) {
	out := []latchkey.RateLimit{}
	if strings.TrimSpace(v) == "" {
		return out, nil
	}
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		var name, apply string
		if n, rest, ok := strings.Cut(part, "="); ok {
			name, part = strings.TrimSpace(n), strings.TrimSpace(rest)
			if name == "" {
				return nil, latchkey.Errorf(latchkey.EInvalid, "--%s %q: a name before = is empty", flag, clipFlag(part))
			}
		}
		if r, a, ok := strings.Cut(part, ":"); ok {
			if strings.TrimSpace(a) != latchkey.ApplyOnRequest {
				return nil, latchkey.Errorf(latchkey.EInvalid, "--%s %q: the only mark after : is on_request", flag, clipFlag(part))
			}
			part, apply = strings.TrimSpace(r), latchkey.ApplyOnRequest
		}
		rls, err := latchkey.ParseRates(part)
		if err != nil {
			return nil, latchkey.Errorf(latchkey.EInvalid, "--%s: %s", flag, latchkey.ErrorMessage(err))
		}
		for _, r := range rls {
			if name != "" {
				r.Name = name
			}
			r.Apply = apply
			out = append(out, r)
		}
	}
	if err := latchkey.ValidateRateLimits(out); err != nil {
		return nil, latchkey.Errorf(latchkey.EInvalid, "--%s: %s", flag, latchkey.ErrorMessage(err))
	}
	return out, nil
}

func clipFlag(s string) string {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}

func policiesCreate(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "policies create", "NAME [flags]")
	pf := addPolicyFlags(c, false)
	pos, err := c.parse(args, "NAME")
	if err != nil {
		return err
	}
	if !latchkey.ValidPolicyName(pos[0]) {
		return latchkey.Errorf(latchkey.EInvalid, "policy name %q: use 1-63 of a-z, 0-9, '_' and '-', starting with a letter or digit", clipFlag(pos[0]))
	}
	s, _, err := pf.settings()
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	p, err := cl.CreatePolicy(ctx, pos[0], s, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	fmt.Fprintf(e.stdout, "Created policy %s\n", p.Name)
	printPolicy(e.stdout, p)
	return nil
}

func policiesUpdate(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "policies update", "NAME [flags]")
	pf := addPolicyFlags(c, true)
	pos, err := c.parse(args, "NAME")
	if err != nil {
		return err
	}
	s, given, err := pf.settings()
	if err != nil {
		return err
	}
	if !given {
		return latchkey.Errorf(latchkey.EInvalid, "nothing to change: give at least one setting's flag (see -h)")
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	p, err := cl.UpdatePolicy(ctx, pos[0], s, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	fmt.Fprintf(e.stdout, "Updated policy %s; its keys take the change at their next verification.\n", p.Name)
	printPolicy(e.stdout, p)
	return nil
}

func policiesGet(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "policies get", "NAME")
	pos, err := c.parse(args, "NAME")
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	p, err := cl.GetPolicy(ctx, pos[0], admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	printPolicy(e.stdout, p)
	return nil
}

func policiesList(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "policies list", "[flags]")
	pf := addPageFlags(c, "policies")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if err := pf.check(c); err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	fetch := func(ctx context.Context, p admin.Page, o ...admin.CallOption) ([]latchkey.Policy, string, error) {
		l, err := cl.ListPolicies(ctx, p, o...)
		if err != nil {
			return nil, "", err
		}
		out := make([]latchkey.Policy, len(l.Policies))
		for i, p := range l.Policies {
			out[i] = *p
		}
		return out, l.NextCursor, nil
	}
	return runList(ctx, e, c, cl, pf, "policies", fetch, listTable[latchkey.Policy]{
		header: "NAME\tPRESET\tSCOPES\tRATE\tQUOTA\tEXPIRES AFTER\tDESCRIPTION",
		row: func(p *latchkey.Policy) string {
			preset := "-"
			if p.Preset {
				preset = "yes"
			}
			return p.Name + "\t" + preset + "\t" + joinList(p.Scopes) + "\t" + orDash(fmtRates(p.RateLimits)) + "\t" +
				orDash(fmtQuota(p.Quota)) + "\t" + fmtExpiresAfter(p.ExpiresAfter) + "\t" + orDash(p.Description)
		},
	})
}

func policiesDelete(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "policies delete", "NAME")
	pos, err := c.parse(args, "NAME")
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	if err := cl.DeletePolicy(ctx, pos[0]); err != nil {
		return cl.fail(err)
	}
	if !c.client.json {
		fmt.Fprintf(e.stdout, "Deleted policy %s.\n", pos[0])
	}
	return nil
}

func printPolicy(w io.Writer, p *latchkey.Policy) {
	tw := newTable(w)
	preset := ""
	if p.Preset {
		preset = " (preset)"
	}
	ips := make([]string, len(p.IPAllow))
	for i, r := range p.IPAllow {
		ips[i] = r.String()
	}
	windows, _ := policyValue("time_windows", p.TimeWindows)
	if len(p.TimeWindows) == 0 {
		windows = ""
	}
	maxConc := "-"
	if p.MaxConcurrent > 0 {
		maxConc = strconv.Itoa(p.MaxConcurrent)
	}
	fmt.Fprintf(tw, "  name:\t%s%s\n  description:\t%s\n  scopes:\t%s\n  resources:\t%s\n  ip_allow:\t%s\n  countries:\t%s\n",
		p.Name, preset, orDash(p.Description), joinList(p.Scopes), joinList(p.Resources), joinList(ips), joinList(p.Countries))
	fmt.Fprintf(tw, "  time_windows:\t%s\n  ratelimits:\t%s\n  quota:\t%s\n  max_concurrent:\t%s\n  expires_after:\t%s\n",
		orDash(windows), orDash(fmtRates(p.RateLimits)), orDash(fmtQuota(p.Quota)), maxConc, fmtExpiresAfter(p.ExpiresAfter))
	_ = tw.Flush()
}

// fmtRates writes rate windows as --rate reads them back: "1m 100/1m,
// tokens 10000/1h on request".
func fmtRates(rls []latchkey.RateLimit) string {
	parts := make([]string, len(rls))
	for i, r := range rls {
		parts[i] = fmt.Sprintf("%s %d/%s", r.Name, r.Limit, r.Window)
		if r.Apply == latchkey.ApplyOnRequest {
			parts[i] += " on request"
		}
	}
	return strings.Join(parts, ", ")
}

func fmtQuota(q *latchkey.Quota) string {
	switch {
	case q == nil:
		return ""
	case q.IsCredit():
		return fmt.Sprintf("%d credits", *q.Remaining)
	}
	return fmt.Sprintf("%d per %s", q.Limit, q.Period)
}

func fmtExpiresAfter(d latchkey.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.String()
}

const ownersUsage = `Usage: latchkey owners <command> [flags]

Commands:
  set ID [--rate R] [--quota Q] [--meta k=v …]   create or replace an owner's shared limits
  list                                          list the tenant's owner records
  get ID [--bucket B]                           an owner's record and its keys' usage totals
  usage ID [--bucket B] [--from T] [--to T]     the summed usage of an owner's keys, with or without a record
  delete ID                                     delete an owner's record (its keys keep their owner)

An owner is what keys' --owner names. Every key of an owner counts against
the owner's rate windows and quota besides its own, so more keys do not buy
more requests. --rate takes windows as keys do (100/m, tokens=10000/h:on_request);
--quota a periodic allowance (100000/30d, 5000/daily). The commands need a
key with keys:read or keys:write. Every command takes --server URL,
--key KEY, --json and --timeout.
`

var ownersCommands = map[string]func(context.Context, *env, []string) error{
	"set":    ownersSet,
	"list":   ownersList,
	"get":    ownersGet,
	"usage":  ownersUsageCmd,
	"delete": ownersDelete,
}

// runOwners runs `latchkey owners …`.
func runOwners(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "owners", ownersUsage, ownersCommands, args)
}

func ownersSet(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "owners set", "ID [--rate 100/m] [--quota 100000/30d] [--meta k=v …]")
	rates := c.fs.String("rate", "", rateFlagHelp)
	quota := c.fs.String("quota", "", "a periodic allowance the owner's keys share, e.g. 100000/30d or 5000/daily")
	var meta metaFlag
	c.fs.Var(&meta, "meta", "metadata key=value, repeatable")
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	var p admin.OwnerParams
	if c.set("rate") {
		if p.RateLimits, err = parseRateFlag("rate", *rates); err != nil {
			return err
		}
	}
	if c.set("quota") && strings.TrimSpace(*quota) != "" {
		if p.Quota, err = latchkey.ParseQuotaFlag(*quota); err != nil {
			return latchkey.Errorf(latchkey.EInvalid, "--quota: %s", latchkey.ErrorMessage(err))
		}
		if p.Quota.IsCredit() {
			return latchkey.Errorf(latchkey.EInvalid, "--quota: an owner's quota is periodic, such as 100000/30d; credit balances are a key's own")
		}
	}
	if meta != nil {
		p.Meta = map[string]any(meta)
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	o, err := cl.PutOwner(ctx, pos[0], p, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	fmt.Fprintf(e.stdout, "Set owner %s; its keys share these limits from their next verification.\n", o.ID)
	printOwner(e.stdout, o)
	return nil
}

func ownersList(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "owners list", "[flags]")
	pf := addPageFlags(c, "owners")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if err := pf.check(c); err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	fetch := func(ctx context.Context, p admin.Page, o ...admin.CallOption) ([]latchkey.Owner, string, error) {
		l, err := cl.ListOwners(ctx, p, o...)
		if err != nil {
			return nil, "", err
		}
		out := make([]latchkey.Owner, len(l.Owners))
		for i, o := range l.Owners {
			out[i] = *o
		}
		return out, l.NextCursor, nil
	}
	return runList(ctx, e, c, cl, pf, "owners", fetch, listTable[latchkey.Owner]{
		header: "ID\tRATE\tQUOTA\tUPDATED",
		row: func(o *latchkey.Owner) string {
			return o.ID + "\t" + orDash(fmtRates(o.RateLimits)) + "\t" + orDash(fmtQuota(o.Quota)) + "\t" + fmtTime(o.UpdatedAt, "-")
		},
	})
}

// usageFlags are the window flags of owners get and owners usage.
type usageFlags struct {
	bucket, from, to *string
}

func addUsageFlags(c *command) usageFlags {
	return usageFlags{
		bucket: c.fs.String("bucket", "", "minute, hour or day (default hour)"),
		from:   c.fs.String("from", "", "start of the window (RFC 3339 or a date; default by bucket: 1h, 24h or 30d ago)"),
		to:     c.fs.String("to", "", "end of the window (default now)"),
	}
}

func (u usageFlags) params(c *command) (admin.UsageParams, error) {
	p := admin.UsageParams{Bucket: *u.bucket}
	var err error
	if c.set("from") {
		if p.From, err = parseTimeFlag("from", *u.from); err != nil {
			return p, err
		}
	}
	if c.set("to") {
		if p.To, err = parseTimeFlag("to", *u.to); err != nil {
			return p, err
		}
	}
	return p, nil
}

func ownersGet(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "owners get", "ID [--bucket hour]")
	uf := addUsageFlags(c)
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	p, err := uf.params(c)
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	o, err := cl.GetOwner(ctx, pos[0], p, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	printOwner(e.stdout, &o.Owner)
	if o.Usage != nil {
		fmt.Fprintf(e.stdout, "\nUsage from %s to %s:\n", fmtTime(o.Usage.From, "-"), fmtTime(o.Usage.To, "-"))
		printTotals(e.stdout, o.Usage.Totals)
	}
	return nil
}

func ownersUsageCmd(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "owners usage", "ID [--bucket minute|hour|day] [--from T] [--to T]")
	uf := addUsageFlags(c)
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	p, err := uf.params(c)
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	r, err := cl.OwnerUsage(ctx, pos[0], p, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	fmt.Fprintf(e.stdout, "Owner %s, %s buckets from %s to %s:\n", r.Owner, r.Bucket, fmtTime(r.From, "-"), fmtTime(r.To, "-"))
	printTotals(e.stdout, r.Totals)
	if len(r.Keys) > 0 {
		fmt.Fprintln(e.stdout)
		tw := newTable(e.stdout)
		fmt.Fprintln(tw, "KEY\tNAME\tVERIFICATIONS\tLAST USED")
		for _, k := range r.Keys {
			var n int64
			for _, c := range k.Totals {
				n += c
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", k.KeyID, orDash(k.Name), n, fmtTime(k.LastUsedAt, "-"))
		}
		_ = tw.Flush()
	}
	if r.Truncated {
		fmt.Fprintln(e.stdout, "(the owner has more keys than a report reads; the first 1000 created are counted)")
	}
	return nil
}

func ownersDelete(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "owners delete", "ID")
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	if err := cl.DeleteOwner(ctx, pos[0]); err != nil {
		return cl.fail(err)
	}
	if !c.client.json {
		fmt.Fprintf(e.stdout, "Deleted owner %s's record; its keys keep their owner and lose the shared limits.\n", pos[0])
	}
	return nil
}

func printOwner(w io.Writer, o *latchkey.Owner) {
	tw := newTable(w)
	keys := make([]string, 0, len(o.Meta))
	for k := range o.Meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	meta := make([]string, len(keys))
	for i, k := range keys {
		meta[i] = fmt.Sprintf("%s=%v", k, o.Meta[k])
	}
	fmt.Fprintf(tw, "  id:\t%s\n  ratelimits:\t%s\n  quota:\t%s\n  meta:\t%s\n  updated_at:\t%s\n",
		o.ID, orDash(fmtRates(o.RateLimits)), orDash(fmtQuota(o.Quota)), joinList(meta), fmtTime(o.UpdatedAt, "-"))
	_ = tw.Flush()
}

// printTotals writes verification counts by code, busiest first.
func printTotals(w io.Writer, totals map[string]int64) {
	if len(totals) == 0 {
		fmt.Fprintln(w, "  no verifications")
		return
	}
	codes := make([]string, 0, len(totals))
	var all int64
	for c, n := range totals {
		codes = append(codes, c)
		all += n
	}
	sort.Slice(codes, func(i, j int) bool {
		if totals[codes[i]] != totals[codes[j]] {
			return totals[codes[i]] > totals[codes[j]]
		}
		return codes[i] < codes[j]
	})
	tw := newTable(w)
	for _, c := range codes {
		fmt.Fprintf(tw, "  %s:\t%d\n", c, totals[c])
	}
	fmt.Fprintf(tw, "  total:\t%d\n", all)
	_ = tw.Flush()
}
