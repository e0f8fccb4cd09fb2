package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client/admin"
)

const auditUsage = `Usage: latchkey audit <command> [flags]

Commands:
  verify   check the tenant's hash chain and its signed head; exit 1 and name
           what was found (a finding such as rows_past_head, truncated,
           head_forged, rewound) and the first bad seq if broken
  export   write every event as JSON lines (stdout)
  tail     print the latest events; --follow keeps printing new ones

They need a key with audit:read. Every command takes --server URL, --key KEY,
--json and --timeout.
`

var auditCommands = map[string]func(context.Context, *env, []string) error{
	"verify": auditVerify,
	"export": auditExport,
	"tail":   auditTail,
}

func runAudit(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "audit", auditUsage, auditCommands, args)
}

func auditVerify(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "audit verify", "")
	if _, err := c.parse(args); err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	v, err := cl.VerifyAudit(ctx, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		if err := printJSON(e.stdout, raw); err != nil {
			return err
		}
	} else if v.OK && v.Signed {
		fmt.Fprintf(e.stdout, "audit log intact: %d events, every hash and link checks out, and it ends at its signed head\n", v.Events)
	} else if v.OK {
		fmt.Fprintf(e.stdout, "audit log intact: %d events, every hash and link checks out (no signed head yet)\n", v.Events)
	} else {
		fmt.Fprintf(e.stdout, "audit log BROKEN at seq %d: %s: %s (%d events before it check out)\n", v.BrokenAt, v.Finding, v.Reason, v.Events)
	}
	if !v.OK {
		return &deniedError{Code: "BROKEN"}
	}
	return nil
}

// auditFilterFlags are the filters export and tail share.
type auditFilterFlags struct {
	since, until, action, keyID string
}

func addAuditFilterFlags(c *command) *auditFilterFlags {
	f := &auditFilterFlags{}
	c.fs.StringVar(&f.since, "since", "", "only events at or after this RFC 3339 time, or this long ago (e.g. 24h)")
	c.fs.StringVar(&f.until, "until", "", "only events before this RFC 3339 time")
	c.fs.StringVar(&f.action, "action", "", "only this action, e.g. key.revoked")
	c.fs.StringVar(&f.keyID, "key-id", "", "only events by or about this key")
	return f
}

// filter checks the flags and returns the filter they give. Errors:
// EInvalid.
func (f *auditFilterFlags) filter() (admin.AuditFilter, error) {
	q := admin.AuditFilter{Action: f.action, KeyID: f.keyID}
	if f.since != "" {
		if d, err := latchkey.ParseDuration(f.since); err == nil {
			q.Since = time.Now().Add(-d)
		} else {
			t, err := parseTimeFlag("since", f.since)
			if err != nil {
				return q, err
			}
			q.Since = t
		}
	}
	if f.until != "" {
		t, err := parseTimeFlag("until", f.until)
		if err != nil {
			return q, err
		}
		q.Until = t
	}
	return q, nil
}

func auditExport(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "audit export", "[--since T] [--until T] [--action A] [--key-id ID] > audit.jsonl")
	f := addAuditFilterFlags(c)
	if _, err := c.parse(args); err != nil {
		return err
	}
	q, err := f.filter()
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	body, err := cl.ExportAudit(ctx, q)
	if err != nil {
		return cl.fail(err)
	}
	defer body.Close()
	if n, err := io.Copy(e.stdout, body); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return latchkey.Errorf(latchkey.EUnavailable, "the export broke off after %d bytes: %s", n, readCause(err))
	}
	return nil
}

func auditTail(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "audit tail", "[-n 20] [--follow] [--interval 2s] [filters]")
	f := addAuditFilterFlags(c)
	n := c.fs.Int("n", 20, "how many of the latest events to print first")
	follow := c.fs.Bool("follow", false, "keep printing new events until interrupted")
	interval := c.fs.Duration("interval", 2*time.Second, "how often --follow asks for new events")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if *interval < 100*time.Millisecond {
		return latchkey.Errorf(latchkey.EInvalid, "--interval must be at least 100ms")
	}
	q, err := f.filter()
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	// Page to the end, keeping the last n.
	var last []*latchkey.AuditEvent
	var after int64
	for {
		page, next, err := auditPage(ctx, cl, q, after)
		if err != nil {
			return err
		}
		last = append(last, page...)
		if len(last) > *n {
			last = last[len(last)-*n:]
		}
		if len(page) > 0 {
			after = page[len(page)-1].Seq
		}
		if next == 0 {
			break
		}
	}
	printEvents(e.stdout, last, c.client.json)
	for *follow {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
		page, _, err := auditPage(ctx, cl, q, after)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(page) > 0 {
			after = page[len(page)-1].Seq
			printEvents(e.stdout, page, c.client.json)
		}
	}
	return nil
}

// auditPage reads the page of events after the seq after.
func auditPage(ctx context.Context, cl *cliClient, f admin.AuditFilter, after int64) ([]*latchkey.AuditEvent, int64, error) {
	f.After = after
	p, err := cl.ListAudit(ctx, f)
	if err != nil {
		return nil, 0, cl.fail(err)
	}
	return p.Events, p.NextAfter, nil
}

// printEvents writes one line per event: JSON lines with --json, else
// seq, time, action, target, actor, address and details.
func printEvents(w io.Writer, evs []*latchkey.AuditEvent, asJSON bool) {
	for _, ev := range evs {
		if asJSON {
			b, _ := json.Marshal(ev)
			fmt.Fprintf(w, "%s\n", b)
			continue
		}
		var det []string
		for k, v := range ev.Details {
			det = append(det, k+"="+v)
		}
		slices.Sort(det)
		fmt.Fprintf(w, "%6d  %s  %-15s %-31s by %-31s %-15s %s\n", ev.Seq, ev.At.UTC().Format(time.RFC3339),
			ev.Action, orDash(ev.TargetKeyID), orDash(ev.ActorKeyID), orDash(ev.IP), strings.Join(det, " "))
	}
}
