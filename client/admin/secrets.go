package admin

import (
	"context"
	"net/url"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// CreateTenant creates a tenant and its first admin key, which holds every
// tenant admin scope (POST /v1/tenants); the key's plaintext is in the
// answer only. name "" is the id. Needs the operator's tenants:admin.
// Errors: invalid, forbidden, conflict.
func (c *Client) CreateTenant(ctx context.Context, id, name string, opts ...CallOption) (*NewTenant, error) {
	body := struct {
		ID   string `json:"id"`
		Name string `json:"name,omitempty"`
	}{id, name}
	return do[NewTenant](ctx, c, request{method: "POST", path: "/v1/tenants", body: body}, opts)
}

// ListTenants lists the tenants (GET /v1/tenants). Needs the operator's
// tenants:admin. Errors: invalid, forbidden.
func (c *Client) ListTenants(ctx context.Context, p Page, opts ...CallOption) (*TenantList, error) {
	return do[TenantList](ctx, c, request{method: "GET", path: "/v1/tenants", query: p.query(nil)}, opts)
}

// SecretParams are PutSecret's.
type SecretParams struct {
	Value string
	// Source, instead of Value, is a reference the server reads the value
	// from when the secret is read ("env:NAME", "file:/path",
	// "exec:/program arg…"), within the operator's --secret-source-allow;
	// Refresh is how long a value read from it is used (0: the server's
	// default, 1m).
	Source  string
	Refresh time.Duration
	// ExpiresIn is how long clients may cache the value, in whole seconds
	// (0: the server's default, 1h).
	ExpiresIn time.Duration
	Meta      map[string]string
}

// PutSecret stores a new version of the secret name (PUT
// /v1/secrets/{name}); the answer describes it without its value. Needs
// secrets:write. Errors: invalid, too_large, not_found (a server that
// brokers no secrets).
func (c *Client) PutSecret(ctx context.Context, name string, p SecretParams, opts ...CallOption) (*latchkey.Secret, error) {
	if p.ExpiresIn < 0 || p.ExpiresIn%time.Second != 0 {
		return nil, invalid("ExpiresIn must be whole seconds")
	}
	body := struct {
		Value     *string           `json:"value,omitempty"`
		Source    string            `json:"source,omitempty"`
		Refresh   string            `json:"refresh,omitempty"`
		ExpiresIn int64             `json:"expires_in,omitempty"`
		Meta      map[string]string `json:"meta,omitempty"`
	}{Source: p.Source, ExpiresIn: int64(p.ExpiresIn / time.Second), Meta: p.Meta}
	if p.Source == "" {
		body.Value = &p.Value
	}
	if p.Refresh != 0 {
		body.Refresh = p.Refresh.String()
	}
	return do[latchkey.Secret](ctx, c, request{method: "PUT", path: "/v1/secrets/" + esc(name), body: body, hide: []string{p.Value}}, opts)
}

// GetSecret reads a secret's value: its newest version, or version (GET
// /v1/secrets/{name}). The read is audited. Needs secrets:read and the
// resource secret:NAME. Errors: forbidden, not_found.
func (c *Client) GetSecret(ctx context.Context, name string, version int64, opts ...CallOption) (*latchkey.Secret, error) {
	q := url.Values{}
	if version != 0 {
		q.Set("version", itoa(version))
	}
	return do[latchkey.Secret](ctx, c, request{method: "GET", path: "/v1/secrets/" + esc(name), query: q}, opts)
}

// ListSecrets lists the tenant's secrets without their values (GET
// /v1/secrets). Needs secrets:read. Errors: invalid.
func (c *Client) ListSecrets(ctx context.Context, p Page, opts ...CallOption) (*SecretList, error) {
	return do[SecretList](ctx, c, request{method: "GET", path: "/v1/secrets", query: p.query(nil)}, opts)
}

// SecretVersions lists a secret's kept versions, without values (GET
// /v1/secrets/{name}/versions). Needs secrets:read. Errors: not_found.
func (c *Client) SecretVersions(ctx context.Context, name string, opts ...CallOption) ([]latchkey.Secret, error) {
	out, err := do[struct {
		Versions []latchkey.Secret `json:"versions"`
	}](ctx, c, request{method: "GET", path: "/v1/secrets/" + esc(name) + "/versions"}, opts)
	if err != nil {
		return nil, err
	}
	return out.Versions, nil
}

// DeleteSecret deletes a secret and all its versions (DELETE
// /v1/secrets/{name}). Needs secrets:write. Errors: not_found.
func (c *Client) DeleteSecret(ctx context.Context, name string, opts ...CallOption) error {
	return c.call(ctx, request{method: "DELETE", path: "/v1/secrets/" + esc(name)}, nil, opts)
}

// KeyringStatus reads the keyring's terms and the active one (GET
// /v1/keyring). Needs the operator's tenants:admin. Errors: forbidden,
// not_found (no keyring).
func (c *Client) KeyringStatus(ctx context.Context, opts ...CallOption) (*latchkey.KeyringStatus, error) {
	return do[latchkey.KeyringStatus](ctx, c, request{method: "GET", path: "/v1/keyring"}, opts)
}

// RotateKeyring adds a term that new values are sealed with (POST
// /v1/keyring/rotate) and returns the keyring's status. Needs the
// operator's tenants:admin. Errors: forbidden, not_found.
func (c *Client) RotateKeyring(ctx context.Context, opts ...CallOption) (*latchkey.KeyringStatus, error) {
	return do[latchkey.KeyringStatus](ctx, c, request{method: "POST", path: "/v1/keyring/rotate"}, opts)
}

// RewrapKeyring wraps every term under the master key in the file at
// newMasterKeyFile, an absolute path on the server's host (POST
// /v1/keyring/rewrap). Needs the operator's tenants:admin. Errors:
// invalid, forbidden, not_found.
func (c *Client) RewrapKeyring(ctx context.Context, newMasterKeyFile string, opts ...CallOption) (*latchkey.RewrapResult, error) {
	body := struct {
		File string `json:"new_master_key_file"`
	}{newMasterKeyFile}
	return do[latchkey.RewrapResult](ctx, c, request{method: "POST", path: "/v1/keyring/rewrap", body: body}, opts)
}
