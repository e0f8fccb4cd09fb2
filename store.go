package latchkey

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"reflect"
	"time"
)

// Store is a transactional store whose transactions are T: a backend's
// own transaction type, or one of the narrow contracts a service needs of
// it (Narrow). The rules every backend keeps (snapshots, rollback,
// ordering) are written on keys.Store, the contract of the key service.
type Store[T any] interface {
	// View runs fn in a read-only transaction that sees one consistent
	// snapshot.
	View(ctx context.Context, fn func(T) error) error
	// Update runs fn in a read-write transaction. The changes are
	// committed, durably, only if fn returns nil; otherwise none of them
	// happen.
	Update(ctx context.Context, fn func(T) error) error
}

// DB is a store as a node holds its database: transactions of T, and
// what is asked of the database outside one. Narrow's stores are DBs, so a
// service's contract (keys.Store) can ask for these of a narrowed store.
type DB[T any] interface {
	Store[T]
	// KeyByHash is the verify path's transaction-free lookup (HashReader).
	KeyByHash(ctx context.Context, hash [32]byte) (*Key, error)
	// Ping reports whether the database answers.
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
}

// Narrow gives a service the store it needs (transactions of the narrow
// contract N) from a backend's store (transactions of T, which implement
// N): the same transactions, seen through N. The service then depends on
// N's methods alone, and a backend proves N with N's conformance suite.
//
// The narrowed store keeps what s offers outside a transaction: the verify
// path's transaction-free KeyByHash (HashLookup, so a cache miss costs one
// statement and no View when s is a HashReader), Ping and
// Close (nil when s has none).
//
// When T is a pointer (a backend's own transaction type, *sqlite.Tx), a T
// that lacks N's methods panics here, at wiring; when T is an interface,
// at the first transaction.
func Narrow[N, T any](s Store[T]) DB[N] {
	if reflect.TypeFor[T]().Kind() == reflect.Pointer {
		var zero T // a nil pointer still has its type's method set
		as[N](zero)
	}
	return narrowed[N, T]{s, HashLookup(s)}
}

// narrowed is comparable when s is (tests compare stores).
type narrowed[N, T any] struct {
	s      Store[T]
	byHash HashReader
}

func (n narrowed[N, T]) View(ctx context.Context, fn func(N) error) error {
	return n.s.View(ctx, func(t T) error { return fn(as[N](t)) })
}

func (n narrowed[N, T]) Update(ctx context.Context, fn func(N) error) error {
	return n.s.Update(ctx, func(t T) error { return fn(as[N](t)) })
}

// KeyByHash reads through s's transaction-free lookup when it has one,
// else in a View of T (HashLookup).
func (n narrowed[N, T]) KeyByHash(ctx context.Context, h [32]byte) (*Key, error) {
	return n.byHash.KeyByHash(ctx, h)
}

// Ping passes s's Ping through (nil if it has none).
func (n narrowed[N, T]) Ping(ctx context.Context) error {
	if p, ok := n.s.(interface{ Ping(context.Context) error }); ok {
		return p.Ping(ctx)
	}
	return nil
}

// Close passes s's Close through (nil if it has none).
func (n narrowed[N, T]) Close() error {
	if c, ok := n.s.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// as is t seen as N. A backend transaction that lacks N's methods is a
// wiring mistake, found by Narrow or by the first transaction any test
// runs.
func as[N, T any](t T) N {
	n, ok := any(t).(N)
	if !ok {
		var want *N
		panic(fmt.Sprintf("latchkey: a %T transaction does not implement %T", t, want))
	}
	return n
}

// OrNil is v, or the nil interface when v holds a nil pointer. A part
// that takes one of these ports as an interface checks it against nil to
// know whether it has one; the wiring hands it a pointer that is nil when
// the part is off (a nil *guard.Guard, *keyring.Keyring, audit anchor),
// which would otherwise be a non-nil interface that panics when called.
func OrNil[T any](v T) T {
	if r := reflect.ValueOf(v); r.Kind() == reflect.Pointer && r.IsNil() {
		var none T
		return none
	}
	return v
}

// Limiter admits or denies a request that passed every other check:
// rate windows, quota and concurrency (package limit). Without one, nothing
// is limited. Implementations pass the suite in limit/limittest.
type Limiter interface {
	// Admit consumes cost from the key's limits if, and only if, every limit
	// allows it: a denied request consumes nothing. A key with
	// MaxConcurrent > 0 gets a lease that holds one slot until released or
	// until its TTL passes.
	//
	// Besides the key's own limits it enforces, in the same decision, the
	// limits of the key's owner (k.Bound.Owner: rate windows and a
	// periodic quota shared by every key of the owner, on every node), so
	// that a request denied by either consumes from neither. Windows whose
	// Apply is ApplyOnRequest (the key's or the owner's) count only the
	// requests that name them in named, by their cost (a cost of 0 checks
	// without spending, and passes); a name that matches no such window
	// is ignored. A named cost above its window's limit (no wait would
	// admit it), a negative one, a name given twice or more than
	// MaxNamedCosts entries are EInvalid. When the owner denies, the
	// answer's Owner is set; the reported rate figures are the tightest
	// window of both, the quota the key's, else the owner's. The limiter
	// keeps nothing of named once it returns.
	Admit(ctx context.Context, k *Key, cost int64, named []NamedCost, now time.Time) (Admission, error)
	// LeaseKey returns the id of the key holding a live lease.
	LeaseKey(leaseID string, now time.Time) (keyID string, ok bool)
	// Release ends a lease; false if it was not live.
	Release(leaseID string, now time.Time) bool
	// Forget drops what the limiter holds for a key whose limits changed,
	// so the next Admit starts from the key's new settings and the stored
	// quota usage. Given an OwnerQuotaID, it drops an owner's shared state
	// the same way (the owner's limits changed).
	Forget(keyID string)
	// Flush persists pending quota consumption and gives back credits
	// reserved but not spent (on shutdown).
	Flush(ctx context.Context) error
}

// QuotaReader is a Limiter that reports a key's quota live, with what it
// admitted and has not flushed yet, consuming nothing (package limit's
// Memory is one).
type QuotaReader interface {
	Quota(ctx context.Context, k *Key, now time.Time) (LimitState, error)
}

// Admission is a limiter's answer.
type Admission struct {
	// Code is "" when admitted, else RATE_LIMITED, QUOTA_EXCEEDED or
	// CONCURRENCY_EXCEEDED.
	Code       string
	RateLimit  LimitState // the tightest rate window; Limit 0 when none
	Quota      LimitState // Limit 0 when the key has no quota
	RetryAfter time.Duration
	LeaseID    string
	// Owner is true when the owner's shared limits, not the key's own,
	// denied the request.
	Owner bool
}

// LimitState describes one limit after a request.
type LimitState struct {
	Limit     int64
	Remaining int64
	ResetAt   time.Time
}

// QuotaUsage is what a key has consumed of its quota: in the period that
// starts at PeriodStart (periodic quotas), or in total since its balance was
// last set (credit balances). For a balance the stored Used includes what a
// limiter reserved and has not spent yet (package limit), so it is never
// less than what was admitted.
type QuotaUsage struct {
	KeyID       string
	Epoch       int64
	PeriodStart time.Time
	Used        int64
}

// QuotaStore is the part of a transaction that keeps quota consumption:
// what a limiter needs of a store (limit.Options.Store is a
// Store[QuotaStore]).
type QuotaStore interface {
	// QuotaUsage returns a key's persisted quota consumption; the zero
	// QuotaUsage (with KeyID set) if none was ever saved.
	QuotaUsage(keyID string) (QuotaUsage, error)
	// SaveQuotaUsage stores u if the stored epoch still equals u.Epoch (no
	// reset happened since u was read) and reports whether it did.
	SaveQuotaUsage(u QuotaUsage) (bool, error)
	// ResetQuotaUsage zeroes a key's consumption and bumps its epoch, so
	// that consumption counted before the reset is never written back.
	ResetQuotaUsage(keyID string) error
}

// NewLeaseID is a new concurrency lease id: "lease_" and 32 hex digits of
// crypto/rand, unguessable, so that only the holder can release it.
func NewLeaseID() string {
	var r [16]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails on supported platforms
	var b [6 + 32]byte
	copy(b[:], "lease_")
	hex.Encode(b[6:], r[:])
	return string(b[:])
}
