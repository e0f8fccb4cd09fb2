package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
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
	var v audit.Verdict
	raw, err := cl.call(ctx, "GET", "/v1/audit/verify", nil, nil, &v)
	if err != nil {
		return err
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

func (f *auditFilterFlags) query() (url.Values, error) {
	q := url.Values{}
	if f.since != "" {
		if d, err := latchkey.ParseDuration(f.since); err == nil {
			q.Set("since", time.Now().Add(-d).UTC().Format(time.RFC3339Nano))
		} else {
			t, err := parseTimeFlag("since", f.since)
			if err != nil {
				return nil, err
			}
			q.Set("since", t.UTC().Format(time.RFC3339Nano))
		}
	}
	if f.until != "" {
		t, err := parseTimeFlag("until", f.until)
		if err != nil {
			return nil, err
		}
		q.Set("until", t.UTC().Format(time.RFC3339Nano))
	}
	if f.action != "" {
		q.Set("action", f.action)
	}
	if f.keyID != "" {
		q.Set("key_id", f.keyID)
	}
	return q, nil
}

func auditExport(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "audit export", "[--since T] [--until T] [--action A] [--key-id ID] > audit.jsonl")
	f := addAuditFilterFlags(c)
	if _, err := c.parse(args); err != nil {
		return err
	}
	q, err := f.query()
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	raw, err := cl.call(ctx, "GET", "/v1/audit/export", q, nil, nil)
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(raw)
	return err
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
	q, err := f.query()
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

func auditPage(ctx context.Context, cl *apiClient, q url.Values, after int64) ([]*latchkey.AuditEvent, int64, error) {
	pq := url.Values{}
	for k, v := range q {
		pq[k] = v
	}
	pq.Set("after", strconv.FormatInt(after, 10))
	var out struct {
		Events    []*latchkey.AuditEvent `json:"events"`
		NextAfter int64                  `json:"next_after"`
	}
	_, err := cl.call(ctx, "GET", "/v1/audit", pq, nil, &out)
	return out.Events, out.NextAfter, err
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
