package httpapi

import (
	"net/http"
	"net/url"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
)

// securityFilter reads GET /v1/security-events' query: kind, key_id,
// since, until (RFC 3339), after (an event id) and limit. Errors: EInvalid.
func securityFilter(q url.Values) (audit.SecurityFilter, error) {
	f := audit.SecurityFilter{Kind: q.Get("kind"), KeyID: q.Get("key_id"), After: q.Get("after")}
	if err := queryWindow(q, &f.Since, &f.Until); err != nil {
		return f, err
	}
	limit, err := queryLimit(q.Get("limit"))
	if err != nil {
		return f, err
	}
	f.Limit = limit
	return f, nil
}

func (s *Server) listSecurityEvents(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	f, err := securityFilter(r.URL.Query())
	if err != nil {
		return err
	}
	evs, next, err := s.audit.ListSecurityEvents(r.Context(), a, f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Events []audit.SecurityEvent `json:"events"`
		Next   string                `json:"next_cursor"`
	}{evs, next})
	return nil
}
