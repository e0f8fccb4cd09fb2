package audit

import (
	"encoding/csv"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// CSV forms of the reports: a header row, then one row per key (access,
// usage) or per anomaly (security); the per-owner and per-tenant summaries
// are in the JSON form only. Lines end in CRLF (RFC 4180), times are RFC
// 3339 in UTC (an empty cell for no time), and lists are joined with
// CSVListSeparator.
//
// Names, owners, reasons and summaries are user-provided, and a
// spreadsheet runs a cell that starts with =, +, - or @ (or a tab or
// carriage return) as a formula. Every such cell is written with a single
// quote in front, so it reads as text; no cell this package writes starts
// with those characters otherwise.

// CSVListSeparator joins the items of a list in one CSV cell. No scope,
// resource, address range or key id contains it.
const CSVListSeparator = ";"

// Report is a report that has a CSV form.
type Report interface {
	// WriteCSV writes the report as CSV.
	WriteCSV(w io.Writer) error
	// Filename is a name for the CSV file, such as
	// latchkey-access-acme-2026-05-01-2026-06-01.csv.
	Filename() string
}

// Filename names the report's CSV file after its kind, tenant and window
// (dates of the bounds, UTC).
func (h *ReportHeader) Filename() string {
	return "latchkey-" + h.Report + "-" + h.Tenant + "-" + h.From.UTC().Format(time.DateOnly) + "-" + h.To.UTC().Format(time.DateOnly) + ".csv"
}

// csvCell defuses a cell a spreadsheet would read as a formula.
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func csvList[T any](items []T, str func(T) string) string {
	parts := make([]string, len(items))
	for i, it := range items {
		parts[i] = str(it)
	}
	return strings.Join(parts, CSVListSeparator)
}

func same(s string) string { return s }

// writeCSV writes the header and rows, defusing every cell.
func writeCSV(w io.Writer, header []string, rows func(emit func(...string) error) error) error {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	if err := cw.Write(header); err != nil {
		return err
	}
	err := rows(func(cells ...string) error {
		for i, c := range cells {
			cells[i] = csvCell(c)
		}
		return cw.Write(cells)
	})
	if err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

// AccessCSVHeader is the header row of the access report's CSV.
var AccessCSVHeader = []string{"id", "name", "owner", "environment", "state", "scopes", "resources", "parent_id",
	"created_at", "expires_at", "last_used_at", "ip_allow"}

// WriteCSV writes one row per key.
func (r *AccessReport) WriteCSV(w io.Writer) error {
	return writeCSV(w, AccessCSVHeader, func(emit func(...string) error) error {
		for _, k := range r.Keys {
			err := emit(k.ID, k.Name, k.Owner, k.Environment, string(k.State),
				csvList(k.Scopes, same), csvList(k.Resources, same), k.ParentID,
				csvTime(k.CreatedAt), csvTime(k.ExpiresAt), csvTime(k.LastUsedAt),
				csvList(k.IPAllow, netip.Prefix.String))
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// usageCSVCodes are the verify codes with a column of their own in the
// usage CSV: every code but those of verifications that found no key.
var usageCSVCodes = slices.DeleteFunc(slices.Clone(latchkey.VerifyCodes[:]), func(c string) bool {
	return c == latchkey.CodeMalformed || c == latchkey.CodeNotFound
})

// UsageCSVHeader is the header row of the usage report's CSV: the key,
// its totals, a column per verify code (named as the code), and the first
// and last minutes and the networks.
var UsageCSVHeader = slices.Concat(
	[]string{"key_id", "name", "owner", "environment", "total", "valid", "denied"},
	usageCSVCodes,
	[]string{"first_seen", "last_seen", "networks"},
)

// WriteCSV writes one row per key.
func (r *TenantUsageReport) WriteCSV(w io.Writer) error {
	return writeCSV(w, UsageCSVHeader, func(emit func(...string) error) error {
		for _, k := range r.Keys {
			row := make([]string, 0, len(UsageCSVHeader))
			row = append(row, k.KeyID, k.Name, k.Owner, k.Environment, itoa(k.Total), itoa(k.Valid), itoa(k.Denied))
			for _, c := range usageCSVCodes {
				row = append(row, itoa(k.Codes[c]))
			}
			row = append(row, csvTime(k.FirstSeen), csvTime(k.LastSeen), itoa(k.Networks))
			if err := emit(row...); err != nil {
				return err
			}
		}
		return nil
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// SecurityCSVHeader is the header row of the security report's CSV.
var SecurityCSVHeader = []string{"event_id", "at", "kind", "severity", "key_id", "key_name", "owner", "network",
	"summary", "details", "responses", "first_response_at", "time_to_respond_seconds"}

// WriteCSV writes one row per anomaly. details is its key=value pairs
// sorted by key; responses is each response as "action time", with " via
// ID" when it reached the key by cascade from ancestor ID.
func (r *SecurityReport) WriteCSV(w io.Writer) error {
	return writeCSV(w, SecurityCSVHeader, func(emit func(...string) error) error {
		for _, a := range r.Anomalies {
			det := make([]string, 0, len(a.Details))
			for k, v := range a.Details {
				det = append(det, k+"="+v)
			}
			slices.Sort(det)
			ttr := ""
			if a.TimeToRespondSeconds != nil {
				ttr = strconv.FormatFloat(*a.TimeToRespondSeconds, 'f', -1, 64)
			}
			err := emit(a.EventID, csvTime(a.At), a.Kind, a.Severity, a.KeyID, a.KeyName, a.Owner, a.Network,
				a.Summary, strings.Join(det, CSVListSeparator),
				csvList(a.Responses, func(s SecurityResponse) string {
					out := s.Action + " " + csvTime(s.At)
					if s.Via != "" {
						out += " via " + s.Via
					}
					return out
				}),
				csvTime(a.FirstResponseAt), ttr)
			if err != nil {
				return err
			}
		}
		return nil
	})
}
