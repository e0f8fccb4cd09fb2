package keys

// ReportStore answers the aggregate queries of compliance reports.
type ReportStore interface {
}
