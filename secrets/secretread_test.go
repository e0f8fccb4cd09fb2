package secrets_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/secrets"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// countingStore counts read transactions and tells of each committed
// write transaction.
type countingStore struct {
	latchkey.Store[secrets.Tx]
	views   atomic.Int64
	updated chan struct{}
}

func (c *countingStore) View(ctx context.Context, fn func(secrets.Tx) error) error {
	c.views.Add(1)
	return c.Store.View(ctx, fn)
}

func (c *countingStore) Update(ctx context.Context, fn func(secrets.Tx) error) error {
	err := c.Store.Update(ctx, fn)
	if err == nil && c.updated != nil {
		select {
		case c.updated <- struct{}{}:
		default:
		}
	}
	return err
}

func readValue(t *testing.T, svc *secrets.Service, a *latchkey.Actor, name string, version int64) string {
	t.Helper()
	s, err := svc.ReadSecret(context.Background(), a, name, version)
	if err != nil {
		t.Fatalf("ReadSecret(%s, %d): %v", name, version, err)
	}
	return s.Value
}

// reads is how many reads an event stands for: the same reader's reads
// of the same version within one flush are one event with a count.
func readsIn(e *latchkey.AuditEvent) int {
	if c := e.Details["count"]; c != "" {
		n, _ := strconv.Atoi(c)
		return n
	}
	return 1
}

func totalReads(evs []*latchkey.AuditEvent) int {
	n := 0
	for _, e := range evs {
		n += readsIn(e)
	}
	return n
}

func secretReads(t *testing.T, f *fixture, a *latchkey.Actor) []*latchkey.AuditEvent {
	t.Helper()
	evs, err := f.audit.ListAudit(context.Background(), a, latchkey.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*latchkey.AuditEvent
	for _, e := range evs {
		if e.Action == "secret.read" {
			out = append(out, e)
		}
	}
	return out
}

// Reads are answered from memory: the store is read once until the entry
// expires or the secret changes.
func TestSecretReadsAreServedFromTheCache(t *testing.T) {
	var store *countingStore
	f := newFixture(t, func(o *setup) { store = &countingStore{Store: o.Store}; o.Store = store })
	f.put(t, f.admin, "openai", "sk-cached-0001")
	before := store.views.Load()
	for range 5 {
		if v := readValue(t, f.svc, f.admin, "openai", 0); v != "sk-cached-0001" {
			t.Fatalf("read %q", v)
		}
		f.clock.Advance(time.Millisecond)
	}
	if n := store.views.Load() - before; n != 1 {
		t.Fatalf("5 reads read the store %d times, want 1", n)
	}
	// The cache holds values per tenant: globex has no such secret.
	if _, err := f.svc.ReadSecret(context.Background(), f.other, "openai", 0); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("another tenant's read of a cached name: %v, want not_found", err)
	}
	// A cached read is audited as any; the five, alike but for their
	// time, are one event that counts them.
	evs := secretReads(t, f, f.admin)
	if len(evs) != 1 || readsIn(evs[0]) != 5 || !evs[0].At.Equal(t0) ||
		evs[0].Details["last_at"] != t0.Add(4*time.Millisecond).Format(time.RFC3339Nano) || evs[0].ActorKeyID != f.admin.KeyID {
		t.Fatalf("read events: %d, first %+v; want one counting 5", len(evs), evs[0])
	}
}

// A put or a delete on this node is seen by the next read at once, for
// the newest version and numbered ones.
func TestSecretCacheSeesALocalChangeAtOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.put(t, f.admin, "openai", "sk-first-0001")
	if v := readValue(t, f.svc, f.admin, "openai", 0); v != "sk-first-0001" {
		t.Fatal(v)
	}
	if v := readValue(t, f.svc, f.admin, "openai", 1); v != "sk-first-0001" {
		t.Fatal(v)
	}
	f.put(t, f.admin, "openai", "sk-second-0002")
	if v := readValue(t, f.svc, f.admin, "openai", 0); v != "sk-second-0002" {
		t.Fatalf("newest after a put on this node: %q, want the new value", v)
	}
	if v := readValue(t, f.svc, f.admin, "openai", 1); v != "sk-first-0001" {
		t.Fatalf("version 1 after a put: %q", v)
	}
	if err := f.svc.DeleteSecret(ctx, f.admin, "openai"); err != nil {
		t.Fatal(err)
	}
	for _, v := range []int64{0, 1, 2} {
		if _, err := f.svc.ReadSecret(ctx, f.admin, "openai", v); latchkey.ErrorCode(err) != latchkey.ENotFound {
			t.Fatalf("version %d after a delete: %v, want not_found", v, err)
		}
	}
	f.put(t, f.admin, "openai", "sk-third-0003")
	if s, err := f.svc.ReadSecret(ctx, f.admin, "openai", 0); err != nil || s.Value != "sk-third-0003" || s.Version != 3 {
		t.Fatalf("after a delete and a put: %+v, %v", s, err)
	}
}

// A change made through another node (another Service on the same
// database) is seen once the cached entry expires, not before.
func TestSecretCacheTTLBoundsStalenessAcrossNodes(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	master, _ := keyring.GenerateMasterKey()
	kr, err := keyring.Open(ctx, latchkey.Narrow[keyring.Tx](db), master, keyring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := fakeclock.New(t0)
	node := func() *secrets.Service {
		svc := secrets.New(secrets.Options{Store: latchkey.Narrow[secrets.Tx](db), Now: clock.Now, Sealer: kr, CacheTTL: 3 * time.Second})
		t.Cleanup(func() { svc.Close(ctx) })
		return svc
	}
	a, b := node(), node()
	ks := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db), Now: clock.Now})
	tok, _, _, err := ks.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	actor := func(*secrets.Service) *latchkey.Actor {
		act, err := ks.Authenticate(ctx, tok.Reveal(), netip.Addr{}, "")
		if err != nil {
			t.Fatal(err)
		}
		return act
	}
	if _, err := a.PutSecret(ctx, actor(a), "openai", secrets.SecretParams{Value: "sk-node-old-0001"}); err != nil {
		t.Fatal(err)
	}
	if v := readValue(t, a, actor(a), "openai", 0); v != "sk-node-old-0001" {
		t.Fatal(v)
	}
	if _, err := b.PutSecret(ctx, actor(b), "openai", secrets.SecretParams{Value: "sk-node-new-0002"}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second)
	if v := readValue(t, a, actor(a), "openai", 0); v != "sk-node-old-0001" {
		t.Fatalf("within the TTL node a read %q, want its cached value", v)
	}
	clock.Advance(time.Second)
	if v := readValue(t, a, actor(a), "openai", 0); v != "sk-node-new-0002" {
		t.Fatalf("once the TTL passed node a read %q, want the other node's write", v)
	}
}

// A change made through another node is seen at once when the node is
// told of it (Apply: the cluster's change feed), well within the TTL; a
// reset forgets every cached secret.
func TestSecretChangeAppliedIsSeenAtOnce(t *testing.T) {
	f := newFixture(t, func(o *setup) { o.CacheTTL = time.Hour })
	other := secrets.New(secrets.Options{Store: latchkey.Narrow[secrets.Tx](f.db), Now: f.clock.Now, Sealer: f.sealer})
	t.Cleanup(func() { other.Close(context.Background()) })
	ctx := context.Background()
	f.put(t, f.admin, "openai", "sk-applied-old-0001")
	f.put(t, f.admin, "anthropic", "sk-applied-old-0002")
	readValue(t, f.svc, f.admin, "openai", 0)
	readValue(t, f.svc, f.admin, "anthropic", 0)
	for _, name := range []string{"openai", "anthropic"} {
		if _, err := other.PutSecret(ctx, f.admin, name, secrets.SecretParams{Value: "sk-applied-new-" + name}); err != nil {
			t.Fatal(err)
		}
	}
	if v := readValue(t, f.svc, f.admin, "openai", 0); v != "sk-applied-old-0001" {
		t.Fatalf("before the change arrives: %q; the test needs the value cached", v)
	}
	f.svc.Apply(latchkey.Change{Kind: latchkey.ChangeSecret, Tenant: f.admin.Tenant, Name: "openai"})
	if v := readValue(t, f.svc, f.admin, "openai", 0); v != "sk-applied-new-openai" {
		t.Fatalf("after the secret's change: %q", v)
	}
	if v := readValue(t, f.svc, f.admin, "anthropic", 0); v != "sk-applied-old-0002" {
		t.Fatalf("a change to openai dropped anthropic too: %q", v)
	}
	f.svc.Apply(latchkey.Change{Kind: latchkey.ChangeReset})
	if v := readValue(t, f.svc, f.admin, "anthropic", 0); v != "sk-applied-new-anthropic" {
		t.Fatalf("after a reset: %q", v)
	}
}

// When the audit log cannot take events, reads fail (unavailable) rather
// than go unaudited; the events of the reads answered before are written,
// in order, once it can.
func TestSecretReadFailsWhenItsAuditEventCannotBeWritten(t *testing.T) {
	var store *brokenAudit
	f := newFixture(t, func(o *setup) {
		store = &brokenAudit{Store: o.Store}
		o.Store = store
		o.ReadAuditInterval = time.Hour
	})
	ctx := context.Background()
	f.put(t, f.admin, "openai", "sk-queue-test-0001")
	r := f.reader(t, []string{"secrets:read"}, []string{"secret:openai"})
	store.fail.Store(true)
	for i := range 3 {
		r.UserAgent = fmt.Sprintf("agent-%d", i%2)
		if v := readValue(t, f.svc, r, "openai", 0); v != "sk-queue-test-0001" {
			t.Fatalf("read %d: %q", i, v)
		}
		f.clock.Advance(time.Second)
	}
	if err := f.svc.FlushReadAudits(ctx); latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Fatalf("flush into a failing audit log: %v", err)
	}
	if _, err := f.svc.ReadSecret(ctx, r, "openai", 0); latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Fatalf("read while the audit log fails: %v, want unavailable", err)
	}
	if _, err := f.svc.ReadSecrets(ctx, r); latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Fatalf("read of all secrets while the audit log fails: %v, want unavailable", err)
	}
	// A refused read is still refused (it is logged that it went unaudited).
	if _, err := f.svc.ReadSecret(ctx, r, "anthropic", 0); latchkey.ErrorCode(err) != latchkey.EForbidden {
		t.Fatalf("refused read while the audit log fails: %v, want forbidden", err)
	}
	if evs := secretReads(t, f, f.admin); len(evs) != 0 {
		t.Fatalf("%d read events stored while the audit log failed", len(evs))
	}

	store.fail.Store(false)
	if err := f.svc.FlushReadAudits(ctx); err != nil {
		t.Fatal(err)
	}
	evs := secretReads(t, f, f.admin)
	if len(evs) != 2 || totalReads(evs) != 3 {
		t.Fatalf("%d read events for %d reads after the audit log recovered, want 2 for the 3 answered reads", len(evs), totalReads(evs))
	}
	for i, e := range evs {
		if e.ActorKeyID != r.KeyID || e.Result != latchkey.ResultSuccess || e.Details["secret"] != "openai" || e.Details["version"] != "1" ||
			!e.At.Equal(t0.Add(time.Duration(i)*time.Second)) || e.UserAgent != fmt.Sprintf("agent-%d", i) || readsIn(e) != 2-i {
			t.Fatalf("read event %d: %+v", i, e)
		}
	}
	if v, err := f.audit.VerifyAudit(ctx, f.admin); err != nil || !v.OK {
		t.Fatalf("chain after the queued reads: %+v, %v", v, err)
	}
	if v := readValue(t, f.svc, r, "openai", 0); v != "sk-queue-test-0001" {
		t.Fatal(v)
	}
}

// slowStore holds write transactions until release is closed, as a disk
// that has stalled would.
type slowStore struct {
	latchkey.Store[secrets.Tx]
	hold    atomic.Bool
	release chan struct{}
}

func (s *slowStore) Update(ctx context.Context, fn func(secrets.Tx) error) error {
	if s.hold.Load() {
		<-s.release
	}
	return s.Store.Update(ctx, fn)
}

// When reads come faster than the audit log takes them, the queue fills
// and further reads fail (unavailable) until it drains.
func TestSecretReadFailsWhenTheAuditQueueIsFull(t *testing.T) {
	var store *slowStore
	f := newFixture(t, func(o *setup) {
		store = &slowStore{Store: o.Store, release: make(chan struct{})}
		o.Store = store
		o.ReadAuditQueue = 3
		o.ReadAuditInterval = time.Hour
	})
	ctx := context.Background()
	f.put(t, f.admin, "openai", "sk-queue-full-0001")
	store.hold.Store(true)
	a := *f.admin
	for i := range 3 {
		a.UserAgent = fmt.Sprintf("agent-%d", i)
		readValue(t, f.svc, &a, "openai", 0)
	}
	a.UserAgent = "agent-3"
	if _, err := f.svc.ReadSecret(ctx, &a, "openai", 0); latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Fatalf("read with a full audit queue: %v, want unavailable", err)
	}
	store.hold.Store(false)
	close(store.release)
	if err := f.svc.FlushReadAudits(ctx); err != nil {
		t.Fatal(err)
	}
	if v := readValue(t, f.svc, &a, "openai", 0); v != "sk-queue-full-0001" {
		t.Fatal(v)
	}
	if n := totalReads(secretReads(t, f, f.admin)); n != 4 {
		t.Fatalf("%d reads audited, want the 4 answered", n)
	}
}

// Reads of two tenants, interleaved, land in each tenant's chain in the
// order they were answered, with who read what from where; both chains
// verify.
func TestSecretReadAuditsKeepOrderAndTheChain(t *testing.T) {
	f := newFixture(t, func(o *setup) { o.ReadAuditInterval = time.Hour })
	ctx := context.Background()
	for _, a := range []*latchkey.Actor{f.admin, f.other} {
		for i := range 3 {
			f.put(t, a, fmt.Sprintf("s%d", i), "sk-order-test-value")
		}
	}
	ip := netip.MustParseAddr("192.0.2.7")
	admin, other := *f.admin, *f.other
	admin.IP, admin.UserAgent = ip, "fast-agent/1"
	other.IP = ip
	for i := range 3 {
		readValue(t, f.svc, &admin, fmt.Sprintf("s%d", 2-i), 0)
		f.clock.Advance(time.Millisecond)
		readValue(t, f.svc, &other, fmt.Sprintf("s%d", i), 0)
		f.clock.Advance(time.Millisecond)
	}
	limited := f.reader(t, []string{"secrets:read"}, []string{"secret:s0"})
	limited.IP = ip
	if _, err := f.svc.ReadSecret(ctx, limited, "s1", 0); latchkey.ErrorCode(err) != latchkey.EForbidden {
		t.Fatal(err)
	}
	if err := f.svc.FlushReadAudits(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		a     *latchkey.Actor
		names []string
	}{{f.admin, []string{"s2", "s1", "s0", "s1"}}, {f.other, []string{"s0", "s1", "s2"}}} {
		evs := secretReads(t, f, c.a)
		if len(evs) != len(c.names) {
			t.Fatalf("tenant %s: %d read events, want %d", c.a.Tenant, len(evs), len(c.names))
		}
		for i, e := range evs {
			if e.Details["secret"] != c.names[i] || e.IP != "192.0.2.7" || i > 0 && !e.At.After(evs[i-1].At) {
				t.Fatalf("tenant %s event %d: %+v", c.a.Tenant, i, e)
			}
		}
		last := evs[len(evs)-1]
		if c.a == f.admin && (last.Result != "denied" || last.ActorKeyID != limited.KeyID || last.Details["version"] != "") {
			t.Fatalf("refused read event: %+v", last)
		}
		if c.a == f.admin && (evs[0].UserAgent != "fast-agent/1" || evs[0].ActorKeyID != f.admin.KeyID) {
			t.Fatalf("read event: %+v", evs[0])
		}
		if v, err := f.audit.VerifyAudit(ctx, c.a); err != nil || !v.OK {
			t.Fatalf("tenant %s chain: %+v, %v", c.a.Tenant, v, err)
		}
	}
}

// The flusher writes on its own once the queue is half full, without
// waiting for its interval.
func TestSecretReadAuditsFlushWhenHalfFull(t *testing.T) {
	var store *countingStore
	f := newFixture(t, func(o *setup) {
		store = &countingStore{Store: o.Store}
		o.Store = store
		o.ReadAuditQueue = 4
		o.ReadAuditInterval = time.Hour
	})
	f.put(t, f.admin, "openai", "sk-half-full-0001")
	store.updated = make(chan struct{}, 1)
	a := *f.admin
	for _, ua := range []string{"agent-a", "agent-b"} {
		a.UserAgent = ua
		readValue(t, f.svc, &a, "openai", 0)
	}
	select {
	case <-store.updated:
	case <-time.After(10 * time.Second):
		t.Fatal("a half-full queue was not written within 10s")
	}
	// Read the store itself: ListAudit would flush.
	var n int
	err := f.db.View(context.Background(), func(tx *sqlite.Tx) error {
		evs, err := tx.AuditEvents(f.admin.Tenant, latchkey.AuditFilter{Limit: 100})
		for _, e := range evs {
			if e.Action == "secret.read" {
				n++
			}
		}
		return err
	})
	if err != nil || n != 2 {
		t.Fatalf("%d read events stored (%v), want 2", n, err)
	}
}

// Close writes what is queued and refuses reads from then on.
func TestSecretReadAuditsAreWrittenOnClose(t *testing.T) {
	f := newFixture(t, func(o *setup) { o.ReadAuditInterval = time.Hour })
	ctx := context.Background()
	f.put(t, f.admin, "openai", "sk-close-test-0001")
	readValue(t, f.svc, f.admin, "openai", 0)
	readValue(t, f.svc, f.admin, "openai", 0)
	if err := f.svc.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ReadSecret(ctx, f.admin, "openai", 0); latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Fatalf("read after Close: %v, want unavailable", err)
	}
	if n := totalReads(secretReads(t, f, f.admin)); n != 2 {
		t.Fatalf("%d reads audited after Close, want 2", n)
	}
	if v, err := f.audit.VerifyAudit(ctx, f.admin); err != nil || !v.OK {
		t.Fatalf("chain: %+v, %v", v, err)
	}
	if err := f.svc.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
