package main

import (
	"context"
	"fmt"
	"io"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client/admin"
)

// keysRotation is `latchkey keys rotation ID`: shows the key's rotation
// schedule; with --every sets it, with --off removes it.
func keysRotation(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "keys rotation", "ID [--every 30d [--grace 24h] [--secret NAME] [--reader KEY_ID] | --off]")
	every := c.fs.String("every", "", "rotate the key on this schedule, e.g. 30d (at least 1h)")
	grace := c.fs.String("grace", "", "how long a rotated key keeps working (default 24h; at least 1m)")
	secret := c.fs.String("secret", "", "the secret each successor is sealed as (default key-<the key's name>)")
	reader := c.fs.String("reader", "", "the key id that alone may read that secret through the broker")
	off := c.fs.Bool("off", false, "stop rotating the key")
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	setting := c.set("every") || c.set("grace") || c.set("secret") || c.set("reader")
	if *off && setting {
		return latchkey.Errorf(latchkey.EInvalid, "give --off or the schedule's flags, not both")
	}
	if setting && !c.set("every") {
		return latchkey.Errorf(latchkey.EInvalid, "--every is needed to set a schedule")
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	if *off {
		if err := cl.DeleteRotation(ctx, pos[0]); err != nil {
			return cl.fail(err)
		}
		if !c.client.json {
			fmt.Fprintf(e.stdout, "Key %s no longer rotates on a schedule.\n", pos[0])
		}
		return nil
	}
	var raw []byte
	var rot *admin.Rotation
	if setting {
		p := admin.RotationParams{Secret: *secret, Reader: *reader}
		if p.Every, err = parseDurationFlag("every", *every); err != nil {
			return err
		}
		if c.set("grace") {
			g, err := parseDurationFlag("grace", *grace)
			if err != nil {
				return err
			}
			p.Grace = &g
		}
		rot, err = cl.SetRotation(ctx, pos[0], p, admin.Raw(&raw))
	} else {
		rot, err = cl.GetRotation(ctx, pos[0], admin.Raw(&raw))
	}
	if err != nil {
		return cl.fail(err)
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	printRotation(e.stdout, rot)
	return nil
}

func printRotation(w io.Writer, r *admin.Rotation) {
	fmt.Fprintf(w, "Key %s rotates every %s (old key works %s more); next at %s.\n", r.KeyID, r.Interval, r.GracePeriod, fmtTime(r.NextAt, "-"))
	reader := "any key whose scopes and resources reach it"
	if r.Reader != "" {
		reader = "key " + r.Reader + " only"
	}
	fmt.Fprintf(w, "Each successor is sealed as secret %s, readable by %s (GET /keys/%s).\n", r.Secret, reader, r.Secret)
}
