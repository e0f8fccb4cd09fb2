//go:build !race

// The race detector makes allocation counts meaningless, hence the tag.

package latchkey_test

import (
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/allocstest"
)

// A verify cache miss reads through the narrowed stores the key service
// is given (the timing and waking wrappers add their own); the narrowing
// must not allocate on that path.
func TestNarrowedLookupAllocatesNothing(t *testing.T) {
	backend := &hashStore{key: latchkey.Key{ID: "key_a"}}
	s := latchkey.Narrow[latchkey.QuotaStore](latchkey.Narrow[latchkey.QuotaStore](backend))
	ctx := t.Context()
	var sink *latchkey.Key
	allocstest.None(t, "KeyByHash through two narrowings", func() {
		sink, _ = s.KeyByHash(ctx, [32]byte{1})
	})
	if sink == nil || len(backend.log) != 0 {
		t.Errorf("got %v; the backend saw %q, want no transaction", sink, backend.log)
	}
}
