package sqlite

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// A database file deleted or replaced under an open store fails its
// writes and Ping with EUnavailable and latchkey.ErrStoreLost, for good, while
// reads go on; Watch tells of it once.
func TestLostFileFailsWritesAndPing(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(t *testing.T, path string)
		want error
	}{
		{"Deleted", func(t *testing.T, path string) {
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
			}
		}, ErrFileDeleted},
		{"Replaced", func(t *testing.T, path string) {
			other := filepath.Join(filepath.Dir(path), "other.db")
			o, err := Open(t.Context(), other)
			if err != nil {
				t.Fatal(err)
			}
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(other, path); err != nil {
				t.Fatal(err)
			}
		}, ErrFileReplaced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "latchkey.db")
			db, err := Open(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close() // its error: the file is gone
			var (
				mu    sync.Mutex
				told  []error
				first = make(chan struct{})
			)
			db.Watch(10*time.Millisecond, func(err error) {
				mu.Lock()
				told = append(told, err)
				if len(told) == 1 {
					close(first)
				}
				mu.Unlock()
			})
			create := func(id string) error {
				return db.Update(t.Context(), func(tx *Tx) error {
					return tx.CreateTenant(&latchkey.Tenant{ID: id, Name: id, CreatedAt: created})
				})
			}
			if err := create("before"); err != nil {
				t.Fatal(err)
			}
			if err := db.Ping(t.Context()); err != nil {
				t.Fatal(err)
			}

			tc.lose(t, path)
			select {
			case <-first:
			case <-time.After(10 * time.Second):
				t.Fatal("Watch did not tell of the loss within 10s")
			}
			for name, err := range map[string]error{"Update": create("after"), "Ping": db.Ping(t.Context())} {
				if !errors.Is(err, tc.want) || !errors.Is(err, latchkey.ErrStoreLost) || latchkey.ErrorCode(err) != latchkey.EUnavailable {
					t.Errorf("%s = %v, want %v (unavailable, ErrStoreLost)", name, err, tc.want)
				}
			}
			// Reads go on from the file SQLite holds.
			if err := db.View(t.Context(), func(tx *Tx) error { _, err := tx.Tenant("before"); return err }); err != nil {
				t.Errorf("View after the loss: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(told) != 1 || !errors.Is(told[0], tc.want) {
				t.Errorf("Watch told %v, want %v once", told, tc.want)
			}
		})
	}
}

// The check runs before the commit: a write whose file went away while it
// ran is not acknowledged.
func TestLostFileDuringAWriteIsNotCommitted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latchkey.db")
	db, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(t.Context(), func(tx *Tx) error {
		if err := tx.CreateTenant(&latchkey.Tenant{ID: "acme", Name: "Acme", CreatedAt: created}); err != nil {
			return err
		}
		return os.Remove(path)
	})
	if !errors.Is(err, ErrFileDeleted) {
		t.Fatalf("Update = %v, want ErrFileDeleted", err)
	}
	err = db.View(t.Context(), func(tx *Tx) error { _, err := tx.Tenant("acme"); return err })
	if latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("the refused write was committed: %v", err)
	}
}

// A store that stays on its file never reports it lost.
func TestWatchIsQuietWhileTheFileStays(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "latchkey.db"))
	told := make(chan error, 1)
	db.Watch(time.Millisecond, func(err error) { told <- err })
	for i := range 20 {
		if err := db.Update(t.Context(), func(tx *Tx) error {
			return tx.CreateTenant(&latchkey.Tenant{ID: string(rune('a' + i)), Name: "x", CreatedAt: created})
		}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-told:
		t.Fatalf("Watch told of a loss: %v", err)
	default:
	}
}
