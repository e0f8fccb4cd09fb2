package limit

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// writeStore counts store writes and can hold them until released.
type writeStore struct {
	keys.Store
	updates atomic.Int64
	gate    chan struct{} // nil: writes pass at once
}

func (s *writeStore) Update(ctx context.Context, fn func(keys.Tx) error) error {
	s.updates.Add(1)
	if g := s.gate; g != nil {
		select {
		case <-g:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Store.Update(ctx, fn)
}

func withCredit(n int64) func(*latchkey.Key) {
	return func(k *latchkey.Key) { k.Quota = &latchkey.Quota{Remaining: &n} }
}

// quota returns a copy of the key's quota state.
func (m *Memory) quota(id string) quotaState {
	st := m.state(id)
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.quota
}

// A key spent now and then reserves exactly what each request needs: a
// crash forfeits nothing.
func TestSlowCreditReservesWhatItSpends(t *testing.T) {
	db := openStore(t)
	m := newTestMemory(t, Options{Store: latchkey.Narrow[latchkey.QuotaStore](db), FlushInterval: time.Hour})
	k := createKey(t, latchkey.Narrow[keys.Tx](db), withCredit(10))
	for i := range 5 {
		now := t0.Add(time.Duration(i) * time.Second)
		if adm := mustAdmit(t, m, k, 1, now); adm.Code != "" {
			t.Fatalf("use %d: %s", i+1, adm.Code)
		}
		if u := storedUsage(t, latchkey.Narrow[keys.Tx](db), k.ID); u.Used != int64(i+1) {
			t.Fatalf("after use %d at one a second, the store holds %d", i+1, u.Used)
		}
	}
	// A cost reserves at least itself.
	mustAdmit(t, m, k, 4, t0.Add(10*time.Second))
	if u := storedUsage(t, latchkey.Narrow[keys.Tx](db), k.ID); u.Used != 9 {
		t.Fatalf("after a cost of 4, the store holds %d, want 9", u.Used)
	}
}

// A busy key writes a reservation a few times at most per reserveSpan,
// not per request, and never reserves past its balance.
func TestBusyCreditWritesRarely(t *testing.T) {
	db := openStore(t)
	ws := &writeStore{Store: latchkey.Narrow[keys.Tx](db)}
	m := newTestMemory(t, Options{Store: latchkey.Narrow[latchkey.QuotaStore](ws), FlushInterval: time.Hour})
	k := createKey(t, latchkey.Narrow[keys.Tx](db), withCredit(1_000_000))
	// 50,000 requests, one each 10 µs: half a second at 100,000 a second.
	now := t0
	for i := range 50_000 {
		now = now.Add(10 * time.Microsecond)
		if adm := mustAdmit(t, m, k, 1, now); adm.Code != "" {
			t.Fatalf("request %d: %s", i+1, adm.Code)
		}
	}
	if n := ws.updates.Load(); n > 30 {
		t.Fatalf("50,000 requests wrote %d reservations", n)
	}
	q := m.quota(k.ID)
	if q.usage.Used != 50_000 || q.stored < q.usage.Used || q.stored-q.usage.Used > 2*10_000 {
		t.Fatalf("used %d, reserved in the store %d: more than two spans' demand unspent", q.usage.Used, q.stored)
	}

	small := createKey(t, latchkey.Narrow[keys.Tx](db), withCredit(300))
	for range 300 {
		mustAdmit(t, m, small, 1, t0)
	}
	if u := storedUsage(t, latchkey.Narrow[keys.Tx](db), small.ID); u.Used != 300 {
		t.Fatalf("a balance of 300 spent at one instant: %d reserved", u.Used)
	}
	if adm := mustAdmit(t, m, small, 1, t0); adm.Code != latchkey.CodeQuotaExceeded {
		t.Fatalf("the 301st of 300: %+v", adm)
	}
}

// A reservation is written outside the key's lock: while it is in flight,
// requests that fit into the current reservation are admitted, those that
// need more wait for it (and give up with their context).
func TestReservationWriteDoesNotBlockSpending(t *testing.T) {
	db := openStore(t)
	ws := &writeStore{Store: latchkey.Narrow[keys.Tx](db)}
	m := newTestMemory(t, Options{Store: latchkey.Narrow[latchkey.QuotaStore](ws), FlushInterval: time.Hour})
	k := createKey(t, latchkey.Narrow[keys.Tx](db), withCredit(100))
	for range 4 {
		mustAdmit(t, m, k, 1, t0) // reserves 1, 2, none, then 4: 7 in all
	}
	ws.gate = make(chan struct{})
	done := make(chan latchkey.Admission)
	go func() {
		adm, err := m.Admit(context.Background(), k, 5, nil, t0) // needs more than the 3 left
		if err != nil {
			t.Error(err)
		}
		done <- adm
	}()
	for deadline := time.Now().Add(10 * time.Second); ws.updates.Load() < 4; time.Sleep(time.Millisecond) { // three reservations, then this one
		if time.Now().After(deadline) {
			t.Fatalf("%d reservations written, want 4", ws.updates.Load())
		}
	}
	for i := range 3 {
		if adm := mustAdmit(t, m, k, 1, t0); adm.Code != "" {
			t.Fatalf("request %d within the reservation while a write is in flight: %+v", i+1, adm)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := m.Admit(ctx, k, 1, nil, t0); latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Fatalf("waiting for a reservation past the context: %v", err)
	}
	close(ws.gate)
	// 4 + 3 + 5 spent: 88 left.
	if adm := <-done; adm.Code != "" || adm.Quota.Remaining != 88 {
		t.Fatalf("after the write: %+v", adm)
	}
}

// A key that goes idle gives its unspent reservation back, so dropping its
// state forfeits nothing; a busy one keeps it.
func TestIdleCreditReturnsReservation(t *testing.T) {
	db := openStore(t)
	m := newTestMemory(t, Options{Store: latchkey.Narrow[latchkey.QuotaStore](db), FlushInterval: time.Hour})
	k := createKey(t, latchkey.Narrow[keys.Tx](db), withCredit(1000))
	for range 100 {
		mustAdmit(t, m, k, 1, t0)
	}
	if u := storedUsage(t, latchkey.Narrow[keys.Tx](db), k.ID); u.Used <= 100 {
		t.Fatalf("100 requests at one instant reserved only %d", u.Used)
	}
	m.clock.Store(t0.Add(time.Hour).UnixNano())
	if err := m.flush(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	if u := storedUsage(t, latchkey.Narrow[keys.Tx](db), k.ID); u.Used <= 100 {
		t.Fatalf("a key used in this interval gave its reservation back: %d", u.Used)
	}
	m.sweep()
	if n := m.states(); n != 1 {
		t.Fatalf("a key holding a reservation was dropped: %d states", n)
	}
	if err := m.flush(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	if u := storedUsage(t, latchkey.Narrow[keys.Tx](db), k.ID); u.Used != 100 {
		t.Fatalf("after an idle interval the store holds %d, want the 100 spent", u.Used)
	}
	m.sweep()
	if n := m.states(); n != 0 {
		t.Fatalf("an idle key with nothing reserved was kept: %d states", n)
	}
	if adm := mustAdmit(t, m, k, 1, t0.Add(time.Hour)); adm.Quota.Remaining != 899 {
		t.Fatalf("after its state was dropped: %+v, want 899 left", adm.Quota)
	}
}

// Reservations of many keys share transactions: while one is being
// written, the others queue and go together in the next.
func TestReservationsOfManyKeysShareATransaction(t *testing.T) {
	db := openStore(t)
	ws := &writeStore{Store: latchkey.Narrow[keys.Tx](db), gate: make(chan struct{})}
	m := newTestMemory(t, Options{Store: latchkey.Narrow[latchkey.QuotaStore](ws), FlushInterval: time.Hour})
	ks := make([]*latchkey.Key, 100)
	for i := range ks {
		ks[i] = createKey(t, latchkey.Narrow[keys.Tx](db), withCredit(10))
	}
	errs := make(chan error, len(ks))
	admit := func(k *latchkey.Key) {
		adm, err := m.Admit(context.Background(), k, 1, nil, t0)
		if err == nil && adm.Code != "" {
			err = latchkey.Errorf(latchkey.EInternal, "denied: %s", adm.Code)
		}
		errs <- err
	}
	go admit(ks[0])
	for ws.updates.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	for _, k := range ks[1:] {
		go admit(k)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		m.resvMu.Lock()
		n := len(m.resvPending)
		m.resvMu.Unlock()
		if n == len(ks)-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d reservations queued, want %d", n, len(ks)-1)
		}
	}
	close(ws.gate)
	for range ks {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := ws.updates.Load(); n != 2 {
		t.Fatalf("100 keys' first reservations took %d transactions, want 2", n)
	}
	for _, k := range ks {
		if u := storedUsage(t, latchkey.Narrow[keys.Tx](db), k.ID); u.Used != 1 {
			t.Fatalf("key %s: %d reserved, want 1", k.ID, u.Used)
		}
	}
}
