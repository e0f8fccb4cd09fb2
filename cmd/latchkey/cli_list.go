package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"

	"github.com/latchkeyhq/latchkey"
)

// pageFlags are the paging flags of list commands.
type pageFlags struct {
	limit  *int
	cursor *string
	all    *bool
}

func addPageFlags(c *command, what string) pageFlags {
	return pageFlags{
		limit:  c.fs.Int("limit", 0, what+" per page, 1-1000 (default 100)"),
		cursor: c.fs.String("cursor", "", "continue from a previous page's cursor"),
		all:    c.fs.Bool("all", false, "follow the pages to the end"),
	}
}

// query checks --limit and returns the query holding it.
func (p pageFlags) query(c *command) (url.Values, error) {
	if c.set("limit") && (*p.limit < 1 || *p.limit > 1000) {
		return nil, latchkey.Errorf(latchkey.EInvalid, "--limit must be from 1 to 1000")
	}
	q := url.Values{}
	if *p.limit > 0 {
		q.Set("limit", strconv.Itoa(*p.limit))
	}
	return q, nil
}

// listTable is how a list command shows its items to people: a header of
// tab-separated column names, and a row for each item decoded into T.
type listTable[T any] struct {
	header string
	row    func(*T) string
}

// runList is the common part of list commands: it reads path's field,
// page by page with --all, and prints the answer as JSON with --json (one
// list of every page's items with --all) or else as a table, with the
// cursor of the next page on stderr, so that a script reading the table
// sees only rows.
func runList[T any](ctx context.Context, e *env, c *command, pf pageFlags, q url.Values, path, field string, t listTable[T]) error {
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	items, next, raw, err := listPages(ctx, cl, path, field, q, *pf.cursor, *pf.all)
	if err != nil {
		return err
	}
	if c.client.json {
		if !*pf.all {
			return printJSON(e.stdout, raw)
		}
		return writeAllPages(e.stdout, field, items)
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, t.header)
	for _, it := range items {
		var v T
		if err := json.Unmarshal(it, &v); err != nil {
			return latchkey.Errorf(latchkey.EInternal, "the server listed %s this client cannot read", field)
		}
		fmt.Fprintln(tw, t.row(&v))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next != "" {
		fmt.Fprintf(e.stderr, "More %s: add --cursor %s for the next page, or --all for every page.\n", field, next)
	}
	return nil
}
