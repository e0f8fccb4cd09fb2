// Package keys is the key service: it issues, verifies, rotates, derives,
// suspends and revokes keys, keeps the verify cache coherent with every
// change, and checks that each admin action stays inside its tenant and its
// actor's powers.
package keys

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Options configures a Service. Zero values take the documented defaults.
type Options struct {
	Store Store
	// Now is the clock (default time.Now). Tests inject a fake one.
	Now func() time.Time
	// Rand is the source of key material (default crypto/rand).
	Rand io.Reader
	// CacheSize bounds the keys kept in memory (default DefaultCacheSize,
	// 167,772: 128 MiB at EntryBytes a key) and NegativeCacheSize the
	// remembered unknown keys (default NegativeCacheSize(CacheSize)).
	CacheSize         int
	NegativeCacheSize int
	// CacheTTL is how long a cached key is trusted without reading the store
	// again (default 30s); it heals a missed invalidation on other nodes.
	CacheTTL time.Duration
	// NegativeTTL is how long an unknown key stays known-unknown (default 5s).
	NegativeTTL time.Duration
	// DefaultGrace is the grace period of a rotation that names none
	// (default 1h).
	DefaultGrace time.Duration
	Limiter      latchkey.Limiter
	// Geo maps addresses to countries, for keys limited to countries; nil
	// means such keys cannot be created.
	Geo GeoIP
	// Usage, when set, is told about every verification that found a key
	// (package usage). Record runs on the verify path: it must be safe for
	// concurrent use, cheap, and must not allocate.
	Usage latchkey.UsageRecorder
	// Sealer seals the successors of scheduled rotations as secrets
	// (the keyring); without one, SetRotation answers EUnavailable and
	// RotateDue does nothing.
	Sealer latchkey.Sealer
	// OnSecret, when set, is told of each secret a rotation wrote, after
	// it committed (the secret service's cache on this node; other nodes
	// hear of it through the store's change feed).
	OnSecret func(tenant, name string)
	// Burst is when many keys created or revoked in a short time are a
	// security anomaly (default: 50 within 5 minutes).
	Burst  BurstRule
	Logger *slog.Logger
}

// BurstRule says how many of one kind of change within Window make a
// burst. A Threshold below 0 turns the check off.
type BurstRule struct {
	Threshold int
	Window    time.Duration
}

// GeoIP tells the country of an address (ISO 3166-1 alpha-2, upper case).
type GeoIP interface {
	Country(ip netip.Addr) (string, bool)
}

// Service implements the key life cycle on top of a Store.
type Service struct {
	store        Store
	byHash       latchkey.HashReader // the verify miss (latchkey.HashLookup)
	clock        func() time.Time
	rand         io.Reader
	cache        *cache
	limiter      latchkey.Limiter
	geo          GeoIP
	usage        latchkey.UsageRecorder
	sealer       latchkey.Sealer
	onSecret     func(tenant, name string)
	log          *slog.Logger
	defaultGrace time.Duration
	burst        BurstRule
	storeReads   atomic.Uint64
}

// New returns a Service.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.NegativeCacheSize <= 0 {
		o.NegativeCacheSize = NegativeCacheSize(o.CacheSize)
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = 30 * time.Second
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = 5 * time.Second
	}
	if o.DefaultGrace <= 0 {
		o.DefaultGrace = time.Hour
	}
	if o.Burst.Threshold == 0 {
		o.Burst.Threshold = 50
	}
	if o.Burst.Window <= 0 {
		o.Burst.Window = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		store:        o.Store,
		byHash:       latchkey.HashLookup[Tx](o.Store),
		clock:        o.Now,
		rand:         o.Rand,
		cache:        newCache(o.CacheSize, o.NegativeCacheSize, o.CacheTTL, o.NegativeTTL),
		limiter:      o.Limiter,
		geo:          o.Geo,
		usage:        o.Usage,
		sealer:       latchkey.OrNil(o.Sealer),
		onSecret:     o.OnSecret,
		log:          o.Logger,
		defaultGrace: o.DefaultGrace,
		burst:        o.Burst,
	}
	return s
}

// now is the clock in the store's resolution, so that what a caller is told
// equals what a later read returns.
func (s *Service) now() time.Time { return s.clock().UTC().Truncate(time.Microsecond) }

func (s *Service) policyEnv() policyEnv { return policyEnv{hasGeo: s.geo != nil} }

// Ping reports whether the store answers.
func (s *Service) Ping(ctx context.Context) error { return s.store.Ping(ctx) }

// Authenticate verifies the key presented to a route and checks that it
// holds scope, with every check of Verify in Verify's order (state, IP
// allowlist, countries, time windows, scope, then the key's rate windows,
// quota and concurrency, consuming one request and one quota unit). A key
// with max_concurrent holds a slot from here until Done(actor): call it when
// the request has been answered. Errors: EUnauthenticated (missing,
// malformed, unknown, expired, revoked, suspended key), EForbidden (IP,
// country, time window, scope), ERateLimited (a rate window, the quota or
// the concurrency limit), each a *Denied naming the verify code;
// EUnavailable.
func (s *Service) Authenticate(ctx context.Context, key string, ip netip.Addr, scope string) (*latchkey.Actor, error) {
	a := new(latchkey.Actor)
	if err := s.AuthenticateInto(ctx, key, ip, scope, a); err != nil {
		return nil, err
	}
	return a, nil
}

// AuthenticateInto is Authenticate filling a caller's Actor, so that a hot
// route can keep it on its stack.
func (s *Service) AuthenticateInto(ctx context.Context, key string, ip netip.Addr, scope string, a *latchkey.Actor) error {
	return s.authenticate(ctx, key, ip, scope, true, a)
}

// Identify runs every check of Authenticate except the key's limits: it
// spends no request, no quota and takes no concurrency slot. The guard uses
// it to recognise an owner's admin key on a blocked network before the
// route authenticates it for real.
func (s *Service) Identify(ctx context.Context, key string, ip netip.Addr, a *latchkey.Actor) error {
	return s.authenticate(ctx, key, ip, "", false, a)
}

// authenticate is the one way a route's key is checked: verify's checks
// (with the limiter only if limits), turned into an error.
func (s *Service) authenticate(ctx context.Context, key string, ip netip.Addr, scope string, limits bool, a *latchkey.Actor) error {
	if key == "" {
		return &Denied{Err: latchkey.Errorf(latchkey.EUnauthenticated, "no API key: send Authorization: Bearer <key> or X-API-Key"), Code: latchkey.CodeMalformed}
	}
	var scopes [1]string
	req := VerifyRequest{Key: key, IP: ip, Cost: 1}
	if scope != "" {
		scopes[0] = scope
		req.Scopes = scopes[:]
	}
	now := s.now()
	v, err := s.check(ctx, &req, now, limits)
	if err != nil {
		return err
	}
	if !v.Valid() {
		d := denied(&v, ip, scope, now)
		if v.Code == latchkey.CodeMalformed {
			// Say what is wrong with it (a typo fails the checksum).
			_, perr := latchkey.PresentedKeyHash(key)
			d.Err = latchkey.Errorf(latchkey.EUnauthenticated, "API key is malformed: %s", latchkey.ErrorMessage(perr))
		}
		return d
	}
	k := &v.Entry.Key
	*a = latchkey.Actor{KeyID: k.ID, Tenant: k.Tenant, Scopes: k.Scopes, Resources: k.Resources, IP: ip, Admission: v.Admission}
	return nil
}

// Done ends what Authenticate holds for a request: the key's concurrency
// slot, if it has a limit on concurrency.
func (s *Service) Done(a *latchkey.Actor) {
	if a.Admission.LeaseID != "" && s.limiter != nil {
		s.limiter.Release(a.Admission.LeaseID, s.now())
		a.Admission.LeaseID = ""
	}
}

// Denied is the error of an authentication that one of verify's checks
// refused: its Err carries the API error code (unauthenticated, forbidden
// or rate_limited), Code the verify code, and Admission the limiter's
// figures for a limit's denial (Retry-After and the RateLimit headers).
type Denied struct {
	Err       *latchkey.Error
	Code      string
	Admission latchkey.Admission
}

func (d *Denied) Error() string { return d.Err.Error() }
func (d *Denied) Unwrap() error { return d.Err }

// denied is the error of a verdict that refused the key.
func denied(v *Verdict, ip netip.Addr, scope string, now time.Time) *Denied {
	d := &Denied{Code: v.Code, Admission: v.Admission}
	var id string
	if v.Entry != nil {
		id = v.Entry.Key.ID
	}
	switch v.Code {
	case latchkey.CodeMalformed:
		d.Err = latchkey.Errorf(latchkey.EUnauthenticated, "API key is malformed")
	case latchkey.CodeNotFound:
		d.Err = latchkey.Errorf(latchkey.EUnauthenticated, "API key is not known")
	case latchkey.CodeExpired, latchkey.CodeRevoked, latchkey.CodeSuspended:
		d.Err = latchkey.Errorf(latchkey.EUnauthenticated, "API key %s is %s", id, v.Entry.Key.StateAt(now))
	case latchkey.CodeIPNotAllowed:
		d.Err = latchkey.Errorf(latchkey.EForbidden, "API key %s may not be used from %s", id, ip)
	case latchkey.CodeOutsideTimeWindow:
		d.Err = latchkey.Errorf(latchkey.EForbidden, "API key %s may not be used at this time (outside its time windows)", id)
	case latchkey.CodeInsufficientScope:
		d.Err = latchkey.Errorf(latchkey.EForbidden, "API key %s lacks scope %s", id, scope)
	case latchkey.CodeRateLimited:
		d.Err = latchkey.Errorf(latchkey.ERateLimited, "API key %s is over its rate limit; retry later", id)
	case latchkey.CodeQuotaExceeded:
		d.Err = latchkey.Errorf(latchkey.ERateLimited, "API key %s has used up its quota", id)
	case latchkey.CodeConcurrencyExceeded:
		d.Err = latchkey.Errorf(latchkey.ERateLimited, "API key %s has as many requests in flight as its max_concurrent allows", id)
	default:
		d.Err = latchkey.Errorf(latchkey.EForbidden, "API key %s is refused: %s", id, v.Code)
	}
	return d
}

// Bootstrap creates the operator tenant and its root key on an empty store.
// With rootKey set it stores that key's hash (so automation can know the key
// in advance); otherwise it generates one and returns it so the caller can
// show it once. created is false when the operator tenant already exists.
func (s *Service) Bootstrap(ctx context.Context, rootKey string) (tok latchkey.Token, keyID string, created bool, err error) {
	if rootKey != "" {
		if tok, err = latchkey.ParseToken(rootKey); err != nil {
			return latchkey.Token{}, "", false, latchkey.Errorf(latchkey.EInvalid, "LATCHKEY_ROOT_KEY: %s", latchkey.ErrorMessage(err))
		}
	} else if tok, err = latchkey.GenerateToken(latchkey.DefaultPrefix, s.rand); err != nil {
		return latchkey.Token{}, "", false, err
	}
	now := s.now()
	k := s.newKey(tok, latchkey.OperatorTenant, now)
	k.Name = "root"
	k.Owner = "operator"
	k.Scopes = latchkey.OperatorScopes
	err = s.store.Update(ctx, func(tx Tx) error {
		if _, err := tx.Tenant(latchkey.OperatorTenant); err == nil {
			return errExists
		} else if latchkey.ErrorCode(err) != latchkey.ENotFound {
			return err
		}
		if err := tx.CreateTenant(&latchkey.Tenant{ID: latchkey.OperatorTenant, Name: "Operator", CreatedAt: now}); err != nil {
			return err
		}
		if err := tx.CreateKey(k); err != nil {
			return err
		}
		return s.record(tx, latchkey.NewAuditEvent(nil, latchkey.OperatorTenant, "tenant.created", k.ID, now, map[string]string{"tenant": latchkey.OperatorTenant, "root_key": k.ID}))
	})
	if err == errExists {
		return latchkey.Token{}, "", false, nil
	}
	if err != nil {
		return latchkey.Token{}, "", false, err
	}
	s.cache.invalidate(k.Hash)
	return tok, k.ID, true, nil
}

var errExists = latchkey.Errorf(latchkey.EConflict, "already exists")

func (s *Service) newKey(tok latchkey.Token, tenant string, now time.Time) *latchkey.Key {
	return &latchkey.Key{
		ID:        latchkey.NewID("key", now),
		Tenant:    tenant,
		Prefix:    tok.Prefix(),
		Start:     tok.Start(),
		Hash:      tok.Hash(),
		Scopes:    []string{},
		Resources: []string{},
		Meta:      map[string]any{},
		IPAllow:   []netip.Prefix{},
		// Lists read back non-nil from the store; the answer to the create
		// shows them as a read would ([], not null).
		Countries:   []string{},
		TimeWindows: []latchkey.TimeWindow{},
		RateLimits:  []latchkey.RateLimit{},
		State:       latchkey.StateActive,
		CreatedAt:   now,
		UpdatedAt:   now,
	}
}
