// Package audit reads what the other services recorded: it lists and
// verifies the tenants' hash-chained audit logs, anchors their heads
// outside the database (Anchor), lists security events, and builds the
// compliance reports and per-key usage analytics. It appends no audit
// event itself: every change appends its own, in its own transaction.
package audit

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Options configures a Service. Zero values take the documented defaults.
type Options struct {
	Store latchkey.Store[Tx]
	// Now is the clock (default time.Now). Tests inject a fake one.
	Now    func() time.Time
	Logger *slog.Logger
	// Anchor, when set, signs audit checkpoints and keeps them outside the
	// database (the store must append through it too: the backend's
	// SetAuditAnchor); AnchorInterval is how often committed checkpoints
	// are copied to its file (default 1s): the bound on how late a rewind
	// of the database can go unnoticed.
	Anchor         *Anchor
	AnchorInterval time.Duration
	// BeforeRead, when set, runs before the log is listed or verified: the
	// secret service's FlushReadAudits, so that the queued secret.read
	// events are in what is read. Its error is logged, and the log is read
	// as stored.
	BeforeRead func(ctx context.Context) error
}

// Service answers the audit, security and report routes.
type Service struct {
	store      latchkey.Store[Tx]
	clock      func() time.Time
	log        *slog.Logger
	beforeRead func(ctx context.Context) error
	anchor     *Anchor
	anchorStop chan struct{}
	anchorDone chan struct{}
	anchorOnce sync.Once
}

// New returns a Service; with an anchor, it copies checkpoints to the
// anchor's file until Close.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{store: o.Store, clock: o.Now, log: o.Logger, beforeRead: o.BeforeRead}
	if o.Anchor != nil {
		if o.AnchorInterval <= 0 {
			o.AnchorInterval = time.Second
		}
		s.anchor, s.anchorStop, s.anchorDone = o.Anchor, make(chan struct{}), make(chan struct{})
		go s.syncAnchorLoop(o.AnchorInterval)
	}
	return s
}

// Close stops the anchor's copying and writes its file a last time. Call
// it after the HTTP server has drained and the secret service has written
// its queued read events, so the file holds every committed head.
func (s *Service) Close(ctx context.Context) error {
	if s.anchor == nil {
		return nil
	}
	s.anchorOnce.Do(func() { close(s.anchorStop) })
	<-s.anchorDone
	return s.anchor.Sync(ctx, s.store)
}

// now is the clock in the store's resolution, so that what a caller is told
// equals what a later read returns.
func (s *Service) now() time.Time { return s.clock().UTC().Truncate(time.Microsecond) }
