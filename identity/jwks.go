package identity

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/latchkeyhq/latchkey"
)

// maxJWKSBytes bounds a JWKS document.
const maxJWKSBytes = 1 << 20

// urlPolicy is where JWKS may be fetched from: https anywhere, plain http
// only to the hosts the operator named (--idp-allow-http). A tenant admin
// registers the URL, so without this rule the server could be made to
// fetch any address it can reach.
type urlPolicy struct {
	httpHosts map[string]bool
}

func newURLPolicy(hosts []string) *urlPolicy {
	p := &urlPolicy{httpHosts: map[string]bool{}}
	for _, h := range hosts {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			p.httpHosts[h] = true
		}
	}
	return p
}

// check refuses a URL the server may not fetch; EInvalid.
func (p *urlPolicy) check(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return latchkey.Errorf(latchkey.EInvalid, "jwks_url is not an absolute URL")
	}
	if u.User != nil {
		return latchkey.Errorf(latchkey.EInvalid, "jwks_url must not hold credentials")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if p.httpHosts[strings.ToLower(u.Hostname())] {
			return nil
		}
		return latchkey.Errorf(latchkey.EInvalid, "jwks_url must be https (this server allows plain http to no host named %q; see --idp-allow-http)", u.Hostname())
	}
	return latchkey.Errorf(latchkey.EInvalid, "jwks_url must be https")
}

// jwksCache fetches issuers' key sets and keeps them: a set is trusted
// for ttl, and fetched again sooner when a token names a kid it lacks (the
// issuer rotated its keys), at most once per minRefresh per URL, so that
// tokens with made-up kids cannot make the server hammer the issuer.
type jwksCache struct {
	client     *http.Client
	policy     *urlPolicy
	now        func() time.Time
	ttl        time.Duration
	minRefresh time.Duration

	mu      sync.Mutex
	entries map[string]*jwksEntry
}

type jwksEntry struct {
	mu      sync.Mutex // held while fetching: one fetch per URL at a time
	set     *jose.JSONWebKeySet
	fetched time.Time // when set was fetched
	tried   time.Time // when a fetch last started
	err     error     // the last fetch's failure, while no set was ever fetched
}

func newJWKSCache(o Options, policy *urlPolicy, now func() time.Time) *jwksCache {
	tr := &http.Transport{
		Proxy:                 nil,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       time.Minute,
	}
	if o.Dial != nil {
		tr.DialContext = o.Dial
	} else {
		d := &net.Dialer{Timeout: 10 * time.Second}
		tr.DialContext = d.DialContext
	}
	if o.RootCAs != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12}
	}
	c := &http.Client{
		Transport: tr,
		Timeout:   15 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			// A redirect is held to the same rule as the URL itself.
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			return policy.check(req.URL.String())
		},
	}
	return &jwksCache{client: c, policy: policy, now: now, ttl: o.JWKSTTL, minRefresh: o.JWKSMinRefresh, entries: map[string]*jwksEntry{}}
}

func (c *jwksCache) entry(u string) *jwksEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[u]
	if e == nil {
		e = &jwksEntry{}
		c.entries[u] = e
	}
	return e
}

// keys returns the key set at u, fetched again when it is older than the
// cache's ttl, or when it lacks kid and the last fetch is at least
// minRefresh ago. Errors: EUnavailable when no set could ever be fetched.
func (c *jwksCache) keys(ctx context.Context, u, kid string) (*jose.JSONWebKeySet, error) {
	e := c.entry(u)
	e.mu.Lock()
	defer e.mu.Unlock()
	now := c.now()
	stale := e.set == nil || now.Sub(e.fetched) >= c.ttl
	missing := e.set != nil && kid != "" && len(e.set.Key(kid)) == 0
	if (stale || missing) && (e.tried.IsZero() || now.Sub(e.tried) >= c.minRefresh) {
		e.tried = now
		set, err := c.fetch(ctx, u)
		if err == nil {
			e.set, e.fetched, e.err = set, now, nil
		} else if e.set == nil {
			e.err = err
		}
		// A failed refresh keeps the set it had: an issuer's outage
		// does not stop tokens signed with keys already known.
	}
	if e.set == nil {
		// Failed within minRefresh: not fetched again until then, so a
		// stream of tokens cannot make the server hammer a failing URL.
		return nil, e.err
	}
	return e.set, nil
}

func (c *jwksCache) fetch(ctx context.Context, u string) (*jose.JSONWebKeySet, error) {
	if err := c.policy.check(u); err != nil {
		// Registered when the server allowed it, no longer allowed now.
		return nil, latchkey.Errorf(latchkey.EUnavailable, "the issuer's JWKS URL is not allowed by this server: %s", latchkey.ErrorMessage(err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, latchkey.Errorf(latchkey.EUnavailable, "the issuer's JWKS cannot be fetched")
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, latchkey.Errorf(latchkey.EUnavailable, "the issuer's JWKS cannot be fetched from %s", hostOf(u))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, latchkey.Errorf(latchkey.EUnavailable, "the issuer's JWKS at %s answered %d", hostOf(u), resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, latchkey.Errorf(latchkey.EUnavailable, "the issuer's JWKS at %s cannot be read", hostOf(u))
	}
	if len(b) > maxJWKSBytes {
		return nil, latchkey.Errorf(latchkey.EUnavailable, "the issuer's JWKS at %s is over 1 MiB", hostOf(u))
	}
	return parseJWKS(b)
}

func hostOf(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Host
	}
	return "its URL"
}
