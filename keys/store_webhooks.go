package keys

// WebhookStore keeps webhook endpoints and their deliveries (the outbox).
type WebhookStore interface {
}
