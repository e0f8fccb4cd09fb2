package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
)

// csvTable is a parsed CSV report: its header and its rows by first cell.
type csvTable struct {
	header []string
	rows   map[string][]string
	n      int
}

// parseReportCSV reads a CSV report with encoding/csv, which also checks
// that every row has the header's width.
func parseReportCSV(t *testing.T, raw []byte) csvTable {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil || len(recs) == 0 {
		t.Fatalf("CSV does not parse: %v\n%s", err, raw)
	}
	tb := csvTable{header: recs[0], rows: map[string][]string{}, n: len(recs) - 1}
	for _, r := range recs[1:] {
		tb.rows[r[0]] = r
	}
	return tb
}

// cell is the value of column col in the row whose first cell is id.
func (tb csvTable) cell(t *testing.T, id, col string) string {
	t.Helper()
	r, ok := tb.rows[id]
	if !ok {
		t.Fatalf("no CSV row for %s", id)
	}
	i := slices.Index(tb.header, col)
	if i < 0 {
		t.Fatalf("no CSV column %s in %q", col, tb.header)
	}
	return r[i]
}

// getReport fetches a report over HTTP and checks its content type.
func getReport(t *testing.T, ts *testServer, key, kind, query string) resp {
	t.Helper()
	r := ts.call(t, "GET", "/v1/reports/"+kind+"?"+query, key, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("%s report ?%s: %d %s", kind, query, r.Status, r.Raw)
	}
	if strings.Contains(query, "format=csv") {
		if ct := r.Header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
			t.Errorf("%s CSV Content-Type %q", kind, ct)
		}
		if cd := r.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="latchkey-`+kind+`-acme-2026-06-01-2026-06-02.csv"`) {
			t.Errorf("%s CSV Content-Disposition %q", kind, cd)
		}
	}
	return r
}

func decodeInto[T any](t *testing.T, raw []byte) *T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("report JSON: %v\n%s", err, raw)
	}
	return &v
}

func TestE2EReports(t *testing.T) {
	ts := startServer(t)
	admin := ts.mustTenant(t, "acme")
	other := ts.mustTenant(t, "globex")
	ctx := context.Background()
	get := func(id string) resp {
		t.Helper()
		r := ts.call(t, "GET", "/v1/keys/"+id, admin, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("get %s: %d %s", id, r.Status, r.Raw)
		}
		return r
	}

	// 08:00 — the keys, who holds them and with which scopes.
	auditorID, auditor := ts.mustCreate(t, admin, map[string]any{"name": "auditor", "owner": "audit-team", "scopes": []string{"audit:read"}})
	k1, key1 := ts.mustCreate(t, admin, map[string]any{"name": "=ci deploy", "owner": "alice", "environment": "production",
		"scopes": []string{"data:read"}, "resources": []string{"agent:*"}})
	k2, key2 := ts.mustCreate(t, admin, map[string]any{"name": "alice laptop", "owner": "alice", "scopes": []string{"data:read", "agent:activate"}})
	k3, key3 := ts.mustCreate(t, admin, map[string]any{"name": "bob batch", "owner": "bob", "scopes": []string{"reports:read"},
		"ip_allow": []string{"10.0.0.0/8"}, "expires_in": "30d"})
	dr := ts.call(t, "POST", "/v1/keys/"+k2+"/derive", admin, map[string]any{"name": "alice child", "scopes": []string{"data:read"}})
	if dr.Status != http.StatusCreated {
		t.Fatalf("derive: %d %s", dr.Status, dr.Raw)
	}
	child := dr.str("id")
	gID, gKey := ts.mustCreate(t, other, map[string]any{"name": "globex", "owner": "alice", "scopes": []string{"data:read"}})
	readerID, reader := ts.mustCreate(t, admin, map[string]any{"name": "reader", "owner": "ops", "scopes": []string{"keys:read"}})

	// Verifications over HTTP: at 08:00 and at 08:02:30.
	verify := func(n int, body map[string]any, want string) {
		t.Helper()
		for range n {
			if got := ts.verifyCode(t, body); got != want {
				t.Fatalf("verify %v = %s, want %s", body["scopes"], got, want)
			}
		}
	}
	// k1 is used from both its networks in its first minute: that minute is
	// written once it closes, before the 08:02 verifications, and a network
	// first seen then would be a new_network anomaly.
	verify(4, map[string]any{"key": key1, "scopes": []string{"data:read"}, "ip": "192.0.2.10"}, latchkey.CodeValid)
	verify(1, map[string]any{"key": key1, "scopes": []string{"data:read"}, "ip": "198.51.100.7"}, latchkey.CodeValid)
	verify(4, map[string]any{"key": key2, "scopes": []string{"agent:activate"}, "ip": "192.0.2.11"}, latchkey.CodeValid)
	verify(6, map[string]any{"key": gKey, "ip": "192.0.2.12"}, latchkey.CodeValid)
	ts.Clock.Advance(150 * time.Second)
	verify(3, map[string]any{"key": key1, "scopes": []string{"data:write"}, "ip": "198.51.100.7"}, latchkey.CodeInsufficientScope)
	verify(2, map[string]any{"key": key3, "ip": "192.0.2.1"}, latchkey.CodeIPNotAllowed)
	waitUsage(t, ts, admin, k1, "", map[string]int64{latchkey.CodeValid: 5, latchkey.CodeInsufficientScope: 3})
	waitUsage(t, ts, admin, k2, "", map[string]int64{latchkey.CodeValid: 4})
	waitUsage(t, ts, admin, k3, "", map[string]int64{latchkey.CodeIPNotAllowed: 2})
	waitUsage(t, ts, other, gID, "", map[string]int64{latchkey.CodeValid: 6})

	// 08:03:30 — k1 is given a scope it did not have: a security anomaly.
	// 08:07:30 — it is suspended: the response, four minutes later.
	ts.Clock.Advance(time.Minute)
	anomalyAt := ts.Clock.Now()
	if r := ts.call(t, "PATCH", "/v1/keys/"+k1, admin, map[string]any{"scopes": []string{"data:read", "data:write"}}); r.Status != http.StatusOK {
		t.Fatalf("widen k1: %d %s", r.Status, r.Raw)
	}
	ts.Clock.Advance(4 * time.Minute)
	suspendedAt := ts.Clock.Now()
	if r := ts.call(t, "POST", "/v1/keys/"+k1+"/suspend", admin, map[string]any{"reason": "investigating"}); r.Status != http.StatusOK {
		t.Fatalf("suspend k1: %d %s", r.Status, r.Raw)
	}
	adminID := ts.call(t, "GET", "/v1/audit?action=key.suspended", admin, nil).Body["events"].([]any)[0].(map[string]any)["actor_key_id"].(string)
	ts.Clock.Advance(time.Minute)

	const window = "from=2026-06-01&to=2026-06-02"
	mine := []string{auditorID, k1, k2, k3, child, readerID}

	// Access, JSON: every key with what GET /v1/keys/{id} says of it.
	accRaw := getReport(t, ts, auditor, "access", window).Raw
	acc := decodeInto[audit.AccessReport](t, accRaw)
	if acc.Report != "access" || acc.Tenant != "acme" || !acc.From.Equal(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)) ||
		!acc.To.Equal(time.Date(2026, 6, 2, 0, 0, 0, 0, time.UTC)) || !acc.GeneratedAt.Equal(ts.Clock.Now()) {
		t.Errorf("access header = %+v", acc.ReportHeader)
	}
	if len(acc.Keys) != len(mine)+1 { // and the tenant's first admin key
		t.Fatalf("access report has %d keys, want %d:\n%s", len(acc.Keys), len(mine)+1, accRaw)
	}
	accTable := parseReportCSV(t, getReport(t, ts, auditor, "access", window+"&format=csv").Raw)
	if !slices.Equal(accTable.header, audit.AccessCSVHeader) || accTable.n != len(mine)+1 {
		t.Fatalf("access CSV header %q, %d rows", accTable.header, accTable.n)
	}
	for _, id := range mine {
		g := get(id)
		var row *audit.AccessKey
		for i := range acc.Keys {
			if acc.Keys[i].ID == id {
				row = &acc.Keys[i]
			}
		}
		if row == nil {
			t.Fatalf("access report lacks %s", id)
		}
		js, _ := json.Marshal(row)
		var got map[string]any
		_ = json.Unmarshal(js, &got)
		for _, f := range []string{"name", "owner", "environment", "state", "scopes", "resources", "parent_id", "created_at", "expires_at", "last_used_at", "ip_allow"} {
			if !reflect.DeepEqual(got[f], g.Body[f]) {
				t.Errorf("access JSON %s.%s = %v, GET says %v", id, f, got[f], g.Body[f])
			}
			want := ""
			switch v := g.Body[f].(type) {
			case string:
				want = v
			case []any:
				var parts []string
				for _, p := range v {
					parts = append(parts, p.(string))
				}
				want = strings.Join(parts, ";")
			}
			if f == "name" && strings.HasPrefix(want, "=") {
				want = "'" + want // the formula guard
			}
			if c := accTable.cell(t, id, f); c != want {
				t.Errorf("access CSV %s.%s = %q, want %q", id, f, c, want)
			}
		}
	}
	if accTable.cell(t, k1, "state") != "suspended" || accTable.cell(t, k1, "scopes") != "data:read;data:write" ||
		accTable.cell(t, child, "parent_id") != k2 || accTable.cell(t, k3, "ip_allow") != "10.0.0.0/8" ||
		accTable.cell(t, k1, "last_used_at") != "2026-06-01T08:02:30Z" || accTable.cell(t, k3, "expires_at") != "2026-07-01T08:00:00Z" {
		t.Errorf("access CSV rows: %q", accTable.rows)
	}
	var owners []string
	for _, o := range acc.Owners {
		if o.Owner != "acme" {
			owners = append(owners, o.Owner+":"+strconv.Itoa(o.Keys)+":"+strconv.Itoa(o.ActiveKeys)+":"+strings.Join(o.Scopes, ","))
		}
	}
	if want := []string{"alice:3:2:agent:activate,data:read,data:write", "audit-team:1:1:audit:read", "bob:1:1:reports:read", "ops:1:1:keys:read"}; !slices.Equal(owners, want) {
		t.Errorf("access owners = %v\nwant %v", owners, want)
	}

	// Usage, JSON and CSV: the verifications above, by key and owner.
	usRaw := getReport(t, ts, auditor, "usage", window).Raw
	us := decodeInto[audit.TenantUsageReport](t, usRaw)
	if us.Totals.Total != 14 || us.Totals.Valid != 9 || us.Totals.Denied != 5 ||
		!reflect.DeepEqual(us.Totals.Codes, map[string]int64{"VALID": 9, "INSUFFICIENT_SCOPE": 3, "IP_NOT_ALLOWED": 2}) {
		t.Errorf("usage totals = %+v", us.Totals)
	}
	usTable := parseReportCSV(t, getReport(t, ts, auditor, "usage", window+"&format=csv").Raw)
	if !slices.Equal(usTable.header, audit.UsageCSVHeader) || usTable.n != len(mine)+1 || len(us.Keys) != len(mine)+1 {
		t.Fatalf("usage: %d JSON rows, CSV header %q, %d rows", len(us.Keys), usTable.header, usTable.n)
	}
	// A window of whole UTC days reads the daily roll-ups: first and last
	// seen are day starts. (A window of minutes, below, tells the minutes.)
	if us.Grain != latchkey.GrainDay {
		t.Errorf("usage grain of a window of dates = %q, want day", us.Grain)
	}
	m0, m2 := "2026-06-01T00:00:00Z", "2026-06-01T00:00:00Z"
	for _, w := range []struct {
		id                       string
		total, valid, denied     int64
		codes                    map[string]int64
		first, last              string
		networks                 int64
		name, owner, environment string
	}{
		{k1, 8, 5, 3, map[string]int64{"VALID": 5, "INSUFFICIENT_SCOPE": 3}, m0, m2, 2, "'=ci deploy", "alice", "production"},
		{k2, 4, 4, 0, map[string]int64{"VALID": 4}, m0, m0, 1, "alice laptop", "alice", ""},
		{k3, 2, 0, 2, map[string]int64{"IP_NOT_ALLOWED": 2}, m2, m2, 1, "bob batch", "bob", ""},
		{child, 0, 0, 0, map[string]int64{}, "", "", 0, "alice child", "alice", ""},
		{auditorID, 0, 0, 0, map[string]int64{}, "", "", 0, "auditor", "audit-team", ""},
		{readerID, 0, 0, 0, map[string]int64{}, "", "", 0, "reader", "ops", ""},
	} {
		var k *audit.UsageKey
		for i := range us.Keys {
			if us.Keys[i].KeyID == w.id {
				k = &us.Keys[i]
			}
		}
		if k == nil {
			t.Fatalf("usage report lacks %s", w.id)
		}
		if k.Total != w.total || k.Valid != w.valid || k.Denied != w.denied || !reflect.DeepEqual(k.Codes, w.codes) ||
			csvTimeOf(k.FirstSeen) != w.first || csvTimeOf(k.LastSeen) != w.last || k.Networks != w.networks ||
			k.Owner != w.owner || k.Environment != w.environment {
			t.Errorf("usage JSON of %s = %+v, want %+v", w.id, *k, w)
		}
		for col, want := range map[string]string{
			"name": w.name, "owner": w.owner, "environment": w.environment, "total": itoa(w.total), "valid": itoa(w.valid),
			"denied": itoa(w.denied), "first_seen": w.first, "last_seen": w.last, "networks": itoa(w.networks),
		} {
			if c := usTable.cell(t, w.id, col); c != want {
				t.Errorf("usage CSV %s.%s = %q, want %q", w.id, col, c, want)
			}
		}
		for _, code := range latchkey.VerifyCodes {
			if code == latchkey.CodeMalformed || code == latchkey.CodeNotFound {
				continue
			}
			if c := usTable.cell(t, w.id, code); c != itoa(w.codes[code]) {
				t.Errorf("usage CSV %s.%s = %q, want %d", w.id, code, c, w.codes[code])
			}
		}
	}
	owners = nil
	for _, o := range us.Owners {
		owners = append(owners, o.Owner+":"+strconv.Itoa(o.Keys)+":"+itoa(o.Total)+"/"+itoa(o.Valid)+"/"+itoa(o.Denied))
	}
	if want := []string{"acme:1:0/0/0", "alice:3:12/9/3", "audit-team:1:0/0/0", "bob:1:2/0/2", "ops:1:0/0/0"}; !slices.Equal(owners, want) {
		t.Errorf("usage owners = %v\nwant %v", owners, want)
	}

	minutes := decodeInto[audit.TenantUsageReport](t, getReport(t, ts, auditor, "usage", "from=2026-06-01T07:59:30Z&to=2026-06-01T09:00:30Z").Raw)
	found := false
	for _, k := range minutes.Keys {
		found = found || k.KeyID == k1
		if k.KeyID == k1 && (minutes.Grain != latchkey.GrainMinute || k.Total != 8 ||
			csvTimeOf(k.FirstSeen) != "2026-06-01T08:00:00Z" || csvTimeOf(k.LastSeen) != "2026-06-01T08:02:00Z") {
			t.Errorf("usage of %s over a window of minutes: grain %q, %+v", k1, minutes.Grain, k)
		}
	}
	if !found {
		t.Errorf("usage over a window of minutes lacks %s", k1)
	}

	// Security: the anomaly and its response.
	secRaw := getReport(t, ts, auditor, "security", window).Raw
	sec := decodeInto[audit.SecurityReport](t, secRaw)
	if len(sec.Anomalies) != 1 {
		t.Fatalf("security anomalies:\n%s", secRaw)
	}
	a := sec.Anomalies[0]
	if a.Kind != latchkey.AnomalyScopesWidened || a.Severity != latchkey.SeverityMedium || a.KeyID != k1 || a.KeyName != "=ci deploy" ||
		a.Owner != "alice" || !a.At.Equal(anomalyAt) || a.Details["added"] != "data:write" || a.Summary == "" {
		t.Errorf("anomaly = %+v", a)
	}
	if len(a.Responses) != 1 || a.Responses[0].Action != "key.suspended" || !a.Responses[0].At.Equal(suspendedAt) ||
		a.Responses[0].ActorKeyID != adminID || a.Responses[0].Reason != "investigating" || a.TimeToRespond != "4m" ||
		a.TimeToRespondSeconds == nil || *a.TimeToRespondSeconds != 240 || !a.FirstResponseAt.Equal(suspendedAt) {
		t.Errorf("responses = %+v, first %v after %q", a.Responses, a.FirstResponseAt, a.TimeToRespond)
	}
	s := sec.Summary
	if s.Anomalies != 1 || s.Responded != 1 || s.Unresponded != 0 || s.ByKind[latchkey.AnomalyScopesWidened] != 1 ||
		s.ByKind[latchkey.AnomalyMassCreation] != 0 || s.BySeverity[latchkey.SeverityMedium] != 1 || s.BySeverity[latchkey.SeverityHigh] != 0 {
		t.Errorf("security summary = %+v", s)
	}
	secCSV := getReport(t, ts, auditor, "security", window+"&format=csv").Raw
	secTable := parseReportCSV(t, secCSV)
	if !slices.Equal(secTable.header, audit.SecurityCSVHeader) || secTable.n != 1 {
		t.Fatalf("security CSV:\n%s", secCSV)
	}
	for col, want := range map[string]string{
		"at": "2026-06-01T08:03:30Z", "kind": "scopes_widened", "severity": "medium", "key_id": k1, "key_name": "'=ci deploy",
		"owner": "alice", "network": "", "summary": a.Summary, "responses": "key.suspended 2026-06-01T08:07:30Z",
		"first_response_at": "2026-06-01T08:07:30Z", "time_to_respond_seconds": "240",
	} {
		if c := secTable.cell(t, a.EventID, col); c != want {
			t.Errorf("security CSV %s = %q, want %q", col, c, want)
		}
	}
	if d := secTable.cell(t, a.EventID, "details"); !strings.Contains(d, "added=data:write") || !strings.Contains(d, "before=data:read") {
		t.Errorf("security CSV details = %q", d)
	}

	// The CLI gets the same reports: JSON on stdout, CSV to a file.
	cli := func(args ...string) (string, string, error) {
		var out, errOut syncBuffer
		getenv := func(k string) string { return map[string]string{"LATCHKEY_ADDR": ts.URL, "LATCHKEY_KEY": auditor}[k] }
		err := run(ctx, args, getenv, nil, &out, &errOut)
		return out.String(), errOut.String(), err
	}
	out, _, err := cli("reports", "usage", "--from", "2026-06-01", "--to", "2026-06-02")
	if err != nil {
		t.Fatalf("reports usage: %v", err)
	}
	if got := decodeInto[audit.TenantUsageReport](t, []byte(out)); !reflect.DeepEqual(got, us) {
		t.Errorf("CLI usage report differs from the API's:\n%s\n%s", out, usRaw)
	}
	file := filepath.Join(t.TempDir(), "access.csv")
	if _, msg, err := cli("reports", "access", "--from", "2026-06-01", "--to", "2026-06-02T00:00:00Z", "--format", "csv", "--out", file); err != nil || !strings.Contains(msg, file) {
		t.Fatalf("reports access --out: %v %s", err, msg)
	}
	fileCSV, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(parseReportCSV(t, fileCSV), accTable) {
		t.Errorf("CLI access CSV differs from the API's:\n%s", fileCSV)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("--out file mode %v, %v", st.Mode(), err)
	}
	if out, _, err := cli("reports", "security", "--from", "2026-06-01", "--to", "2026-06-02", "--format", "csv"); err != nil || out != string(secCSV) {
		t.Errorf("CLI security CSV: %v\n%s\nwant\n%s", err, out, secCSV)
	}

	// --from also takes a duration ago (on the CLI's clock).
	wallTo := time.Now().UTC().Add(time.Hour).Truncate(time.Second)
	out, _, err = cli("reports", "security", "--from", "7d", "--to", wallTo.Format(time.RFC3339))
	if err != nil {
		t.Fatalf("reports security --from 7d: %v", err)
	}
	if h := decodeInto[audit.SecurityReport](t, []byte(out)); !h.To.Equal(wallTo) || h.To.Sub(h.From) < 7*24*time.Hour || h.To.Sub(h.From) > 7*24*time.Hour+2*time.Hour {
		t.Errorf("--from 7d: window %v – %v", h.From, h.To)
	}

	// Another tenant's reports show none of this.
	for _, kind := range []string{"access", "usage", "security"} {
		r := ts.call(t, "GET", "/v1/reports/"+kind+"?"+window, other, nil)
		if r.Status != http.StatusOK || r.str("tenant") != "globex" {
			t.Fatalf("globex %s report: %d %s", kind, r.Status, r.Raw)
		}
		for _, id := range append(mine, adminID) {
			if bytes.Contains(r.Raw, []byte(id)) {
				t.Errorf("globex %s report shows acme's key %s", kind, id)
			}
		}
		if kind != "security" && !bytes.Contains(r.Raw, []byte(gID)) {
			t.Errorf("globex %s report lacks its own key", kind)
		}
	}
	if g := ts.call(t, "GET", "/v1/reports/usage?"+window, other, nil); g.Body["totals"].(map[string]any)["total"] != float64(6) {
		t.Errorf("globex usage totals = %v", g.Body["totals"])
	}
	if bytes.Contains(accRaw, []byte(gID)) || bytes.Contains(usRaw, []byte(gID)) {
		t.Errorf("acme's reports show globex's key")
	}

	// Errors.
	for _, c := range []struct {
		key, path, code string
	}{
		{auditor, "/v1/reports/usage?from=yesterday", latchkey.EInvalid},
		{auditor, "/v1/reports/access?to=2026-02-30", latchkey.EInvalid},
		{auditor, "/v1/reports/security?format=xml", latchkey.EInvalid},
		{auditor, "/v1/reports/usage?from=2026-06-02&to=2026-06-01", latchkey.EInvalid},
		{auditor, "/v1/reports/usage?from=2026-06-01&to=2026-06-01", latchkey.EInvalid},
		{auditor, "/v1/reports/access?from=2025-01-01&to=2026-06-01", latchkey.EInvalid},
		{reader, "/v1/reports/access", latchkey.EForbidden}, // keys:read is not audit:read
		{"", "/v1/reports/access", latchkey.EUnauthenticated},
		{auditor, "/v1/reports/keys", latchkey.ENotFound},
	} {
		r := ts.call(t, "GET", c.path, c.key, nil)
		if r.errCode() != c.code || r.Status != latchkey.HTTPStatus(c.code) {
			t.Errorf("GET %s: %d %s, want %s", c.path, r.Status, r.Raw, c.code)
		}
	}
	for _, args := range [][]string{
		{"reports", "usage", "--format", "xml"},
		{"reports", "usage", "--from", "yesterday"},
		{"reports", "access", "--to", "2026-06-01T10:00"},
		{"reports", "access", "--from", "2026-06-02", "--to", "2026-06-01"}, // refused by the server
	} {
		if _, _, err := cli(args...); cliErrCode(err) != latchkey.EInvalid {
			t.Errorf("%v: %v, want invalid", args, err)
		}
	}
	if _, _, err := cli("reports", "audits"); err == nil {
		t.Errorf("reports audits: no error")
	}
}

func csvTimeOf(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
