package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client/admin"
)

const webhooksUsage = `Usage: latchkey webhooks <command> [flags]

Commands:
  create --url U [--events a,b]   register an endpoint; its signing secret is shown once
  list                            list the tenant's webhooks
  show ID                         one webhook
  rm ID                           delete a webhook and its delivery log
  deliveries ID [--status S]      a webhook's delivery log, newest first
  retry ID DELIVERY_ID            send a delivered or failed delivery once more, now

Event types: key.created, key.rotated, key.revoked, key.suspended,
key.expiring, key.quota_exhausted, security.anomaly (no --events: all).
They need a key with webhooks:write. Every command takes --server URL,
--key KEY, --json and --timeout.
`

var webhooksCommands = map[string]func(context.Context, *env, []string) error{
	"create":     webhooksCreate,
	"list":       webhooksList,
	"show":       webhooksShow,
	"rm":         webhooksRemove,
	"deliveries": webhooksDeliveries,
	"retry":      webhooksRetry,
}

// runWebhooks runs `latchkey webhooks …`.
func runWebhooks(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "webhooks", webhooksUsage, webhooksCommands, args)
}

func webhooksCreate(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "webhooks create", "--url URL [--events key.revoked,key.expiring]")
	u := c.fs.String("url", "", "the endpoint (http or https) that receives signed POSTs")
	var events listFlag
	c.fs.Var(&events, "events", "event types to deliver, comma-separated or repeated (default: all)")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if err := latchkey.ValidateWebhookURL(*u); err != nil {
		return latchkey.Errorf(latchkey.EInvalid, "--%s", latchkey.ErrorMessage(err))
	}
	evs, err := latchkey.NormalizeWebhookEvents(events)
	if err != nil {
		return latchkey.Errorf(latchkey.EInvalid, "--%s", latchkey.ErrorMessage(err))
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	out, err := cl.CreateWebhook(ctx, *u, evs, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	fmt.Fprintf(e.stdout, "Created webhook %s\n", out.ID)
	printWebhook(e.stdout, &out.Webhook)
	fmt.Fprintf(e.stdout, "\n  signing secret: %s\n\nThe secret is shown only this once; Latchkey stores it sealed. Receivers check\nthe webhook-signature header with it (see docs/webhooks.md).\n", out.Secret)
	return nil
}

func printWebhook(w io.Writer, h *latchkey.Webhook) {
	tw := newTable(w)
	events := "all"
	if len(h.Events) > 0 {
		events = joinList(h.Events)
	}
	fmt.Fprintf(tw, "  id:\t%s\n  url:\t%s\n  events:\t%s\n  created_at:\t%s\n", h.ID, h.URL, events, fmtTime(h.CreatedAt, "-"))
	_ = tw.Flush()
}

func webhooksList(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "webhooks list", "[flags]")
	pf := addPageFlags(c, "webhooks")
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
	fetch := func(ctx context.Context, p admin.Page, o ...admin.CallOption) ([]latchkey.Webhook, string, error) {
		l, err := cl.ListWebhooks(ctx, p, o...)
		if err != nil {
			return nil, "", err
		}
		return l.Webhooks, l.NextCursor, nil
	}
	return runList(ctx, e, c, cl, pf, "webhooks", fetch, listTable[latchkey.Webhook]{
		header: "ID\tURL\tEVENTS\tCREATED",
		row: func(h *latchkey.Webhook) string {
			events := "all"
			if len(h.Events) > 0 {
				events = joinList(h.Events)
			}
			return h.ID + "\t" + h.URL + "\t" + events + "\t" + fmtTime(h.CreatedAt, "-")
		},
	})
}

func webhooksShow(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "webhooks show", "ID")
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	h, err := cl.GetWebhook(ctx, pos[0], admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	printWebhook(e.stdout, h)
	return nil
}

func webhooksRemove(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "webhooks rm", "ID")
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	if err := cl.DeleteWebhook(ctx, pos[0]); err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, []byte(`{"deleted": `+strconv.Quote(pos[0])+`}`))
	}
	fmt.Fprintf(e.stdout, "Deleted webhook %s and its delivery log; deliveries still pending will not be sent.\n", pos[0])
	return nil
}

func webhooksDeliveries(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "webhooks deliveries", "ID [--status pending|delivered|failed]")
	status := c.fs.String("status", "", "only deliveries with this status: pending, delivered or failed")
	pf := addPageFlags(c, "deliveries")
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	if err := pf.check(c); err != nil {
		return err
	}
	if *status != "" && !latchkey.ValidDeliveryStatus(*status) {
		return latchkey.Errorf(latchkey.EInvalid, "--status must be pending, delivered or failed")
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	fetch := func(ctx context.Context, p admin.Page, o ...admin.CallOption) ([]latchkey.Delivery, string, error) {
		l, err := cl.ListDeliveries(ctx, pos[0], admin.DeliveryFilter{Status: *status, Page: p}, o...)
		if err != nil {
			return nil, "", err
		}
		return l.Deliveries, l.NextCursor, nil
	}
	return runList(ctx, e, c, cl, pf, "deliveries", fetch, listTable[latchkey.Delivery]{
		header: "ID\tEVENT\tSTATUS\tATTEMPTS\tLAST\tNEXT ATTEMPT\tCREATED",
		row: func(d *latchkey.Delivery) string {
			last := d.LastError
			switch {
			case d.LastStatusCode == 0:
			case last == "":
				last = "HTTP " + strconv.Itoa(d.LastStatusCode)
			case last == latchkey.FailHTTPStatus:
				last += " " + strconv.Itoa(d.LastStatusCode)
			}
			return fmt.Sprintf("%s\t%s\t%s\t%d\t%s\t%s\t%s", d.ID, d.EventType, d.Status, d.Attempts, orDash(last),
				fmtTime(d.NextAttemptAt, "-"), fmtTime(d.CreatedAt, "-"))
		},
	})
}

func webhooksRetry(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "webhooks retry", "ID DELIVERY_ID")
	pos, err := c.parse(args, "ID", "DELIVERY_ID")
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	d, err := cl.RetryDelivery(ctx, pos[0], pos[1], admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	fmt.Fprintf(e.stdout, "Delivery %s (%s) is pending again; it is sent now, with the same webhook-id.\n", d.ID, d.EventType)
	return nil
}
