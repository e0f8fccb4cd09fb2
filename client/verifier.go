package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/latchkeyhq/latchkey/wire"
)

// Verify codes, as POST /v1/keys/verify answers them.
const (
	Valid                   = wire.CodeValid
	CodeMalformed           = wire.CodeMalformed
	CodeKeyNotFound         = wire.CodeNotFound
	CodeExpired             = wire.CodeExpired
	CodeRevoked             = wire.CodeRevoked
	CodeSuspended           = wire.CodeSuspended
	CodeIPNotAllowed        = wire.CodeIPNotAllowed
	CodeOutsideTimeWindow   = wire.CodeOutsideTimeWindow
	CodeInsufficientScope   = wire.CodeInsufficientScope
	CodeResourceNotAllowed  = wire.CodeResourceNotAllowed
	CodeConditionFailed     = wire.CodeConditionFailed
	CodeKeyRateLimited      = wire.CodeRateLimited
	CodeQuotaExceeded       = wire.CodeQuotaExceeded
	CodeConcurrencyExceeded = wire.CodeConcurrencyExceeded
)

// Defaults of VerifierConfig.
const (
	DefaultVerifyTimeout = 5 * time.Second
	DefaultVerifyCache   = 5 * time.Second
	DefaultCacheEntries  = 10000
)

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// URL is the Latchkey server's base URL, e.g. http://127.0.0.1:8080.
	URL string
	// Timeout bounds one verification or lease release (default 5 s).
	Timeout time.Duration
	// CacheTTL is how long a VALID answer that carries no lease and no
	// limits is reused for the same key, scopes, resource and caller
	// address (default 5 s; negative: no cache). It is also how long a
	// revocation or suspension may take to reach this service. An answer is
	// never reused past the key's expires_at.
	CacheTTL time.Duration
	// CacheEntries bounds the cache (default 10000).
	CacheEntries int
	// Headers are added to every request to the server.
	Headers map[string]string
	// HTTPClient sends the requests (default: a client of its own).
	HTTPClient *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Limit is one limit's state in an answer.
type Limit = wire.Limit

// Verification is the server's answer about a key.
type Verification struct {
	Valid       bool           `json:"valid"`
	Code        string         `json:"code"`
	KeyID       string         `json:"key_id"`
	Tenant      string         `json:"tenant"`
	Owner       string         `json:"owner"`
	Name        string         `json:"name"`
	Environment string         `json:"environment"`
	Scopes      []string       `json:"scopes"`
	Resources   []string       `json:"resources"`
	Meta        map[string]any `json:"meta"`
	ExpiresAt   time.Time      `json:"expires_at"`
	// Missing names the first required scope, or the resource, the key
	// lacks (INSUFFICIENT_SCOPE, RESOURCE_NOT_ALLOWED).
	Missing   string `json:"missing"`
	RateLimit *Limit `json:"ratelimit"`
	Quota     *Limit `json:"quota"`
	// LeaseID is the concurrency lease the verification took; release it
	// when the request is done (Verifier.Release).
	LeaseID string `json:"lease_id"`
	// RetryAfter is how long to wait before a limited key may try again.
	RetryAfter time.Duration `json:"-"`
	// RequestID is the server's id for the verification.
	RequestID string `json:"-"`
	// Cached says the answer was reused from the local cache.
	Cached bool `json:"-"`
}

// Identity is the caller a Middleware let through: the verification's
// answer. Handlers must treat it as read-only; cached answers share it.
type Identity = Verification

// VerifyRequest is what to check.
type VerifyRequest struct {
	Key      string
	Scopes   []string // every one required
	Resource string   // optional
	Cost     int64    // quota units; 0 means the server's default (1)
	// IP is the address of the caller being served, checked against the
	// key's ip_allow. Empty: the address the server sees (this service's).
	IP string
}

// Verifier checks keys against a Latchkey server. It is safe for concurrent
// use.
type Verifier struct {
	cfg  VerifierConfig
	base string
	http *http.Client
	now  func() time.Time

	mu    sync.RWMutex
	cache map[[32]byte]cached
}

type cached struct {
	v     *Verification
	until time.Time
}

// NewVerifier checks cfg and returns a Verifier. Errors: CodeInvalid.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	u, err := url.Parse(strings.TrimSpace(cfg.URL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, errorf(CodeInvalid, "verifier URL must be the server's http or https base URL, such as http://127.0.0.1:8080")
	}
	v := &Verifier{cfg: cfg, base: strings.TrimRight(u.String(), "/"), http: cfg.HTTPClient, now: cfg.Now, cache: map[[32]byte]cached{}}
	if v.cfg.Timeout == 0 {
		v.cfg.Timeout = DefaultVerifyTimeout
	}
	if v.cfg.Timeout < 0 {
		return nil, errorf(CodeInvalid, "verifier timeout must be positive")
	}
	if v.cfg.CacheTTL == 0 {
		v.cfg.CacheTTL = DefaultVerifyCache
	}
	if v.cfg.CacheEntries <= 0 {
		v.cfg.CacheEntries = DefaultCacheEntries
	}
	if v.http == nil {
		v.http = &http.Client{}
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// verifyBody is the request of POST /v1/keys/verify.
type verifyBody struct {
	Key      string   `json:"key"`
	Scopes   []string `json:"scopes,omitempty"`
	Resource string   `json:"resource,omitempty"`
	Cost     *int64   `json:"cost,omitempty"`
	IP       string   `json:"ip,omitempty"`
}

// Verify asks the server about a key (or reuses a cached VALID answer; see
// VerifierConfig.CacheTTL). A denied key is not an error: the answer's Code
// says why. Errors: CodeInvalid (the request is malformed, e.g. a scope that
// is not a scope: a configuration mistake), CodeRateLimited (the server's
// brute-force guard blocks the caller's network; RetryAfter set),
// CodeUnavailable (no answer, or 5xx), or ctx's error.
func (v *Verifier) Verify(ctx context.Context, r VerifyRequest) (*Verification, error) {
	var ck [32]byte
	useCache := v.cfg.CacheTTL > 0
	if useCache {
		ck = cacheKey(r)
		now := v.now()
		v.mu.RLock()
		c, ok := v.cache[ck]
		v.mu.RUnlock()
		if ok && now.Before(c.until) {
			return c.v, nil
		}
	}
	body := verifyBody{Key: r.Key, Scopes: r.Scopes, Resource: r.Resource, IP: r.IP}
	if r.Cost != 0 {
		body.Cost = &r.Cost
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, errorf(CodeInvalid, "cannot encode the verify request")
	}
	raw, res, err := v.post(ctx, "/v1/keys/verify", "", b)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		e := responseError(res, raw)
		if e.Code != CodeInvalid && e.Code != CodeRateLimited && e.Code != CodeTooLarge {
			e.Code = CodeUnavailable
		}
		return nil, e
	}
	ans, err := parseVerifyAnswer(raw)
	if err != nil {
		return nil, errorf(CodeUnavailable, "the server's verify answer is not the JSON this client expects (is "+v.base+" a Latchkey server?)")
	}
	ans.RequestID = res.Header.Get("X-Request-Id")
	if useCache && ans.Valid && ans.LeaseID == "" && ans.RateLimit == nil && ans.Quota == nil {
		now := v.now()
		until := now.Add(v.cfg.CacheTTL)
		if !ans.ExpiresAt.IsZero() && ans.ExpiresAt.Before(until) {
			until = ans.ExpiresAt
		}
		c := *ans
		c.Cached = true
		v.put(ck, cached{v: &c, until: until}, now)
	}
	return ans, nil
}

// parseVerifyAnswer reads the verify answer. Errors never quote the body.
func parseVerifyAnswer(raw []byte) (*Verification, error) {
	var a struct {
		Verification
		RetryAfter int64 `json:"retry_after"`
	}
	if err := json.Unmarshal(raw, &a); err != nil || a.Code == "" {
		return nil, errorf(CodeInvalid, "not a verify answer")
	}
	if a.Valid != (a.Code == Valid) {
		return nil, errorf(CodeInvalid, "valid and code disagree")
	}
	if a.RetryAfter > 0 && a.RetryAfter < 1<<31 {
		a.Verification.RetryAfter = time.Duration(a.RetryAfter) * time.Second
	}
	return &a.Verification, nil
}

// cacheKey identifies a question: SHA-256 over the key, scopes, resource
// and address, so the cache holds no plaintext key.
func cacheKey(r VerifyRequest) [32]byte {
	h := sha256.New()
	io.WriteString(h, r.Key)
	h.Write([]byte{0})
	for _, s := range r.Scopes {
		io.WriteString(h, s)
		h.Write([]byte{1})
	}
	h.Write([]byte{0})
	io.WriteString(h, r.Resource)
	h.Write([]byte{0})
	io.WriteString(h, r.IP)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// put stores an answer; when the cache is full it first drops expired
// answers, then arbitrary ones, down to three quarters.
func (v *Verifier) put(k [32]byte, c cached, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= v.cfg.CacheEntries {
		for ck, e := range v.cache {
			if !now.Before(e.until) {
				delete(v.cache, ck)
			}
		}
		for ck := range v.cache {
			if len(v.cache) < v.cfg.CacheEntries*3/4 {
				break
			}
			delete(v.cache, ck)
		}
	}
	v.cache[k] = c
}

// Release ends a concurrency lease, presenting key (the key that holds it,
// or an admin key of its tenant). A lease that is no longer live is not an
// error. Errors: CodeUnauthenticated, CodeForbidden, CodeUnavailable, or
// ctx's error.
func (v *Verifier) Release(ctx context.Context, key, leaseID string) error {
	if leaseID == "" {
		return nil
	}
	raw, res, err := v.post(ctx, "/v1/leases/"+url.PathEscape(leaseID)+"/release", key, nil)
	if err != nil {
		return err
	}
	switch {
	case res.StatusCode == http.StatusNoContent, res.StatusCode == http.StatusOK, res.StatusCode == http.StatusNotFound:
		return nil // 404: the lease already ended (its TTL ran out)
	}
	e := responseError(res, raw)
	if res.StatusCode >= 500 {
		e.Code = CodeUnavailable
	}
	return e
}

// post sends one POST with the verifier's timeout. The key, if any, goes in
// Authorization and never into an error.
func (v *Verifier) post(parent context.Context, path, key string, body []byte) ([]byte, *http.Response, error) {
	ctx, cancel := context.WithTimeout(parent, v.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.base+path, rd)
	if err != nil {
		return nil, nil, errorf(CodeInvalid, "cannot build the request")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	for k, val := range v.cfg.Headers {
		req.Header.Set(k, val)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := v.http.Do(req)
	if err != nil {
		if perr := parent.Err(); perr != nil {
			return nil, nil, perr // the caller gave up
		}
		return nil, nil, errorf(CodeUnavailable, "cannot reach "+v.base+": "+transportProblem(err, v.cfg.Timeout))
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	if err != nil {
		return nil, nil, errorf(CodeUnavailable, v.base+": the answer broke off: "+transportProblem(err, v.cfg.Timeout))
	}
	return raw, res, nil
}
