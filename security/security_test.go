package security_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/security"
	"github.com/latchkeyhq/latchkey/store/sqlite"
	"github.com/latchkeyhq/latchkey/usage"
)

var t0 = time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)

// setup returns a store with tenant acme and key k1 (quota 3 a day), a
// monitor, and a recorder that reports to it.
func setup(t *testing.T) (keys.Store, *usage.Recorder) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "sec.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	err = db.Update(context.Background(), func(tx *sqlite.Tx) error {
		if err := tx.CreateTenant(&latchkey.Tenant{ID: "acme", Name: "Acme", CreatedAt: t0}); err != nil {
			return err
		}
		return tx.CreateKey(&latchkey.Key{ID: "k1", Tenant: "acme", Name: "k1", Prefix: "lk", Start: "lk_k1",
			Hash: sha256.Sum256([]byte("k1")), State: latchkey.StateActive, CreatedAt: t0, UpdatedAt: t0,
			Quota: &latchkey.Quota{Limit: 3, Period: "daily"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	m := security.New(security.Options{Store: latchkey.Narrow[latchkey.FlushTx](db)})
	t.Cleanup(m.Close)
	rec := usage.New(usage.Options{Store: latchkey.Narrow[usage.Tx](db), FlushInterval: time.Hour, Observer: m})
	t.Cleanup(func() { rec.Close(context.Background()) })
	return latchkey.Narrow[keys.Tx](db), rec
}

func events(t *testing.T, db keys.Store, typ string) []*latchkey.Event {
	t.Helper()
	var evs []*latchkey.Event
	err := db.View(context.Background(), func(tx keys.Tx) (err error) {
		evs, err = tx.Events("acme", latchkey.EventFilter{Type: typ})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestQuotaExhaustedOncePerPeriod(t *testing.T) {
	db, rec := setup(t)
	ip := netip.MustParseAddr("192.0.2.1")
	flush := func() {
		t.Helper()
		if err := rec.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	rec.Record("k1", "acme", latchkey.CodeValid, ip, t0.Add(time.Hour))
	flush()
	if evs := events(t, db, latchkey.EventKeyQuotaExhausted); len(evs) != 0 {
		t.Fatalf("quota_exhausted before any refusal: %d", len(evs))
	}
	for i := range 3 {
		rec.Record("k1", "acme", latchkey.CodeQuotaExceeded, ip, t0.Add(2*time.Hour+time.Duration(i)*time.Minute))
		flush()
	}
	evs := events(t, db, latchkey.EventKeyQuotaExhausted)
	if len(evs) != 1 {
		t.Fatalf("quota_exhausted events in one day = %d, want 1", len(evs))
	}
	var data map[string]string
	if err := json.Unmarshal(evs[0].Data, &data); err != nil || data["resets_at"] != "2026-06-02T00:00:00Z" || data["limit"] != "3" {
		t.Errorf("quota_exhausted data = %s", evs[0].Data)
	}
	// The next day's period raises it again.
	rec.Record("k1", "acme", latchkey.CodeQuotaExceeded, ip, t0.Add(26*time.Hour))
	flush()
	if evs := events(t, db, latchkey.EventKeyQuotaExhausted); len(evs) != 2 {
		t.Errorf("quota_exhausted events over two days = %d, want 2", len(evs))
	}
}

func TestAnUnknownKeyRaisesNothing(t *testing.T) {
	db, rec := setup(t)
	// A recording for a key the store does not hold still flushes; the
	// dormant check sees no earlier use for it.
	rec.Record("k-missing", "acme", latchkey.CodeValid, netip.MustParseAddr("192.0.2.1"), t0)
	if err := rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if evs := events(t, db, latchkey.EventSecurityAnomaly); len(evs) != 0 {
		t.Errorf("anomalies for an unknown key: %d", len(evs))
	}
}

func TestGuardBlockedIsWrittenToTheOperatorOnce(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "sec.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(context.Background(), func(tx *sqlite.Tx) error {
		return tx.CreateTenant(&latchkey.Tenant{ID: latchkey.OperatorTenant, Name: "Operator", CreatedAt: t0})
	})
	if err != nil {
		t.Fatal(err)
	}
	m := security.New(security.Options{Store: latchkey.Narrow[latchkey.FlushTx](db)})
	network := netip.MustParsePrefix("203.0.113.0/24")
	m.GuardBlocked(network, 20, t0)
	m.GuardBlocked(network, 20, t0.Add(time.Minute)) // the same burst, within the repeat time
	m.GuardBlocked(network, 20, t0.Add(2*time.Hour))
	m.Close()
	var evs []*latchkey.Event
	err = db.View(context.Background(), func(tx *sqlite.Tx) (err error) {
		evs, err = tx.Events(latchkey.OperatorTenant, latchkey.EventFilter{Kind: latchkey.AnomalyFailedAuthBurst})
		return err
	})
	if err != nil || len(evs) != 2 {
		t.Fatalf("failed_auth_burst events = %d (%v), want 2", len(evs), err)
	}
	se := audit.SecurityEventOf(evs[0])
	if se.Network != network.String() || se.Details["failures"] != "20" || se.Severity != latchkey.SeverityHigh {
		t.Errorf("finding = %+v", se)
	}
}

// rerunStore runs each write transaction's function once in a
// transaction that is rolled back, then again in one that commits, as
// PostgreSQL does after a serialization conflict, while rerun is set.
type rerunStore struct {
	latchkey.Store[usage.Tx]
	rerun bool
}

var errConflict = latchkey.Errorf(latchkey.EConflict, "could not serialize access")

func (s *rerunStore) Update(ctx context.Context, fn func(usage.Tx) error) error {
	if s.rerun {
		err := s.Store.Update(ctx, func(tx usage.Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			return errConflict
		})
		if err != errConflict {
			return err
		}
	}
	return s.Store.Update(ctx, fn)
}

// A flush the store runs again leaves the monitor as if only the run that
// committed happened: its finding is raised (stored once), where notes
// kept from the rolled-back run would have suppressed it.
func TestAFlushRunTwiceRaisesItsFindingOnce(t *testing.T) {
	db, _ := setup(t)
	m := security.New(security.Options{Store: latchkey.Narrow[latchkey.FlushTx](db)})
	t.Cleanup(m.Close)
	st := &rerunStore{Store: latchkey.Narrow[usage.Tx](db)}
	rec := usage.New(usage.Options{Store: st, FlushInterval: time.Hour, Observer: m})
	t.Cleanup(func() { rec.Close(context.Background()) })
	flush := func() {
		t.Helper()
		if err := rec.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	rec.Record("k1", "acme", latchkey.CodeValid, netip.MustParseAddr("192.0.2.1"), t0.Add(time.Hour))
	flush()
	st.rerun = true
	rec.Record("k1", "acme", latchkey.CodeValid, netip.MustParseAddr("198.51.100.7"), t0.Add(2*time.Hour))
	flush()
	var found int
	for _, e := range events(t, db, latchkey.EventSecurityAnomaly) {
		var a latchkey.Anomaly
		if json.Unmarshal(e.Data, &a) == nil && a.Kind == latchkey.AnomalyNewNetwork {
			found++
		}
	}
	if found != 1 {
		t.Fatalf("new_network findings after a flush run twice: %d, want 1", found)
	}
}

// A flush whose transaction fails and is retried with the next flush
// counts its minute once: the spike check sees the real count, not the
// failed attempt's added again.
func TestAFailedFlushDoesNotCountItsMinuteTwice(t *testing.T) {
	db, _ := setup(t)
	m := security.New(security.Options{Store: latchkey.Narrow[latchkey.FlushTx](db), SpikeMin: 150, SpikeFactor: 1})
	t.Cleanup(m.Close)
	st := &failingFlush{Store: latchkey.Narrow[usage.Tx](db)}
	rec := usage.New(usage.Options{Store: st, FlushInterval: time.Hour, Observer: m})
	t.Cleanup(func() { rec.Close(context.Background()) })
	ip := netip.MustParseAddr("192.0.2.1")
	at := t0.Add(time.Hour)
	for range 100 {
		rec.Record("k1", "acme", latchkey.CodeValid, ip, at)
	}
	st.fail = true
	if err := rec.Flush(context.Background()); err == nil {
		t.Fatal("the failing flush succeeded")
	}
	st.fail = false
	if err := rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// 100 verifications in the minute: below SpikeMin (150) unless the
	// failed attempt's 100 were counted as well.
	for _, e := range events(t, db, latchkey.EventSecurityAnomaly) {
		var a latchkey.Anomaly
		if json.Unmarshal(e.Data, &a) == nil && a.Kind == latchkey.AnomalyUsageSpike {
			t.Fatalf("a usage spike from 100 verifications counted twice: %s", e.Data)
		}
	}
}

// failingFlush fails write transactions after running them, while fail is
// set: a commit that does not happen.
type failingFlush struct {
	latchkey.Store[usage.Tx]
	fail bool
}

func (s *failingFlush) Update(ctx context.Context, fn func(usage.Tx) error) error {
	return s.Store.Update(ctx, func(tx usage.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if s.fail {
			return latchkey.Errorf(latchkey.EUnavailable, "disk full")
		}
		return nil
	})
}
