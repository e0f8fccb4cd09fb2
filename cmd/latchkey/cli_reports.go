package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/client/admin"
)

const reportsUsage = `Usage: latchkey reports <report> [--from T] [--to T] [--format json|csv] [--out FILE]

Reports (of the key's tenant; see docs/reports.md for the columns):
  access     who holds which keys, with which scopes, and a summary per owner
  usage      verifications per key and per owner in the window, by result
  security   security anomalies in the window and the responses to them

--from and --to take an RFC 3339 time or a date (2026-05-01, midnight UTC);
--from also takes a duration meaning that long ago (7d). The window is
[from, to): by default the 30 days up to now, at most 366 days. The report
goes to stdout, or to --out FILE (created 0600). They need a key with
audit:read. Every command takes --server URL, --key KEY and --timeout.
`

var reportsCommands = map[string]func(context.Context, *env, []string) error{
	"access":   func(ctx context.Context, e *env, args []string) error { return reportCmd(ctx, e, "access", args) },
	"usage":    func(ctx context.Context, e *env, args []string) error { return reportCmd(ctx, e, "usage", args) },
	"security": func(ctx context.Context, e *env, args []string) error { return reportCmd(ctx, e, "security", args) },
}

func runReports(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "reports", reportsUsage, reportsCommands, args)
}

func reportCmd(ctx context.Context, e *env, kind string, args []string) error {
	c := newCommand(e, "reports "+kind, "[--from T] [--to T] [--format json|csv] [--out FILE]")
	from := c.fs.String("from", "", "start of the window: RFC 3339 time, date (midnight UTC), or a duration ago such as 7d (default: 30 days before --to)")
	to := c.fs.String("to", "", "end of the window, exclusive: RFC 3339 time or date (default: now)")
	format := c.fs.String("format", "json", "json or csv")
	out := c.fs.String("out", "", "write the report to this file instead of stdout")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if *format != "json" && *format != "csv" {
		return latchkey.Errorf(latchkey.EInvalid, "--format %q: use json or csv", *format)
	}
	if c.client.json && *format == "csv" {
		return latchkey.Errorf(latchkey.EInvalid, "--json and --format csv contradict each other")
	}
	var w admin.ReportWindow
	if *from != "" {
		t, err := audit.ParseReportTime(*from)
		if err != nil {
			d, derr := latchkey.ParseDuration(*from)
			if derr != nil {
				return latchkey.Errorf(latchkey.EInvalid, "--from %q: expected an RFC 3339 time, a date such as 2026-05-01, or a duration such as 7d", *from)
			}
			t = time.Now().Add(-d)
		}
		w.From = t
	}
	if *to != "" {
		t, err := audit.ParseReportTime(*to)
		if err != nil {
			return latchkey.Errorf(latchkey.EInvalid, "--to %q: expected an RFC 3339 time or a date such as 2026-06-01", *to)
		}
		w.To = t
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	raw, err := fetchReport(ctx, cl, kind, *format, w)
	if err != nil {
		return cl.fail(err)
	}
	if *out == "" {
		if *format == "json" {
			return printJSON(e.stdout, raw)
		}
		_, err := e.stdout.Write(raw)
		return err
	}
	if *format == "json" {
		var buf bytes.Buffer
		if err := printJSON(&buf, raw); err != nil {
			return err
		}
		raw = buf.Bytes()
	}
	if err := os.WriteFile(*out, raw, 0o600); err != nil {
		return latchkey.Errorf(latchkey.EInvalid, "--out: %s", err.Error())
	}
	fmt.Fprintf(e.stderr, "wrote the %s report to %s (%d bytes)\n", kind, *out, len(raw))
	return nil
}

// fetchReport reads the report kind in format (json or csv) as the server
// sent it.
func fetchReport(ctx context.Context, cl *cliClient, kind, format string, w admin.ReportWindow) ([]byte, error) {
	if format == "csv" {
		return cl.ReportCSV(ctx, kind, w)
	}
	var raw []byte
	var err error
	switch kind {
	case admin.ReportKindAccess:
		_, err = cl.ReportAccess(ctx, w, admin.Raw(&raw))
	case admin.ReportKindUsage:
		_, err = cl.ReportUsage(ctx, w, admin.Raw(&raw))
	default:
		_, err = cl.ReportSecurity(ctx, w, admin.Raw(&raw))
	}
	return raw, err
}
