package metrics

import (
	"context"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/prometheus/client_golang/prometheus"
)

// TimedStore is a keys.Store whose transactions are timed into
// latchkey_store_transaction_duration_seconds{op, result}: op is view or
// update, result is ok or the error code the transaction ended with
// (not_found, conflict, unavailable, …), so a slow or failing database
// shows apart from slow handlers.
type TimedStore struct {
	keys.Store
	took *prometheus.HistogramVec
	now  func() time.Time
}

// A TimedStore keeps the transaction-free verify miss of the store it
// wraps (keys.Service looks for keys.HashReader on the store it is given).
var _ keys.HashReader = (*TimedStore)(nil)

// storeBuckets spans an in-memory SQLite read (tens of µs) to a stalled
// database (seconds).
var storeBuckets = []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1, 5}

// TimeStore wraps s. Register the wrapper (it is a prometheus.Collector)
// with Metrics.Registry once the metrics exist.
func TimeStore(s keys.Store) *TimedStore {
	return &TimedStore{
		Store: s,
		took: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "latchkey_store_transaction_duration_seconds",
			Help:    "Time store transactions took, by op (view, update) and result (ok, or the error code they ended with).",
			Buckets: storeBuckets,
		}, []string{"op", "result"}),
		now: time.Now,
	}
}

// View times the wrapped View.
func (t *TimedStore) View(ctx context.Context, fn func(keys.Tx) error) error {
	start := t.now()
	err := t.Store.View(ctx, fn)
	t.observe("view", start, err)
	return err
}

// KeyByHash is the verify path's cache miss (keys.HashReader): one
// statement, without the BEGIN and COMMIT of a View, when the wrapped
// store has it. It is timed as a view: to an operator it is one.
func (t *TimedStore) KeyByHash(ctx context.Context, h [32]byte) (*latchkey.Key, error) {
	start := t.now()
	var k *latchkey.Key
	var err error
	if hr, ok := t.Store.(keys.HashReader); ok {
		k, err = hr.KeyByHash(ctx, h)
	} else {
		err = t.Store.View(ctx, func(tx keys.Tx) error {
			var rerr error
			k, rerr = tx.KeyByHash(h)
			return rerr
		})
	}
	t.observe("view", start, err)
	return k, err
}

// Update times the wrapped Update.
func (t *TimedStore) Update(ctx context.Context, fn func(keys.Tx) error) error {
	start := t.now()
	err := t.Store.Update(ctx, fn)
	t.observe("update", start, err)
	return err
}

func (t *TimedStore) observe(op string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = latchkey.ErrorCode(err)
	}
	t.took.WithLabelValues(op, result).Observe(t.now().Sub(start).Seconds())
}

// Describe implements prometheus.Collector.
func (t *TimedStore) Describe(ch chan<- *prometheus.Desc) { t.took.Describe(ch) }

// Collect implements prometheus.Collector.
func (t *TimedStore) Collect(ch chan<- prometheus.Metric) { t.took.Collect(ch) }
