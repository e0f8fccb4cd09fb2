package keys

import "github.com/latchkeyhq/latchkey"

// EventStore keeps the events that webhooks deliver and that security
// listings and reports read (see latchkey.Event). An event is written in
// the transaction of its cause; the webhook dispatcher later takes pending
// events, fans each out to the endpoints subscribed to it, and marks it
// dispatched in that same transaction.
type EventStore interface {
	latchkey.EventWriter
	latchkey.EventReader
	latchkey.EventDispatch
}

// EventFilter is latchkey.EventFilter.
type EventFilter = latchkey.EventFilter
