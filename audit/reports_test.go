package audit_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// reportFixture is a fixture that also hands out its store, for writing
// usage rows as the recorder would.
func reportFixture(t *testing.T) (*fixture, *sqlite.DB) {
	t.Helper()
	f := newFixture(t)
	return f, f.db
}

func sp(v ...string) *[]string { return &v }

func TestReportAccess(t *testing.T) {
	f, _ := reportFixture(t)
	ctx := context.Background()
	a1, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Name: ptr("alice ci"), Owner: ptr("alice"), Environment: ptr("production"),
		Scopes: sp("data:read", "data:write"), Resources: sp("agent:*"), IPAllow: sp("10.0.0.0/8")}})
	f.clock.Advance(time.Minute)
	a2, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Name: ptr("alice laptop"), Owner: ptr("alice"),
		Scopes: sp("data:read", "agent:activate"), ExpiresIn: ptr(48 * time.Hour)}})
	child, _, err := f.keys.DeriveKey(ctx, f.admin, a1.ID, keys.CreateParams{Settings: keys.Settings{Name: ptr("alice child"), Scopes: sp("data:read")}})
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Name: ptr("bob"), Owner: ptr("bob"), Scopes: sp("reports:read")}})
	if _, err := f.keys.SuspendKey(ctx, f.admin, a2.ID, 0, "lost laptop"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.keys.RevokeKey(ctx, f.admin, b1.ID, "left"); err != nil {
		t.Fatal(err)
	}
	cut := f.clock.Now()
	f.clock.Advance(time.Hour)
	late, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Name: ptr("late"), Owner: ptr("carol")}})
	// Another tenant's keys never show.
	if _, _, err := f.keys.CreateKey(ctx, f.other, keys.CreateParams{Settings: keys.Settings{Name: ptr("globex"), Owner: ptr("alice")}}); err != nil {
		t.Fatal(err)
	}

	// The default window ends now: every key, the late one too.
	r, err := f.svc.ReportAccess(ctx, f.admin, audit.ReportWindow{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Report != "access" || r.Tenant != "acme" || !r.To.Equal(f.clock.Now()) || r.To.Sub(r.From) != audit.DefaultReportWindow || !r.GeneratedAt.Equal(f.clock.Now()) {
		t.Errorf("header = %+v", r.ReportHeader)
	}
	var ids []string
	for _, k := range r.Keys {
		ids = append(ids, k.ID)
	}
	want0 := []string{f.admin.KeyID, a1.ID, a2.ID, child.ID, b1.ID, late.ID}
	slices.Sort(want0)
	if !slices.Equal(ids, want0) {
		t.Fatalf("keys = %v, want %v (in id order)", ids, want0)
	}

	// A window ending before the late key leaves it out; from filters nothing.
	r, err = f.svc.ReportAccess(ctx, f.admin, audit.ReportWindow{From: cut.Add(-time.Second), To: cut.Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Keys) != 5 {
		t.Fatalf("%d keys before the late one, want 5: %+v", len(r.Keys), r.Keys)
	}
	got := map[string]audit.AccessKey{}
	for _, k := range r.Keys {
		got[k.ID] = k
	}
	k := got[a1.ID]
	if k.Name != "alice ci" || k.Owner != "alice" || k.Environment != "production" || k.State != latchkey.StateActive ||
		!slices.Equal(k.Scopes, []string{"data:read", "data:write"}) || !slices.Equal(k.Resources, []string{"agent:*"}) ||
		fmt.Sprint(k.IPAllow) != "[10.0.0.0/8]" || !k.CreatedAt.Equal(a1.CreatedAt) || !k.ExpiresAt.IsZero() || k.ParentID != "" {
		t.Errorf("a1 = %+v", k)
	}
	if k := got[a2.ID]; k.State != latchkey.StateSuspended || !k.ExpiresAt.Equal(a2.ExpiresAt) || k.ExpiresAt.IsZero() {
		t.Errorf("a2 = %+v", k)
	}
	if k := got[child.ID]; k.ParentID != a1.ID || k.Owner != "alice" || k.State != latchkey.StateActive {
		t.Errorf("child = %+v", k)
	}
	if k := got[b1.ID]; k.State != latchkey.StateRevoked {
		t.Errorf("b1 = %+v", k)
	}
	adminScopes := slices.Sorted(slices.Values(got[f.admin.KeyID].Scopes))
	want := []audit.AccessOwner{
		{Owner: "acme", Keys: 1, ActiveKeys: 1, Scopes: adminScopes}, // the tenant's first admin key
		{Owner: "alice", Keys: 3, ActiveKeys: 2, Scopes: []string{"agent:activate", "data:read", "data:write"}},
		{Owner: "bob", Keys: 1, ActiveKeys: 0, Scopes: []string{"reports:read"}},
	}
	if fmt.Sprint(r.Owners) != fmt.Sprint(want) {
		t.Errorf("owners = %+v\nwant %+v", r.Owners, want)
	}

	// The other tenant sees its own key only.
	o, err := f.svc.ReportAccess(ctx, f.other, audit.ReportWindow{})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Keys) != 2 || o.Tenant != "globex" {
		t.Errorf("globex report = %+v", o.Keys)
	}
	for _, k := range o.Keys {
		if got[k.ID].ID != "" {
			t.Errorf("globex report shows acme's key %s", k.ID)
		}
	}
}

func TestReportAccessPagesThroughManyKeys(t *testing.T) {
	f, store := reportFixture(t)
	const n = 2345 // more than two pages of the store
	now := f.clock.Now()
	err := store.Update(context.Background(), func(tx *sqlite.Tx) error {
		for i := range n {
			k := &latchkey.Key{ID: latchkey.NewID("key", now), Tenant: "acme", Name: "k", Owner: fmt.Sprintf("team-%d", i%3),
				Scopes: []string{fmt.Sprintf("s:%d", i%5)}, State: latchkey.StateActive, CreatedAt: now, UpdatedAt: now}
			k.Hash = sha256.Sum256([]byte(k.ID))
			if err := tx.CreateKey(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := f.svc.ReportAccess(context.Background(), f.admin, audit.ReportWindow{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Keys) != n+1 { // and the tenant's admin key
		t.Fatalf("%d keys, want %d", len(r.Keys), n+1)
	}
	var got []string
	for _, o := range r.Owners {
		got = append(got, fmt.Sprintf("%s:%d:%d:%v", o.Owner, o.Keys, o.ActiveKeys, o.Scopes))
	}
	if want := "[acme:1:1:[audit:read keys:* policies:* secrets:* webhooks:write] team-0:782:782:[s:0 s:1 s:2 s:3 s:4] " +
		"team-1:782:782:[s:0 s:1 s:2 s:3 s:4] team-2:781:781:[s:0 s:1 s:2 s:3 s:4]]"; fmt.Sprint(got) != want {
		t.Errorf("owners = %v\nwant %v", got, want)
	}
}

func TestReportUsage(t *testing.T) {
	f, store := reportFixture(t)
	ctx := context.Background()
	start := f.clock.Now().Truncate(time.Minute)
	m := func(n int) time.Time { return start.Add(time.Duration(n) * time.Minute) }
	a, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Name: ptr("a"), Owner: ptr("alice"), Environment: ptr("prod")}})
	b, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Name: ptr("b"), Owner: ptr("alice")}})
	c, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Name: ptr("c"), Owner: ptr("bob")}})
	idle, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Name: ptr("idle"), Owner: ptr("bob")}})
	gone, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Name: ptr("gone"), Owner: ptr("bob")}})
	if _, err := f.keys.RevokeKey(ctx, f.admin, gone.ID, ""); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	g, _, err := f.keys.CreateKey(ctx, f.other, keys.CreateParams{Settings: keys.Settings{Name: ptr("g")}})
	if err != nil {
		t.Fatal(err)
	}
	row := func(tenant, id string, min int, code string, n int64) latchkey.UsageRow {
		return latchkey.UsageRow{KeyID: id, Tenant: tenant, Minute: m(min), Code: code, Count: n}
	}
	err = store.Update(ctx, func(tx *sqlite.Tx) error {
		if err := tx.AddUsage([]latchkey.UsageRow{
			row("acme", a.ID, 1, latchkey.CodeValid, 10),
			row("acme", a.ID, 1, latchkey.CodeInsufficientScope, 2),
			row("acme", a.ID, 7, latchkey.CodeValid, 5),
			row("acme", a.ID, 90, latchkey.CodeValid, 1000), // after the window
			row("acme", b.ID, 3, latchkey.CodeRateLimited, 4),
			row("acme", c.ID, 5, latchkey.CodeValid, 1),
			row("acme", c.ID, 6, latchkey.CodeRevoked, 3),
			row("globex", g.ID, 5, latchkey.CodeValid, 77),
		}); err != nil {
			return err
		}
		return tx.AddUsageNetworks([]latchkey.UsageNetwork{
			{KeyID: a.ID, Minute: m(1), Network: "192.0.2.0/24", Count: 10},
			{KeyID: a.ID, Minute: m(1), Network: "2001:db8:1::/48", Count: 2},
			{KeyID: a.ID, Minute: m(7), Network: "192.0.2.0/24", Count: 5},
			{KeyID: c.ID, Minute: m(5), Network: "198.51.100.0/24", Count: 4},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	win := audit.ReportWindow{From: m(1), To: m(60)}
	r, err := f.svc.ReportUsage(ctx, f.admin, win)
	if err != nil {
		t.Fatal(err)
	}
	if r.Report != "usage" || !r.From.Equal(m(1)) || !r.To.Equal(m(60)) {
		t.Errorf("header = %+v", r.ReportHeader)
	}
	type row2 struct {
		id                   string
		total, valid, denied int64
		codes                string
		first, last          time.Time
		nets                 int64
	}
	got := map[string]row2{}
	byID := map[string]audit.UsageKey{}
	for i, k := range r.Keys {
		got[k.KeyID] = row2{k.KeyID, k.Total, k.Valid, k.Denied, fmt.Sprint(k.Codes), k.FirstSeen, k.LastSeen, k.Networks}
		byID[k.KeyID] = k
		if i > 0 && r.Keys[i-1].KeyID >= k.KeyID {
			t.Errorf("keys out of id order at %d", i)
		}
	}
	// The revoked key with no usage is left out; the idle one is in, with zeros.
	want := map[string]row2{
		f.admin.KeyID: {f.admin.KeyID, 0, 0, 0, "map[]", time.Time{}, time.Time{}, 0},
		a.ID:          {a.ID, 17, 15, 2, "map[INSUFFICIENT_SCOPE:2 VALID:15]", m(1), m(7), 2},
		b.ID:          {b.ID, 4, 0, 4, "map[RATE_LIMITED:4]", m(3), m(3), 0},
		c.ID:          {c.ID, 4, 1, 3, "map[REVOKED:3 VALID:1]", m(5), m(6), 1},
		idle.ID:       {idle.ID, 0, 0, 0, "map[]", time.Time{}, time.Time{}, 0},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("keys =\n%v\nwant\n%v", got, want)
	}
	if k := byID[a.ID]; k.Name != "a" || k.Owner != "alice" || k.Environment != "prod" {
		t.Errorf("key a = %+v", k)
	}
	if r.Totals.Total != 25 || r.Totals.Valid != 16 || r.Totals.Denied != 9 || len(r.Totals.Codes) != 4 {
		t.Errorf("totals = %+v", r.Totals)
	}
	var owners []string
	for _, o := range r.Owners {
		owners = append(owners, fmt.Sprintf("%s:%d:%d/%d/%d:%v", o.Owner, o.Keys, o.Total, o.Valid, o.Denied, o.Codes))
	}
	if want := "[acme:1:0/0/0:map[] alice:2:21/15/6:map[INSUFFICIENT_SCOPE:2 RATE_LIMITED:4 VALID:15] bob:2:4/1/3:map[REVOKED:3 VALID:1]]"; fmt.Sprint(owners) != want {
		t.Errorf("owners = %v\nwant %v", owners, want)
	}

	// A window after the revocation still omits the revoked key; one
	// before the keys existed has no key rows.
	if r, err := f.svc.ReportUsage(ctx, f.admin, audit.ReportWindow{From: start.Add(-48 * time.Hour), To: start.Add(-24 * time.Hour)}); err != nil || len(r.Keys) != 0 {
		t.Errorf("usage before the keys existed: %v %+v", err, r)
	}
	// The other tenant counts only its own key.
	o, err := f.svc.ReportUsage(ctx, f.other, win)
	if err != nil {
		t.Fatal(err)
	}
	if o.Totals.Total != 77 {
		t.Errorf("globex totals = %+v", o.Totals)
	}
	for _, k := range o.Keys {
		if k.KeyID == a.ID || k.KeyID == b.ID || k.KeyID == c.ID {
			t.Errorf("globex usage shows acme's key %s", k.KeyID)
		}
	}
}

func TestReportSecurity(t *testing.T) {
	f, store := reportFixture(t)
	ctx := context.Background()
	k, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Name: ptr("ci"), Owner: ptr("alice"), Scopes: sp("data:read")}})
	parent, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Name: ptr("parent"), Owner: ptr("bob"), Scopes: sp("data:read", "data:write")}})
	child, _, err := f.keys.DeriveKey(ctx, f.admin, parent.ID, keys.CreateParams{Settings: keys.Settings{Name: ptr("child"), Scopes: sp("data:read")}})
	if err != nil {
		t.Fatal(err)
	}
	quiet, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Name: ptr("quiet"), Scopes: sp("data:read")}})
	widen := func(id string, scopes ...string) time.Time {
		t.Helper()
		if _, err := f.keys.UpdateKey(ctx, f.admin, id, keys.Settings{Scopes: &scopes}); err != nil {
			t.Fatal(err)
		}
		return f.clock.Now()
	}

	early := widen(quiet.ID, "data:read", "ops:read") // before the window
	f.clock.Advance(time.Hour)
	from := f.clock.Now()
	f.clock.Advance(time.Minute)
	at1 := widen(k.ID, "data:read", "data:write")
	f.clock.Advance(5 * time.Minute)
	if _, err := f.keys.SuspendKey(ctx, f.admin, k.ID, 0, "investigating"); err != nil {
		t.Fatal(err)
	}
	suspendedAt := f.clock.Now()
	f.clock.Advance(time.Minute)
	at2 := widen(child.ID, "data:write")
	f.clock.Advance(90 * time.Second)
	if _, err := f.keys.RevokeKey(ctx, f.admin, parent.ID, "compromised"); err != nil {
		t.Fatal(err)
	}
	revokedAt := f.clock.Now()
	f.clock.Advance(time.Minute)
	at3 := widen(quiet.ID, "data:read", "ops:read", "ops:write") // nobody answers
	f.clock.Advance(time.Minute)
	// An anomaly about a network, not a key, as the brute-force guard raises.
	burstAt := f.clock.Now()
	burst := latchkey.NewEvent("acme", latchkey.EventSecurityAnomaly, "", burstAt, latchkey.Anomaly{
		Kind: latchkey.AnomalyFailedAuthBurst, Severity: latchkey.SeverityHigh, Network: "203.0.113.0/24", Summary: "burst",
		Details: map[string]string{"failures": "20"}})
	if err := store.Update(ctx, func(tx *sqlite.Tx) error { return tx.AppendEvent(burst) }); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	to := f.clock.Now()
	// The other tenant's anomaly is not acme's.
	gk, _, err := f.keys.CreateKey(ctx, f.other, keys.CreateParams{Settings: keys.Settings{Name: ptr("g"), Scopes: sp("data:read")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.keys.UpdateKey(ctx, f.other, gk.ID, keys.Settings{Scopes: sp("data:read", "data:write")}); err != nil {
		t.Fatal(err)
	}

	r, err := f.svc.ReportSecurity(ctx, f.admin, audit.ReportWindow{From: from, To: to})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Anomalies) != 4 {
		t.Fatalf("anomalies = %+v", r.Anomalies)
	}
	if a := r.Anomalies[3]; a.EventID != burst.ID || a.KeyID != "" || a.KeyName != "" || a.Network != "203.0.113.0/24" ||
		a.Kind != latchkey.AnomalyFailedAuthBurst || a.Severity != latchkey.SeverityHigh || a.Details["failures"] != "20" ||
		len(a.Responses) != 0 || !a.At.Equal(burstAt) {
		t.Errorf("burst anomaly = %+v", a)
	}
	a := r.Anomalies[0]
	if a.Kind != latchkey.AnomalyScopesWidened || a.Severity != latchkey.SeverityMedium || a.KeyID != k.ID || a.KeyName != "ci" ||
		a.Owner != "alice" || !a.At.Equal(at1) || a.Details["added"] != "data:write" || a.Summary == "" || a.EventID == "" {
		t.Errorf("anomaly 1 = %+v", a)
	}
	// The update that raised it is not its response; the suspension is.
	if len(a.Responses) != 1 || a.Responses[0].Action != "key.suspended" || !a.Responses[0].At.Equal(suspendedAt) ||
		a.Responses[0].Reason != "investigating" || a.Responses[0].ActorKeyID != f.admin.KeyID || a.Responses[0].Via != "" {
		t.Errorf("responses to anomaly 1 = %+v", a.Responses)
	}
	if !a.FirstResponseAt.Equal(suspendedAt) || a.TimeToRespond != "5m" || a.TimeToRespondSeconds == nil || *a.TimeToRespondSeconds != 300 {
		t.Errorf("anomaly 1 answered at %v after %q (%v s)", a.FirstResponseAt, a.TimeToRespond, a.TimeToRespondSeconds)
	}
	// The child was answered by revoking its parent, which reached it.
	a = r.Anomalies[1]
	if a.KeyID != child.ID || !a.At.Equal(at2) || len(a.Responses) != 1 || a.Responses[0].Action != "key.revoked" ||
		a.Responses[0].Via != parent.ID || !a.Responses[0].At.Equal(revokedAt) || *a.TimeToRespondSeconds != 90 || a.TimeToRespond != "1m30s" {
		t.Errorf("anomaly 2 = %+v", a)
	}
	a = r.Anomalies[2]
	if a.KeyID != quiet.ID || !a.At.Equal(at3) || len(a.Responses) != 0 || a.Responses == nil || !a.FirstResponseAt.IsZero() || a.TimeToRespondSeconds != nil {
		t.Errorf("anomaly 3 = %+v", a)
	}
	s := r.Summary
	if s.Anomalies != 4 || s.Responded != 2 || s.Unresponded != 2 || s.ByKind[latchkey.AnomalyScopesWidened] != 3 ||
		s.ByKind[latchkey.AnomalyFailedAuthBurst] != 1 || s.ByKind[latchkey.AnomalyUsageSpike] != 0 ||
		s.BySeverity[latchkey.SeverityMedium] != 3 || s.BySeverity[latchkey.SeverityHigh] != 1 || s.BySeverity[latchkey.SeverityLow] != 0 ||
		len(s.ByKind) != len(latchkey.AnomalyKinds) {
		t.Errorf("summary = %+v", s)
	}

	// A window holding only the early anomaly: answered later by the
	// update at3, which acts on the same key.
	r, err = f.svc.ReportSecurity(ctx, f.admin, audit.ReportWindow{From: early, To: early.Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Anomalies) != 1 || len(r.Anomalies[0].Responses) != 1 || r.Anomalies[0].Responses[0].Action != "key.updated" || !r.Anomalies[0].FirstResponseAt.Equal(at3) {
		t.Errorf("early anomaly = %+v", r.Anomalies)
	}
	// The other tenant sees its own anomaly only.
	o, err := f.svc.ReportSecurity(ctx, f.other, audit.ReportWindow{From: from, To: f.clock.Now().Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Anomalies) != 1 || o.Anomalies[0].KeyID != gk.ID {
		t.Errorf("globex anomalies = %+v", o.Anomalies)
	}
}

func TestReportWindow(t *testing.T) {
	f, _ := reportFixture(t)
	now := f.clock.Now()
	day := 24 * time.Hour
	for _, c := range []struct {
		name     string
		w        audit.ReportWindow
		code     string
		from, to time.Time
	}{
		{"default: the last 30 days", audit.ReportWindow{}, "", now.Add(-30 * day), now},
		{"from only: up to now", audit.ReportWindow{From: now.Add(-day)}, "", now.Add(-day), now},
		{"to only: 30 days before it", audit.ReportWindow{To: now.Add(-day)}, "", now.Add(-31 * day), now.Add(-day)},
		{"366 days", audit.ReportWindow{From: now.Add(-366 * day), To: now}, "", now.Add(-366 * day), now},
		{"longer than 366 days", audit.ReportWindow{From: now.Add(-366*day - time.Second), To: now}, latchkey.EInvalid, time.Time{}, time.Time{}},
		{"from equals to", audit.ReportWindow{From: now, To: now}, latchkey.EInvalid, time.Time{}, time.Time{}},
		{"from after to", audit.ReportWindow{From: now, To: now.Add(-time.Hour)}, latchkey.EInvalid, time.Time{}, time.Time{}},
		{"from in the future, no to", audit.ReportWindow{From: now.Add(time.Hour)}, latchkey.EInvalid, time.Time{}, time.Time{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, run := range []func() (*audit.ReportHeader, error){
				func() (*audit.ReportHeader, error) {
					r, err := f.svc.ReportAccess(context.Background(), f.admin, c.w)
					return headerOf(r, err)
				},
				func() (*audit.ReportHeader, error) {
					r, err := f.svc.ReportUsage(context.Background(), f.admin, c.w)
					return headerOf(r, err)
				},
				func() (*audit.ReportHeader, error) {
					r, err := f.svc.ReportSecurity(context.Background(), f.admin, c.w)
					return headerOf(r, err)
				},
			} {
				h, err := run()
				if latchkey.ErrorCode(err) != c.code && !(c.code == "" && err == nil) {
					t.Fatalf("error %v, want code %q", err, c.code)
				}
				if c.code == "" && (!h.From.Equal(c.from) || !h.To.Equal(c.to)) {
					t.Errorf("window %v – %v, want %v – %v", h.From, h.To, c.from, c.to)
				}
			}
		})
	}
}

func headerOf(r any, err error) (*audit.ReportHeader, error) {
	if err != nil {
		return nil, err
	}
	switch r := r.(type) {
	case *audit.AccessReport:
		return &r.ReportHeader, nil
	case *audit.TenantUsageReport:
		return &r.ReportHeader, nil
	case *audit.SecurityReport:
		return &r.ReportHeader, nil
	}
	panic("not a report")
}

func TestParseReportTime(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2026-05-01", time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), true},
		{"2026-05-01T10:20:30Z", time.Date(2026, 5, 1, 10, 20, 30, 0, time.UTC), true},
		{"2026-05-01T10:20:30.123456789+02:00", time.Date(2026, 5, 1, 8, 20, 30, 123456000, time.UTC), true},
		{"", time.Time{}, false},
		{"2026-5-1", time.Time{}, false},
		{"2026-13-01", time.Time{}, false},
		{"2026-05-01T10:20:30", time.Time{}, false}, // no zone
		{"1969-12-31", time.Time{}, false},
		{"yesterday", time.Time{}, false},
		{"1714557600", time.Time{}, false},
	} {
		got, err := audit.ParseReportTime(c.in)
		if c.ok != (err == nil) || c.ok && (!got.Equal(c.want) || got.Location() != time.UTC) {
			t.Errorf("ParseReportTime(%q) = %v, %v; want %v ok=%v", c.in, got, err, c.want, c.ok)
		}
		if err != nil && latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("ParseReportTime(%q) error code %q", c.in, latchkey.ErrorCode(err))
		}
	}
}

func FuzzParseReportTime(f *testing.F) {
	for _, s := range []string{"2026-05-01", "2026-05-01T10:20:30Z", "2026-05-01T10:20:30.5-07:00", "9999-12-31", "0000-01-01", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := audit.ParseReportTime(s)
		if err != nil {
			if latchkey.ErrorCode(err) != latchkey.EInvalid {
				t.Fatalf("ParseReportTime(%q): error code %q", s, latchkey.ErrorCode(err))
			}
			return
		}
		if got.Location() != time.UTC || got.Year() < 1970 || got.Year() > 9999 || got.Nanosecond()%1000 != 0 {
			t.Fatalf("ParseReportTime(%q) = %v", s, got)
		}
		// What it accepts reads back the same written as RFC 3339.
		again, err := audit.ParseReportTime(got.Format(time.RFC3339Nano))
		if err != nil || !again.Equal(got) {
			t.Fatalf("ParseReportTime(%q) = %v, which reads back as %v, %v", s, got, again, err)
		}
	})
}

// rowOf returns the row whose first cell is id.
func rowOf(rows [][]string, id string) []string {
	for _, r := range rows {
		if r[0] == id {
			return r
		}
	}
	return make([]string, 20)
}

// readCSV parses a report's CSV with the standard reader, checking that
// every row has the header's width.
func readCSV(t *testing.T, r audit.Report) [][]string {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("CSV does not parse: %v\n%s", err, buf.String())
	}
	return rows
}

func TestReportCSVDefusesFormulas(t *testing.T) {
	f, _ := reportFixture(t)
	ctx := context.Background()
	evil, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Name: ptr(`=HYPERLINK("http://x","a,b")`), Owner: ptr("+owner"),
		Environment: ptr("-env"), Scopes: sp("data:read", "data:write"), IPAllow: sp("10.0.0.0/8", "2001:db8::/32")}})
	plain, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Name: ptr("@sum"), Owner: ptr("plain \"quoted\", owner")}})
	f.clock.Advance(time.Minute)
	if _, err := f.keys.UpdateKey(ctx, f.admin, evil.ID, keys.Settings{Scopes: sp("data:read", "data:write", "data:delete")}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	if _, err := f.keys.SuspendKey(ctx, f.admin, evil.ID, time.Hour, "-1+1"); err != nil {
		t.Fatal(err)
	}

	acc, err := f.svc.ReportAccess(ctx, f.admin, audit.ReportWindow{})
	if err != nil {
		t.Fatal(err)
	}
	rows := readCSV(t, acc)
	if !slices.Equal(rows[0], audit.AccessCSVHeader) || len(rows) != 4 {
		t.Fatalf("access CSV = %q", rows)
	}
	want := []string{evil.ID, `'=HYPERLINK("http://x","a,b")`, "'+owner", "'-env", "suspended", "data:read;data:write;data:delete", "", "",
		evil.CreatedAt.Format(time.RFC3339Nano), "", "", "10.0.0.0/8;2001:db8::/32"}
	if r := rowOf(rows, evil.ID); !slices.Equal(r, want) {
		t.Errorf("access row\n%q\nwant\n%q", r, want)
	}
	if r := rowOf(rows, plain.ID); r[1] != "'@sum" || r[2] != `plain "quoted", owner` {
		t.Errorf("access row %q", r)
	}

	use, err := f.svc.ReportUsage(ctx, f.admin, audit.ReportWindow{})
	if err != nil {
		t.Fatal(err)
	}
	rows = readCSV(t, use)
	if r := rowOf(rows, evil.ID); !slices.Equal(rows[0], audit.UsageCSVHeader) || len(rows) != 4 || r[1] != `'=HYPERLINK("http://x","a,b")` || r[2] != "'+owner" || r[3] != "'-env" {
		t.Errorf("usage CSV = %q", rows)
	}
	for _, c := range []string{"VALID", "EXPIRED", "CONCURRENCY_EXCEEDED"} {
		if !slices.Contains(rows[0], c) {
			t.Errorf("usage header lacks %s: %q", c, rows[0])
		}
	}

	sec, err := f.svc.ReportSecurity(ctx, f.admin, audit.ReportWindow{})
	if err != nil {
		t.Fatal(err)
	}
	rows = readCSV(t, sec)
	if !slices.Equal(rows[0], audit.SecurityCSVHeader) || len(rows) != 2 {
		t.Fatalf("security CSV = %q", rows)
	}
	r := rows[1]
	if r[2] != latchkey.AnomalyScopesWidened || r[4] != evil.ID || r[5] != `'=HYPERLINK("http://x","a,b")` || r[6] != "'+owner" ||
		!strings.Contains(r[9], "added=data:delete") || r[10] != "key.suspended "+sec.Anomalies[0].FirstResponseAt.Format(time.RFC3339Nano) || r[12] != "60" {
		t.Errorf("security row %q", r)
	}
	if got := acc.Filename(); got != "latchkey-access-acme-"+acc.From.Format(time.DateOnly)+"-"+acc.To.Format(time.DateOnly)+".csv" {
		t.Errorf("Filename = %q", got)
	}
}
