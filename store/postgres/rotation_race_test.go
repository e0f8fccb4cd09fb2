package postgres

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/keys"
)

// Three servers on one PostgreSQL database race for every due rotation
// (each its own pool, as separate processes have): each key is rotated
// once, and each successor is sealed once.
func TestScheduledRotationRunsOnceAcrossServers(t *testing.T) {
	ctx := context.Background()
	dsn := newDSN(t)
	clock := fakeclock.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	master, err := keyring.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*keys.Service
	for range 3 {
		db := openTest(t, dsn)
		kr, err := keyring.Open(ctx, latchkey.Narrow[keyring.Tx](db), master, keyring.Options{})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db), Now: clock.Now, Sealer: kr}))
	}
	root, _, _, err := nodes[0].Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := nodes[0].Authenticate(ctx, root.Reveal(), netip.Addr{}, "keys:write")
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		name := "svc-" + string(rune('a'+i))
		k, _, err := nodes[0].CreateKey(ctx, admin, keys.CreateParams{Settings: keys.Settings{Name: &name}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nodes[0].SetRotation(ctx, admin, k.ID, keys.RotationParams{Interval: 24 * time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(24 * time.Hour)
	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	for _, svc := range nodes {
		wg.Go(func() {
			got, err := svc.RotateDue(ctx)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			total += got
			mu.Unlock()
		})
	}
	wg.Wait()
	if total != n {
		t.Fatalf("three servers rotated %d times for %d due keys, want %d", total, n, n)
	}
	// Nothing is due any more, and each secret holds one successor.
	if got, err := nodes[1].RotateDue(ctx); err != nil || got != 0 {
		t.Fatalf("after the race: %d more rotated, %v", got, err)
	}
	db := openTest(t, dsn)
	err = db.View(ctx, func(tx *Tx) error {
		for i := range n {
			next, err := tx.NextSecretVersion("operator", "key-svc-"+string(rune('a'+i)))
			if err != nil {
				return err
			}
			if next != 2 {
				t.Errorf("secret key-svc-%c holds %d versions, want 1", 'a'+i, next-1)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
