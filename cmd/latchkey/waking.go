package main

import (
	"context"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// wakeOnUpdate returns s with one change: after each Update that commits,
// wake is called (the webhook dispatcher's Wake), so events a change
// appended go out at once rather than at the next poll. It is given to the
// key service, not to the dispatcher itself.
func wakeOnUpdate(s keys.Store, wake func()) keys.Store { return wakingStore{s, wake} }

type wakingStore struct {
	keys.Store
	wake func()
}

// KeyByHash passes the verify path's transaction-free lookup through
// (latchkey.ReadKeyByHash).
func (w wakingStore) KeyByHash(ctx context.Context, h [32]byte) (*latchkey.Key, error) {
	return latchkey.ReadKeyByHash[keys.Tx](ctx, w.Store, h)
}

func (w wakingStore) Update(ctx context.Context, fn func(keys.Tx) error) error {
	err := w.Store.Update(ctx, fn)
	if err == nil {
		w.wake()
	}
	return err
}
