package postgres

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchkeyhq/latchkey"
)

var _ latchkey.ChangeFeed = (*DB)(nil)

// changeChannel is the channel of LISTEN/NOTIFY the changes go through.
const changeChannel = "latchkey_changes"

// An Update that changes what nodes may hold in memory (a key created,
// changed or revoked; keys imported; a secret written, pruned or deleted)
// notes the change (tx.changes), and sends them all in one statement just
// before it commits. PostgreSQL delivers a notification only if its
// transaction commits, after the commit, in commit order, and drops
// repeats within a transaction (a subtree suspended key by key, say).
const notifyChanges = `SELECT pg_notify('` + changeChannel + `', p) FROM unnest($1::text[]) AS p`

// change notes c, to be sent if the transaction commits. A change too long
// for a notification (a secret with a very long name) goes as a reset:
// the nodes then forget everything, which is never wrong.
func (t *Tx) change(c latchkey.Change) {
	p := c.Payload()
	if len(p) > latchkey.MaxChangePayload {
		p = latchkey.Change{Kind: latchkey.ChangeReset}.Payload()
	}
	t.changes = append(t.changes, p)
}

// sendChanges sends the changes the transaction noted.
func (t *Tx) sendChanges() error {
	if len(t.changes) == 0 {
		return nil
	}
	_, err := t.exec("send changes", notifyChanges, t.changes)
	return err
}

// Bounds of Follow's pause before it connects again after losing the feed:
// it doubles from the first to the second.
const (
	followPauseMin = 50 * time.Millisecond
	followPauseMax = 5 * time.Second
)

// Follow calls apply with each change any node commits to the database
// from the moment it listens until ctx ends, in commit order, from this
// goroutine (latchkey.ChangeFeed). It listens on a connection of its own,
// outside the pool. When it loses the connection it connects again, with
// a growing pause, and once it listens again it calls apply with
// latchkey.ChangeReset, since changes may have been missed meanwhile; a
// notification it cannot parse becomes a ChangeReset too. It returns nil
// when ctx ends, and EUnavailable when the DB is closed.
func (db *DB) Follow(ctx context.Context, apply func(latchkey.Change)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-db.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	pause := followPauseMin
	lost := false
	for ctx.Err() == nil {
		db.listen(ctx, func() {
			pause = followPauseMin
			if lost {
				apply(latchkey.Change{Kind: latchkey.ChangeReset})
			}
		}, apply)
		if ctx.Err() != nil {
			break
		}
		// The connection failed, or never came up: whatever is cached
		// may be stale once it is back.
		lost = true
		select {
		case <-ctx.Done():
		case <-time.After(pause/2 + time.Duration(rand.Int64N(int64(pause/2)))):
		}
		pause = min(2*pause, followPauseMax)
	}
	if db.closed.Load() {
		return errClosed
	}
	return nil
}

// listen runs one connection of Follow: it connects, listens, calls
// listening, then applies each notification until ctx ends or the
// connection fails.
func (db *DB) listen(ctx context.Context, listening func(), apply func(latchkey.Change)) {
	conn, err := pgx.ConnectConfig(ctx, db.pool.Config().ConnConfig.Copy())
	if err != nil {
		return
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, `LISTEN `+changeChannel); err != nil {
		return
	}
	listening()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return
		}
		c, err := latchkey.ParseChange(n.Payload)
		if err != nil {
			c = latchkey.Change{Kind: latchkey.ChangeReset}
		}
		apply(c)
	}
}
