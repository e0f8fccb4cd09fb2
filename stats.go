package latchkey

import "context"

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
	KeyByHash(ctx context.Context, hash [32]byte) (*Key, error)
}
