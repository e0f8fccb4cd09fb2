package main

import (
	"context"
	"fmt"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client/admin"
)

// runEvents runs `latchkey events`: the tenant's security events (GET
// /v1/security-events, docs/security.md), oldest first, one page at a time.
func runEvents(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "events", "[--kind K] [--key-id ID] [--since 7d] [--until T] [--after ID] [--limit N]")
	kind := c.fs.String("kind", "", "only this kind, e.g. new_network, usage_spike, scopes_widened")
	keyID := c.fs.String("key-id", "", "only events about this key")
	since := c.fs.String("since", "", "from this long ago (e.g. 7d) or this RFC 3339 time or date")
	until := c.fs.String("until", "", "before this RFC 3339 time or date")
	after := c.fs.String("after", "", "continue after this event id (the previous page's next cursor)")
	limit := c.fs.Int("limit", 0, "events per page, 1-1000 (default 100)")
	if _, err := c.parse(args); err != nil {
		return err
	}
	f := admin.SecurityFilter{Kind: *kind, KeyID: *keyID, After: *after}
	if c.set("since") {
		t, err := sinceFlag(*since)
		if err != nil {
			return err
		}
		f.Since = t
	}
	if c.set("until") {
		t, err := parseTimeFlag("until", *until)
		if err != nil {
			return err
		}
		f.Until = t
	}
	if c.set("limit") {
		if *limit < 1 || *limit > 1000 {
			return latchkey.Errorf(latchkey.EInvalid, "--limit must be from 1 to 1000")
		}
		f.Limit = *limit
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	page, err := cl.ListSecurityEvents(ctx, f, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "AT\tKIND\tSEVERITY\tKEY\tNETWORK\tSUMMARY")
	for _, ev := range page.Events {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", fmtTime(ev.At, "-"), ev.Kind, orDash(ev.Severity), orDash(ev.KeyID), orDash(ev.Network), ev.Summary)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.NextCursor != "" {
		fmt.Fprintf(e.stderr, "More events: add --after %s for the next page.\n", page.NextCursor)
	}
	return nil
}
