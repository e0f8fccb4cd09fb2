package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Batch operations (BatchParams.Op).
const (
	BatchRevoke  = "revoke"
	BatchSuspend = "suspend"
	BatchResume  = "resume"
	BatchRotate  = "rotate"
	// BatchSetPolicy makes each key name BatchParams.Policy.
	BatchSetPolicy = "set_policy"
)

// BatchFilter selects a batch's keys by their fields. The server refuses
// a filter that sets none: every key of the tenant takes All.
type BatchFilter struct {
	Owner       string         `json:"owner,omitempty"`
	Environment string         `json:"environment,omitempty"`
	State       latchkey.State `json:"state,omitempty"`
	// Resource keeps the keys whose resources cover it ("agent:NAME").
	Resource string `json:"resource,omitempty"`
	// Policy keeps the keys that name this policy.
	Policy string `json:"policy,omitempty"`
	// All selects every key of the tenant (with no other field).
	All bool `json:"all,omitempty"`
}

// BatchParams are BatchKeys'.
type BatchParams struct {
	Op string // BatchRevoke, BatchSuspend, BatchResume, BatchRotate or BatchSetPolicy
	// IDs or Filter (exactly one) select the keys. A filter leaves out the
	// key making the request (a revoke, suspend or rotate of it fails with
	// conflict); name it in IDs to change it.
	IDs    []string
	Filter *BatchFilter
	// DryRun answers what the selection matches and changes nothing.
	DryRun bool
	// Reason is kept with the keys (revoke, suspend).
	Reason string
	// For is how long a suspension lasts (0: until resumed).
	For time.Duration
	// Grace is how long a rotated key keeps working (nil: the server's
	// default, 1h; 0 ends it at once).
	Grace *time.Duration
	// Policy is the policy set_policy gives each key (required there; a
	// pointer to "" removes the keys' policy).
	Policy *string
}

// BatchItem is what a batch did, or would do, to one key.
type BatchItem struct {
	ID string `json:"id"`
	OK bool   `json:"ok"`
	// Error and ErrorCode say why this key was not changed.
	Error     string `json:"error,omitempty"`
	ErrorCode string `json:"error_code,omitempty"`
	// SuccessorID and Key are a rotation's new key and its plaintext:
	// the only time it is shown.
	SuccessorID string `json:"successor_id,omitempty"`
	Key         string `json:"key,omitempty"`
}

// BatchResult is BatchKeys' answer.
type BatchResult struct {
	Matched int         `json:"matched"`
	Results []BatchItem `json:"results"`
}

// Failed is the number of keys the batch did not change.
func (r *BatchResult) Failed() int {
	n := 0
	for _, it := range r.Results {
		if !it.OK {
			n++
		}
	}
	return n
}

// BatchKeys revokes, suspends, resumes, rotates or sets the policy of many keys (POST
// /v1/keys/batch), each in its own transaction: a key that fails carries
// its error in its item and the others go ahead. The server answers when
// it has done them all, so no timeout bounds the call: end it with ctx.
// Needs keys:write. Errors: invalid (a bad parameter, an empty filter,
// more than 10,000 keys), forbidden.
func (c *Client) BatchKeys(ctx context.Context, p BatchParams, opts ...CallOption) (*BatchResult, error) {
	body := struct {
		Op          string       `json:"op"`
		IDs         []string     `json:"ids,omitempty"`
		Filter      *BatchFilter `json:"filter,omitempty"`
		DryRun      bool         `json:"dry_run,omitempty"`
		Reason      string       `json:"reason,omitempty"`
		Duration    string       `json:"duration,omitempty"`
		GracePeriod string       `json:"grace_period,omitempty"`
		Policy      *string      `json:"policy,omitempty"`
	}{Op: p.Op, IDs: p.IDs, Filter: p.Filter, DryRun: p.DryRun, Reason: p.Reason, Policy: p.Policy}
	if p.For < 0 {
		return nil, invalid("For must be positive; leave it 0 to suspend until resumed")
	}
	if p.For > 0 {
		body.Duration = latchkey.FormatDuration(p.For)
	}
	if p.Grace != nil {
		body.GracePeriod = latchkey.FormatDuration(*p.Grace)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, invalid("the batch cannot be encoded as JSON")
	}
	return send[BatchResult](ctx, c, request{method: "POST", path: "/v1/keys/batch"}, bytes.NewReader(b), "application/json", opts)
}
