package keys_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// leakFixture is a key service on a SQLite file whose events (the
// webhook outbox) the test can read.
type leakFixture struct {
	db          *sqlite.DB
	svc         *keys.Service
	audit       *audit.Service
	clock       *fakeclock.Clock
	acme, other *latchkey.Actor
}

func newLeakFixture(t *testing.T) *leakFixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "leaks.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := fakeclock.New(t0)
	svc := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db), Now: clock.Now})
	aud := audit.New(audit.Options{Store: latchkey.Narrow[audit.Tx](db), Now: clock.Now})
	t.Cleanup(func() { aud.Close(context.Background()) })
	root, _, _, err := svc.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	op, err := svc.Authenticate(ctx, root.Reveal(), netip.Addr{}, "tenants:admin")
	if err != nil {
		t.Fatal(err)
	}
	f := &leakFixture{db: db, svc: svc, audit: aud, clock: clock}
	for _, id := range []string{"acme", "globex"} {
		_, _, tok, err := svc.CreateTenant(ctx, op, id, "")
		if err != nil {
			t.Fatal(err)
		}
		a, err := svc.Authenticate(ctx, tok.Reveal(), netip.Addr{}, "keys:write")
		if err != nil {
			t.Fatal(err)
		}
		if id == "acme" {
			f.acme = a
		} else {
			f.other = a
		}
	}
	return f
}

func (f *leakFixture) create(t *testing.T, a *latchkey.Actor, p keys.CreateParams) (*latchkey.Key, string) {
	t.Helper()
	if p.Name == nil {
		p.Name = ptr("leaky")
	}
	k, tok, err := f.svc.CreateKey(context.Background(), a, p)
	if err != nil {
		t.Fatal(err)
	}
	return k, tok.Reveal()
}

func (f *leakFixture) code(t *testing.T, key string) string {
	t.Helper()
	v, err := f.svc.Verify(context.Background(), keys.VerifyRequest{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return v.Code
}

func (f *leakFixture) events(t *testing.T, tenant, typ string) []*latchkey.Event {
	t.Helper()
	var evs []*latchkey.Event
	err := f.db.View(context.Background(), func(tx *sqlite.Tx) error {
		var err error
		evs, err = tx.Events(tenant, latchkey.EventFilter{Type: typ})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func (f *leakFixture) auditOf(t *testing.T, a *latchkey.Actor, action string) []*latchkey.AuditEvent {
	t.Helper()
	evs, err := f.audit.ListAudit(context.Background(), a, latchkey.AuditFilter{Action: action})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestReportLeakRevokesALiveKeyAtOnce(t *testing.T) {
	f := newLeakFixture(t)
	ctx := context.Background()
	k, key := f.create(t, f.acme, keys.CreateParams{})
	child, childKey, err := f.svc.DeriveKey(ctx, f.acme, k.ID, keys.CreateParams{Settings: keys.Settings{Name: ptr("child")}})
	if err != nil {
		t.Fatal(err)
	}
	// The verify cache holds the key: the report must reach it at once.
	if c := f.code(t, key); c != latchkey.CodeValid {
		t.Fatalf("before the report: %s", c)
	}
	res, err := f.svc.ReportLeak(ctx, nil, keys.LeakReport{Token: key, URL: "https://github.com/acme/app/blob/abc/.env", Source: "content", Type: "latchkey_api_key", Reporter: "github"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != keys.LeakRevoked || !res.Ours() || res.Key == nil || res.Key.ID != k.ID {
		t.Fatalf("result = %+v, want revoked key %s", res, k.ID)
	}
	for _, kk := range []string{key, childKey.Reveal()} {
		if c := f.code(t, kk); c != latchkey.CodeRevoked {
			t.Errorf("after the report: %s, want REVOKED", c)
		}
	}
	leaked := f.auditOf(t, f.acme, "key.leaked")
	if len(leaked) != 1 || leaked[0].TargetKeyID != k.ID || leaked[0].Details["url"] != "https://github.com/acme/app/blob/abc/.env" ||
		leaked[0].Details["source"] != "content" || leaked[0].Details["outcome"] != keys.LeakRevoked {
		t.Fatalf("key.leaked audit = %+v", leaked)
	}
	revoked := f.auditOf(t, f.acme, "key.revoked")
	if len(revoked) != 1 || revoked[0].Details["affected"] != child.ID {
		t.Fatalf("key.revoked audit = %+v, want one naming the derived key", revoked)
	}
	evs := f.events(t, "acme", latchkey.EventKeyLeaked)
	if len(evs) != 1 || evs[0].KeyID != k.ID {
		t.Fatalf("key.leaked events = %+v", evs)
	}
	var data map[string]string
	if err := json.Unmarshal(evs[0].Data, &data); err != nil || data["url"] == "" || data["outcome"] != keys.LeakRevoked {
		t.Fatalf("key.leaked data = %s (%v)", evs[0].Data, err)
	}
	if n := len(f.events(t, "acme", latchkey.EventKeyRevoked)); n != 1 {
		t.Errorf("key.revoked events = %d, want 1", n)
	}
	// Nothing the service wrote holds the plaintext.
	for _, e := range append(leaked, revoked...) {
		b, _ := json.Marshal(e)
		if strings.Contains(string(b), key) {
			t.Fatalf("audit event holds the key: %s", b)
		}
	}
	if strings.Contains(string(evs[0].Data), key) {
		t.Fatal("the key.leaked event holds the key")
	}
}

func TestReportLeakChangesNothingForWhatIsNotALiveKeyOfOurs(t *testing.T) {
	f := newLeakFixture(t)
	ctx := context.Background()
	gone, goneKey := f.create(t, f.acme, keys.CreateParams{})
	if _, err := f.svc.RevokeKey(ctx, f.acme, gone.ID, "retired"); err != nil {
		t.Fatal(err)
	}
	before := len(f.auditOf(t, f.acme, ""))
	unknown, _ := latchkey.GenerateToken("", nil)
	bad := goneKey[:len(goneKey)-1] + "x"
	if bad == goneKey {
		bad = goneKey[:len(goneKey)-1] + "y"
	}
	tests := []struct {
		name, token, want string
	}{
		{"AlreadyRevoked", goneKey, keys.LeakAlreadyRevoked},
		{"UnknownKey", unknown.Reveal(), keys.LeakUnknown},
		{"BadChecksum", bad, keys.LeakUnknown},
		{"NotAKeyAtAll", "hello", keys.LeakUnknown},
		{"Empty", "", keys.LeakUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := f.svc.ReportLeak(ctx, nil, keys.LeakReport{Token: tt.token, Reporter: "github"})
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != tt.want {
				t.Fatalf("outcome = %s, want %s", res.Outcome, tt.want)
			}
		})
	}
	if after := len(f.auditOf(t, f.acme, "")); after != before {
		t.Fatalf("audit events %d -> %d: a report that changes nothing is not audited", before, after)
	}
	k, err := f.svc.GetKey(ctx, f.acme, gone.ID)
	if err != nil || k.StateReason != "retired" {
		t.Fatalf("the revoked key changed: %+v (%v)", k, err)
	}
}

func TestReportLeakByATenantAdminTouchesOnlyItsTenant(t *testing.T) {
	f := newLeakFixture(t)
	ctx := context.Background()
	_, theirs := f.create(t, f.other, keys.CreateParams{})
	res, err := f.svc.ReportLeak(ctx, f.acme, keys.LeakReport{Token: theirs, URL: "config.yml", Reporter: "scan"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != keys.LeakUnknown || res.Key != nil {
		t.Fatalf("another tenant's key: %+v, want unknown without the key", res)
	}
	if c := f.code(t, theirs); c != latchkey.CodeValid {
		t.Fatalf("another tenant's key after the report: %s, want VALID", c)
	}
	mine, mineKey := f.create(t, f.acme, keys.CreateParams{})
	res, err = f.svc.ReportLeak(ctx, f.acme, keys.LeakReport{Token: mineKey, URL: "config.yml", Reporter: "scan"})
	if err != nil || res.Outcome != keys.LeakRevoked || res.Key.ID != mine.ID {
		t.Fatalf("own key: %+v (%v), want revoked", res, err)
	}
	if ev := f.auditOf(t, f.acme, "key.leaked"); len(ev) != 1 || ev[0].ActorKeyID != f.acme.KeyID {
		t.Fatalf("key.leaked audit = %+v, want the admin as its actor", ev)
	}
}

func TestReportLeakCanSuspendInstead(t *testing.T) {
	f := newLeakFixture(t)
	ctx := context.Background()
	k, key := f.create(t, f.acme, keys.CreateParams{})
	if _, err := f.svc.SuspendKey(ctx, f.acme, k.ID, time.Hour, "maintenance"); err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.ReportLeak(ctx, nil, keys.LeakReport{Token: key, Reporter: "github", Action: keys.LeakSuspend})
	if err != nil || res.Outcome != keys.LeakSuspended {
		t.Fatalf("report: %+v (%v), want suspended", res, err)
	}
	// A timed suspension became one until resumed: it outlasts the hour.
	f.clock.Advance(2 * time.Hour)
	if c := f.code(t, key); c != latchkey.CodeSuspended {
		t.Fatalf("two hours later: %s, want SUSPENDED", c)
	}
	res, err = f.svc.ReportLeak(ctx, nil, keys.LeakReport{Token: key, Reporter: "github", Action: keys.LeakSuspend})
	if err != nil || res.Outcome != keys.LeakAlreadySuspended {
		t.Fatalf("second report: %+v (%v), want already_suspended", res, err)
	}
	if n := len(f.events(t, "acme", latchkey.EventKeyLeaked)); n != 1 {
		t.Fatalf("key.leaked events = %d, want 1", n)
	}
	if _, err := f.svc.ResumeKey(ctx, f.acme, k.ID); err != nil {
		t.Fatal(err)
	}
	if c := f.code(t, key); c != latchkey.CodeValid {
		t.Fatalf("after resume: %s, want VALID", c)
	}
	_, err = f.svc.ReportLeak(ctx, nil, keys.LeakReport{Token: key, Action: "delete"})
	wantCode(t, err, latchkey.EInvalid)
}

func TestParseLeakAction(t *testing.T) {
	for in, want := range map[string]keys.LeakAction{"": keys.LeakRevoke, "revoke": keys.LeakRevoke, "suspend": keys.LeakSuspend} {
		if got, err := keys.ParseLeakAction(in); err != nil || got != want {
			t.Errorf("ParseLeakAction(%q) = %q, %v", in, got, err)
		}
	}
	_, err := keys.ParseLeakAction("Revoke")
	wantCode(t, err, latchkey.EInvalid)
}

// TestReportLeakFailsWhenItsAuditEventCannotBeWritten: a leak report is a
// mutation like any other (TestMutationFailsWhenItsAuditEventCannotBeWritten):
// without its audit events nothing changes, and the reporter is told.
func TestReportLeakFailsWhenItsAuditEventCannotBeWritten(t *testing.T) {
	var store *brokenAudit
	f := newFixture(t, func(o *keys.Options) {
		store = &brokenAudit{Store: o.Store}
		o.Store = store
	})
	ctx := context.Background()
	k, key := f.create(t, keys.CreateParams{})
	f.verify(t, key) // cached
	store.fail.Store(true)
	for _, action := range []keys.LeakAction{keys.LeakRevoke, keys.LeakSuspend} {
		_, err := f.svc.ReportLeak(ctx, nil, keys.LeakReport{Token: key, Reporter: "github", Action: action})
		wantCode(t, err, latchkey.EUnavailable)
	}
	store.fail.Store(false)
	if got, err := f.svc.GetKey(ctx, f.admin, k.ID); err != nil || got.State != latchkey.StateActive {
		t.Fatalf("key after failed reports: %+v, %v", got, err)
	}
	if v := f.verify(t, key); v.Code != latchkey.CodeValid {
		t.Fatalf("verify after failed reports: %s", v.Code)
	}
}
