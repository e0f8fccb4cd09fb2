package latchkey

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Webhook is an endpoint a tenant's events are delivered to. Its signing
// secret is shown once, when it is created, and stored only sealed.
type Webhook struct {
	ID     string `json:"id"` // "whk_…"
	Tenant string `json:"tenant"`
	URL    string `json:"url"`
	// Events are the event types delivered; empty means every type.
	Events    []string  `json:"events"`
	CreatedAt time.Time `json:"created_at"`
	// SealedSecret is the signing secret sealed by a keys.Sealer with
	// WebhookSecretAAD; never shown, never plaintext.
	SealedSecret []byte `json:"-"`
}

// Wants reports whether the webhook is subscribed to events of type typ.
func (w *Webhook) Wants(typ string) bool {
	if len(w.Events) == 0 {
		return true
	}
	for _, e := range w.Events {
		if e == typ {
			return true
		}
	}
	return false
}

// WebhookSecretAAD is the additional data a webhook's signing secret is
// sealed with, so that a sealed secret copied to another webhook's row
// does not open.
func WebhookSecretAAD(tenant, id string) []byte {
	return []byte("webhook:" + tenant + ":" + id)
}

// MaxWebhookURLLen bounds a webhook's URL.
const MaxWebhookURLLen = 2048

// ValidateWebhookURL checks that u is an absolute http or https URL with a
// host, a port (if given) from 1 to 65535, no user name or password (the
// signature is the credential, and a password in a URL would be shown in
// every listing), no fragment, and at most MaxWebhookURLLen bytes. Where
// the host may point is WebhookTargets' to check. Errors: EInvalid.
func ValidateWebhookURL(u string) error {
	if u == "" {
		return Errorf(EInvalid, "url is required")
	}
	if len(u) > MaxWebhookURLLen {
		return Errorf(EInvalid, "url: at most %d characters", MaxWebhookURLLen)
	}
	p, err := url.Parse(u)
	if err != nil || !p.IsAbs() || p.Opaque != "" {
		return Errorf(EInvalid, "url %.100q: expected an absolute http or https URL such as https://hooks.example.com/latchkey", u)
	}
	if p.Scheme != "http" && p.Scheme != "https" {
		return Errorf(EInvalid, "url: the scheme must be http or https, not %.20q", p.Scheme)
	}
	if p.Hostname() == "" {
		return Errorf(EInvalid, "url %.100q has no host", u)
	}
	if port := p.Port(); port != "" || strings.HasSuffix(p.Host, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return Errorf(EInvalid, "url: the port must be from 1 to 65535, not %.10q", port)
		}
	}
	if p.User != nil {
		return Errorf(EInvalid, "url must not carry a user name or password; receivers check the webhook-signature header instead")
	}
	if p.Fragment != "" || strings.Contains(u, "#") {
		return Errorf(EInvalid, "url must not have a fragment")
	}
	for i := 0; i < len(u); i++ {
		if u[i] <= ' ' || u[i] == 0x7f {
			return Errorf(EInvalid, "url must not contain spaces or control characters")
		}
	}
	return nil
}

// NormalizeWebhookEvents checks a webhook's event filter and returns it
// without duplicates, in the order given (never nil). Errors: EInvalid.
func NormalizeWebhookEvents(events []string) ([]string, error) {
	out := make([]string, 0, len(events))
	for _, e := range events {
		if !ValidEventType(e) {
			return nil, Errorf(EInvalid, "events: %.60q is not an event type; use %s", e, strings.Join(EventTypes, ", "))
		}
		dup := false
		for _, o := range out {
			dup = dup || o == e
		}
		if !dup {
			out = append(out, e)
		}
	}
	return out, nil
}

// Delivery is one event on its way to one webhook: a row of the durable
// outbox. Its ID is the webhook-id header of every attempt, so a receiver
// can tell a retry from a new event.
type Delivery struct {
	ID        string `json:"id"` // "dlv_…"
	WebhookID string `json:"webhook_id"`
	EventID   string `json:"event_id"`
	Tenant    string `json:"tenant"`
	EventType string `json:"event_type"`
	Status    string `json:"status"` // DeliveryPending, DeliveryDelivered or DeliveryFailed
	Attempts  int    `json:"attempts"`
	// NextAttemptAt is when a pending delivery is tried next (zero once it
	// is delivered or failed).
	NextAttemptAt  time.Time `json:"next_attempt_at,omitzero"`
	LastStatusCode int       `json:"last_status_code,omitempty"`
	// LastError says why the last attempt failed: one of the
	// DeliveryFailureClasses (an HTTP status is in LastStatusCode). It never
	// holds a secret, the request's URL or an address.
	LastError   string    `json:"last_error,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`

	// Payload is the body every attempt sends.
	Payload json.RawMessage `json:"-"`
	// LeaseUntil is when a claim on the delivery (by a node sending it)
	// lapses; zero when unclaimed.
	LeaseUntil time.Time `json:"-"`
}

// Delivery statuses.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
)

// Why a delivery attempt failed: the class in Delivery.LastError. Classes
// say no more than a receiver on the public internet could learn, so that
// the delivery log does not map the network around the server.
const (
	// FailRefusedTarget: every address the host resolved to is one
	// webhooks may not reach (see WebhookTargets); no connection was made.
	FailRefusedTarget = "refused_target"
	// FailDNS: the host name did not resolve.
	FailDNS = "dns"
	// FailConnect: no connection could be made (refused, unreachable).
	FailConnect = "connect_failed"
	// FailTimeout: no answer within the attempt's time (--webhook-timeout).
	FailTimeout = "timeout"
	// FailTLS: the TLS handshake failed (certificate, protocol).
	FailTLS = "tls"
	// FailHTTPStatus: an answer other than 2xx, a redirect included; the
	// status is in LastStatusCode.
	FailHTTPStatus = "http_status"
	// FailNetwork: the connection broke, or the answer was not HTTP.
	FailNetwork = "network"
	// FailSigning: this node could not sign the request (it has no keyring,
	// or the webhook's signing secret does not open); the server log says
	// which.
	FailSigning = "signing"
)

// DeliveryFailureClasses lists every class LastError can hold.
var DeliveryFailureClasses = []string{FailRefusedTarget, FailDNS, FailConnect, FailTimeout, FailTLS, FailHTTPStatus, FailNetwork, FailSigning}

// ValidDeliveryStatus reports whether s is a delivery status.
func ValidDeliveryStatus(s string) bool {
	return s == DeliveryPending || s == DeliveryDelivered || s == DeliveryFailed
}

// Webhook signing secrets are "whsec_" and the standard base64 of 24 to 64
// random bytes, as in the Standard Webhooks specification.
const (
	WebhookSecretPrefix = "whsec_"
	minSecretBytes      = 24
	maxSecretBytes      = 64
	newSecretBytes      = 32
)

// NewWebhookSecret returns a fresh signing secret of 32 random bytes read
// from r (crypto/rand when nil).
func NewWebhookSecret(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, newSecretBytes)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", Errorf(EUnavailable, "no randomness for a webhook secret")
	}
	return WebhookSecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// ParseWebhookSecret returns the key bytes of a signing secret. The prefix
// is required; base64 with or without padding is accepted. Errors:
// EInvalid (the message never repeats the secret).
func ParseWebhookSecret(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, WebhookSecretPrefix)
	if !ok {
		return nil, Errorf(EInvalid, "a webhook secret starts with %s", WebhookSecretPrefix)
	}
	if len(rest) > base64.StdEncoding.EncodedLen(maxSecretBytes) {
		return nil, Errorf(EInvalid, "a webhook secret holds at most %d bytes", maxSecretBytes)
	}
	b, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(rest)
	}
	if err != nil {
		return nil, Errorf(EInvalid, "a webhook secret is %s followed by base64", WebhookSecretPrefix)
	}
	if len(b) < minSecretBytes || len(b) > maxSecretBytes {
		return nil, Errorf(EInvalid, "a webhook secret holds %d to %d bytes", minSecretBytes, maxSecretBytes)
	}
	return b, nil
}
