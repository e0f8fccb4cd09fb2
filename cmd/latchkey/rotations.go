package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/latchkeyhq/latchkey/keys"
)

// defaultRotationCheck is --rotation-check's default.
const defaultRotationCheck = 10 * time.Second

// runRotations runs the due scheduled rotations every interval until the
// returned function is called (which waits for a run in progress). Every
// node runs it; each rotation happens once (keys.Service.RotateDue).
func runRotations(svc *keys.Service, every time.Duration, log *slog.Logger) (stop func()) {
	if every <= 0 {
		every = defaultRotationCheck // tests build the config by hand
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			n, err := svc.RotateDue(ctx)
			if err != nil && ctx.Err() == nil {
				log.Warn("scheduled key rotations failed; trying again at the next check", "err", err)
			}
			if n > 0 {
				log.Info("rotated keys on their schedules", "keys", n)
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}
