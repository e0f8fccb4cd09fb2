package httpapi

import (
	"net/http"
	"net/url"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/keys"
)

// The routes of policies (named settings keys share) and owners (limits
// all of an owner's keys share): docs/api.md, "Policies" and "Owners".

// policyBody is the body of POST /v1/policies and PATCH
// /v1/policies/{name}: every field optional; on PATCH an absent field is
// left as it is and "quota": null removes the quota.
type policyBody struct {
	Description   *string                `json:"description"`
	Scopes        *[]string              `json:"scopes"`
	Resources     *[]string              `json:"resources"`
	IPAllow       *[]string              `json:"ip_allow"`
	Countries     *[]string              `json:"countries"`
	TimeWindows   *[]latchkey.TimeWindow `json:"time_windows"`
	RateLimits    *[]latchkey.RateLimit  `json:"ratelimits"`
	Quota         optQuota               `json:"quota"`
	Uses          *int64                 `json:"uses"`
	MaxConcurrent *int                   `json:"max_concurrent"`
	ExpiresAfter  *latchkey.Duration     `json:"expires_after"`
	Condition     *string                `json:"condition"`
}

func (b *policyBody) params() keys.PolicyParams {
	p := keys.PolicyParams{
		Description: b.Description, Scopes: b.Scopes, Resources: b.Resources, IPAllow: b.IPAllow,
		Countries: b.Countries, TimeWindows: b.TimeWindows, RateLimits: b.RateLimits,
		Uses: b.Uses, MaxConcurrent: b.MaxConcurrent, Condition: b.Condition,
	}
	if b.Quota.Set {
		p.Quota, p.ClearQuota = b.Quota.Quota, b.Quota.Quota == nil
	}
	if b.ExpiresAfter != nil {
		d := time.Duration(*b.ExpiresAfter)
		p.ExpiresAfter = &d
	}
	return p
}

// decodeCreatePolicy reads POST /v1/policies: the settings and "name".
func decodeCreatePolicy(data []byte) (string, keys.PolicyParams, error) {
	var b struct {
		policyBody
		Name string `json:"name"`
	}
	if err := decodeJSON(data, &b); err != nil {
		return "", keys.PolicyParams{}, err
	}
	if b.Name == "" {
		return "", keys.PolicyParams{}, latchkey.Errorf(latchkey.EInvalid, "name is required: 1-63 of a-z, 0-9, '_' and '-'")
	}
	p := b.params()
	// On create an absent quota and a null one mean the same: none.
	p.ClearQuota = false
	return b.Name, p, nil
}

// decodeUpdatePolicy reads PATCH /v1/policies/{name}.
func decodeUpdatePolicy(data []byte) (keys.PolicyParams, error) {
	var b policyBody
	if err := decodeJSON(data, &b); err != nil {
		return keys.PolicyParams{}, err
	}
	return b.params(), nil
}

func (s *Server) createPolicy(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	name, p, err := decodeCreatePolicy(body)
	if err != nil {
		return err
	}
	pol, err := s.svc.CreatePolicy(r.Context(), a, name, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, pol)
	return nil
}

func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	q := r.URL.Query()
	limit, err := queryLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	ps, next, err := s.svc.ListPolicies(r.Context(), a, q.Get("cursor"), limit)
	if err != nil {
		return err
	}
	if ps == nil {
		ps = []*latchkey.Policy{}
	}
	writeJSON(w, http.StatusOK, struct {
		Policies   []*latchkey.Policy `json:"policies"`
		NextCursor string             `json:"next_cursor"`
	}{ps, next})
	return nil
}

func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	pol, err := s.svc.GetPolicy(r.Context(), a, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, pol)
	return nil
}

func (s *Server) updatePolicy(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	p, err := decodeUpdatePolicy(body)
	if err != nil {
		return err
	}
	pol, err := s.svc.UpdatePolicy(r.Context(), a, r.PathValue("name"), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, pol)
	return nil
}

func (s *Server) deletePolicy(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	if err := s.svc.DeletePolicy(r.Context(), a, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// decodePutOwner reads PUT /v1/owners/{id}: {"ratelimits", "quota",
// "meta"}, which replace the owner's record whole.
func decodePutOwner(data []byte) (keys.OwnerParams, error) {
	var b struct {
		RateLimits []latchkey.RateLimit `json:"ratelimits"`
		Quota      *latchkey.Quota      `json:"quota"`
		Meta       map[string]any       `json:"meta"`
	}
	if err := decodeJSON(data, &b); err != nil {
		return keys.OwnerParams{}, err
	}
	return keys.OwnerParams{RateLimits: b.RateLimits, Quota: b.Quota, Meta: b.Meta}, nil
}

func (s *Server) putOwner(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	p, err := decodePutOwner(body)
	if err != nil {
		return err
	}
	o, err := s.svc.PutOwner(r.Context(), a, r.PathValue("id"), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, o)
	return nil
}

func (s *Server) listOwners(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	q := r.URL.Query()
	limit, err := queryLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	os, next, err := s.svc.ListOwners(r.Context(), a, q.Get("cursor"), limit)
	if err != nil {
		return err
	}
	if os == nil {
		os = []*latchkey.Owner{}
	}
	writeJSON(w, http.StatusOK, struct {
		Owners     []*latchkey.Owner `json:"owners"`
		NextCursor string            `json:"next_cursor"`
	}{os, next})
	return nil
}

// ownerWithUsage is the answer of GET /v1/owners/{id}: the record and,
// on a server with an audit service, the usage of the owner's keys.
type ownerWithUsage struct {
	*latchkey.Owner
	Usage *audit.OwnerUsageReport `json:"usage,omitempty"`
}

// getOwner answers an owner's record with its keys' usage over the window
// of ?bucket=&from=&to= (as GET /v1/keys/{id}/usage). An owner id without
// a record is not found here, though its keys may have usage (GET
// /v1/owners/{id}/usage answers that).
func (s *Server) getOwner(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	p, err := usageParams(r.URL.Query())
	if err != nil {
		return err
	}
	o, err := s.svc.GetOwner(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	v := ownerWithUsage{Owner: o}
	if s.audit != nil {
		if v.Usage, err = s.audit.OwnerUsage(r.Context(), a, o.ID, p); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// ownerUsage answers GET /v1/owners/{id}/usage: the summed usage of the
// keys whose owner is id, with or without a record.
func (s *Server) ownerUsage(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	p, err := usageParams(r.URL.Query())
	if err != nil {
		return err
	}
	rep, err := s.audit.OwnerUsage(r.Context(), a, r.PathValue("id"), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

func (s *Server) deleteOwner(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	if err := s.svc.DeleteOwner(r.Context(), a, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// usageParams reads a usage window: ?bucket=minute|hour|day&from&to
// (RFC 3339 times).
func usageParams(q url.Values) (audit.UsageParams, error) {
	p := audit.UsageParams{Bucket: q.Get("bucket")}
	var err error
	if p.From, err = queryTime(q.Get("from"), "from"); err != nil {
		return audit.UsageParams{}, err
	}
	if p.To, err = queryTime(q.Get("to"), "to"); err != nil {
		return audit.UsageParams{}, err
	}
	return p, nil
}
