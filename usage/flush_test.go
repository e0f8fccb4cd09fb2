package usage_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
	"github.com/latchkeyhq/latchkey/store/sqlite"
	"github.com/latchkeyhq/latchkey/usage"
)

// countingStore counts the keys whose last use each write transaction sets.
type countingStore struct {
	latchkey.Store[usage.Tx]
	mu      sync.Mutex
	perTx   []int          // keys set by each committed Update
	setKeys map[string]int // key id → SetLastUsed calls
}

type countingTx struct {
	usage.Tx
	s *countingStore
	n *int
}

func (t countingTx) SetLastUsed(uses []latchkey.LastUsed) error {
	*t.n += len(uses)
	t.s.mu.Lock()
	for _, u := range uses {
		t.s.setKeys[u.KeyID]++
	}
	t.s.mu.Unlock()
	return t.Tx.SetLastUsed(uses)
}

func (s *countingStore) Update(ctx context.Context, fn func(usage.Tx) error) error {
	n := 0
	err := s.Store.Update(ctx, func(tx usage.Tx) error { return fn(countingTx{Tx: tx, s: s, n: &n}) })
	s.mu.Lock()
	s.perTx = append(s.perTx, n)
	s.mu.Unlock()
	return err
}

func newCounting(db *sqlite.DB) *countingStore {
	return &countingStore{Store: latchkey.Narrow[usage.Tx](db), setKeys: map[string]int{}}
}

// TestAFlushOf10kKeysSplitsIntoBoundedTransactions: one flush of 10,000
// keys' minutes is several transactions of at most 2,000 keys each, and
// every count arrives. Under the race detector (where it takes over a
// minute) it is scaled down fivefold: 2,000 keys, 400 a transaction.
func TestAFlushOf10kKeysSplitsIntoBoundedTransactions(t *testing.T) {
	n, perTx := 10_000, 2000
	if raceOn {
		n, perTx = 2000, 400
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("key_%05d", i)
	}
	db := open(t, ids...)
	cs := newCounting(db)
	o := usage.Options{}
	if raceOn {
		o.MaxKeysPerTx = perTx
	}
	r := newRecorder(t, cs, o)
	for _, id := range ids {
		r.Record(id, "acme", latchkey.CodeValid, ip, t0)
		r.Record(id, "acme", latchkey.CodeValid, ip, t0.Add(time.Minute))
	}
	flush(t, r)
	total := 0
	for _, k := range cs.perTx {
		if k > perTx {
			t.Errorf("a transaction set %d keys' last use, want at most %d", k, perTx)
		}
		total += k
	}
	if len(cs.perTx) < 5 || total != n {
		t.Errorf("%d transactions setting %d keys; want at least 5, %d keys", len(cs.perTx), total, n)
	}
	for _, id := range []string{ids[0], ids[n/2], ids[n-1]} {
		checkCounts(t, id, counts(t, db, id), map[string]int64{"0/VALID": 1, "1/VALID": 1})
	}
}

// TestBackgroundFlushWritesASteadyKeysMinuteOnce: a key verified between
// every two background flushes is written once for its minute, when the
// minute closes, however many flushes ran; a key that went quiet for a
// whole interval is written without waiting for its minute to close.
func TestBackgroundFlushWritesASteadyKeysMinuteOnce(t *testing.T) {
	db := open(t, "key_hot", "key_quiet")
	cs := newCounting(db)
	clock := fakeclock.New(t0.Truncate(time.Minute))
	r := newRecorder(t, cs, usage.Options{Now: clock.Now})
	tick := func() {
		t.Helper()
		if err := usage.Tick(r, context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	r.Record("key_quiet", "acme", latchkey.CodeValid, ip, clock.Now())
	for i := range 30 {
		r.Record("key_hot", "acme", latchkey.CodeValid, ip, clock.Now())
		tick()
		if i == 2 {
			checkCounts(t, "the quiet key after two flushes", counts(t, db, "key_quiet"), map[string]int64{"0/VALID": 1})
		}
	}
	if got := counts(t, db, "key_hot"); len(got) != 0 || cs.setKeys["key_hot"] != 0 {
		t.Errorf("the hot key's open minute was written while in use: %v, %d last_used_at writes", got, cs.setKeys["key_hot"])
	}
	clock.Advance(time.Minute) // the minute closes
	tick()
	checkCounts(t, "the hot key's closed minute", counts(t, db, "key_hot"), map[string]int64{"0/VALID": 30})
	if cs.setKeys["key_hot"] != 1 || cs.setKeys["key_quiet"] != 1 {
		t.Errorf("last_used_at writes: %v, want one per key", cs.setKeys)
	}
	for range 5 {
		tick()
	}
	if n := len(cs.perTx); n != 2 {
		t.Errorf("%d write transactions, want 2 (one per written minute; nothing when nothing changed)", n)
	}
}
