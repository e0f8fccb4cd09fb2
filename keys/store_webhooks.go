package keys

import "github.com/latchkeyhq/latchkey"

// The webhook store's contract and records live in the domain root, so
// that the webhook dispatcher imports the root and not this package.
type (
	WebhookStore   = latchkey.WebhookStore
	ExpiringFilter = latchkey.ExpiringFilter
	DeliveryFilter = latchkey.DeliveryFilter
)
