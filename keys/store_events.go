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
	// AppendEvent stores e as pending dispatch; EConflict if its id exists.
	AppendEvent(e *latchkey.Event) error
	// Events lists a tenant's events that match f, ordered by id (creation
	// time).
	Events(tenant string, f EventFilter) ([]*latchkey.Event, error)
	// CountEvents counts a tenant's events of type typ at or after since.
	CountEvents(tenant, typ string, since time.Time) (int64, error)
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

// EventFilter narrows an event listing. Empty fields match everything.
type EventFilter struct {
	After string // only events whose id sorts after this
	Limit int    // at most this many (0: no limit)
	Type  string
	// Kind matches the "kind" of security.anomaly events' data.
	Kind  string
	KeyID string
	Since time.Time // At >= Since
	Until time.Time // At < Until
}
