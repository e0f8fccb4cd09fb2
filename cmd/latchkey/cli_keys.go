package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client/admin"
	"github.com/latchkeyhq/latchkey/wire"
)

const keysUsage = `Usage: latchkey keys <command> [flags]

Commands:
  create --name N [flags]   issue a key; its plaintext is shown once
  list [filters]            list keys in a table
  show ID                   every field of a key
  update ID [flags]         change only the fields given
  rotate ID [--grace 1h]    issue a successor; the old key works during the grace period
  suspend ID [--for 2h]     stop a key and the keys derived from it, until resumed or for a while
  resume ID                 end a suspension
  revoke ID [--reason R]    stop a key and the keys derived from it, for good
  derive ID --name N        issue a child key within the parent's scopes, resources and expiry
  verify KEY [--scope s]    check a key as a protected service would; exits 0 only if VALID
  stats ID [--bucket hour]  verifications by result, peak hours, client networks, last use
  export [--out FILE]       every key's configuration and hash as JSON lines (sensitive)
  import FILE|- [flags]     import keys: an export, a plaintext or SHA-256 list, a .env API_KEYS line
  batch OP [ID…] [flags]    revoke, suspend, resume or rotate many keys, by ids or by filter (--dry-run first)
  rotation ID [flags]       show, set (--every 30d, --grace, --secret, --reader) or stop (--off) a key's scheduled rotation

Every command takes --server URL, --key KEY, --json and --timeout, before or
after its arguments. Run 'latchkey keys <command> -h' for its flags.

Aliases, for habits from other key tools:
  generate                  create
  key-stats ID              stats ID
  --client, --client-id     --owner, on create, generate and list (list --client ID)
`

var keysCommands = map[string]func(context.Context, *env, []string) error{
	"create":   keysCreateAliased,
	"list":     keysListAliased,
	"show":     keysShow,
	"update":   keysUpdate,
	"rotate":   keysRotate,
	"suspend":  keysSuspend,
	"resume":   keysResume,
	"revoke":   keysRevoke,
	"derive":   keysDerive,
	"verify":   keysVerify,
	"stats":    keysStats,
	"export":   keysExport,
	"import":   keysImport,
	"batch":    keysBatch,
	"rotation": keysRotation,

	// Aliases: other key tools' words for create and stats; create and
	// list also take --client for --owner (cli_aliases.go).
	"generate":  keysCreateAliased,
	"key-stats": keysStats,
}

// runKeys runs `latchkey keys …`.
func runKeys(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "keys", keysUsage, keysCommands, args)
}

// settingsFlags are the flags that set a key's fields on create, update and
// derive.
type settingsFlags struct {
	c                     *command
	name, owner, env      string
	scopes, resources, ip listFlag
	meta                  metaFlag
	expires, expiresAt    string
	noExpiry, noIP        bool

	rates, quota, leaseTTL string
	uses                   int64
	maxConcurrent          int
	windows                repeatedFlag
	countries              listFlag
	noQuota                bool
	policyName             string
	condition              string
}

// addSettingsFlags registers the key field flags; forUpdate adds the flags
// that clear a field.
func addSettingsFlags(c *command, forUpdate bool) *settingsFlags {
	s := &settingsFlags{c: c}
	fs := c.fs
	fs.StringVar(&s.name, "name", "", "the key's name")
	fs.StringVar(&s.owner, "owner", "", "who the key is for (free text, e.g. a customer id)")
	fs.StringVar(&s.env, "env", "", "environment tag, e.g. production")
	fs.Var(&s.scopes, "scopes", "scopes, comma-separated or repeated; presets read, execute, manage, full")
	fs.Var(&s.resources, "resources", "resources the key is limited to, comma-separated or repeated")
	fs.Var(&s.ip, "ip", "addresses and CIDR ranges the key may be used from, comma-separated")
	fs.Var(&s.meta, "meta", "metadata key=value, repeatable (replaces the key's metadata)")
	fs.StringVar(&s.expires, "expires-in", "", "lifetime from now, e.g. 90s, 6h, 30d, 1y (the API's expires_in)")
	fs.StringVar(&s.expires, "expires", "", "the same as --expires-in")
	fs.StringVar(&s.expiresAt, "expires-at", "", "expiry as an RFC 3339 time or a date")
	fs.StringVar(&s.rates, "rate", "", rateFlagHelp)
	fs.StringVar(&s.quota, "quota", "", "quota per period, e.g. 10000/30d, 500/daily, 2000/monthly; or a credit balance, e.g. 500")
	fs.Int64Var(&s.uses, "uses", 0, "the key works this many times (a credit balance; --uses 1 is a single-use key)")
	fs.IntVar(&s.maxConcurrent, "max-concurrent", 0, "requests in flight at once (0: no limit)")
	fs.StringVar(&s.leaseTTL, "lease-ttl", "", "how long an unreleased concurrency lease lasts (default 30s)")
	fs.Var(&s.windows, "window", `when the key works, e.g. mon-fri@09:00-17:00@Europe/Berlin; repeatable ("" removes them)`)
	fs.Var(&s.countries, "countries", "ISO country codes the key may be used from, e.g. DE,FR (needs the server's --geoip-db)")
	fs.StringVar(&s.policyName, "policy", "", `the policy (or preset) the key takes its settings from, e.g. production ("" removes it)`)
	fs.StringVar(&s.condition, "condition", "", `a CEL expression each request must satisfy, e.g. 'request.method in ["GET","HEAD"]' ("" removes it)`)
	if forUpdate {
		fs.BoolVar(&s.noExpiry, "no-expiry", false, "remove the expiry")
		fs.BoolVar(&s.noIP, "no-ip", false, "remove the address allowlist")
		fs.BoolVar(&s.noQuota, "no-quota", false, "remove the quota")
	}
	return s
}

// policy sets the limit and policy fields of ks whose flags were given,
// and reports whether there was one.
func (s *settingsFlags) policy(ks *admin.KeySettings) (bool, error) {
	c := s.c
	given := false
	if c.set("rate") {
		rls, err := parseRateFlag("rate", s.rates)
		if err != nil {
			return false, err
		}
		ks.RateLimits, given = rls, true
	}
	switch {
	case c.set("uses") && (c.set("quota") || s.noQuota):
		return false, latchkey.Errorf(latchkey.EInvalid, "give --uses or --quota, not both")
	case c.set("uses"):
		if s.uses < 1 {
			return false, latchkey.Errorf(latchkey.EInvalid, "--uses must be at least 1")
		}
		n := s.uses
		ks.Quota, given = &latchkey.Quota{Remaining: &n}, true
	case c.set("quota") && s.noQuota:
		return false, latchkey.Errorf(latchkey.EInvalid, "give --quota or --no-quota, not both")
	case c.set("quota"):
		q, err := latchkey.ParseQuotaFlag(s.quota)
		if err != nil {
			return false, latchkey.Errorf(latchkey.EInvalid, "--quota: %s", latchkey.ErrorMessage(err))
		}
		ks.Quota, given = q, true
	case s.noQuota:
		ks.NoQuota, given = true, true
	}
	if c.set("max-concurrent") {
		n := s.maxConcurrent
		ks.MaxConcurrent, given = &n, true
	}
	if c.set("lease-ttl") {
		d, err := parseDurationFlag("lease-ttl", s.leaseTTL)
		if err != nil {
			return false, err
		}
		ks.LeaseTTL, given = &d, true
	}
	if c.set("window") {
		ws := []latchkey.TimeWindow{}
		for _, w := range s.windows {
			if strings.TrimSpace(w) == "" {
				continue
			}
			tw, err := latchkey.ParseTimeWindowFlag(w)
			if err != nil {
				return false, latchkey.Errorf(latchkey.EInvalid, "--window: %s", latchkey.ErrorMessage(err))
			}
			ws = append(ws, tw)
		}
		ks.TimeWindows, given = ws, true
	}
	if c.set("countries") {
		ks.Countries, given = nonNil(s.countries), true
	}
	return given, nil
}

// settings returns the key fields of exactly the flags given, and whether
// there was one, checking what can be checked before a request. Errors:
// EInvalid.
func (s *settingsFlags) settings() (ks admin.KeySettings, given bool, err error) {
	c := s.c
	str := func(flag, v string) *string {
		if !c.set(flag) {
			return nil
		}
		given = true
		return &v
	}
	ks.Name, ks.Owner, ks.Environment = str("name", s.name), str("owner", s.owner), str("env", s.env)
	ks.Policy = str("policy", s.policyName)
	ks.Condition = str("condition", s.condition)
	// A list flag given as "" is an empty list, which the API reads as
	// "none", not as "unchanged".
	if c.set("scopes") {
		ks.Scopes, given = nonNil(s.scopes), true
	}
	if c.set("resources") {
		ks.Resources, given = nonNil(s.resources), true
	}
	if c.set("meta") {
		ks.Meta, given = map[string]any(s.meta), true
		if ks.Meta == nil {
			ks.Meta = map[string]any{}
		}
	}
	switch {
	case c.set("ip") && s.noIP:
		return ks, false, latchkey.Errorf(latchkey.EInvalid, "give --ip or --no-ip, not both")
	case c.set("ip"):
		if _, err := latchkey.ParseIPAllow(s.ip); err != nil {
			return ks, false, latchkey.Errorf(latchkey.EInvalid, "--ip: %s", latchkey.ErrorMessage(err))
		}
		ks.IPAllow, given = nonNil(s.ip), true
	case s.noIP:
		ks.IPAllow, given = []string{}, true
	}
	n := 0
	for _, f := range []string{"expires", "expires-in", "expires-at", "no-expiry"} {
		if c.set(f) {
			n++
		}
	}
	if n > 1 {
		return ks, false, latchkey.Errorf(latchkey.EInvalid, "give one of --expires-in, --expires-at and --no-expiry")
	}
	switch {
	case c.set("expires") || c.set("expires-in"):
		d, err := parseDurationFlag("expires-in", s.expires)
		if err != nil {
			return ks, false, err
		}
		if d <= 0 {
			return ks, false, latchkey.Errorf(latchkey.EInvalid, "--expires-in must be positive (to end a key now, revoke it)")
		}
		ks.ExpiresIn, given = d, true
	case c.set("expires-at"):
		t, err := parseTimeFlag("expires-at", s.expiresAt)
		if err != nil {
			return ks, false, err
		}
		ks.ExpiresAt, given = t, true
	case s.noExpiry:
		ks.NoExpiry, given = true, true
	}
	more, err := s.policy(&ks)
	if err != nil {
		return ks, false, err
	}
	return ks, given || more, nil
}

func nonNil(l listFlag) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func keysCreate(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "keys create", "--name N [flags]")
	return issueKey(ctx, e, c, args, nil, "key prefix, 1-16 of a-z, 0-9 and '_' (default lk)",
		func(ctx context.Context, cl *cliClient, _ []string, p admin.KeyParams, o admin.CallOption) (*admin.IssuedKey, string, error) {
			k, err := cl.CreateKey(ctx, p, o)
			return k, "Created key", err
		})
}

// issueFunc mints a key with the admin client and returns it and the
// opening words of the headline that announces it.
type issueFunc func(ctx context.Context, cl *cliClient, pos []string, p admin.KeyParams, o admin.CallOption) (*admin.IssuedKey, string, error)

// issueKey runs a command that mints a key (create, derive): the settings
// flags, a required --name, --prefix, the request (issue), and the
// once-only output.
func issueKey(ctx context.Context, e *env, c *command, args, positional []string, prefixHelp string, issue issueFunc) error {
	s := addSettingsFlags(c, false)
	prefix := c.fs.String("prefix", "", prefixHelp)
	pos, err := c.parse(args, positional...)
	if err != nil {
		return err
	}
	if !c.set("name") {
		fmt.Fprintf(e.stderr, "%s: --name is required\n", c.fs.Name())
		c.fs.Usage()
		return errUsageShown
	}
	ks, _, err := s.settings()
	if err != nil {
		return err
	}
	p := admin.KeyParams{KeySettings: ks}
	if *prefix != "" {
		if !latchkey.ValidPrefix(*prefix) {
			return latchkey.Errorf(latchkey.EInvalid, "--prefix %q: use 1-16 of a-z, 0-9 and '_', not ending in '_'", *prefix)
		}
		p.Prefix = *prefix
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	k, headline, err := issue(ctx, cl, pos, p, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	fmt.Fprintf(e.stdout, "%s %s (%s)\n", headline, k.ID, k.Name)
	printKeySummary(e.stdout, &k.Key)
	printShownOnce(e.stdout, k.Plaintext)
	return nil
}

// policyValue writes a key's limits and windows for people:
// "burst 10/1s, hourly 1000/1h", "10000 per 30d", "500 credits",
// "mon,tue 09:00-17:00 Europe/Berlin".
func policyValue(field string, v any) (string, bool) {
	if field == "quota_usage" && v != nil {
		// The quota now, as the next verification would find it.
		raw, err := json.Marshal(v)
		var l wire.Limit
		if err != nil || json.Unmarshal(raw, &l) != nil {
			return "", false
		}
		return limitLine(&l), true
	}
	if field != "ratelimits" && field != "quota" && field != "time_windows" || v == nil {
		return "", false
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return "", false
	}
	var parts []string
	switch field {
	case "ratelimits":
		var rls []latchkey.RateLimit
		if json.Unmarshal(raw, &rls) != nil {
			return "", false
		}
		for _, r := range rls {
			parts = append(parts, fmt.Sprintf("%s %d/%s", r.Name, r.Limit, r.Window))
		}
	case "quota":
		var q latchkey.Quota
		if json.Unmarshal(raw, &q) != nil {
			return "", false
		}
		if q.IsCredit() {
			return fmt.Sprintf("%d credits", *q.Remaining), true
		}
		return fmt.Sprintf("%d per %s", q.Limit, q.Period), true
	case "time_windows":
		var ws []latchkey.TimeWindow
		if json.Unmarshal(raw, &ws) != nil {
			return "", false
		}
		for _, w := range ws {
			days := "daily"
			if len(w.Days) > 0 {
				days = strings.Join(w.Days, ",")
			}
			parts = append(parts, fmt.Sprintf("%s %s-%s %s", days, w.Start, w.End, w.TZ))
		}
	}
	return strings.Join(parts, "; "), true
}

// printKeySummary prints the fields a person checks after issuing a key.
func printKeySummary(w io.Writer, k *latchkey.Key) {
	tw := newTable(w)
	fmt.Fprintf(tw, "  scopes:\t%s\n", joinList(k.Scopes))
	if len(k.Resources) > 0 {
		fmt.Fprintf(tw, "  resources:\t%s\n", joinList(k.Resources))
	}
	if k.Environment != "" {
		fmt.Fprintf(tw, "  environment:\t%s\n", k.Environment)
	}
	fmt.Fprintf(tw, "  expires:\t%s\n", fmtTime(k.ExpiresAt, "never"))
	tw.Flush()
}

func keysList(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "keys list", "[flags]")
	owner := c.fs.String("owner", "", "only keys of this owner")
	envTag := c.fs.String("env", "", "only keys of this environment")
	state := c.fs.String("state", "", "only keys in this state: active, suspended, revoked or expired")
	name := c.fs.String("name", "", "only keys with this name")
	parent := c.fs.String("parent", "", "only keys derived from this key id")
	agent := c.fs.String("agent", "", "only keys that may act on this agent (resource agent:NAME)")
	resource := c.fs.String("resource", "", "only keys whose resources cover this resource")
	pf := addPageFlags(c, "keys")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if *state != "" && !latchkey.ValidState(latchkey.State(*state)) {
		return latchkey.Errorf(latchkey.EInvalid, "--state %q: use active, suspended, revoked or expired", *state)
	}
	if err := pf.check(c); err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	if *agent != "" && *resource != "" {
		return latchkey.Errorf(latchkey.EInvalid, "give --agent or --resource, not both")
	}
	if *agent != "" {
		*resource = "agent:" + *agent
	}
	f := admin.KeyFilter{Owner: *owner, Environment: *envTag, State: latchkey.State(*state), Name: *name, ParentID: *parent, Resource: *resource}
	fetch := func(ctx context.Context, p admin.Page, o ...admin.CallOption) ([]latchkey.Key, string, error) {
		f.Page = p
		l, err := cl.ListKeys(ctx, f, o...)
		if err != nil {
			return nil, "", err
		}
		return l.Keys, l.NextCursor, nil
	}
	return runList(ctx, e, c, cl, pf, "keys", fetch, listTable[latchkey.Key]{
		header: "ID\tNAME\tOWNER\tENV\tSTATE\tSCOPES\tEXPIRES\tCREATED",
		row: func(k *latchkey.Key) string {
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", k.ID, orDash(k.Name), orDash(k.Owner), orDash(k.Environment),
				k.State, joinList(k.Scopes), fmtTime(k.ExpiresAt, "never"), fmtTime(k.CreatedAt, "-"))
		},
	})
}

func keysShow(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "keys show", "ID")
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	if _, err := cl.GetKey(ctx, pos[0], admin.Raw(&raw)); err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	return printFields(e.stdout, raw)
}

// limitLine shows a limit's state: "3 of 10 left until …", or for a
// credit balance, which never refills, "3 of 10 left".
func limitLine(l *wire.Limit) string {
	if l.ResetAt.IsZero() {
		return fmt.Sprintf("%d of %d left", max(l.Remaining, 0), l.Limit)
	}
	return fmt.Sprintf("%d of %d left until %s", max(l.Remaining, 0), l.Limit, fmtTime(l.ResetAt, "-"))
}

// keyFields are the fields of a key in the order show prints them, always;
// fields a newer server adds follow them in name order.
var keyFields = []string{
	"id", "tenant", "name", "owner", "environment", "prefix", "start",
	"state", "state_reason", "scopes", "resources", "ip_allow", "meta",
	"expires_at", "suspended_until", "parent_id", "rotated_from", "rotated_to",
	"grace_until", "created_at", "updated_at", "revoked_at",
}

// printFields prints every field of a key object, one per line, aligned.
// It reads the answer as a map rather than a latchkey.Key so that no field
// the server sends is left out.
func printFields(w io.Writer, raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return latchkey.Errorf(latchkey.EInternal, "the server's answer is not a JSON object")
	}
	var extra []string
	for f := range m {
		if !slices.Contains(keyFields, f) {
			extra = append(extra, f)
		}
	}
	slices.Sort(extra)
	tw := newTable(w)
	for _, f := range append(slices.Clone(keyFields), extra...) {
		none := "-"
		if f == "expires_at" {
			none = "never"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", f, fieldValue(f, m[f], none))
	}
	return tw.Flush()
}

// fieldValue shows one JSON value on one line: times in RFC 3339 to the
// second, string lists comma-separated, objects as compact JSON.
func fieldValue(field string, v any, none string) string {
	if p, ok := policyValue(field, v); ok {
		if p == "" {
			return none
		}
		return p
	}
	switch v := v.(type) {
	case nil:
		return none
	case string:
		if strings.HasSuffix(field, "_at") || strings.HasSuffix(field, "_until") {
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				return fmtTime(t, none)
			}
		}
		if v == "" {
			return none
		}
		return v
	case []any:
		if len(v) == 0 {
			return none
		}
		strs := make([]string, 0, len(v))
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				strs = nil
				break
			}
			strs = append(strs, s)
		}
		if strs != nil {
			return strings.Join(strs, ",")
		}
	case map[string]any:
		if len(v) == 0 {
			return none
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func keysUpdate(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "keys update", "ID [flags]")
	s := addSettingsFlags(c, true)
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	ks, given, err := s.settings()
	if err != nil {
		return err
	}
	if !given {
		fmt.Fprintln(e.stderr, "latchkey keys update: nothing to change; give at least one field flag")
		c.fs.Usage()
		return errUsageShown
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	if _, err := cl.UpdateKey(ctx, pos[0], ks, admin.Raw(&raw)); err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	return printFields(e.stdout, raw)
}

func keysRotate(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "keys rotate", "ID [--grace 1h] [--expires-in 90d]")
	grace := c.fs.String("grace", "", `how long the old key keeps working, e.g. 1h, 7d; "0s" ends it at once (default: the server's, 1h)`)
	expires := c.fs.String("expires-in", "", "lifetime of the new key (default: the old key's lifetime)")
	c.fs.StringVar(expires, "expires", "", "the same as --expires-in")
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	var p admin.RotateParams
	if c.set("grace") {
		d, err := parseDurationFlag("grace", *grace)
		if err != nil {
			return err
		}
		p.Grace = &d
	}
	if c.set("expires") || c.set("expires-in") {
		d, err := parseDurationFlag("expires-in", *expires)
		if err != nil {
			return err
		}
		if d <= 0 {
			return latchkey.Errorf(latchkey.EInvalid, "--expires-in must be positive")
		}
		p.ExpiresIn = d
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	oldID := pos[0]
	var raw []byte
	k, err := cl.RotateKey(ctx, oldID, p, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	// The answer is the successor; when the old key stops working is on
	// the old key. The rotation has happened, so failing to read that only
	// changes the message: the new key must be printed whatever happens.
	old, oldErr := cl.GetKey(ctx, oldID)
	fmt.Fprintf(e.stdout, "Rotated key %s to %s (%s)\n", oldID, k.ID, k.Name)
	printKeySummary(e.stdout, &k.Key)
	switch {
	case oldErr != nil:
		fmt.Fprintf(e.stdout, "  the old key works until its grace period ends (see 'latchkey keys show %s')\n", oldID)
	default:
		fmt.Fprintf(e.stdout, "  old key %s works until %s\n", oldID, fmtTime(old.GraceUntil, "now"))
	}
	printShownOnce(e.stdout, k.Plaintext)
	return nil
}

func keysSuspend(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "keys suspend", "ID [--for 2h] [--reason R]")
	dur := c.fs.String("for", "", "how long, e.g. 2h or 7d (default: until resumed)")
	reason := c.fs.String("reason", "", "why, kept with the key and in the audit trail")
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	p := admin.SuspendParams{Reason: *reason}
	if c.set("for") {
		d, err := parseDurationFlag("for", *dur)
		if err != nil {
			return err
		}
		p.For = d
	}
	change := func(ctx context.Context, cl *cliClient, o admin.CallOption) (*latchkey.Key, error) {
		return cl.SuspendKey(ctx, pos[0], p, o)
	}
	return stateChange(ctx, c, change, func(k *latchkey.Key) string {
		return fmt.Sprintf("Suspended key %s and the keys derived from it until %s.", k.ID, fmtTime(k.SuspendedUntil, "resumed"))
	})
}

func keysResume(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "keys resume", "ID")
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	change := func(ctx context.Context, cl *cliClient, o admin.CallOption) (*latchkey.Key, error) {
		return cl.ResumeKey(ctx, pos[0], o)
	}
	return stateChange(ctx, c, change, func(k *latchkey.Key) string {
		return fmt.Sprintf("Resumed key %s and the keys derived from it; it is %s.", k.ID, k.State)
	})
}

func keysRevoke(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "keys revoke", "ID [--reason R]")
	reason := c.fs.String("reason", "", "why, kept with the key and in the audit trail")
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	change := func(ctx context.Context, cl *cliClient, o admin.CallOption) (*latchkey.Key, error) {
		return cl.RevokeKey(ctx, pos[0], *reason, o)
	}
	return stateChange(ctx, c, change, func(k *latchkey.Key) string {
		return fmt.Sprintf("Revoked key %s and the keys derived from it, for good.", k.ID)
	})
}

// stateChange makes a suspend, resume or revoke with change and reports
// the key's new state with describe.
func stateChange(ctx context.Context, c *command, change func(context.Context, *cliClient, admin.CallOption) (*latchkey.Key, error), describe func(*latchkey.Key) string) error {
	cl, err := c.client.newClient(c.e, true)
	if err != nil {
		return err
	}
	var raw []byte
	k, err := change(ctx, cl, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(c.e.stdout, raw)
	}
	fmt.Fprintln(c.e.stdout, describe(k))
	return nil
}

func keysDerive(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "keys derive", "PARENT_ID --name N [flags]")
	return issueKey(ctx, e, c, args, []string{"PARENT_ID"}, "key prefix (default: the parent's)",
		func(ctx context.Context, cl *cliClient, pos []string, p admin.KeyParams, o admin.CallOption) (*admin.IssuedKey, string, error) {
			k, err := cl.DeriveKey(ctx, pos[0], p, o)
			return k, "Derived from " + pos[0] + ": key", err
		})
}

func keysVerify(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "keys verify", "KEY|- [--scope s] [--resource r] [--ip A] [--cost N] [--limit tokens=1200 …]")
	var scopes listFlag
	c.fs.Var(&scopes, "scope", "a scope the key must hold; repeatable or comma-separated")
	resource := c.fs.String("resource", "", "a resource the key must reach")
	ip := c.fs.String("ip", "", "check as if the call came from this address (default: this client's)")
	cost := c.fs.Int64("cost", 1, "quota units the check consumes")
	var limits repeatedFlag
	c.fs.Var(&limits, "limit", "a named cost NAME=N spent of the key's on-request rate window NAME, e.g. tokens=1200; repeatable")
	pos, err := c.parse(args, "KEY")
	if err != nil {
		return err
	}
	key := pos[0]
	if key == "-" {
		// Reading the key from stdin keeps it out of shell history and ps.
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf("read the key from stdin: %w", err)
		}
		key = strings.TrimSpace(line)
	}
	req := admin.VerifyRequest{Key: key, Resource: *resource, IP: *ip}
	if len(scopes) > 0 {
		req.Scopes = scopes
	}
	if c.set("cost") {
		if *cost < 0 {
			return latchkey.Errorf(latchkey.EInvalid, "--cost must not be negative")
		}
		req.Cost = cost
	}
	for _, l := range limits {
		name, n, ok := strings.Cut(l, "=")
		v, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
		if !ok || strings.TrimSpace(name) == "" || err != nil || v < 0 {
			return latchkey.Errorf(latchkey.EInvalid, "--limit %q: use NAME=N, such as tokens=1200", clipFlag(l))
		}
		req.Limits = append(req.Limits, latchkey.NamedCost{Name: strings.TrimSpace(name), Cost: v})
	}
	cl, err := c.client.newClient(e, false)
	if err != nil {
		return err
	}
	var raw []byte
	v, err := cl.VerifyKey(ctx, req, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		if err := printJSON(e.stdout, raw); err != nil {
			return err
		}
	} else {
		printVerdict(e.stdout, v)
	}
	if v.Code != latchkey.CodeValid {
		return &deniedError{Code: v.Code}
	}
	return nil
}

// printVerdict prints a verification's code, then who the key belongs to
// and what is left of its limits.
func printVerdict(w io.Writer, v *admin.VerifyResponse) {
	fmt.Fprintln(w, v.Code)
	tw := newTable(w)
	line := func(label, value string) {
		if value != "" {
			fmt.Fprintf(tw, "  %s:\t%s\n", label, value)
		}
	}
	line("missing", v.Missing)
	line("key_id", v.KeyID)
	line("tenant", v.Tenant)
	line("owner", v.Owner)
	line("name", v.Name)
	line("environment", v.Environment)
	if v.KeyID != "" {
		line("scopes", joinList(v.Scopes))
		line("resources", joinList(v.Resources))
		line("expires", fmtTime(v.ExpiresAt, "never"))
	}
	if len(v.Meta) > 0 {
		line("meta", fieldValue("meta", v.Meta, "-"))
	}
	for _, l := range []struct {
		label string
		l     *wire.Limit
	}{{"ratelimit", v.RateLimit}, {"quota", v.Quota}} {
		if l.l != nil {
			line(l.label, limitLine(l.l))
		}
	}
	if v.RetryAfter > 0 {
		line("retry_after", fmt.Sprintf("%ds", v.RetryAfter))
	}
	line("limited_by", v.LimitedBy)
	tw.Flush()
}
