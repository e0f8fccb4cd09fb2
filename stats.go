package latchkey

import (
	"context"
	"fmt"
)

// Figures the metrics read at scrape time, kept here so that package
// metrics reads them from the parts that count them without importing
// those parts.

// CacheStats are the verify cache's figures (keys.Service.CacheStats).
type CacheStats struct {
	// Hits counts lookups answered from memory: a cached key, or a key
	// remembered as unknown. Misses counts those that had to read the
	// store (so it follows StoreReads).
	Hits, Misses uint64
	// Keys and Unknown are the entries held now: cached keys, and hashes
	// remembered as unknown (the negative cache).
	Keys, Unknown int
}

// GuardStats are the brute-force guard's figures (guard.Guard.Stats).
type GuardStats struct {
	// Tracked is the number of networks held in memory (at most
	// MaxNetworks), including some whose entries have expired but not yet
	// been swept.
	Tracked int
	// Blocked is the number of networks blocked at the time asked.
	Blocked int
	// BlocksTotal counts blocks since the guard was made.
	BlocksTotal uint64
}

// WebhookStats count the webhook dispatcher's delivery attempts by
// outcome (webhook.Dispatcher.Stats).
type WebhookStats struct {
	Delivered uint64 // answered 2xx
	Retried   uint64 // failed, to be tried again
	Failed    uint64 // failed, and the delivery given up
}

// HashReader is a Store that reads one key by hash without a transaction
// of its own (one statement sees one snapshot anyway): the verify path's
// miss uses it when the store has it, else a View with Tx.KeyByHash.
type HashReader interface {
	// KeyByHash returns the key whose SHA-256 is hash; ENotFound if none.
	// It fills the key's Bound (its stored policy and owner record) from
	// the same snapshot, so the verify path needs one read per miss.
	KeyByHash(ctx context.Context, hash [32]byte) (*Key, error)
}

// KeyByHashTx is a transaction that reads one key by hash.
type KeyByHashTx interface {
	// KeyByHash returns the key whose SHA-256 is hash; ENotFound if none.
	KeyByHash(hash [32]byte) (*Key, error)
}

// HashLookup returns s's read of a key by hash: s itself when it is a
// HashReader (a transaction-free lookup), else a reader that uses a View
// whose transaction reads it (T must be a KeyByHashTx). The verify path's
// miss and the wrappers that must keep s's lookup (narrowing, timing) call
// what it returns.
//
// Resolve it once, when the wrapper or the service is built, not per
// call. Besides saving the check, this keeps the verify path free of an
// interface-to-interface type assertion, which Go 1.26 serves badly when
// the value's itab was built at run time (an interface converted to
// another, as the wiring does with stores): such itabs carry a zero hash,
// the assertion's cache is probed by that hash and misses, and every miss
// calls into the runtime and now and then rebuilds the cache, allocating
// (caught by TestNarrowedLookupAllocatesNothing).
func HashLookup[T any](s Store[T]) HashReader {
	if hr, ok := s.(HashReader); ok {
		return hr
	}
	return viewLookup[T]{s}
}

// viewLookup reads a key by hash in a View of its store.
type viewLookup[T any] struct{ s Store[T] }

func (v viewLookup[T]) KeyByHash(ctx context.Context, h [32]byte) (*Key, error) {
	var k *Key
	err := v.s.View(ctx, func(tx T) error {
		kr, ok := any(tx).(KeyByHashTx)
		if !ok {
			return fmt.Errorf("latchkey: a %T transaction cannot read keys by hash", tx)
		}
		var err error
		k, err = kr.KeyByHash(h)
		return err
	})
	return k, err
}
