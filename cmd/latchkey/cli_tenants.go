package main

import (
	"context"
	"fmt"

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
	pf := addPageFlags(c, "tenants")
	if _, err := c.parse(args); err != nil {
		return err
	}
	q, err := pf.query(c)
	if err != nil {
		return err
	}
	return runList(ctx, e, c, pf, q, "/v1/tenants", "tenants", listTable[latchkey.Tenant]{
		header: "ID\tNAME\tCREATED",
		row: func(t *latchkey.Tenant) string {
			return t.ID + "\t" + orDash(t.Name) + "\t" + fmtTime(t.CreatedAt, "-")
		},
	})
}
