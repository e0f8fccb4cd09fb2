package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client/admin"
)

// keysStats runs `latchkey keys stats ID [--bucket hour] [--since 7d]`:
// the key's usage totals, peak hours, networks and a per-bucket table.
func keysStats(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "keys stats", "ID [--bucket minute|hour|day] [--since 7d]")
	bucket := c.fs.String("bucket", "hour", "bucket of the table: minute, hour or day")
	since := c.fs.String("since", "", "from this long ago (e.g. 7d) or this RFC 3339 time (default: the last hour by minute, day by hour, 30 days by day)")
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	p := admin.UsageParams{Bucket: *bucket}
	// Without --since the server's default window follows the bucket.
	if c.set("since") {
		from, err := sinceFlag(*since)
		if err != nil {
			return err
		}
		p.From = from
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var raw []byte
	rep, err := cl.KeyUsage(ctx, pos[0], p, admin.Raw(&raw))
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	w := e.stdout
	last := "never"
	if !rep.LastUsedAt.IsZero() {
		last = rep.LastUsedAt.Format(time.RFC3339)
	}
	fmt.Fprintf(w, "key %s, %s to %s by %s; last used %s\n",
		rep.KeyID, rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339), rep.Bucket, last)
	codes := usageCodes(rep.Totals)
	var total int64
	for _, c := range codes {
		total += rep.Totals[c]
	}
	fmt.Fprintf(w, "\ntotal %d\n", total)
	t := newTable(w)
	for _, c := range codes {
		fmt.Fprintf(t, "  %s\t%d\n", c, rep.Totals[c])
	}
	t.Flush()
	if len(rep.PeakHours) > 0 {
		fmt.Fprintln(w, "\npeak hours (UTC)")
		t = newTable(w)
		for _, h := range rep.PeakHours {
			fmt.Fprintf(t, "  %02d:00\t%d\n", h.Hour, h.Count)
		}
		t.Flush()
	}
	if len(rep.Networks) > 0 {
		fmt.Fprintln(w, "\nnetworks")
		t = newTable(w)
		for _, n := range rep.Networks {
			fmt.Fprintf(t, "  %s\t%d\n", n.Network, n.Count)
		}
		t.Flush()
	}
	if total == 0 {
		return nil
	}
	// Only the buckets that saw use, so a day of hours stays short.
	fmt.Fprintln(w)
	t = newTable(w)
	fmt.Fprintf(t, "START\t%s\n", strings.Join(codes, "\t"))
	for _, b := range rep.Series {
		if len(b.Counts) == 0 {
			continue
		}
		row := make([]string, len(codes))
		for i, c := range codes {
			row[i] = fmt.Sprint(b.Counts[c])
		}
		fmt.Fprintf(t, "%s\t%s\n", b.Start.Format(time.RFC3339), strings.Join(row, "\t"))
	}
	return t.Flush()
}

// usageCodes returns the codes with counts, VALID first, then by name.
func usageCodes(totals map[string]int64) []string {
	var codes []string
	for c := range totals {
		codes = append(codes, c)
	}
	slices.SortFunc(codes, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == latchkey.CodeValid:
			return -1
		case b == latchkey.CodeValid:
			return 1
		}
		return strings.Compare(a, b)
	})
	return codes
}

// sinceFlag reads --since: a duration ago (7d) or an RFC 3339 time or date.
// Errors: EInvalid.
func sinceFlag(v string) (time.Time, error) {
	if d, err := latchkey.ParseDuration(v); err == nil {
		return time.Now().Add(-d), nil
	}
	return parseTimeFlag("since", v)
}
