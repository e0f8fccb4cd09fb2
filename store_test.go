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
