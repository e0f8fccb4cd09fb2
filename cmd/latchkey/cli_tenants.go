package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"

	"github.com/latchkeyhq/latchkey"
)

const tenantsUsage = `Usage: latchkey tenants <command> [flags]

Commands:
  create ID [--name N]   create a tenant; its first admin key is shown once
  list                   list tenants

Both need the operator's root key. Every command takes --server URL,
--key KEY, --json and --timeout. Run 'latchkey tenants <command> -h' for its
flags.
`

var tenantsCommands = map[string]func(context.Context, *env, []string) error{
	"create": tenantsCreate,
	"list":   tenantsList,
}

// runTenants runs `latchkey tenants …`.
func runTenants(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "tenants", tenantsUsage, tenantsCommands, args)
}

func tenantsCreate(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "tenants create", "ID [--name N]")
	name := c.fs.String("name", "", "display name (default: the id)")
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	id := pos[0]
	if !latchkey.ValidTenantID(id) {
		return latchkey.Errorf(latchkey.EInvalid, "tenant id %q: use 1-63 of a-z, 0-9, '_' and '-', starting with a letter or digit", id)
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	body := map[string]any{"id": id}
	if *name != "" {
		body["name"] = *name
	}
	var out struct {
		Tenant latchkey.Tenant `json:"tenant"`
		KeyID  string          `json:"key_id"`
		Key    string          `json:"key"`
	}
	raw, err := cl.call(ctx, "POST", "/v1/tenants", nil, body, &out)
	if err != nil {
		return err
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	fmt.Fprintf(e.stdout, "Created tenant %s (%s)\n", out.Tenant.ID, out.Tenant.Name)
	fmt.Fprintf(e.stdout, "  admin key: %s (holds every tenant admin scope)\n", out.KeyID)
	printShownOnce(e.stdout, out.Key)
	return nil
}

func tenantsList(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "tenants list", "[flags]")
	limit := c.fs.Int("limit", 0, "tenants per page, 1-1000 (default 100)")
	cursor := c.fs.String("cursor", "", "continue from a previous page's cursor")
	all := c.fs.Bool("all", false, "follow the pages to the end")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if c.set("limit") && *limit < 1 {
		return latchkey.Errorf(latchkey.EInvalid, "--limit must be at least 1")
	}
	q := url.Values{}
	if *limit > 0 {
		q.Set("limit", strconv.Itoa(*limit))
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	items, next, raw, err := listPages(ctx, cl, "/v1/tenants", "tenants", q, *cursor, *all)
	if err != nil {
		return err
	}
	if c.client.json {
		if !*all {
			return printJSON(e.stdout, raw)
		}
		return writeAllPages(e.stdout, "tenants", items)
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "ID\tNAME\tCREATED")
	for _, it := range items {
		var t latchkey.Tenant
		if err := json.Unmarshal(it, &t); err != nil {
			return latchkey.Errorf(latchkey.EInternal, "the server listed a tenant this client cannot read")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, orDash(t.Name), fmtTime(t.CreatedAt, "-"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next != "" {
		fmt.Fprintf(e.stderr, "More tenants: add --cursor %s for the next page, or --all for every page.\n", next)
	}
	return nil
}
