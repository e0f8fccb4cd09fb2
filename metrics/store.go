package metrics

import (
	"context"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/prometheus/client_golang/prometheus"
)

// TimedStore wraps a store (a keys.Store, as cmd/latchkey gives it) and
// times its transactions into
// latchkey_store_transaction_duration_seconds{op, result}: op is view or
// update, result is ok or the error code the transaction ended with
// (not_found, conflict, unavailable, …), so a slow or failing database
// shows apart from slow handlers. T is the store's transaction type; the
// wrapper passes Ping and Close through, and keeps the transaction-free
// verify miss (latchkey.HashReader) of the store it wraps.
type TimedStore[T any] struct {
	inner  latchkey.Store[T]
	byHash latchkey.HashReader
	took   *prometheus.HistogramVec
	now    func() time.Time
}

// storeBuckets spans an in-memory SQLite read (tens of µs) to a stalled
// database (seconds).
var storeBuckets = []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1, 5}

// TimeStore wraps s. Register the wrapper (it is a prometheus.Collector)
// with Metrics.Registry once the metrics exist.
func TimeStore[T any](s latchkey.Store[T]) *TimedStore[T] {
	return &TimedStore[T]{
		inner:  s,
		byHash: latchkey.HashLookup(s),
		took: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "latchkey_store_transaction_duration_seconds",
			Help:    "Time store transactions took, by op (view, update) and result (ok, or the error code they ended with).",
			Buckets: storeBuckets,
		}, []string{"op", "result"}),
		now: time.Now,
	}
}

// View times the wrapped View.
func (t *TimedStore[T]) View(ctx context.Context, fn func(T) error) error {
	start := t.now()
	err := t.inner.View(ctx, fn)
	t.observe("view", start, err)
	return err
}

// Update times the wrapped Update.
func (t *TimedStore[T]) Update(ctx context.Context, fn func(T) error) error {
	start := t.now()
	err := t.inner.Update(ctx, fn)
	t.observe("update", start, err)
	return err
}

// KeyByHash is the verify path's cache miss (latchkey.HashReader): one
// statement, without the BEGIN and COMMIT of a View, when the wrapped
// store has it, else a View with the transaction's KeyByHash. It is timed
// as a view: to an operator it is one.
func (t *TimedStore[T]) KeyByHash(ctx context.Context, h [32]byte) (*latchkey.Key, error) {
	start := t.now()
	k, err := t.byHash.KeyByHash(ctx, h)
	t.observe("view", start, err)
	return k, err
}

// Ping passes the wrapped store's Ping through (nil if it has none).
func (t *TimedStore[T]) Ping(ctx context.Context) error {
	if p, ok := t.inner.(interface{ Ping(context.Context) error }); ok {
		return p.Ping(ctx)
	}
	return nil
}

// Close passes the wrapped store's Close through (nil if it has none).
func (t *TimedStore[T]) Close() error {
	if c, ok := t.inner.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

func (t *TimedStore[T]) observe(op string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = latchkey.ErrorCode(err)
	}
	t.took.WithLabelValues(op, result).Observe(t.now().Sub(start).Seconds())
}

// Describe implements prometheus.Collector.
func (t *TimedStore[T]) Describe(ch chan<- *prometheus.Desc) { t.took.Describe(ch) }

// Collect implements prometheus.Collector.
func (t *TimedStore[T]) Collect(ch chan<- prometheus.Metric) { t.took.Collect(ch) }
