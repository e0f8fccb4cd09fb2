package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client/admin"
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

// check checks --limit. Errors: EInvalid.
func (p pageFlags) check(c *command) error {
	if c.set("limit") && (*p.limit < 1 || *p.limit > 1000) {
		return latchkey.Errorf(latchkey.EInvalid, "--limit must be from 1 to 1000")
	}
	return nil
}

// listTable is how a list command shows its items to people: a header of
// tab-separated column names, and a row for each item.
type listTable[T any] struct {
	header string
	row    func(*T) string
}

// listPage reads one page of a list from the admin client: its items and
// the cursor of the next page ("" at the end).
type listPage[T any] func(ctx context.Context, p admin.Page, opts ...admin.CallOption) (items []T, next string, err error)

// runList is the common part of list commands: it reads the list, page
// by page with --all, and prints the answer as JSON with --json (the
// server's page as it is, or with --all one list of every page's items
// under field, as the server sent them) or else as a table, with the
// cursor of the next page on stderr, so that a script reading the table
// sees only rows.
func runList[T any](ctx context.Context, e *env, c *command, cl *cliClient, pf pageFlags, field string, fetch listPage[T], t listTable[T]) error {
	var (
		items    []T
		rawItems []json.RawMessage
		raw      []byte
		next     string
	)
	cursor := *pf.cursor
	for {
		got, nc, err := fetch(ctx, admin.Page{Cursor: cursor, Limit: *pf.limit}, admin.Raw(&raw))
		if err != nil {
			return cl.fail(err)
		}
		items, next = append(items, got...), nc
		if c.client.json && *pf.all {
			var page map[string]json.RawMessage
			var ri []json.RawMessage
			if json.Unmarshal(raw, &page) != nil || json.Unmarshal(page[field], &ri) != nil && len(page[field]) > 0 {
				return latchkey.Errorf(latchkey.EInternal, "the server listed %s this client cannot read", field)
			}
			rawItems = append(rawItems, ri...)
		}
		if !*pf.all || next == "" {
			break
		}
		if next == cursor {
			return latchkey.Errorf(latchkey.EInternal, "the server returned the same page of %s twice", field)
		}
		cursor = next
	}
	if c.client.json {
		if !*pf.all {
			return printJSON(e.stdout, raw)
		}
		return writeAllPages(e.stdout, field, rawItems)
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, t.header)
	for i := range items {
		fmt.Fprintln(tw, t.row(&items[i]))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next != "" {
		fmt.Fprintf(e.stderr, "More %s: add --cursor %s for the next page, or --all for every page.\n", field, next)
	}
	return nil
}

// writeAllPages prints the items of every page as one list answer.
func writeAllPages(w io.Writer, field string, items []json.RawMessage) error {
	if items == nil {
		items = []json.RawMessage{}
	}
	b, err := json.Marshal(map[string]any{field: items, "next_cursor": ""})
	if err != nil {
		return err
	}
	return printJSON(w, b)
}
