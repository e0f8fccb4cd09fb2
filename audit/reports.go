package audit

import (
	"cmp"
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Compliance reports: who holds which keys (access), how much each key and
// owner used (usage), and which security anomalies were raised and how
// they were answered (security). Every report covers the actor's tenant
// only and is built from one read transaction, so its rows agree with
// each other. docs/reports.md describes the columns.

// Report windows.
const (
	// DefaultReportWindow is the window of a report that names no start.
	DefaultReportWindow = 30 * 24 * time.Hour
	// MaxReportWindow bounds the window of one report.
	MaxReportWindow = 366 * 24 * time.Hour
	// reportPage is how many rows one store call of a report reads.
	reportPage = 1000
)

// ReportWindow is the time span [From, To) a report covers. A zero To is
// now; a zero From is DefaultReportWindow before To.
type ReportWindow struct {
	From time.Time
	To   time.Time
}

// ParseReportTime reads a report bound: an RFC 3339 time, or a date
// (YYYY-MM-DD) meaning its midnight UTC. The result is in UTC at
// microsecond precision, as stored times are. Errors: EInvalid.
func ParseReportTime(s string) (time.Time, error) {
	var (
		t   time.Time
		err error
	)
	if len(s) == len(time.DateOnly) {
		t, err = time.Parse(time.DateOnly, s)
	} else {
		t, err = time.Parse(time.RFC3339Nano, s)
	}
	if err != nil || t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}, latchkey.Errorf(latchkey.EInvalid, "%q is not a time: use RFC 3339 (2026-01-02T15:04:05Z) or a date (2026-01-02, midnight UTC) from 1970 on", clipString(s, 40))
	}
	return t.UTC().Truncate(time.Microsecond), nil
}

func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// resolve fills in the defaults of w and checks it. Errors: EInvalid.
func (w ReportWindow) resolve(now time.Time) (ReportWindow, error) {
	if w.To.IsZero() {
		w.To = now
	}
	if w.From.IsZero() {
		w.From = w.To.Add(-DefaultReportWindow)
	}
	w.From, w.To = w.From.UTC().Truncate(time.Microsecond), w.To.UTC().Truncate(time.Microsecond)
	if !w.From.Before(w.To) {
		return w, latchkey.Errorf(latchkey.EInvalid, "from must be before to")
	}
	if w.To.Sub(w.From) > MaxReportWindow {
		return w, latchkey.Errorf(latchkey.EInvalid, "the window from %s to %s is longer than %d days; split the report",
			w.From.Format(time.RFC3339), w.To.Format(time.RFC3339), MaxReportWindow/(24*time.Hour))
	}
	return w, nil
}

// ReportHeader is what every report starts with.
type ReportHeader struct {
	Report      string    `json:"report"` // "access", "usage" or "security"
	GeneratedAt time.Time `json:"generated_at"`
	Tenant      string    `json:"tenant"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
}

// AccessReport says who holds which keys with which scopes: every key of
// the tenant created by To (From does not filter it: a key is held
// until it is revoked), with its state now, and a summary per owner.
type AccessReport struct {
	ReportHeader
	Keys   []AccessKey   `json:"keys"`
	Owners []AccessOwner `json:"owners"`
}

// AccessKey is one key of an access report.
type AccessKey struct {
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	Owner       string         `json:"owner"`
	Environment string         `json:"environment"`
	State       latchkey.State `json:"state"`
	Scopes      []string       `json:"scopes"`
	Resources   []string       `json:"resources"`
	ParentID    string         `json:"parent_id,omitempty"`
	CreatedAt   time.Time      `json:"created_at"`
	ExpiresAt   time.Time      `json:"expires_at,omitzero"`
	LastUsedAt  time.Time      `json:"last_used_at,omitzero"`
	IPAllow     []netip.Prefix `json:"ip_allow"`
}

// AccessOwner summarizes an owner's keys: how many, how many are active
// now, and the union of their scopes (sorted).
type AccessOwner struct {
	Owner      string   `json:"owner"`
	Keys       int      `json:"keys"`
	ActiveKeys int      `json:"active_keys"`
	Scopes     []string `json:"scopes"`
}

// ReportAccess builds the access report of the actor's tenant. Errors:
// EInvalid (window).
func (s *Service) ReportAccess(ctx context.Context, actor *latchkey.Actor, win ReportWindow) (*AccessReport, error) {
	now := s.now()
	win, err := win.resolve(now)
	if err != nil {
		return nil, err
	}
	r := &AccessReport{
		ReportHeader: ReportHeader{Report: "access", GeneratedAt: now, Tenant: actor.Tenant, From: win.From, To: win.To},
		Keys:         []AccessKey{},
		Owners:       []AccessOwner{},
	}
	err = s.store.View(ctx, func(tx Tx) error {
		return eachKey(tx, actor.Tenant, func(k *latchkey.Key) {
			if k.CreatedAt.After(win.To) {
				return
			}
			r.Keys = append(r.Keys, AccessKey{
				ID: k.ID, Name: k.Name, Owner: k.Owner, Environment: k.Environment, State: k.StateAt(now),
				Scopes: nonNil(k.Scopes), Resources: nonNil(k.Resources), ParentID: k.ParentID,
				CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, LastUsedAt: k.LastUsedAt, IPAllow: nonNil(k.IPAllow),
			})
		})
	})
	if err != nil {
		return nil, err
	}
	owners := map[string]*AccessOwner{}
	for _, k := range r.Keys {
		o := owners[k.Owner]
		if o == nil {
			o = &AccessOwner{Owner: k.Owner, Scopes: []string{}}
			owners[k.Owner] = o
		}
		o.Keys++
		if k.State == latchkey.StateActive {
			o.ActiveKeys++
		}
		for _, sc := range k.Scopes {
			if !slices.Contains(o.Scopes, sc) {
				o.Scopes = append(o.Scopes, sc)
			}
		}
	}
	for _, o := range owners {
		slices.Sort(o.Scopes)
		r.Owners = append(r.Owners, *o)
	}
	slices.SortFunc(r.Owners, func(a, b AccessOwner) int { return cmp.Compare(a.Owner, b.Owner) })
	return r, nil
}

// eachKey calls fn for every key of the tenant, in id order, reading them
// a page at a time.
func eachKey(tx Tx, tenant string, fn func(*latchkey.Key)) error {
	after := ""
	for {
		page, err := tx.Keys(tenant, latchkey.KeyFilter{Page: latchkey.Page{After: after, Limit: reportPage}})
		if err != nil {
			return err
		}
		for _, k := range page {
			fn(k)
		}
		if len(page) < reportPage {
			return nil
		}
		after = page[len(page)-1].ID
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// TenantUsageReport is the usage report: the verifications of each key of
// the tenant in [From, To), by verify code, and totals per owner and for
// the tenant. It has a row for every key with usage in the window and for
// every key that was usable at some time in it (created by To and not
// revoked, rotated out or expired before From), with zeros if unused.
// Counts are as of the usage recorder's last flush.
type TenantUsageReport struct {
	ReportHeader
	// Grain is the resolution the counts were read at: "day" when from and
	// to are UTC midnights, "hour" when they are whole hours, else
	// "minute". Coarser rows are kept longer (see latchkey.Grain), and first_seen
	// and last_seen are starts of rows of this grain.
	Grain  latchkey.Grain `json:"grain"`
	Totals UsageCounts    `json:"totals"`
	Keys   []UsageKey     `json:"keys"`
	Owners []UsageOwner   `json:"owners"`
}

// UsageCounts counts verifications: in all, VALID ones, denied ones (every
// other code), and by code (only codes that occurred).
type UsageCounts struct {
	Total  int64            `json:"total"`
	Valid  int64            `json:"valid"`
	Denied int64            `json:"denied"`
	Codes  map[string]int64 `json:"codes"`
}

func (c *UsageCounts) add(code string, n int64) {
	if c.Codes == nil {
		c.Codes = map[string]int64{}
	}
	c.Codes[code] += n
	c.Total += n
	if code == latchkey.CodeValid {
		c.Valid += n
	} else {
		c.Denied += n
	}
}

// UsageKey is one key of a usage report. FirstSeen and LastSeen are
// the starts of the first and last minutes in the window with any
// verification; Networks is how many distinct client networks (IPv4 /24,
// IPv6 /48) presented the key.
type UsageKey struct {
	KeyID       string `json:"key_id"`
	Name        string `json:"name"`
	Owner       string `json:"owner"`
	Environment string `json:"environment"`
	UsageCounts
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	Networks  int64     `json:"networks"`
}

// UsageOwner sums the usage of an owner's keys.
type UsageOwner struct {
	Owner string `json:"owner"`
	Keys  int    `json:"keys"`
	UsageCounts
}

// ReportUsage builds the usage report of the actor's tenant. Errors:
// EInvalid (window).
func (s *Service) ReportUsage(ctx context.Context, actor *latchkey.Actor, win ReportWindow) (*TenantUsageReport, error) {
	now := s.now()
	win, err := win.resolve(now)
	if err != nil {
		return nil, err
	}
	r := &TenantUsageReport{
		ReportHeader: ReportHeader{Report: "usage", GeneratedAt: now, Tenant: actor.Tenant, From: win.From, To: win.To},
		Grain:        grainOf(win.From, win.To),
		Totals:       UsageCounts{Codes: map[string]int64{}},
		Keys:         []UsageKey{},
		Owners:       []UsageOwner{},
	}
	var (
		totals []latchkey.UsageTotal
		nets   []latchkey.NetworkTotal
	)
	err = s.store.View(ctx, func(tx Tx) error {
		var err error
		if totals, err = tx.UsageTotals(actor.Tenant, r.Grain, win.From, win.To); err != nil {
			return err
		}
		if nets, err = tx.NetworkTotals(actor.Tenant, r.Grain, win.From, win.To); err != nil {
			return err
		}
		used := map[string]bool{}
		for _, u := range totals {
			used[u.KeyID] = true
		}
		return eachKey(tx, actor.Tenant, func(k *latchkey.Key) {
			if used[k.ID] || usableIn(k, win) {
				r.Keys = append(r.Keys, UsageKey{KeyID: k.ID, Name: k.Name, Owner: k.Owner, Environment: k.Environment,
					UsageCounts: UsageCounts{Codes: map[string]int64{}}})
			}
		})
	})
	if err != nil {
		return nil, err
	}
	index := make(map[string]int, len(r.Keys))
	for i, k := range r.Keys {
		index[k.KeyID] = i
	}
	for _, u := range totals {
		i, ok := index[u.KeyID]
		if !ok {
			continue // a key removed from under its usage rows: nobody's
		}
		k := &r.Keys[i]
		k.add(u.Code, u.Count)
		if k.FirstSeen.IsZero() || u.First.Before(k.FirstSeen) {
			k.FirstSeen = u.First
		}
		if u.Last.After(k.LastSeen) {
			k.LastSeen = u.Last
		}
		r.Totals.add(u.Code, u.Count)
	}
	for _, n := range nets {
		if i, ok := index[n.KeyID]; ok {
			r.Keys[i].Networks = n.Networks
		}
	}
	owners := map[string]*UsageOwner{}
	for _, k := range r.Keys {
		o := owners[k.Owner]
		if o == nil {
			o = &UsageOwner{Owner: k.Owner, UsageCounts: UsageCounts{Codes: map[string]int64{}}}
			owners[k.Owner] = o
		}
		o.Keys++
		for code, n := range k.Codes {
			o.add(code, n)
		}
	}
	for _, o := range owners {
		r.Owners = append(r.Owners, *o)
	}
	slices.SortFunc(r.Owners, func(a, b UsageOwner) int { return cmp.Compare(a.Owner, b.Owner) })
	return r, nil
}

// usableIn reports whether k could be used at some time in w: created
// by its end, and not revoked, rotated out or expired before its start.
func usableIn(k *latchkey.Key, w ReportWindow) bool {
	if k.CreatedAt.After(w.To) {
		return false
	}
	if k.State == latchkey.StateRevoked && (k.RevokedAt.IsZero() || !k.RevokedAt.After(w.From)) {
		return false
	}
	if !k.GraceUntil.IsZero() && !k.GraceUntil.After(w.From) {
		return false
	}
	return k.ExpiresAt.IsZero() || k.ExpiresAt.After(w.From)
}

// Responses to an anomaly: the audited actions that act on its key.
var responseActions = []string{"key.suspended", "key.revoked", "key.rotated", "key.updated"}

// SecurityReport lists the security anomalies raised in [From, To), each
// with the responses to it, and counts them by kind and severity.
type SecurityReport struct {
	ReportHeader
	Summary   SecuritySummary   `json:"summary"`
	Anomalies []SecurityAnomaly `json:"anomalies"`
}

// SecuritySummary counts a security report's anomalies. ByKind and
// BySeverity name every kind and severity, with 0 for those not seen.
type SecuritySummary struct {
	Anomalies   int            `json:"anomalies"`
	Responded   int            `json:"responded"`
	Unresponded int            `json:"unresponded"`
	ByKind      map[string]int `json:"by_kind"`
	BySeverity  map[string]int `json:"by_severity"`
}

// SecurityAnomaly is an anomaly and what was done about it. KeyName and
// Owner are the key's as they are now (empty for anomalies about no key,
// such as a failed-auth burst from a network). Responses are the audited
// actions on the key later than the anomaly, up to when the report was
// generated (so an anomaly late in the window still shows its answer):
// suspending, revoking, rotating or updating it, directly or through a
// cascade from an ancestor. TimeToRespond is from the anomaly to its first
// response, in the API's duration form rounded to the second, and
// TimeToRespondSeconds the same exactly.
type SecurityAnomaly struct {
	EventID  string            `json:"event_id"`
	At       time.Time         `json:"at"`
	Kind     string            `json:"kind"`
	Severity string            `json:"severity"`
	KeyID    string            `json:"key_id,omitempty"`
	KeyName  string            `json:"key_name,omitempty"`
	Owner    string            `json:"owner,omitempty"`
	Network  string            `json:"network,omitempty"`
	Summary  string            `json:"summary"`
	Details  map[string]string `json:"details"`

	Responses            []SecurityResponse `json:"responses"`
	FirstResponseAt      time.Time          `json:"first_response_at,omitzero"`
	TimeToRespond        string             `json:"time_to_respond,omitempty"`
	TimeToRespondSeconds *float64           `json:"time_to_respond_seconds,omitempty"`
}

// SecurityResponse is one audited action that answered an anomaly. Via
// names the ancestor the action was taken on when it reached the key by
// cascade.
type SecurityResponse struct {
	Seq        int64     `json:"seq"`
	At         time.Time `json:"at"`
	Action     string    `json:"action"`
	ActorKeyID string    `json:"actor_key_id,omitempty"`
	Via        string    `json:"via,omitempty"`
	Reason     string    `json:"reason,omitempty"`
}

// ReportSecurity builds the security report of the actor's tenant. Errors:
// EInvalid (window).
func (s *Service) ReportSecurity(ctx context.Context, actor *latchkey.Actor, win ReportWindow) (*SecurityReport, error) {
	now := s.now()
	win, err := win.resolve(now)
	if err != nil {
		return nil, err
	}
	r := &SecurityReport{
		ReportHeader: ReportHeader{Report: "security", GeneratedAt: now, Tenant: actor.Tenant, From: win.From, To: win.To},
		Summary:      SecuritySummary{ByKind: map[string]int{}, BySeverity: map[string]int{}},
		Anomalies:    []SecurityAnomaly{},
	}
	for _, k := range latchkey.AnomalyKinds {
		r.Summary.ByKind[k] = 0
	}
	for _, sv := range []string{latchkey.SeverityLow, latchkey.SeverityMedium, latchkey.SeverityHigh} {
		r.Summary.BySeverity[sv] = 0
	}
	// responses maps a key id to the audited actions on it, in seq order.
	responses := map[string][]SecurityResponse{}
	err = s.store.View(ctx, func(tx Tx) error {
		after := ""
		for {
			page, err := tx.Events(actor.Tenant, latchkey.EventFilter{Type: latchkey.EventSecurityAnomaly, Since: win.From, Until: win.To, After: after, Limit: reportPage})
			if err != nil {
				return err
			}
			for _, e := range page {
				r.Anomalies = append(r.Anomalies, anomalyRow(e))
			}
			if len(page) < reportPage {
				break
			}
			after = page[len(page)-1].ID
		}
		if len(r.Anomalies) == 0 {
			return nil
		}
		names := map[string]*latchkey.Key{}
		for i := range r.Anomalies {
			a := &r.Anomalies[i]
			if a.KeyID == "" {
				continue
			}
			k, ok := names[a.KeyID]
			if !ok {
				var kerr error
				k, kerr = tx.Key(actor.Tenant, a.KeyID)
				if kerr != nil && latchkey.ErrorCode(kerr) != latchkey.ENotFound {
					return kerr
				}
				names[a.KeyID] = k
			}
			if k != nil {
				a.KeyName, a.Owner = k.Name, k.Owner
			}
			responses[a.KeyID] = nil
		}
		first := r.Anomalies[0].At
		for _, a := range r.Anomalies {
			if a.At.Before(first) {
				first = a.At
			}
		}
		// One pass over the audit log from the first anomaly on, rather
		// than a query per anomaly; cascades name the keys they reached in
		// details.affected, not as the target.
		var seq int64
		for {
			page, err := tx.AuditEvents(actor.Tenant, latchkey.AuditFilter{Since: first, AfterSeq: seq, Limit: reportPage})
			if err != nil {
				return err
			}
			for _, e := range page {
				if !slices.Contains(responseActions, e.Action) || e.Result != latchkey.ResultSuccess {
					continue
				}
				resp := SecurityResponse{Seq: e.Seq, At: e.At, Action: e.Action, ActorKeyID: e.ActorKeyID, Reason: e.Details["reason"]}
				if _, ok := responses[e.TargetKeyID]; ok {
					responses[e.TargetKeyID] = append(responses[e.TargetKeyID], resp)
				}
				if aff := e.Details["affected"]; aff != "" {
					via := resp
					via.Via = e.TargetKeyID
					for id := range strings.SplitSeq(aff, ",") {
						if _, ok := responses[id]; ok && id != e.TargetKeyID {
							responses[id] = append(responses[id], via)
						}
					}
				}
			}
			if len(page) < reportPage {
				return nil
			}
			seq = page[len(page)-1].Seq
		}
	})
	if err != nil {
		return nil, err
	}
	for i := range r.Anomalies {
		a := &r.Anomalies[i]
		for _, resp := range responses[a.KeyID] {
			// Later than the anomaly: the change that raised it (a scope
			// widening) is stamped with the anomaly's own time.
			if resp.At.After(a.At) {
				a.Responses = append(a.Responses, resp)
			}
		}
		if len(a.Responses) > 0 {
			first := a.Responses[0]
			d := first.At.Sub(a.At)
			secs := d.Seconds()
			a.FirstResponseAt, a.TimeToRespond, a.TimeToRespondSeconds = first.At, latchkey.FormatDuration(d.Round(time.Second)), &secs
			r.Summary.Responded++
		} else {
			a.Responses = []SecurityResponse{}
			r.Summary.Unresponded++
		}
		r.Summary.Anomalies++
		r.Summary.ByKind[a.Kind]++
		r.Summary.BySeverity[a.Severity]++
	}
	return r, nil
}

// anomalyRow reads a security.anomaly event. Data that does not parse
// (written by a later version, say) still gives a row, with what is known.
func anomalyRow(e *latchkey.Event) SecurityAnomaly {
	var a latchkey.Anomaly
	_ = json.Unmarshal(e.Data, &a)
	if a.Details == nil {
		a.Details = map[string]string{}
	}
	return SecurityAnomaly{
		EventID: e.ID, At: e.At, Kind: a.Kind, Severity: a.Severity, KeyID: e.KeyID,
		Network: a.Network, Summary: a.Summary, Details: a.Details,
	}
}

// grainOf returns the coarsest usage grain whose rows tile [from, to)
// exactly: the window's counts are then read from the rows kept longest.
func grainOf(from, to time.Time) latchkey.Grain {
	switch {
	case from.Equal(from.Truncate(24*time.Hour)) && to.Equal(to.Truncate(24*time.Hour)):
		return latchkey.GrainDay
	case from.Equal(from.Truncate(time.Hour)) && to.Equal(to.Truncate(time.Hour)):
		return latchkey.GrainHour
	}
	return latchkey.GrainMinute
}
