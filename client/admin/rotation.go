package admin

import (
	"context"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Rotation is a key's rotation schedule as the server answers it.
type Rotation struct {
	ID          string            `json:"id"`
	KeyID       string            `json:"key_id"`
	Interval    latchkey.Duration `json:"interval"`
	GracePeriod latchkey.Duration `json:"grace_period"`
	Secret      string            `json:"secret_name"`
	Reader      string            `json:"reader"`
	NextAt      time.Time         `json:"next_at"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
}

// RotationParams are SetRotation's.
type RotationParams struct {
	// Every is the time between rotations (at least 1h).
	Every time.Duration
	// Grace is how long a rotated key keeps working (nil: the server's
	// default, 24h).
	Grace *time.Duration
	// Secret names the secret each successor is sealed as (default
	// key-<the key's name>).
	Secret string
	// Reader is the key id that alone may read that secret.
	Reader string
}

// SetRotation makes key id rotate on a schedule, or changes its schedule
// (PUT /v1/keys/{id}/rotation). Needs keys:write. Errors: invalid,
// not_found, conflict, unavailable (no keyring on the server).
func (c *Client) SetRotation(ctx context.Context, id string, p RotationParams, opts ...CallOption) (*Rotation, error) {
	if p.Every <= 0 {
		return nil, invalid("Every must be positive")
	}
	body := struct {
		Interval    string `json:"interval"`
		GracePeriod string `json:"grace_period,omitempty"`
		Secret      string `json:"secret_name,omitempty"`
		Reader      string `json:"reader,omitempty"`
	}{Interval: latchkey.FormatDuration(p.Every), Secret: p.Secret, Reader: p.Reader}
	if p.Grace != nil {
		body.GracePeriod = latchkey.FormatDuration(*p.Grace)
	}
	return do[Rotation](ctx, c, request{method: "PUT", path: "/v1/keys/" + esc(id) + "/rotation", body: body}, opts)
}

// GetRotation reads key id's rotation schedule (GET
// /v1/keys/{id}/rotation). Needs keys:read. Errors: not_found.
func (c *Client) GetRotation(ctx context.Context, id string, opts ...CallOption) (*Rotation, error) {
	return do[Rotation](ctx, c, request{method: "GET", path: "/v1/keys/" + esc(id) + "/rotation"}, opts)
}

// DeleteRotation stops key id's scheduled rotation (DELETE
// /v1/keys/{id}/rotation). Needs keys:write. Errors: not_found.
func (c *Client) DeleteRotation(ctx context.Context, id string, opts ...CallOption) error {
	return c.call(ctx, request{method: "DELETE", path: "/v1/keys/" + esc(id) + "/rotation"}, nil, opts)
}
