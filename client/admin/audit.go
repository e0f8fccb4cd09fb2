package admin

import (
	"context"
	"io"
	"net/url"
	"time"
)

// AuditFilter selects audit events: only those matching every field given.
type AuditFilter struct {
	// Since and Until bound the events' times: [Since, Until).
	Since, Until time.Time
	Action       string // e.g. "key.revoked"
	KeyID        string // by or about this key
	Result       string
	// After lists the events after this seq (ListAudit's NextAfter).
	After int64
	// Limit is ListAudit's page size (0: the server's, 1000).
	Limit int
}

func (f AuditFilter) query() url.Values {
	q := url.Values{}
	setTime(q, "since", f.Since)
	setTime(q, "until", f.Until)
	setIf(q, "action", f.Action)
	setIf(q, "key_id", f.KeyID)
	setIf(q, "result", f.Result)
	if f.After > 0 {
		q.Set("after", itoa(f.After))
	}
	if f.Limit > 0 {
		q.Set("limit", itoa(int64(f.Limit)))
	}
	return q
}

// ListAudit lists a page of the tenant's audit log, oldest first (GET
// /v1/audit). Needs audit:read. Errors: invalid.
func (c *Client) ListAudit(ctx context.Context, f AuditFilter, opts ...CallOption) (*AuditPage, error) {
	return do[AuditPage](ctx, c, request{method: "GET", path: "/v1/audit", query: f.query()}, opts)
}

// VerifyAudit checks the tenant's hash chain and its signed head (GET
// /v1/audit/verify). A broken chain is an answer, not an error: see OK.
// Needs audit:read.
func (c *Client) VerifyAudit(ctx context.Context, opts ...CallOption) (*AuditVerdict, error) {
	return do[AuditVerdict](ctx, c, request{method: "GET", path: "/v1/audit/verify"}, opts)
}

// ExportAudit streams every event f selects (its After and Limit aside)
// as JSON lines (GET /v1/audit/export); the caller reads and closes it.
// The client's timeout bounds only the wait for the answer to start.
// Needs audit:read. Errors: invalid.
func (c *Client) ExportAudit(ctx context.Context, f AuditFilter) (io.ReadCloser, error) {
	f.After, f.Limit = 0, 0
	res, err := c.stream(ctx, request{method: "GET", path: "/v1/audit/export", query: f.query()}, nil, "", c.timeout)
	if err != nil {
		return nil, err
	}
	return res.Body, nil
}

// SecurityFilter selects security events: only those matching every field
// given, a page at a time.
type SecurityFilter struct {
	Kind  string // a latchkey.AnomalyKinds kind
	KeyID string
	// Since and Until bound the events' times: [Since, Until).
	Since, Until time.Time
	// After lists the events after this event id (a page's NextCursor).
	After string
	Limit int
}

// ListSecurityEvents lists the tenant's security anomalies, oldest first
// (GET /v1/security-events; docs/security.md). Needs audit:read. Errors:
// invalid.
func (c *Client) ListSecurityEvents(ctx context.Context, f SecurityFilter, opts ...CallOption) (*SecurityEventList, error) {
	q := url.Values{}
	setIf(q, "kind", f.Kind)
	setIf(q, "key_id", f.KeyID)
	setIf(q, "after", f.After)
	setTime(q, "since", f.Since)
	setTime(q, "until", f.Until)
	if f.Limit > 0 {
		q.Set("limit", itoa(int64(f.Limit)))
	}
	return do[SecurityEventList](ctx, c, request{method: "GET", path: "/v1/security-events", query: q}, opts)
}

// Report kinds (ReportCSV).
const (
	ReportKindAccess   = "access"
	ReportKindUsage    = "usage"
	ReportKindSecurity = "security"
)

// ReportWindow is the span [From, To) a report covers. A zero To is now; a
// zero From is 30 days before To. At most 366 days.
type ReportWindow struct {
	From, To time.Time
}

func (w ReportWindow) query(format string) url.Values {
	q := url.Values{"format": {format}}
	setTime(q, "from", w.From)
	setTime(q, "to", w.To)
	return q
}

// ReportAccess builds the access report: who holds which keys with which
// scopes (GET /v1/reports/access; docs/reports.md). Needs audit:read.
// Errors: invalid.
func (c *Client) ReportAccess(ctx context.Context, w ReportWindow, opts ...CallOption) (*AccessReport, error) {
	return do[AccessReport](ctx, c, request{method: "GET", path: "/v1/reports/access", query: w.query("json")}, opts)
}

// ReportUsage builds the usage report: verifications per key and owner by
// code (GET /v1/reports/usage). Needs audit:read. Errors: invalid.
func (c *Client) ReportUsage(ctx context.Context, w ReportWindow, opts ...CallOption) (*TenantUsageReport, error) {
	return do[TenantUsageReport](ctx, c, request{method: "GET", path: "/v1/reports/usage", query: w.query("json")}, opts)
}

// ReportSecurity builds the security report: the window's anomalies and
// the responses to them (GET /v1/reports/security). Needs audit:read.
// Errors: invalid.
func (c *Client) ReportSecurity(ctx context.Context, w ReportWindow, opts ...CallOption) (*SecurityReport, error) {
	return do[SecurityReport](ctx, c, request{method: "GET", path: "/v1/reports/security", query: w.query("json")}, opts)
}

// ReportCSV builds the report kind (ReportKindAccess, …) as CSV, the
// bytes the server sent. Needs audit:read. Errors: invalid (an unknown
// kind is refused before any request).
func (c *Client) ReportCSV(ctx context.Context, kind string, w ReportWindow) ([]byte, error) {
	switch kind {
	case ReportKindAccess, ReportKindUsage, ReportKindSecurity:
	default:
		return nil, invalid("report kind must be access, usage or security")
	}
	var raw []byte
	if err := c.call(ctx, request{method: "GET", path: "/v1/reports/" + kind, query: w.query("csv")}, nil, []CallOption{Raw(&raw)}); err != nil {
		return nil, err
	}
	return raw, nil
}
