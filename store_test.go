package latchkey_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
)

// wideTx is a backend's transaction: it implements the narrow contract
// and more.
type wideTx struct{ log *[]string }

func (t wideTx) QuotaUsage(id string) (latchkey.QuotaUsage, error) {
	*t.log = append(*t.log, "read "+id)
	return latchkey.QuotaUsage{KeyID: id}, nil
}
func (t wideTx) SaveQuotaUsage(u latchkey.QuotaUsage) (bool, error) { return true, nil }
func (t wideTx) ResetQuotaUsage(string) error                       { return nil }
func (t wideTx) Other()                                             {}

type wideStore struct{ log []string }

func (s *wideStore) View(_ context.Context, fn func(wideTx) error) error {
	s.log = append(s.log, "view")
	return fn(wideTx{&s.log})
}

func (s *wideStore) Update(_ context.Context, fn func(wideTx) error) error {
	s.log = append(s.log, "update")
	return fn(wideTx{&s.log})
}

// Narrow runs the service's functions in the backend's own transactions,
// passing their errors back unchanged.
func TestNarrowSeesTheBackendsTransactions(t *testing.T) {
	backend := &wideStore{}
	s := latchkey.Narrow[latchkey.QuotaStore](backend)
	if err := s.View(t.Context(), func(tx latchkey.QuotaStore) error {
		_, err := tx.QuotaUsage("key_a")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	if err := s.Update(t.Context(), func(tx latchkey.QuotaStore) error { return stop }); err != stop {
		t.Errorf("Update returned %v, want fn's error", err)
	}
	if got := strings.Join(backend.log, ","); got != "view,read key_a,update" {
		t.Errorf("the backend saw %s", got)
	}
}

// A backend transaction that lacks the contract's methods is a wiring
// mistake, named by the panic of the first transaction.
func TestNarrowToAContractTheBackendLacks(t *testing.T) {
	type lacking interface{ Missing() }
	s := latchkey.Narrow[lacking](&wideStore{})
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "does not implement") {
			t.Errorf("panic %v", r)
		}
	}()
	_ = s.View(t.Context(), func(lacking) error { return nil })
}

// OrNil turns a nil pointer held in an interface into the nil interface,
// and leaves anything else as it is.
func TestOrNil(t *testing.T) {
	type port interface {
		QuotaUsage(string) (latchkey.QuotaUsage, error)
	}
	var none *wideTxPtr
	if got := latchkey.OrNil[port](none); got != nil {
		t.Errorf("a nil pointer came back as %v", got)
	}
	if got := latchkey.OrNil[port](nil); got != nil {
		t.Errorf("the nil interface came back as %v", got)
	}
	var log []string
	some := &wideTxPtr{wideTx{&log}}
	if got := latchkey.OrNil[port](some); got != some {
		t.Errorf("a pointer came back as %v", got)
	}
}

type wideTxPtr struct{ wideTx }

// hashStore is a backend with the verify path's transaction-free lookup
// (latchkey.HashReader).
type hashStore struct {
	wideStore
	key   latchkey.Key
	reads int
}

func (s *hashStore) KeyByHash(_ context.Context, _ [32]byte) (*latchkey.Key, error) {
	s.reads++
	return &s.key, nil
}

// A narrowed store keeps the backend's transaction-free lookup: a verify
// cache miss reads through it, without a View and without allocating.
func TestNarrowKeepsTheTransactionFreeLookup(t *testing.T) {
	backend := &hashStore{key: latchkey.Key{ID: "key_a"}}
	s := latchkey.Narrow[latchkey.QuotaStore](backend)
	if _, ok := any(s).(latchkey.HashReader); !ok {
		t.Fatal("the narrowed store is no HashReader")
	}
	k, err := latchkey.HashLookup(s).KeyByHash(t.Context(), [32]byte{1})
	if err != nil || k.ID != "key_a" {
		t.Fatalf("HashLookup: %v, %v", k, err)
	}
	if backend.reads != 1 || len(backend.log) != 0 {
		t.Errorf("the backend saw %d lookups and %q, want 1 lookup and no transaction", backend.reads, backend.log)
	}
	// Narrowing a narrowed store keeps it too.
	if _, err := latchkey.Narrow[latchkey.QuotaStore](s).KeyByHash(t.Context(), [32]byte{1}); err != nil || backend.reads != 2 || len(backend.log) != 0 {
		t.Errorf("through two narrowings: %v; the backend saw %d lookups and %q", err, backend.reads, backend.log)
	}
}

// ptrStore is a backend whose transaction is a pointer type, as the SQL
// backends' are.
type ptrStore struct{}

func (ptrStore) View(_ context.Context, fn func(*wideTxPtr) error) error   { return nil }
func (ptrStore) Update(_ context.Context, fn func(*wideTxPtr) error) error { return nil }

// With a pointer transaction type, a contract the backend lacks is named
// when the store is narrowed, before any transaction.
func TestNarrowChecksAPointerTransactionAtWiring(t *testing.T) {
	_ = latchkey.Narrow[latchkey.QuotaStore](ptrStore{}) // it has them
	type lacking interface{ Missing() }
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "does not implement") {
			t.Errorf("panic %v", r)
		}
	}()
	latchkey.Narrow[lacking](ptrStore{})
	t.Error("Narrow did not panic")
}
