package httpapi

import (
	"net/http"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// batchKeys is POST /v1/keys/batch: one operation (revoke, suspend,
// resume, rotate, set_policy) on the keys named by ids or selected by a filter, each
// key in its own transaction, with a result per key (keys.BatchKeys).
func (s *Server) batchKeys(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	p, err := decodeBatch(body)
	if err != nil {
		return err
	}
	res, err := s.svc.BatchKeys(r.Context(), a, p)
	if err != nil {
		return err
	}
	// A batch of many keys may take longer than the request's timeout;
	// its answer (with any successor's plaintext, shown once) gets the
	// whole timeout from now.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.timeout))
	writeJSON(w, http.StatusOK, res)
	return nil
}

// decodeBatch reads POST /v1/keys/batch:
//
//	{"op": "revoke"|"suspend"|"resume"|"rotate"|"set_policy",
//	 "ids": ["key_…", …] or "filter": {"owner", "environment", "state", "policy", "resource"} or {"all": true},
//	 "dry_run": bool, "reason": "…", "duration": "2h", "grace_period": "1h", "policy": "name"}
//
// set_policy needs "policy" ("" removes the keys' policy).
//
// A duration, when given, must be positive (leave it out to suspend until
// resumed), as on POST /v1/keys/{id}/suspend.
func decodeBatch(data []byte) (keys.BatchParams, error) {
	var b struct {
		Op     string   `json:"op"`
		IDs    []string `json:"ids"`
		Filter *struct {
			Owner       string `json:"owner"`
			Environment string `json:"environment"`
			State       string `json:"state"`
			Resource    string `json:"resource"`
			All         bool   `json:"all"`
			Policy      string `json:"policy"`
		} `json:"filter"`
		DryRun      bool               `json:"dry_run"`
		Reason      string             `json:"reason"`
		Duration    *latchkey.Duration `json:"duration"`
		GracePeriod *latchkey.Duration `json:"grace_period"`
		Policy      *string            `json:"policy"`
	}
	if err := decodeJSON(data, &b); err != nil {
		return keys.BatchParams{}, err
	}
	p := keys.BatchParams{Op: b.Op, IDs: b.IDs, DryRun: b.DryRun, Reason: b.Reason, Policy: b.Policy}
	if f := b.Filter; f != nil {
		p.Filter = &keys.BatchFilter{Owner: f.Owner, Environment: f.Environment, Policy: f.Policy, State: latchkey.State(f.State), Resource: f.Resource, All: f.All}
	}
	if b.Duration != nil {
		if *b.Duration <= 0 {
			return keys.BatchParams{}, latchkey.Errorf(latchkey.EInvalid, "duration must be positive; leave it out to suspend until resumed")
		}
		p.Duration = time.Duration(*b.Duration)
	}
	if b.GracePeriod != nil {
		d := time.Duration(*b.GracePeriod)
		p.Grace = &d
	}
	return p, nil
}
