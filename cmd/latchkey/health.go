package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/wire"
)

// runHealth is `latchkey health`: it asks a node's GET /readyz and exits 0
// when the node serves (ready, or degraded: keys verify while, say, a
// tampered audit log waits for an operator) and 1 when it does not or
// cannot be reached. It needs no key, so a container's HEALTHCHECK or a
// load balancer's probe script can run it; the image has no curl.
func runHealth(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("latchkey health", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	c := addClientFlags(fs, e)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: latchkey health [--server URL] [--timeout 3s] [--json]\n\nAsks the node's GET /readyz: exit 0 when it serves (ready or degraded), 1 otherwise.")
		fs.PrintDefaults()
	}
	if err := fs.Set("timeout", "3s"); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return errUsageShown
	}
	if fs.NArg() > 0 {
		return latchkey.Errorf(latchkey.EInvalid, "latchkey health takes no arguments")
	}
	// The client commands' settings (server, timeout, --cacert), without
	// a key: /readyz takes none.
	cl, err := c.newClient(e, false)
	if err != nil {
		return err
	}
	base, hc := cl.base, cl.http
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return latchkey.Errorf(latchkey.EInvalid, "--server %q: %s", c.server, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return latchkey.Errorf(latchkey.EUnavailable, "cannot reach %s: %s", base, readCause(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return latchkey.Errorf(latchkey.EUnavailable, "reading %s/readyz: %s", base, readCause(err))
	}
	var ready struct {
		Status string           `json:"status"` // ready or degraded
		Error  wire.ErrorDetail `json:"error"`  // why not
	}
	_ = json.Unmarshal(body, &ready) // a proxy's page is not JSON: the status code decides
	if c.json {
		e.stdout.Write(body)
	} else {
		status := ready.Status
		switch {
		case status != "":
		case ready.Error.Code != "":
			status = ready.Error.Code
		default:
			status = http.StatusText(resp.StatusCode)
		}
		fmt.Fprintf(e.stdout, "%s: %s\n", base, status)
	}
	if resp.StatusCode != http.StatusOK {
		if ready.Error.Message != "" {
			fmt.Fprintf(e.stderr, "latchkey health: %s\n", ready.Error.Message)
		}
		return errAlreadyReported
	}
	return nil
}
