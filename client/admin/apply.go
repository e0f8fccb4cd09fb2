package admin

import (
	"bytes"
	"context"
	"net/url"
)

// ApplyParams are Apply's.
type ApplyParams struct {
	// DryRun answers the plan and changes nothing.
	DryRun bool
	// Prune revokes the app's keys the manifest no longer declares.
	Prune bool
	// Env applies one environment's keys (those naming no environment
	// take it); Prune then touches only that environment's keys.
	Env string
	// File names the manifest in error messages (default
	// app_manifest.yml).
	File string
}

// PlanStep is what an apply does, or would do, to one key.
type PlanStep struct {
	Action    string   `json:"action"` // create, update, unchanged or revoke
	Agent     string   `json:"agent"`
	KeyName   string   `json:"key_name"`
	KeyID     string   `json:"key_id,omitempty"`
	Changes   []string `json:"changes,omitempty"`
	Source    string   `json:"source,omitempty"`
	Error     string   `json:"error,omitempty"`
	ErrorCode string   `json:"error_code,omitempty"`
}

// MintedKey is a key an apply created, with its plaintext: the only time
// it is shown.
type MintedKey struct {
	Agent   string `json:"agent"`
	KeyName string `json:"key_name"`
	KeyID   string `json:"key_id"`
	Key     string `json:"key"`
}

// ApplyResult is Apply's answer.
type ApplyResult struct {
	Plan []PlanStep  `json:"plan"`
	Keys []MintedKey `json:"keys"`
}

// Apply makes the tenant's keys match an app manifest (POST /v1/apply;
// YAML or JSON). Needs keys:write. Errors: invalid (naming the file and
// line), forbidden, too_large.
func (c *Client) Apply(ctx context.Context, manifest []byte, p ApplyParams, opts ...CallOption) (*ApplyResult, error) {
	q := url.Values{}
	if p.DryRun {
		q.Set("dry_run", "true")
	}
	if p.Prune {
		q.Set("prune", "true")
	}
	setIf(q, "env", p.Env)
	setIf(q, "file", p.File)
	return send[ApplyResult](ctx, c, request{method: "POST", path: "/v1/apply", query: q}, bytes.NewReader(manifest), "application/yaml", opts)
}
