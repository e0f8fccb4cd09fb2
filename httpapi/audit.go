package httpapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// auditFilter reads GET /v1/audit's query: since, until (RFC 3339), action,
// key_id, result, after (a seq) and limit. Errors: EInvalid.
func auditFilter(q url.Values) (latchkey.AuditFilter, error) {
	var f latchkey.AuditFilter
	if err := queryWindow(q, &f.Since, &f.Until); err != nil {
		return f, err
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return f, latchkey.Errorf(latchkey.EInvalid, "after must be a seq (a whole number)")
		}
		f.AfterSeq = n
	}
	limit, err := queryLimit(q.Get("limit"))
	if err != nil {
		return f, err
	}
	f.Limit, f.Action, f.KeyID, f.Result = limit, q.Get("action"), q.Get("key_id"), q.Get("result")
	return f, nil
}

// queryWindow reads the query's since and until, RFC 3339 times, into the
// destinations. Errors: EInvalid.
func queryWindow(q url.Values, since, until *time.Time) error {
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"since", since}, {"until", until}} {
		if v := q.Get(t.name); v != "" {
			tm, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return latchkey.Errorf(latchkey.EInvalid, "%s must be an RFC 3339 time such as 2026-01-02T15:04:05Z", t.name)
			}
			*t.dst = tm
		}
	}
	return nil
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	f, err := auditFilter(r.URL.Query())
	if err != nil {
		return err
	}
	evs, err := s.audit.ListAudit(r.Context(), a, f)
	if err != nil {
		return err
	}
	// next_after continues the listing (and is what `audit tail` polls
	// with); 0 when this page was the last.
	limit := f.Limit
	if limit == 0 {
		limit = latchkey.MaxListLimit
	}
	var next int64
	if len(evs) == limit {
		next = evs[len(evs)-1].Seq
	}
	writeJSON(w, http.StatusOK, struct {
		Events    []*latchkey.AuditEvent `json:"events"`
		NextAfter int64                  `json:"next_after"`
	}{evs, next})
	return nil
}

// exportAudit streams every event of the tenant as JSON lines, in seq
// order, page by page.
func (s *Server) exportAudit(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	f, err := auditFilter(r.URL.Query())
	if err != nil {
		return err
	}
	f.Limit = latchkey.MaxListLimit
	first, err := s.audit.ListAudit(r.Context(), a, f)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for page := first; len(page) > 0; {
		for _, e := range page {
			if err := enc.Encode(e); err != nil {
				return nil // the client went away
			}
		}
		if len(page) < latchkey.MaxListLimit {
			break
		}
		f.AfterSeq = page[len(page)-1].Seq
		if page, err = s.audit.ListAudit(r.Context(), a, f); err != nil {
			// Headers are out; the truncated stream is all we can say.
			s.log.ErrorContext(r.Context(), "audit export failed midway", "request_id", requestID(r.Context()), "err", err)
			return nil
		}
	}
	return nil
}

func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	v, err := s.audit.VerifyAudit(r.Context(), a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}
