package keys

import (
	"time"

	"github.com/latchkeyhq/latchkey"
)

// EventStore keeps the events that webhooks deliver and that security
// listings and reports read (see latchkey.Event). An event is written in
// the transaction of its cause; the webhook dispatcher later takes pending
// events, fans each out to the endpoints subscribed to it, and marks it
// dispatched in that same transaction.
type EventStore interface {
	latchkey.EventWriter
	latchkey.EventReader
	// PendingEvents returns up to limit events of any tenant not yet
	// marked dispatched, ordered by id.
	PendingEvents(limit int) ([]*latchkey.Event, error)
	// MarkEventsDispatched marks the events dispatched; unknown ids are
	// ignored.
	MarkEventsDispatched(ids []string) error
	// PruneEvents deletes dispatched events older than before and returns
	// how many it deleted.
	PruneEvents(before time.Time) (int64, error)
}

// EventFilter is latchkey.EventFilter.
type EventFilter = latchkey.EventFilter
