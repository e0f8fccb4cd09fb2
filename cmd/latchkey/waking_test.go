package main

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// The key service's store wakes the webhook dispatcher after each change
// it commits, never after one it rolled back, and still gives the verify
// path its transaction-free lookup.
func TestWakeOnUpdateWakesAfterCommitsOnly(t *testing.T) {
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "w.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	woken := 0
	s := wakeOnUpdate(db, func() { woken++ })
	at := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	if err := s.Update(t.Context(), func(tx *sqlite.Tx) error {
		return tx.CreateTenant(&latchkey.Tenant{ID: "t", Name: "T", CreatedAt: at})
	}); err != nil || woken != 1 {
		t.Fatalf("after a commit: err %v, woken %d times", err, woken)
	}
	stop := errors.New("stop")
	if err := s.Update(t.Context(), func(tx *sqlite.Tx) error { return stop }); err != stop || woken != 1 {
		t.Fatalf("after a rollback: err %v, woken %d times", err, woken)
	}
	if _, ok := s.(latchkey.HashReader); !ok {
		t.Fatal("the waking store hides the transaction-free lookup")
	}
	if _, err := s.(latchkey.HashReader).KeyByHash(context.Background(), [32]byte{1}); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("KeyByHash of nothing: %v", err)
	}
}
