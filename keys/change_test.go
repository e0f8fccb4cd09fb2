package keys_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// Two nodes on one database: a change made through b reaches a's cache
// when a is told of it (Apply), not only when a's cache TTL passes — the
// cluster's change feed calls Apply.
func TestAppliedChangesReachTheCacheAtOnce(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := fakeclock.New(t0)
	a := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db), Now: clock.Now, CacheTTL: time.Hour, NegativeTTL: time.Hour})
	b := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db), Now: clock.Now})
	root, _, _, err := b.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	op, err := b.Authenticate(ctx, root.Reveal(), netip.Addr{}, "")
	if err != nil {
		t.Fatal(err)
	}
	verify := func(key string) string {
		t.Helper()
		v, err := a.Verify(ctx, keys.VerifyRequest{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		return v.Code
	}
	name := "k"
	k, tok, err := b.CreateKey(ctx, op, keys.CreateParams{Settings: keys.Settings{Name: &name}})
	if err != nil {
		t.Fatal(err)
	}
	if c := verify(tok.Reveal()); c != latchkey.CodeValid {
		t.Fatal(c)
	}
	if _, err := b.RevokeKey(ctx, op, k.ID, ""); err != nil {
		t.Fatal(err)
	}
	if c := verify(tok.Reveal()); c != latchkey.CodeValid {
		t.Fatalf("before the change arrives a answered %s from its cache; the test needs it cached", c)
	}
	a.Apply(latchkey.Change{Kind: latchkey.ChangeKey, Hash: k.Hash})
	if c := verify(tok.Reveal()); c != latchkey.CodeRevoked {
		t.Fatalf("after the key's change a answered %s, want %s", c, latchkey.CodeRevoked)
	}

	// "No such key" answers go when keys are imported elsewhere.
	foreign := "legacy-key-" + strings.Repeat("x", 32)
	if c := verify(foreign); c != latchkey.CodeNotFound {
		t.Fatal(c)
	}
	if _, err := b.ImportKeys(ctx, op, strings.NewReader(foreign+"\n"), keys.ImportParams{Format: keys.ImportPlain}); err != nil {
		t.Fatal(err)
	}
	if c := verify(foreign); c != latchkey.CodeNotFound {
		t.Fatalf("before the change arrives a answered %s; the test needs the unknown answer cached", c)
	}
	a.Apply(latchkey.Change{Kind: latchkey.ChangeNewKeys})
	if c := verify(foreign); c != latchkey.CodeValid {
		t.Fatalf("after the import's change a answered %s, want %s", c, latchkey.CodeValid)
	}

	// A reset forgets everything: a node that lost the feed.
	k2, tok2, err := b.CreateKey(ctx, op, keys.CreateParams{Settings: keys.Settings{Name: &name}})
	if err != nil {
		t.Fatal(err)
	}
	verify(tok2.Reveal())
	if _, err := b.SuspendKey(ctx, op, k2.ID, time.Hour, ""); err != nil {
		t.Fatal(err)
	}
	a.Apply(latchkey.Change{Kind: latchkey.ChangeReset})
	if c := verify(tok2.Reveal()); c != latchkey.CodeSuspended {
		t.Fatalf("after a reset a answered %s, want %s", c, latchkey.CodeSuspended)
	}
	if pos, neg := a.CacheStats().Keys, a.CacheStats().Unknown; pos != 1 || neg != 0 {
		t.Fatalf("after a reset and one verify the cache holds %d keys and %d unknown; want 1 and 0", pos, neg)
	}
}
