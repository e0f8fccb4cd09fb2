package main

import (
	"context"
	"fmt"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client/admin"
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
	var raw []byte
	out, err := cl.CreateTenant(ctx, id, *name, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
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
	if err := pf.check(c); err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	fetch := func(ctx context.Context, p admin.Page, o ...admin.CallOption) ([]latchkey.Tenant, string, error) {
		l, err := cl.ListTenants(ctx, p, o...)
		if err != nil {
			return nil, "", err
		}
		return l.Tenants, l.NextCursor, nil
	}
	return runList(ctx, e, c, cl, pf, "tenants", fetch, listTable[latchkey.Tenant]{
		header: "ID\tNAME\tCREATED",
		row: func(t *latchkey.Tenant) string {
			return t.ID + "\t" + orDash(t.Name) + "\t" + fmtTime(t.CreatedAt, "-")
		},
	})
}
