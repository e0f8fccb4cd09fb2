package metrics_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/metrics"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// TestTimedStoreCountsTransactionsByOpAndResult: an operator sees how many
// transactions ran and how they ended, by error code.
func TestTimedStoreCountsTransactionsByOpAndResult(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ts := metrics.TimeStore(db)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(ts)
	ctx := context.Background()
	for range 3 {
		if err := ts.View(ctx, func(tx *sqlite.Tx) error { _, err := tx.Tenants(latchkey.Page{}); return err }); err != nil {
			t.Fatal(err)
		}
	}
	// The verify path's miss (latchkey.HashReader) passes through and counts
	// as a view.
	if _, err := latchkey.HashReader(ts).KeyByHash(ctx, [32]byte{1}); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("KeyByHash of an unknown hash = %v", err)
	}
	if err := ts.View(ctx, func(tx *sqlite.Tx) error { _, err := tx.Tenant("nobody"); return err }); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("View of a missing tenant = %v", err)
	}
	boom := errors.New("boom")
	if err := ts.Update(ctx, func(*sqlite.Tx) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want the function's error unchanged", err)
	}
	if err := ts.Update(ctx, func(*sqlite.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, mf := range got {
		if mf.GetName() != "latchkey_store_transaction_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var op, result string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "op":
					op = l.GetValue()
				case "result":
					result = l.GetValue()
				}
			}
			counts[op+"/"+result] = m.GetHistogram().GetSampleCount()
		}
	}
	want := map[string]uint64{"view/ok": 3, "view/not_found": 2, "update/internal": 1, "update/ok": 1}
	if len(counts) != len(want) {
		t.Fatalf("transactions by op/result = %v, want %v", counts, want)
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s = %d, want %d (all: %v)", k, counts[k], n, counts)
		}
	}
}
