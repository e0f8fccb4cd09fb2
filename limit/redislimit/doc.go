// Package redislimit enforces a key's rate windows, quota and concurrency
// limit, and the limits its owner shares with the owner's other keys, in
// Redis, so that every Latchkey node using the same Redis (and the same
// Options.Prefix) enforces the same limits exactly, as one node does.
// Limiter implements latchkey.Limiter and latchkey.QuotaReader and passes
// the conformance suite in limit/limittest; the semantics (GCRA windows,
// windows that count named costs, owner limits, quota periods, credit
// balances, leases, the order of checks, what Admit reports) are package
// limit's, word for word.
//
// # What is shared
//
// Every decision is one Lua script run atomically in Redis (EVALSHA,
// falling back to EVAL when Redis does not have it cached, as after a
// restart): the script reads the key's windows, quota counter and leases,
// and its owner's windows and quota counter, decides, and commits all of
// them or none (a request denied by the owner's limits consumes nothing of
// the key's, and the other way round). Nothing of a decision is held
// in a node's memory, so 3,000 requests spread over three nodes against
// 1,000 per minute admit exactly 1,000, and a lease taken on one node is
// found (LeaseKey) and released (Release) on any other.
//
//   - Rate windows: each window's theoretical arrival time, kept exactly
//     (seconds, nanoseconds and a remainder in units of 1/limit ns: Lua
//     numbers are doubles), together with the window's limit and duration;
//     a window whose settings changed starts full.
//   - Quota: the key's counter for the current period (periodic quotas),
//     or what was spent and what is reserved (credit balances), with the
//     epoch of the stored row it was loaded from.
//   - Leases: a sorted set per key scored by expiry, the exact expiries, and
//     a lease → key mapping for LeaseKey and Release.
//   - Owner limits: one hash per owner, named by
//     latchkey.OwnerQuotaID(tenant, owner id), with the owner's windows and
//     quota counter, shared by all of the owner's keys on every node. Its
//     quota counter is loaded, flushed (under that id, through the same
//     store), reset and forgotten (Forget of that id) exactly as a key's.
//
// Time is the now each caller passes, never Redis's clock, so nodes must
// keep their clocks in step (NTP) as they must for everything else. Every
// Redis key has a TTL: a window lives until it is full again, a quota
// counter at most an hour after its last use (the store has it by then),
// a lease until it expires, each plus a minute; an idle key costs nothing.
// Keys are one hash, one sorted set and one more hash per key, a hash per
// owner with limits, and a string per live lease; a decision touches the
// key's own keys, its owner's hash and its new lease's mapping, so the
// limiter needs one Redis (standalone, or a primary that Sentinel fails
// over), not Redis Cluster.
//
// # What is persisted, and when
//
// The store (latchkey.QuotaStore, the same rows package limit writes) stays
// the record; Redis is a shared cache of the counters in use.
//
//   - A quota counter missing from Redis (first use, expired, lost) is read
//     from the store and installed only if still missing (the script is the
//     SET NX), so concurrent first requests on several nodes agree.
//   - Periodic quota consumption: every admission that consumes puts the
//     key's id in a shared "dirty" set; every FlushInterval (default 1s)
//     each node's background flusher takes ids out of that set and writes
//     their counters to the store, never lowering a figure another node
//     wrote for the same period. Any node flushes what any node counted,
//     so a node that dies loses nothing that Redis still holds. Flush (and
//     Close) does the same at once.
//   - Credit balances are spent only from reservations already committed
//     to the store, as package limit spends them: before a request may take
//     the spent count past the reservation, the node that meets it takes
//     the key's reservation lock in Redis, writes a larger reservation to
//     the store (the first is what the request needs: a single-use key
//     reserves exactly its one use; then doubling while demand is high, up
//     to 65,536 and the balance), and only then raises the reservation in
//     Redis. The store therefore never holds less than was spent, whatever
//     happens to Redis or to a node. Persisting each spend synchronously
//     instead would be as safe but would cost one store transaction per
//     request; reservations cost a few a second for a busy key. Flush (and
//     Close, and the flusher for a balance idle on this node for an
//     interval) gives back the unspent part of a reservation, so the store
//     then holds exactly what was spent.
//   - Forget marks the key's counter stale in Redis, for every node: the
//     next request reads the stored row again; if its epoch changed (a
//     reset, a new balance) the stored row replaces the counter, otherwise
//     the counter, with consumption not yet flushed, is kept. A counter the
//     store refuses at a flush (reset since it was loaded) is marked stale
//     the same way, so consumption counted before a reset is never written
//     back.
//
// # What a Redis data loss costs
//
// A Redis that restarts empty (or is flushed) loses: the rate windows,
// which start full again (at most one extra burst per key); the leases,
// whose slots are freed (requests in flight may exceed MaxConcurrent
// until they end); periodic consumption admitted since the last flush
// (at most FlushInterval's worth plus one flush's duration), which may be
// admitted again; and the unspent part of each credit reservation, which
// counts as spent (under-admission, at most the last reservation). No
// credit is ever admitted twice.
//
// # When Redis fails
//
// A Redis call that fails (connection refused, timeout, pool exhausted)
// is counted (Stats, Options.OnFailure) and logged once per outage; for
// Options.Backoff (default 1s) after a failure every call skips Redis, so
// that a dead Redis does not add its timeout to each request, and the
// first call after that tries Redis again: recovery needs nothing. Until
// then, Options.Failure decides:
//
//   - "deny": Admit answers an error with code EUnavailable (the service
//     answers 503).
//   - "local" (the default): Options.Local (an in-memory limit.Memory)
//     decides, with the key's rate windows, concurrency limit and periodic
//     quota divided by Options.Nodes (rounded down, at least 1), so the
//     nodes together stay near the key's limits while each counts alone;
//     the owner's windows and periodic quota are divided the same way,
//     and a named cost above a divided window's limit is lowered to it
//     (the request takes this node's whole share instead of failing).
//     What they admit meanwhile is not in the shared counters: when Redis
//     is back its windows and quota counters continue from where they
//     were, so an outage can admit up to the quota's limit once more, per
//     period. Credit balances are not handed to Options.Local: each
//     request spends its credits in one store transaction (read, check,
//     write) on top of every reservation the store holds, so no credit is
//     spent twice during an outage either, at a store write per request.
//     Leases handed out by Options.Local are found and released there.
//     Without Options.Local, "local" behaves as "deny".
//
// LeaseKey and Release fall back to Options.Local as well; Quota reports
// what the store holds; Flush answers EUnavailable (the consumption waits
// in Redis for the next flush); a Forget is kept and applied once Redis
// answers. The client should not retry commands itself (MaxRetries -1): a
// script retried after a lost reply would count a request twice.
package redislimit
