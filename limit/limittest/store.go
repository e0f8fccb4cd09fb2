package limittest

import (
	"context"
	"sync"

	"github.com/latchkeyhq/latchkey"
)

// OwnerRows wraps a store so that the quota usage of owners (ids made by
// latchkey.OwnerQuotaID) is kept by the wrapper, in memory, with the
// store's semantics (a save is refused when the epoch moved on; a reset
// zeroes the usage and bumps the epoch; changes are seen only once the
// transaction commits), and every other row by s. It lets the suite run
// a limiter's owner limits over a store that does not route owner ids to
// a table of its own; a limiter under test must be given the wrapper (as
// a Store[latchkey.QuotaStore]), and the suite the same wrapper.
func OwnerRows(s latchkey.Store[Tx]) latchkey.Store[Tx] {
	return &ownerRows{s: s, rows: make(map[string]latchkey.QuotaUsage)}
}

type ownerRows struct {
	s latchkey.Store[Tx]
	// mu serialises Updates (as the store's one writer does) and guards
	// rows.
	mu   sync.Mutex
	rows map[string]latchkey.QuotaUsage
}

func (o *ownerRows) View(ctx context.Context, fn func(Tx) error) error {
	return o.s.View(ctx, func(tx Tx) error { return fn(&ownerTx{Tx: tx, o: o}) })
}

func (o *ownerRows) Update(ctx context.Context, fn func(Tx) error) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	staged := make(map[string]latchkey.QuotaUsage)
	err := o.s.Update(ctx, func(tx Tx) error {
		clear(staged)
		return fn(&ownerTx{Tx: tx, o: o, write: true, staged: staged})
	})
	if err == nil {
		for id, u := range staged {
			o.rows[id] = u
		}
	}
	return err
}

// ownerTx is a transaction of the wrapper: owner ids go to the wrapper's
// rows (staged until commit in an Update), every other id to the store.
type ownerTx struct {
	Tx
	o      *ownerRows
	write  bool // an Update: o.mu is held
	staged map[string]latchkey.QuotaUsage
}

func (tx *ownerTx) row(id string) latchkey.QuotaUsage {
	if u, ok := tx.staged[id]; ok {
		return u
	}
	if !tx.write {
		tx.o.mu.Lock()
		defer tx.o.mu.Unlock()
	}
	u := tx.o.rows[id]
	u.KeyID = id
	return u
}

func (tx *ownerTx) QuotaUsage(id string) (latchkey.QuotaUsage, error) {
	if _, _, ok := latchkey.ParseOwnerQuotaID(id); !ok {
		return tx.Tx.QuotaUsage(id)
	}
	return tx.row(id), nil
}

func (tx *ownerTx) SaveQuotaUsage(u latchkey.QuotaUsage) (bool, error) {
	if _, _, ok := latchkey.ParseOwnerQuotaID(u.KeyID); !ok {
		return tx.Tx.SaveQuotaUsage(u)
	}
	if !tx.write {
		return false, latchkey.Errorf(latchkey.EInvalid, "SaveQuotaUsage in a read-only transaction")
	}
	if tx.row(u.KeyID).Epoch != u.Epoch {
		return false, nil
	}
	tx.staged[u.KeyID] = u
	return true, nil
}

func (tx *ownerTx) ResetQuotaUsage(id string) error {
	if _, _, ok := latchkey.ParseOwnerQuotaID(id); !ok {
		return tx.Tx.ResetQuotaUsage(id)
	}
	if !tx.write {
		return latchkey.Errorf(latchkey.EInvalid, "ResetQuotaUsage in a read-only transaction")
	}
	tx.staged[id] = latchkey.QuotaUsage{KeyID: id, Epoch: tx.row(id).Epoch + 1}
	return nil
}
