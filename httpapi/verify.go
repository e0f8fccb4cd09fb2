package httpapi

import (
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/wire"
)

// Limit is one limit's state in a verify answer.
type Limit = wire.Limit

func limitView(l latchkey.LimitState) *Limit {
	if l.Limit == 0 {
		return nil
	}
	v := &Limit{Limit: l.Limit, Remaining: l.Remaining}
	if !l.ResetAt.IsZero() {
		v.ResetAt = l.ResetAt.UTC()
	}
	return v
}

// VerifyResponse is the answer of POST /v1/keys/verify, shared with clients.
// appendVerify writes it by hand; TestVerifyAnswerMatchesEncodingJSON holds
// that to encoding/json's encoding of this type.
type VerifyResponse struct {
	Valid bool   `json:"valid"`
	Code  string `json:"code"`
	// The key's own fields, copied from the cache entry (appendIdentity).
	verifyIdentity
	Missing    string `json:"missing,omitempty"`
	RateLimit  *Limit `json:"ratelimit,omitempty"`
	Quota      *Limit `json:"quota,omitempty"`
	LeaseID    string `json:"lease_id,omitempty"`
	RetryAfter int64  `json:"retry_after,omitempty"`
	// LimitedBy is "owner" when the owner's shared limits, not the key's
	// own, denied the request; absent otherwise.
	LimitedBy string `json:"limited_by,omitempty"`
}

// verifyIdentity is the part of VerifyResponse that describes the key: it
// never changes for a cache entry.
type verifyIdentity struct {
	KeyID       string         `json:"key_id,omitempty"`
	Tenant      string         `json:"tenant,omitempty"`
	Owner       string         `json:"owner,omitempty"`
	Name        string         `json:"name,omitempty"`
	Environment string         `json:"environment,omitempty"`
	Scopes      []string       `json:"scopes,omitempty"`
	Resources   []string       `json:"resources,omitempty"`
	Meta        map[string]any `json:"meta,omitempty"`
	ExpiresAt   time.Time      `json:"expires_at,omitzero"`
}

// identityOf is the key's part of its verify answer.
func identityOf(k *latchkey.Key) verifyIdentity {
	return verifyIdentity{
		KeyID: k.ID, Tenant: k.Tenant, Owner: k.Owner, Name: k.Name, Environment: k.Environment,
		Scopes: k.Scopes, Resources: k.Resources, Meta: k.Meta, ExpiresAt: k.ExpiresAt,
	}
}

// Forward-auth answers by verify code.
var (
	// codeStatus is wire.VerifyStatus's status for every denial, as a
	// map the hot path reads without a call.
	codeStatus = func() map[string]int {
		m := make(map[string]int, len(wire.VerifyCodes)-1)
		for _, c := range wire.VerifyCodes[1:] {
			m[c], _ = wire.VerifyStatus(c)
		}
		return m
	}()
	// codeHeader holds ready-made header values so a denial allocates no
	// header slice.
	codeHeader = func() map[string][]string {
		m := make(map[string][]string, len(codeStatus))
		for c := range codeStatus {
			m[c] = []string{c}
		}
		return m
	}()
	wwwAuthenticate = []string{`Bearer realm="latchkey", error="invalid_token"`}
)

// forwardAuth answers GET /v1/auth (any method) for reverse proxies: 200
// with identity headers to allow; 401, 403 or 429 with X-Latchkey-Code to
// deny. With ?proxy=nginx, limit denials are 403 too, because nginx's
// auth_request turns any other status into a 500.
func (s *Server) forwardAuth(w http.ResponseWriter, r *http.Request, id string) {
	var code string // the answer, for the observer; "" while no key is checked
	if s.obs != nil {
		start := time.Now()
		defer func() {
			if code != "" {
				s.obs.Verified("auth", code, time.Since(start))
			}
		}()
	}
	q := r.URL.RawQuery
	scopeList := queryParam(q, "scope")
	if scopeList == "" {
		scopeList = r.Header.Get("X-Latchkey-Scope")
	}
	resource := queryParam(q, "resource")
	if resource == "" {
		resource = r.Header.Get("X-Latchkey-Resource")
	}
	var buf [8]string
	scopes := splitScopes(scopeList, buf[:0])
	h := w.Header()
	if err := checkVerifyTarget(scopes, resource); err != nil {
		s.authError(w, r, id, http.StatusBadRequest, latchkey.EInvalid, latchkey.ErrorMessage(err))
		return
	}
	cost := int64(1)
	if c := queryParam(q, "cost"); c != "" {
		n, err := strconv.ParseInt(c, 10, 64)
		if err != nil || n < 0 || n > 1_000_000_000 {
			s.authError(w, r, id, http.StatusBadRequest, latchkey.EInvalid, "cost must be a whole number from 0 to 1000000000")
			return
		}
		cost = n
	}
	named, msg := costHeaders(r.Header)
	if msg != "" {
		s.authError(w, r, id, http.StatusBadRequest, latchkey.EInvalid, msg)
		return
	}
	ip := s.clientIP(r)
	if retry, blocked := s.blocked(ip); blocked {
		code = CodeGuarded
		h["X-Latchkey-Code"] = codeHeader[latchkey.CodeRateLimited]
		h.Set("Retry-After", strconv.FormatInt(retrySeconds(retry), 10))
		status := http.StatusTooManyRequests
		if queryParam(q, "proxy") == "nginx" {
			status = http.StatusForbidden
		}
		s.authError(w, r, id, status, latchkey.ERateLimited, "too many failed key checks from this network; retry later")
		return
	}
	// What a condition reads of the original request: the service picks
	// it out of the proxy's headers only for a key that has one.
	orig := keys.RequestInfo{Method: r.Method, Path: envoyPath(r.URL.Path), Host: r.Host, Headers: r.Header, Proxied: true}
	v, err := s.svc.Verify(r.Context(), keys.VerifyRequest{
		Key: credential(r), Scopes: scopes, Resource: resource, IP: ip, Cost: cost, Named: named,
		Request: &orig,
	})
	if err != nil {
		code = CodeError
		ec := latchkey.ErrorCode(err)
		if ec == latchkey.EInternal {
			s.log.ErrorContext(r.Context(), "forward-auth failed", "request_id", id, "err", err)
		}
		s.authError(w, r, id, latchkey.HTTPStatus(ec), ec, latchkey.ErrorMessage(err))
		return
	}
	code = v.Code
	setLimitHeaders(h, v.Admission, s.now())
	if v.Valid() {
		e := v.Entry
		h["X-Latchkey-Key-Id"] = e.KeyIDHeader()
		h["X-Latchkey-Tenant"] = e.TenantHeader()
		h["X-Latchkey-Owner"] = e.OwnerHeader()
		h["X-Latchkey-Scopes"] = e.ScopesHeader()
		if v.Admission.LeaseID != "" {
			h.Set("X-Latchkey-Lease-Id", v.Admission.LeaseID)
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	status := codeStatus[v.Code]
	if status == http.StatusUnauthorized {
		s.failed(ip)
	}
	h["X-Latchkey-Code"] = codeHeader[v.Code]
	switch status {
	case http.StatusUnauthorized:
		h["Www-Authenticate"] = wwwAuthenticate
	case http.StatusTooManyRequests:
		setRetryAfter(h, v.Code, v.Admission.RetryAfter)
		if queryParam(q, "proxy") == "nginx" {
			status = http.StatusForbidden
		}
	}
	_, errCode := wire.VerifyStatus(v.Code)
	s.authError(w, r, id, status, errCode, "key denied: "+v.Code)
}

// envoyPath is the original request's path in a forward-auth request's
// own: Envoy's ext_authz appends it to its path_prefix (/v1/auth); the
// other proxies send it in a header (X-Original-URI, X-Forwarded-Uri).
func envoyPath(p string) string {
	const prefix = "/v1/auth"
	if len(p) > len(prefix) && p[:len(prefix)] == prefix && p[len(prefix)] == '/' {
		return p[len(prefix):]
	}
	return ""
}

// verifyRequestInfo is the "request" object of a verify body: the request
// the key is presented for, which the key's condition reads.
type verifyRequestInfo struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Host    string            `json:"host"`
	Headers map[string]string `json:"headers"`
}

// Bounds on a verify body's "request".
const (
	maxRequestHeaders = 64
	maxRequestField   = 8 << 10
)

// info checks the object and makes the key service's RequestInfo of it,
// the header names canonicalized.
func (b *verifyRequestInfo) info() (*keys.RequestInfo, error) {
	if len(b.Method) > 32 || len(b.Path) > maxRequestField || len(b.Host) > 255 {
		return nil, latchkey.Errorf(latchkey.EInvalid, "request: method is at most 32 bytes, path %d, host 255", maxRequestField)
	}
	if len(b.Headers) > maxRequestHeaders {
		return nil, latchkey.Errorf(latchkey.EInvalid, "request: at most %d headers", maxRequestHeaders)
	}
	ri := &keys.RequestInfo{Method: b.Method, Path: b.Path, Host: b.Host}
	if len(b.Headers) > 0 {
		ri.Headers = make(http.Header, len(b.Headers))
		for k, v := range b.Headers {
			if k == "" || len(k) > 256 || len(v) > maxRequestField {
				return nil, latchkey.Errorf(latchkey.EInvalid, "request: a header name is 1 to 256 bytes, a value at most %d", maxRequestField)
			}
			ri.Headers[http.CanonicalHeaderKey(k)] = []string{v}
		}
	}
	return ri, nil
}

// costHeaderPrefix starts the forward-auth headers that carry named costs:
// X-Latchkey-Cost-Tokens: 1200 spends 1200 of the on-request window
// "tokens" (docs/forward-auth.md).
const costHeaderPrefix = "X-Latchkey-Cost-"

// costHeaders returns the named costs of h's X-Latchkey-Cost-<Name>
// headers, each name lower-cased, or why they are invalid. A request
// without such a header allocates nothing here: the keys are only
// compared (net/http has canonicalized them). The costs are allocated,
// not kept on the caller's stack: the key service hands them to the
// limiter, an interface, so escape analysis would move a stack array to
// the heap on every request.
func costHeaders(h http.Header) ([]latchkey.NamedCost, string) {
	var dst []latchkey.NamedCost
	for k, vs := range h {
		if len(k) <= len(costHeaderPrefix) || k[:len(costHeaderPrefix)] != costHeaderPrefix {
			continue
		}
		if dst == nil {
			dst = make([]latchkey.NamedCost, 0, latchkey.MaxNamedCosts)
		}
		if len(dst) == latchkey.MaxNamedCosts {
			return nil, "at most " + strconv.Itoa(latchkey.MaxNamedCosts) + " X-Latchkey-Cost-* headers per request"
		}
		name := strings.ToLower(k[len(costHeaderPrefix):])
		if len(vs) != 1 {
			return nil, k + " must be sent once"
		}
		n, err := strconv.ParseInt(strings.TrimSpace(vs[0]), 10, 64)
		if err != nil || n < 0 || n > maxNamedCost {
			return nil, k + " must be a whole number from 0 to " + strconv.Itoa(maxNamedCost)
		}
		dst = append(dst, latchkey.NamedCost{Name: name, Cost: n})
	}
	if err := checkNamedCosts(dst, costHeaderPrefix+"*"); err != nil {
		return nil, latchkey.ErrorMessage(err)
	}
	return dst, ""
}

func (s *Server) authError(w http.ResponseWriter, r *http.Request, id string, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: msg, RequestID: id}})
}

func setLimitHeaders(h http.Header, a latchkey.Admission, now time.Time) {
	l := a.RateLimit
	if l.Limit == 0 {
		l = a.Quota
	}
	if l.Limit == 0 {
		return
	}
	limit := strconv.FormatInt(l.Limit, 10)
	remaining := strconv.FormatInt(max(l.Remaining, 0), 10)
	h.Set("RateLimit-Limit", limit)
	h.Set("RateLimit-Remaining", remaining)
	h.Set("X-RateLimit-Limit", limit)
	h.Set("X-RateLimit-Remaining", remaining)
	if l.ResetAt.IsZero() {
		return // a credit balance never refills: no reset to announce
	}
	reset := int64(math.Ceil(l.ResetAt.Sub(now).Seconds()))
	h.Set("RateLimit-Reset", strconv.FormatInt(max(reset, 0), 10))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(l.ResetAt.Unix(), 10))
}

// retrySeconds rounds up, with at least one second, so a client that waits
// as told is not refused again for being early.
// setRetryAfter tells a client refused by a limit when to try again, except
// for a spent credit balance: it never refills, so waiting does not help,
// and a Retry-After would only invite retries that cannot succeed.
func setRetryAfter(h http.Header, code string, d time.Duration) {
	if code == latchkey.CodeQuotaExceeded && d <= 0 {
		return
	}
	h.Set("Retry-After", strconv.FormatInt(retrySeconds(d), 10))
}

func retrySeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

// queryParam returns the first value of name in a raw query without
// building a map; it unescapes only when it must.
func queryParam(raw, name string) string {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(pair, "=")
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			if u, err := url.QueryUnescape(v); err == nil {
				return u
			}
			return ""
		}
		return v
	}
	return ""
}

// splitScopes splits a comma-separated list into dst, skipping blanks.
func splitScopes(list string, dst []string) []string {
	for list != "" {
		var sc string
		sc, list, _ = strings.Cut(list, ",")
		if sc = strings.TrimSpace(sc); sc != "" {
			dst = append(dst, sc)
		}
	}
	return dst
}
