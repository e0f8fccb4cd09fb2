package httpapi

import (
	"bytes"
	"net/http"
	"net/url"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
)

// reportQuery reads a report's query: from and to (RFC 3339 or a date,
// YYYY-MM-DD, meaning its midnight UTC) and format ("json", the default, or
// "csv"). Errors: EInvalid.
func reportQuery(q url.Values) (audit.ReportWindow, string, error) {
	var w audit.ReportWindow
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &w.From}, {"to", &w.To}} {
		if v := q.Get(p.name); v != "" {
			t, err := audit.ParseReportTime(v)
			if err != nil {
				return w, "", latchkey.Errorf(latchkey.EInvalid, "%s: %s", p.name, latchkey.ErrorMessage(err))
			}
			*p.dst = t
		}
	}
	format := q.Get("format")
	switch format {
	case "":
		format = "json"
	case "json", "csv":
	default:
		return w, "", latchkey.Errorf(latchkey.EInvalid, "format must be json or csv")
	}
	return w, format, nil
}

// The three reports share one handler; each route names its builder.
func (s *Server) accessReport(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	return s.report(w, r, a, func(win audit.ReportWindow) (audit.Report, error) { return s.audit.ReportAccess(r.Context(), a, win) })
}

func (s *Server) usageReport(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	return s.report(w, r, a, func(win audit.ReportWindow) (audit.Report, error) { return s.audit.ReportUsage(r.Context(), a, win) })
}

func (s *Server) securityReport(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	return s.report(w, r, a, func(win audit.ReportWindow) (audit.Report, error) { return s.audit.ReportSecurity(r.Context(), a, win) })
}

// report answers GET /v1/reports/{access,usage,security}?from&to&format:
// the report as one JSON object, or as CSV (text/csv, offered as a file
// download). The CSV is rendered whole before the status is sent, so a
// failure is an error answer rather than a truncated 200.
func (s *Server) report(w http.ResponseWriter, r *http.Request, _ *latchkey.Actor, build func(audit.ReportWindow) (audit.Report, error)) error {
	win, format, err := reportQuery(r.URL.Query())
	if err != nil {
		return err
	}
	rep, err := build(win)
	if err != nil {
		return err
	}
	if format == "json" {
		writeJSON(w, http.StatusOK, rep)
		return nil
	}
	var buf bytes.Buffer
	if err := rep.WriteCSV(&buf); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="`+rep.Filename()+`"`)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes()) // the client went away; nothing to do
	return nil
}
