package main

import (
	"context"

	"github.com/latchkeyhq/latchkey"
)

// wakeOnUpdate returns s with one change: after each Update that commits,
// wake is called (the webhook dispatcher's Wake), so events a change
// appended go out at once rather than at the next poll. It is given to the
// key service, not to the dispatcher itself.
func wakeOnUpdate[T any](s latchkey.DB[T], wake func()) latchkey.DB[T] {
	return wakingStore[T]{s, wake}
}

type wakingStore[T any] struct {
	latchkey.DB[T]
	wake func()
}

func (w wakingStore[T]) Update(ctx context.Context, fn func(T) error) error {
	err := w.DB.Update(ctx, fn)
	if err == nil {
		w.wake()
	}
	return err
}
