package keys

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// VerifyRequest asks whether a key may be used. Verify keeps none of its
// strings once it returns (a missing scope or resource is cloned into the
// verdict): httpapi's POST /v1/keys/verify passes strings that point into
// a buffer it reuses for the next request.
type VerifyRequest struct {
	Key      string     // the plaintext key as presented
	Scopes   []string   // every one of these is required
	Resource string     // the resource touched, if any
	IP       netip.Addr // the caller's address; zero if unknown
	Cost     int64      // quota units to consume; 0 checks without consuming
	// Named spends from the key's (and its owner's) on-request rate
	// windows by name: {"tokens", 1200}. Names no window has are ignored.
	Named []latchkey.NamedCost
	// Request describes the request the key is presented for, which the
	// key's (or its policy's) condition reads; nil when the caller says
	// nothing (a condition then sees empty strings). Read only for a key
	// with a condition, and nothing of it kept.
	Request *RequestInfo
}

// Verdict is the answer to a VerifyRequest.
type Verdict struct {
	Code string // a latchkey.Code* value
	// Entry is the key, for every code but MALFORMED and NOT_FOUND. It is
	// shared and must not be modified.
	Entry *Entry
	// Missing names the first required scope the key lacks
	// (INSUFFICIENT_SCOPE) or the resource it may not touch.
	Missing string
	// Admission carries the limiter's figures (zero without limits).
	Admission latchkey.Admission
}

// Valid reports whether the key was allowed.
func (v *Verdict) Valid() bool { return v.Code == latchkey.CodeValid }

// Verify checks a key in the order format/checksum (or, for a key not
// shaped like ours, the foreign-key bounds) → lookup → state →
// IP allowlist → countries → time windows → scopes → resource →
// condition → limits,
// and reports the first check that fails. On a cache hit it does no I/O. The error is non-nil only when
// the key is not cached and the store cannot be read (EUnavailable or
// internal); a key that was cached before the store went away keeps being
// verified from the cache (fail-static).
//
// Every verification that found the key (every code but MALFORMED and
// NOT_FOUND) is handed to the usage recorder, if there is one.
func (s *Service) Verify(ctx context.Context, req VerifyRequest) (Verdict, error) {
	now := s.now()
	v, err := s.check(ctx, &req, now, true)
	if s.usage != nil && v.Entry != nil {
		k := &v.Entry.Key
		s.usage.Record(k.ID, k.Tenant, v.Code, DetachAddr(req.IP), now)
	}
	return v, err
}

// check runs the checks of Verify, in its order, for Verify and for every
// route that authenticates a key (Authenticate). Without limits it stops
// before the limiter (a lease release must not need a slot of its own).
func (s *Service) check(ctx context.Context, req *VerifyRequest, now time.Time, limits bool) (Verdict, error) {
	// A Latchkey-shaped key is checked offline (a typo is MALFORMED
	// without a lookup); an imported foreign key is found by its hash,
	// through the same caches (docs/key-format.md).
	h, err := latchkey.PresentedKeyHash(req.Key)
	if err != nil {
		return Verdict{Code: latchkey.CodeMalformed}, nil
	}
	e, err := s.entry(ctx, h, now)
	if err != nil {
		return Verdict{}, err
	}
	if e == nil {
		return Verdict{Code: latchkey.CodeNotFound}, nil
	}
	v := Verdict{Entry: e}
	k := &e.Key
	switch k.StateAt(now) {
	case latchkey.StateRevoked:
		v.Code = latchkey.CodeRevoked
		return v, nil
	case latchkey.StateSuspended:
		v.Code = latchkey.CodeSuspended
		return v, nil
	case latchkey.StateExpired:
		v.Code = latchkey.CodeExpired
		return v, nil
	}
	if len(k.IPAllow) > 0 && (!req.IP.IsValid() || !latchkey.IPAllowed(k.IPAllow, req.IP)) {
		v.Code = latchkey.CodeIPNotAllowed
		return v, nil
	}
	if len(k.Countries) > 0 && !s.countryAllowed(k.Countries, DetachAddr(req.IP)) {
		v.Code = latchkey.CodeIPNotAllowed
		return v, nil
	}
	if !e.AllowsTime(now) {
		v.Code = latchkey.CodeOutsideTimeWindow
		return v, nil
	}
	for _, sc := range req.Scopes {
		if !latchkey.ScopesAllow(k.Scopes, sc) {
			// Cloned so the verdict holds nothing of the request: that
			// keeps a caller's scope buffer on its stack.
			v.Code, v.Missing = latchkey.CodeInsufficientScope, strings.Clone(sc)
			return v, nil
		}
	}
	if req.Resource != "" && !latchkey.ResourcesAllow(k.Resources, req.Resource) {
		v.Code, v.Missing = latchkey.CodeResourceNotAllowed, strings.Clone(req.Resource)
		return v, nil
	}
	if c := e.view.cond; c != nil {
		ok, err := c.holds(ctx, req, now)
		if !ok {
			if err != nil {
				// Past the cost limit, interrupted, or a runtime error
				// (a header that is absent, a bad cidr): denied. What a
				// client can cause on every request is logged at debug
				// level only.
				level := slog.LevelDebug
				if conditionErrorIsLoud(err) {
					level = slog.LevelWarn
				}
				s.log.Log(ctx, level, "key condition could not be evaluated; denied", "key_id", k.ID, "err", err)
			}
			v.Code = latchkey.CodeConditionFailed
			return v, nil
		}
	}
	if s.limiter != nil && limits {
		// Handing req.Named itself to the interface call would make the
		// caller's buffers escape on every request; a request with named
		// costs pays for a copy instead.
		var named []latchkey.NamedCost
		if len(req.Named) > 0 {
			named = slices.Clone(req.Named)
		}
		adm, err := s.limiter.Admit(ctx, k, req.Cost, named, now)
		if err != nil {
			return Verdict{}, err
		}
		v.Admission = adm
		if adm.Code != "" {
			v.Code = adm.Code
			return v, nil
		}
	}
	v.Code = latchkey.CodeValid
	return v, nil
}

// DetachAddr copies an address by value. netip.Addr holds a pointer (its
// zone), so handing req.IP itself to an interface method, or keeping it,
// would make all of req escape (escape analysis is not field-sensitive),
// and with it the caller's scope buffer.
func DetachAddr(ip netip.Addr) netip.Addr {
	switch {
	case !ip.IsValid():
		return netip.Addr{}
	case ip.Is4():
		return netip.AddrFrom4(ip.As4())
	}
	return netip.AddrFrom16(ip.As16())
}

// countryAllowed reports whether ip is in one of the countries; an address
// whose country is unknown is not.
func (s *Service) countryAllowed(countries []string, ip netip.Addr) bool {
	if s.geo == nil || !ip.IsValid() {
		return false
	}
	c, ok := s.geo.Country(ip)
	return ok && slices.Contains(countries, c)
}

// ReleaseLease ends a concurrency lease. The key presented must be the one
// holding the lease, or an admin key (keys:write) of the same tenant.
// Errors: EUnauthenticated, ENotFound (no live lease visible to the key).
func (s *Service) ReleaseLease(ctx context.Context, key string, ip netip.Addr, leaseID string) error {
	if s.limiter == nil {
		return latchkey.Errorf(latchkey.ENotFound, "no lease %.40q", leaseID)
	}
	// Releasing gives a slot back: it is checked like every route but
	// takes nothing from the key's limits.
	actor := new(latchkey.Actor)
	if err := s.authenticate(ctx, key, ip, "", false, actor); err != nil {
		return err
	}
	now := s.now()
	holder, ok := s.limiter.LeaseKey(leaseID, now)
	if ok && holder != actor.KeyID {
		ok = latchkey.ScopesAllow(actor.Scopes, "keys:write")
		if ok {
			// Only within the actor's tenant.
			_, err := s.GetKey(ctx, actor, holder)
			ok = err == nil
		}
	}
	if !ok || !s.limiter.Release(leaseID, now) {
		return latchkey.Errorf(latchkey.ENotFound, "no live lease %.40q for this key", leaseID)
	}
	return nil
}

// entry returns the cached entry for a key hash, loading it from the store
// on a miss; nil means no such key.
func (s *Service) entry(ctx context.Context, h [32]byte, now time.Time) (*Entry, error) {
	e, fresh, missing := s.cache.lookup(h, now)
	if fresh {
		return e, nil
	}
	if missing {
		return nil, nil
	}
	f, leader := s.cache.join(h)
	if !leader {
		// Another verification is reading this hash: share its answer.
		le, err := f.wait(ctx)
		if err == nil {
			return le, nil
		}
		if e != nil {
			s.log.Warn("store read failed; verifying from a stale cache entry", "err", err)
			return e, nil
		}
		return nil, unavailable(err)
	}
	ne, err := s.load(ctx, h, now)
	s.cache.finish(h, f, ne, err)
	switch {
	case err == nil:
		return ne, nil
	case e != nil:
		// Fail-static: the store is unreachable but we knew this key a
		// moment ago; keep answering from what we knew.
		s.log.Warn("store read failed; verifying from a stale cache entry", "err", err)
		return e, nil
	default:
		return nil, unavailable(err)
	}
}

// load reads the key of hash h from the store and caches the answer,
// positive or negative; nil, nil means no such key.
func (s *Service) load(ctx context.Context, h [32]byte, now time.Time) (*Entry, error) {
	gen := s.cache.generation()
	k, err := s.byHash.KeyByHash(ctx, h)
	s.storeReads.Add(1)
	switch {
	case err == nil:
		ne := NewEntry(k)
		ne.Key.Hash = h // the cache finds the entry by it
		s.cache.put(h, ne, gen, now)
		return ne, nil
	case latchkey.ErrorCode(err) == latchkey.ENotFound:
		s.cache.put(h, nil, gen, now)
		return nil, nil
	}
	return nil, err
}

// unavailable turns a context's end into EUnavailable.
func unavailable(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return latchkey.Errorf(latchkey.EUnavailable, "verification timed out reading the store")
	}
	return err
}

// StoreReads returns how many times the verify path has read the store,
// for tests and metrics.
func (s *Service) StoreReads() uint64 { return s.storeReads.Load() }
