package identity

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// Options configures a Service. Zero values take the documented defaults.
type Options struct {
	// Store keeps the providers, the used jtis and the audit log.
	Store latchkey.Store[Tx]
	// Keys mints the exchanged keys (keys.Service.CreateKey).
	Keys *keys.Service
	// Now is the clock (default time.Now); it should be the key service's.
	Now    func() time.Time
	Logger *slog.Logger
	// AllowHTTP are the hosts (names or addresses, as in the URL) whose
	// JWKS may be fetched over plain http (--idp-allow-http); every other
	// JWKS URL must be https.
	AllowHTTP []string
	// Dial, when set, opens the connections JWKS are fetched over (tests
	// keep them on loopback); RootCAs, when set, are the CAs trusted for
	// https (default the system's).
	Dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	RootCAs *x509.CertPool
	// JWKSTTL is how long a fetched key set is trusted (default 1h), and
	// JWKSMinRefresh the least time between two fetches of one URL when
	// tokens name a kid it lacks (default 30s).
	JWKSTTL        time.Duration
	JWKSMinRefresh time.Duration
	// Leeway is the clock skew allowed on exp, nbf and iat (default 30s).
	Leeway time.Duration
	// MaxTTL caps the life of a minted key (default and at most MaxTTL).
	MaxTTL time.Duration
	// MaxProviders bounds a tenant's providers (default 100).
	MaxProviders int
}

// Service keeps the tenants' identity providers and exchanges identity
// tokens for keys.
type Service struct {
	store  latchkey.Store[Tx]
	keys   *keys.Service
	now    func() time.Time
	log    *slog.Logger
	urls   *urlPolicy
	jwks   *jwksCache
	leeway time.Duration
	maxTTL time.Duration
	maxN   int

	pruneMu   sync.Mutex
	lastPrune time.Time
}

// New returns a Service.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.JWKSTTL <= 0 {
		o.JWKSTTL = time.Hour
	}
	if o.JWKSMinRefresh <= 0 {
		o.JWKSMinRefresh = 30 * time.Second
	}
	if o.Leeway <= 0 {
		o.Leeway = 30 * time.Second
	}
	if o.MaxTTL <= 0 || o.MaxTTL > MaxTTL {
		o.MaxTTL = MaxTTL
	}
	if o.MaxProviders <= 0 {
		o.MaxProviders = 100
	}
	urls := newURLPolicy(o.AllowHTTP)
	return &Service{
		store: o.Store, keys: o.Keys, now: o.Now, log: o.Logger, urls: urls,
		jwks:   newJWKSCache(o, urls, o.Now),
		leeway: o.Leeway, maxTTL: o.MaxTTL, maxN: o.MaxProviders,
	}
}

// CreateProvider registers p in the actor's tenant. The template may not
// grant admin scopes the actor lacks, nor resources outside the actor's.
// Audited as identity_provider.created. Errors: EInvalid, EForbidden,
// EConflict (the name is taken).
func (s *Service) CreateProvider(ctx context.Context, actor *latchkey.Actor, p Provider) (*Provider, error) {
	p.Tenant = actor.Tenant
	if err := p.normalize(s.urls); err != nil {
		return nil, err
	}
	if bad, ok := latchkey.GrantableBy(actor.Scopes, p.KeyTemplate.Scopes); !ok {
		return nil, latchkey.Errorf(latchkey.EForbidden, "key_template scope %q reaches admin powers that your key does not hold", bad)
	}
	if len(actor.Resources) > 0 {
		if len(p.KeyTemplate.Resources) == 0 {
			return nil, latchkey.Errorf(latchkey.EForbidden, "key_template must name resources within your key's")
		}
		if bad, ok := latchkey.ResourcesWithin(actor.Resources, p.KeyTemplate.Resources); !ok {
			return nil, latchkey.Errorf(latchkey.EForbidden, "key_template resource %q is outside your key's", bad)
		}
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	p.CreatedAt = now
	body, err := json.Marshal(&p)
	if err != nil {
		return nil, err
	}
	err = s.store.Update(ctx, func(tx Tx) error {
		n := 0
		if err := tx.IdentityProviders(actor.Tenant, func(string, []byte, time.Time) error { n++; return nil }); err != nil {
			return err
		}
		if n >= s.maxN {
			return latchkey.Errorf(latchkey.EInvalid, "a tenant may have at most %d identity providers", s.maxN)
		}
		if err := tx.CreateIdentityProvider(actor.Tenant, p.Name, body, now); err != nil {
			if latchkey.ErrorCode(err) == latchkey.EConflict {
				return latchkey.Errorf(latchkey.EConflict, "identity provider %s exists", p.Name)
			}
			return err
		}
		return tx.AppendAudit(latchkey.NewAuditEvent(actor, actor.Tenant, "identity_provider.created", "", now,
			map[string]string{"provider": p.Name, "issuer": p.Issuer}))
	})
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// GetProvider returns a provider of the actor's tenant. Errors: ENotFound.
func (s *Service) GetProvider(ctx context.Context, actor *latchkey.Actor, name string) (*Provider, error) {
	var p *Provider
	err := s.store.View(ctx, func(tx Tx) (err error) {
		p, err = readProvider(tx, actor.Tenant, name)
		return err
	})
	return p, err
}

// ListProviders returns the actor's tenant's providers by name; never nil.
func (s *Service) ListProviders(ctx context.Context, actor *latchkey.Actor) ([]*Provider, error) {
	out := []*Provider{}
	err := s.store.View(ctx, func(tx Tx) error {
		out = out[:0]
		return tx.IdentityProviders(actor.Tenant, func(name string, body []byte, at time.Time) error {
			p, err := decodeProvider(actor.Tenant, name, body, at)
			if err != nil {
				return err
			}
			out = append(out, p)
			return nil
		})
	})
	return out, err
}

// DeleteProvider removes a provider of the actor's tenant; keys it
// minted live out their short lives. Audited as
// identity_provider.deleted. Errors: ENotFound.
func (s *Service) DeleteProvider(ctx context.Context, actor *latchkey.Actor, name string) error {
	if !latchkey.ValidPolicyName(name) {
		return providerNotFound(name)
	}
	now := s.now()
	return s.store.Update(ctx, func(tx Tx) error {
		if err := tx.DeleteIdentityProvider(actor.Tenant, name); err != nil {
			if latchkey.ErrorCode(err) == latchkey.ENotFound {
				return providerNotFound(name)
			}
			return err
		}
		return tx.AppendAudit(latchkey.NewAuditEvent(actor, actor.Tenant, "identity_provider.deleted", "", now, map[string]string{"provider": name}))
	})
}

func providerNotFound(name string) error {
	return latchkey.Errorf(latchkey.ENotFound, "no identity provider %.70q", name)
}

func readProvider(tx Tx, tenant, name string) (*Provider, error) {
	if !latchkey.ValidPolicyName(name) {
		return nil, providerNotFound(name)
	}
	body, at, err := tx.IdentityProvider(tenant, name)
	if latchkey.ErrorCode(err) == latchkey.ENotFound {
		return nil, providerNotFound(name)
	}
	if err != nil {
		return nil, err
	}
	return decodeProvider(tenant, name, body, at)
}

func decodeProvider(tenant, name string, body []byte, at time.Time) (*Provider, error) {
	var p Provider
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, latchkey.Errorf(latchkey.EInternal, "identity provider %s: stored body unreadable: %v", name, err)
	}
	p.Tenant, p.Name, p.CreatedAt = tenant, name, at.UTC()
	return &p, nil
}

// Exchanged is what an exchange answers: the minted key, its plaintext
// (shown once) and the token's claims.
type Exchanged struct {
	Key    *latchkey.Key
	Token  latchkey.Token
	Claims *Claims
}

// Exchange verifies an identity token against the tenant's provider,
// records its jti (a token is accepted once), and mints a key from the
// provider's template: owner the token's sub, meta naming the issuer,
// subject and jti, expiring after the template's TTL (capped). The key is
// minted by an actor holding exactly the template's scopes and resources,
// so it cannot exceed them. Audited as identity.exchanged besides the
// key service's key.created. ip is the client's, for the audit.
//
// Errors: *Refused (EUnauthenticated) naming the failed check, including
// an unknown tenant or provider; EUnavailable when the issuer's keys
// cannot be fetched; what CreateKey returns.
func (s *Service) Exchange(ctx context.Context, tenant, provider, token string, ip netip.Addr) (*Exchanged, error) {
	if !latchkey.ValidTenantID(tenant) || !latchkey.ValidPolicyName(provider) {
		return nil, refuse(ReasonUnknownProvider, "tenant %.70q has no identity provider %.70q", tenant, provider)
	}
	var p *Provider
	err := s.store.View(ctx, func(tx Tx) (err error) {
		p, err = readProvider(tx, tenant, provider)
		return err
	})
	if latchkey.ErrorCode(err) == latchkey.ENotFound {
		return nil, refuse(ReasonUnknownProvider, "tenant %.70q has no identity provider %.70q", tenant, provider)
	}
	if err != nil {
		return nil, err
	}
	c, err := s.verify(ctx, p, token)
	if err != nil {
		return nil, err
	}
	s.maybePrune(ctx)
	// The jti is spent before the key is minted: a replay racing this
	// exchange finds it taken. If minting then fails, the token stays
	// spent (the workload asks its platform for a new one).
	err = s.store.Update(ctx, func(tx Tx) error {
		return tx.UseIdentityJTI(tenant, c.Issuer, c.JTI, c.ExpiresAt.Add(s.leeway))
	})
	if latchkey.ErrorCode(err) == latchkey.EConflict {
		return nil, refuse(ReasonReplayed, "jti %.64q of this issuer was already exchanged", c.JTI)
	}
	if err != nil {
		return nil, err
	}
	ttl := min(time.Duration(p.KeyTemplate.TTL), s.maxTTL)
	if ttl <= 0 {
		ttl = min(DefaultTTL, s.maxTTL)
	}
	name, owner := p.KeyTemplate.Name, c.Subject
	if len(owner) > latchkey.MaxNameLen {
		owner = owner[:latchkey.MaxNameLen]
	}
	scopes, resources := append([]string{}, p.KeyTemplate.Scopes...), append([]string{}, p.KeyTemplate.Resources...)
	meta := map[string]any{"identity_provider": p.Name, "identity_issuer": c.Issuer, "identity_subject": c.Subject, "identity_jti": c.JTI}
	actor := &latchkey.Actor{Tenant: tenant, Scopes: p.KeyTemplate.Scopes, Resources: p.KeyTemplate.Resources, IP: ip, UserAgent: "identity:" + p.Name}
	k, tok, err := s.keys.CreateKey(ctx, actor, keys.CreateParams{Settings: keys.Settings{
		Name: &name, Owner: &owner, Scopes: &scopes, Resources: &resources, Meta: &meta, ExpiresIn: &ttl,
	}})
	if err != nil {
		return nil, err
	}
	now := s.now()
	err = s.store.Update(ctx, func(tx Tx) error {
		return tx.AppendAudit(latchkey.NewAuditEvent(actor, tenant, "identity.exchanged", k.ID, now, map[string]string{
			"provider": p.Name, "issuer": c.Issuer, "subject": clip(c.Subject, 200), "jti": clip(c.JTI, 256),
		}))
	})
	if err != nil {
		// The plaintext is never handed out, so the key is unusable.
		return nil, err
	}
	return &Exchanged{Key: k, Token: tok, Claims: c}, nil
}

// PruneJTIs forgets the spent jtis whose tokens have expired; Exchange
// calls it at most once a minute by itself.
func (s *Service) PruneJTIs(ctx context.Context) (int, error) {
	var n int
	err := s.store.Update(ctx, func(tx Tx) (err error) {
		n, err = tx.PruneIdentityJTIs(s.now())
		return err
	})
	return n, err
}

func (s *Service) maybePrune(ctx context.Context) {
	s.pruneMu.Lock()
	now := s.now()
	due := now.Sub(s.lastPrune) >= time.Minute
	if due {
		s.lastPrune = now
	}
	s.pruneMu.Unlock()
	if due {
		if _, err := s.PruneJTIs(ctx); err != nil {
			s.log.WarnContext(ctx, "pruning spent identity jtis failed", "err", err)
		}
	}
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
