package usage_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
	"github.com/latchkeyhq/latchkey/store/sqlite"
	"github.com/latchkeyhq/latchkey/usage"
)

var t0 = time.Date(2031, 3, 14, 15, 9, 26, 0, time.UTC)

// open returns a store holding tenant "acme" with the keys ids.
func open(t testing.TB, ids ...string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "usage.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	err = db.Update(context.Background(), func(tx *sqlite.Tx) error {
		if err := tx.CreateTenant(&latchkey.Tenant{ID: "acme", Name: "Acme", CreatedAt: t0}); err != nil {
			return err
		}
		for _, id := range ids {
			k := &latchkey.Key{ID: id, Tenant: "acme", Name: id, Prefix: "lk", Start: "lk_" + id,
				Hash: sha256.Sum256([]byte(id)), State: latchkey.StateActive, CreatedAt: t0, UpdatedAt: t0}
			if err := tx.CreateKey(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func newRecorder[T any](t testing.TB, db latchkey.Store[T], o usage.Options) *usage.Recorder {
	t.Helper()
	o.Store = latchkey.Narrow[usage.Tx](db)
	if o.FlushInterval == 0 {
		o.FlushInterval = time.Hour // tests flush by hand
	}
	r := usage.New(o)
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

func flush(t *testing.T, r *usage.Recorder) {
	t.Helper()
	if err := r.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// counts reads the stored counts of a key as "minute-offset/code" → count,
// the offset in minutes from t0's minute.
func counts(t *testing.T, db *sqlite.DB, keyID string) map[string]int64 {
	t.Helper()
	base := t0.Truncate(time.Minute)
	out := map[string]int64{}
	err := db.View(context.Background(), func(tx *sqlite.Tx) error {
		rows, err := tx.Usage("acme", keyID, base.Add(-time.Hour), base.Add(time.Hour))
		for _, r := range rows {
			out[fmt.Sprintf("%d/%s", int(r.Minute.Sub(base)/time.Minute), r.Code)] += r.Count
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func networks(t *testing.T, db *sqlite.DB, keyID string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := db.View(context.Background(), func(tx *sqlite.Tx) error {
		rows, err := tx.UsageNetworks("acme", keyID, t0.Add(-time.Hour), t0.Add(time.Hour))
		for _, r := range rows {
			out[r.Network] += r.Count
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func lastUsed(t *testing.T, db *sqlite.DB, keyID string) time.Time {
	t.Helper()
	var k *latchkey.Key
	err := db.View(context.Background(), func(tx *sqlite.Tx) (err error) {
		k, err = tx.Key("acme", keyID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return k.LastUsedAt
}

func checkCounts(t *testing.T, what string, got, want map[string]int64) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

var ip = netip.MustParseAddr("192.0.2.10")

func TestCountsExactAfterFlush(t *testing.T) {
	db := open(t, "key_a", "key_b")
	r := newRecorder(t, db, usage.Options{})
	clock := fakeclock.New(t0)
	for range 7 {
		r.Record("key_a", "acme", latchkey.CodeValid, ip, clock.Now())
	}
	r.Record("key_a", "acme", latchkey.CodeRevoked, ip, clock.Now())
	r.Record("key_b", "acme", latchkey.CodeInsufficientScope, netip.Addr{}, clock.Now())
	// Codes that found no key are not counted.
	r.Record("key_a", "acme", latchkey.CodeMalformed, ip, clock.Now())
	r.Record("key_a", "acme", latchkey.CodeNotFound, ip, clock.Now())
	if got := counts(t, db, "key_a"); len(got) != 0 {
		t.Fatalf("counts before a flush = %v; reads must not see memory", got)
	}
	flush(t, r)
	checkCounts(t, "key_a", counts(t, db, "key_a"), map[string]int64{"0/VALID": 7, "0/REVOKED": 1})
	checkCounts(t, "key_b", counts(t, db, "key_b"), map[string]int64{"0/INSUFFICIENT_SCOPE": 1})
	checkCounts(t, "key_b networks", networks(t, db, "key_b"), map[string]int64{})
	// A second flush adds only what came since.
	r.Record("key_a", "acme", latchkey.CodeValid, ip, clock.Now())
	flush(t, r)
	flush(t, r)
	checkCounts(t, "key_a after more", counts(t, db, "key_a"), map[string]int64{"0/VALID": 8, "0/REVOKED": 1})
	checkCounts(t, "key_a networks", networks(t, db, "key_a"), map[string]int64{"192.0.2.0/24": 9})
}

func TestMinuteBoundaries(t *testing.T) {
	db := open(t, "key_a")
	r := newRecorder(t, db, usage.Options{})
	base := t0.Truncate(time.Minute)
	r.Record("key_a", "acme", latchkey.CodeValid, ip, base.Add(-time.Nanosecond))
	r.Record("key_a", "acme", latchkey.CodeValid, ip, base)
	r.Record("key_a", "acme", latchkey.CodeValid, ip, base.Add(59*time.Second+999*time.Millisecond))
	r.Record("key_a", "acme", latchkey.CodeValid, ip, base.Add(time.Minute))
	flush(t, r)
	checkCounts(t, "counts", counts(t, db, "key_a"), map[string]int64{"-1/VALID": 1, "0/VALID": 2, "1/VALID": 1})
}

func TestLastUsedIsNewestAndMovesForward(t *testing.T) {
	db := open(t, "key_a")
	r := newRecorder(t, db, usage.Options{})
	late := t0.Add(90 * time.Second)
	r.Record("key_a", "acme", latchkey.CodeValid, ip, late)
	r.Record("key_a", "acme", latchkey.CodeValid, ip, t0)
	flush(t, r)
	if got := lastUsed(t, db, "key_a"); !got.Equal(late) {
		t.Errorf("last_used_at = %v, want %v", got, late)
	}
	// A flush of older uses does not move it back.
	r.Record("key_a", "acme", latchkey.CodeValid, ip, t0)
	flush(t, r)
	if got := lastUsed(t, db, "key_a"); !got.Equal(late) {
		t.Errorf("last_used_at after an older use = %v, want %v", got, late)
	}
}

func TestNetworks(t *testing.T) {
	db := open(t, "key_a")
	r := newRecorder(t, db, usage.Options{})
	for _, a := range []string{"192.0.2.1", "192.0.2.200", "::ffff:192.0.2.7", "2001:db8:1:2::1", "2001:db8:1:ffff::2", "fe80::1%eth0"} {
		r.Record("key_a", "acme", latchkey.CodeValid, netip.MustParseAddr(a), t0)
	}
	flush(t, r)
	checkCounts(t, "networks", networks(t, db, "key_a"),
		map[string]int64{"192.0.2.0/24": 3, "2001:db8:1::/48": 2, "fe80::/48": 1})
}

func TestNetworkCap(t *testing.T) {
	db := open(t, "key_a")
	r := newRecorder(t, db, usage.Options{})
	for i := range usage.MaxNetworks + 4 {
		r.Record("key_a", "acme", latchkey.CodeValid, netip.AddrFrom4([4]byte{10, 0, byte(i), 1}), t0)
	}
	r.Record("key_a", "acme", latchkey.CodeValid, netip.AddrFrom4([4]byte{10, 0, 0, 2}), t0) // a known one
	flush(t, r)
	got := networks(t, db, "key_a")
	if len(got) != usage.MaxNetworks+1 || got[usage.OtherNetwork] != 4 || got["10.0.0.0/24"] != 2 {
		t.Errorf("networks = %v, want %d networks, 10.0.0.0/24: 2 and %s: 4", got, usage.MaxNetworks, usage.OtherNetwork)
	}
	// The next minute has room again.
	r.Record("key_a", "acme", latchkey.CodeValid, netip.AddrFrom4([4]byte{10, 9, 9, 9}), t0.Add(time.Minute))
	flush(t, r)
	if got := networks(t, db, "key_a"); got["10.9.9.0/24"] != 1 {
		t.Errorf("networks of the next minute = %v", got)
	}
}

func TestMemoryBoundCountsDrops(t *testing.T) {
	db := open(t, "key_a")
	// 64 buckets over 64 shards: one pending minute per shard.
	r := newRecorder(t, db, usage.Options{MaxPending: 64})
	r.Record("key_a", "acme", latchkey.CodeValid, ip, t0)
	r.Record("key_a", "acme", latchkey.CodeValid, ip, t0) // same bucket: counted
	for i := 1; i <= 3; i++ {
		r.Record("key_a", "acme", latchkey.CodeValid, ip, t0.Add(time.Duration(i)*time.Minute))
	}
	if got := r.Dropped(); got != 3 {
		t.Errorf("Dropped = %d, want 3", got)
	}
	flush(t, r)
	checkCounts(t, "counts", counts(t, db, "key_a"), map[string]int64{"0/VALID": 2})
	// A flush frees the room.
	r.Record("key_a", "acme", latchkey.CodeValid, ip, t0.Add(time.Minute))
	flush(t, r)
	checkCounts(t, "counts", counts(t, db, "key_a"), map[string]int64{"0/VALID": 2, "1/VALID": 1})
	if got := r.Dropped(); got != 3 {
		t.Errorf("Dropped = %d, want 3", got)
	}
}

func TestConcurrentRecordAndFlush(t *testing.T) {
	ids := []string{"key_a", "key_b", "key_c", "key_d"}
	db := open(t, ids...)
	r := newRecorder(t, db, usage.Options{})
	const perG, gs = 2000, 8
	var wg sync.WaitGroup
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			default:
				if err := r.Flush(context.Background()); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	for g := range gs {
		wg.Go(func() {
			for i := range perG {
				now := t0.Add(time.Duration(i%3) * time.Minute)
				r.Record(ids[(g+i)%len(ids)], "acme", usage.Codes[i%len(usage.Codes)], netip.AddrFrom4([4]byte{10, byte(g), byte(i % 20), 1}), now)
			}
		})
	}
	wg.Wait()
	close(stop)
	<-flushed
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var total, nets int64
	for _, id := range ids {
		for _, n := range counts(t, db, id) {
			total += n
		}
		for _, n := range networks(t, db, id) {
			nets += n
		}
	}
	if total != perG*gs || nets != perG*gs || r.Dropped() != 0 {
		t.Errorf("stored %d verifications and %d by network, dropped %d; want %d", total, nets, r.Dropped(), perG*gs)
	}
}

func TestCloseFlushesAndBackgroundFlushes(t *testing.T) {
	db := open(t, "key_a")
	r := usage.New(usage.Options{Store: latchkey.Narrow[usage.Tx](db), FlushInterval: 10 * time.Millisecond})
	r.Record("key_a", "acme", latchkey.CodeValid, ip, t0)
	deadline := time.Now().Add(10 * time.Second)
	for counts(t, db, "key_a")["0/VALID"] != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the background flusher wrote nothing in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.Record("key_a", "acme", latchkey.CodeValid, ip, t0)
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, "after Close", counts(t, db, "key_a"), map[string]int64{"0/VALID": 2})
}

func TestPrune(t *testing.T) {
	db := open(t, "key_a")
	r := newRecorder(t, db, usage.Options{})
	r.Record("key_a", "acme", latchkey.CodeValid, ip, t0.Add(-2*time.Minute))
	r.Record("key_a", "acme", latchkey.CodeValid, ip, t0)
	flush(t, r)
	if err := r.Prune(context.Background(), latchkey.GrainMinute, t0.Truncate(time.Minute)); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, "after Prune", counts(t, db, "key_a"), map[string]int64{"0/VALID": 1})
	checkCounts(t, "networks after Prune", networks(t, db, "key_a"), map[string]int64{"192.0.2.0/24": 1})
}

// TestKeyUsedSumsEachHourIntoTheAuditLog: each tenant's hour of use
// becomes one key.used audit event once the hour is over (or the recorder
// closes), with the tenant's counts by code and networks and each key's
// valid and denied counts inside.
func TestKeyUsedSumsEachHourIntoTheAuditLog(t *testing.T) {
	db := open(t, "key_a", "key_b")
	clock := fakeclock.New(t0)
	r := newRecorder(t, db, usage.Options{Now: clock.Now})
	hour := t0.Truncate(time.Hour)
	v6 := netip.MustParseAddr("2001:db8:1:2::5")
	r.Record("key_a", "acme", latchkey.CodeValid, ip, hour.Add(59*time.Minute))
	r.Record("key_a", "acme", latchkey.CodeInsufficientScope, v6, hour.Add(59*time.Minute))
	r.Record("key_a", "acme", latchkey.CodeValid, ip, hour.Add(time.Hour)) // the next hour, same flush
	r.Record("key_b", "acme", latchkey.CodeValid, ip, hour.Add(10*time.Minute))
	clock.Set(hour.Add(time.Hour + time.Minute))
	flush(t, r)
	used := auditOf(t, db, "key.used")
	if len(used) != 1 {
		t.Fatalf("key.used events after the hour = %d, want 1 (acme's first hour): %+v", len(used), used)
	}
	a := used[0]
	want := map[string]string{
		"hour": hour.Format(time.RFC3339), "part": "1/1", "key_count": "2", "total": "3", "valid": "2", "denied": "1",
		"codes": "VALID=2,INSUFFICIENT_SCOPE=1", "networks": "192.0.2.0/24=2,2001:db8:1::/48=1",
		"keys": `{"key_a":{"valid":1,"denied":1},"key_b":{"valid":1,"denied":0}}`,
	}
	if a.TargetKeyID != "" || fmt.Sprint(a.Details) != fmt.Sprint(want) {
		t.Errorf("acme's hour = %+v\nwant details %v", a, want)
	}
	// The hour still running is written when the recorder closes.
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	used = auditOf(t, db, "key.used")
	if len(used) != 2 || used[1].Details["hour"] != hour.Add(time.Hour).Format(time.RFC3339) ||
		used[1].Details["keys"] != `{"key_a":{"valid":1,"denied":0}}` {
		t.Errorf("key.used events after Close = %+v", used)
	}
}

// TestKeyUsedSplitsABigTenantHour: a tenant's hour with more keys than one
// event lists is several events, each key in exactly one.
func TestKeyUsedSplitsABigTenantHour(t *testing.T) {
	const n = 2500
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("key_%05d", i)
	}
	db := open(t, ids...)
	r := newRecorder(t, db, usage.Options{})
	for _, id := range ids {
		r.Record(id, "acme", latchkey.CodeValid, ip, t0)
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	used := auditOf(t, db, "key.used")
	if len(used) != 3 {
		t.Fatalf("key.used events = %d, want 3", len(used))
	}
	seen := 0
	for i, e := range used {
		if e.Details["part"] != fmt.Sprintf("%d/3", i+1) {
			t.Errorf("event %d part = %q", i, e.Details["part"])
		}
		var m map[string]map[string]int64
		if err := json.Unmarshal([]byte(e.Details["keys"]), &m); err != nil {
			t.Fatal(err)
		}
		for _, c := range m {
			if c["valid"] != 1 {
				t.Errorf("event %d: %v", i, c)
			}
		}
		seen += len(m)
	}
	if seen != n || used[0].Details["key_count"] != "2500" || used[0].Details["total"] != "2500" {
		t.Errorf("keys listed %d, first part %v; want %d", seen, used[0].Details["key_count"], n)
	}
}

func auditOf(t *testing.T, db *sqlite.DB, action string) []*latchkey.AuditEvent {
	t.Helper()
	var evs []*latchkey.AuditEvent
	err := db.View(context.Background(), func(tx *sqlite.Tx) (err error) {
		evs, err = tx.AuditEvents("acme", latchkey.AuditFilter{Action: action})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}
