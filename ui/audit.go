package ui

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
)

var errNoAudit = latchkey.Errorf(latchkey.ENotFound, "this server keeps no audit service")

type auditForm struct {
	Action, KeyID, Result, Since, Until string
}

type auditView struct {
	F      auditForm
	Events []*latchkey.AuditEvent
	pager
}

// auditLog is the tenant's audit log, oldest first (the order the chain
// is kept and the service lists), filtered by action, key, result and
// time, 50 events a page, paged on the server by seq (?after=).
func (h *Handler) auditLog(w http.ResponseWriter, r *http.Request, s *session) {
	if h.audit == nil {
		h.fail(w, r, s, errNoAudit)
		return
	}
	q := r.URL.Query()
	f := auditForm{Action: strings.TrimSpace(q.Get("action")), KeyID: strings.TrimSpace(q.Get("key_id")),
		Result: strings.TrimSpace(q.Get("result")), Since: q.Get("since"), Until: q.Get("until")}
	af := latchkey.AuditFilter{Action: f.Action, KeyID: f.KeyID, Result: f.Result, Limit: listLimit}
	var err error
	if af.Since, err = formTime("since", f.Since); err == nil {
		af.Until, err = formTime("until", f.Until)
	}
	after := q.Get("after")
	if err == nil && after != "" {
		if af.AfterSeq, err = strconv.ParseInt(after, 10, 64); err != nil || af.AfterSeq < 0 {
			err = latchkey.Errorf(latchkey.EInvalid, "after must be a seq (a whole number)")
		}
	}
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	evs, err := h.audit.ListAudit(r.Context(), s.actor, af)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	next := ""
	if len(evs) == listLimit {
		next = strconv.FormatInt(evs[len(evs)-1].Seq, 10)
	}
	filters := [][2]string{{"action", f.Action}, {"key_id", f.KeyID}, {"result", f.Result}, {"since", f.Since}, {"until", f.Until}}
	v := auditView{F: f, Events: evs, pager: newPager("/ui/audit", filters, "after", after, next)}
	h.render(w, http.StatusOK, "audit", &page{Title: "Audit log", S: s, Nav: "audit", Data: v})
}

// auditVerify checks the tenant's whole hash chain (audit.Service's
// VerifyAudit, as GET /v1/audit/verify) and shows whether it is intact or
// where it breaks. It is a page of its own, not part of every page of
// the log, because it walks the whole log.
func (h *Handler) auditVerify(w http.ResponseWriter, r *http.Request, s *session) {
	if h.audit == nil {
		h.fail(w, r, s, errNoAudit)
		return
	}
	v, err := h.audit.VerifyAudit(r.Context(), s.actor)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	h.render(w, http.StatusOK, "verify", &page{Title: "Audit chain", S: s, Nav: "audit", Data: v})
}

type securityForm struct{ Kind, Severity string }

type securityView struct {
	F          securityForm
	Kinds      []string
	Severities []string
	Events     []audit.SecurityEvent
	pager
}

// securityEvents lists the tenant's security events, oldest first, 50 a
// page, filtered by kind on the server. The service has no severity
// filter: severity keeps the rows of each page that match, so such a
// page may show fewer rows (the pager still goes on).
func (h *Handler) securityEvents(w http.ResponseWriter, r *http.Request, s *session) {
	if h.audit == nil {
		h.fail(w, r, s, errNoAudit)
		return
	}
	q := r.URL.Query()
	f := securityForm{Kind: q.Get("kind"), Severity: q.Get("severity")}
	sevs := []string{latchkey.SeverityLow, latchkey.SeverityMedium, latchkey.SeverityHigh}
	if f.Severity != "" && !contains(sevs, f.Severity) {
		h.fail(w, r, s, latchkey.Errorf(latchkey.EInvalid, "severity must be low, medium or high"))
		return
	}
	after := q.Get("after")
	evs, next, err := h.audit.ListSecurityEvents(r.Context(), s.actor, audit.SecurityFilter{Kind: f.Kind, After: after, Limit: listLimit})
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	if f.Severity != "" {
		kept := evs[:0]
		for _, e := range evs {
			if e.Severity == f.Severity {
				kept = append(kept, e)
			}
		}
		evs = kept
	}
	filters := [][2]string{{"kind", f.Kind}, {"severity", f.Severity}}
	v := securityView{F: f, Kinds: latchkey.AnomalyKinds, Severities: sevs, Events: evs,
		pager: newPager("/ui/security", filters, "after", after, next)}
	h.render(w, http.StatusOK, "security", &page{Title: "Security events", S: s, Nav: "security", Data: v})
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
