package client

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey/wire"
)

// MiddlewareOptions configures MiddlewareWith.
type MiddlewareOptions struct {
	// Scopes are required, every one.
	Scopes []string
	// Resource names the resource a request asks for (for example from its
	// path), checked against the key's resources. Default: none.
	Resource func(*http.Request) string
	// Cost is the quota units a request consumes (default 1).
	Cost func(*http.Request) int64
	// ClientIP finds the caller's address, which the server checks against
	// the key's ip_allow. Default: the host of r.RemoteAddr. Behind a
	// reverse proxy, read its forwarding header here, but only if the proxy
	// overwrites what the client sent.
	ClientIP func(*http.Request) string
	// Logger gets what callers are not told (the server unreachable, a
	// lease not released). Default: slog.Default().
	Logger *slog.Logger
}

type middleware struct {
	v   *Verifier
	o   MiddlewareOptions
	log *slog.Logger
}

type identityKey struct{}

// IdentityFrom returns the caller that the Middleware let through; ok is
// false outside a Middleware.
func IdentityFrom(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(*Identity)
	return id, ok && id != nil
}

// WithIdentity returns ctx carrying id, for tests of handlers that read
// IdentityFrom.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// Middleware returns a net/http middleware that lets a request through only
// with a key (Authorization: Bearer or X-API-Key) that holds every one of
// scopes. The handler finds the caller with IdentityFrom(r.Context()). If
// the verification took a concurrency lease, it is released when the
// handler returns (even if it panics).
//
// Refusals use the API's error body, {"error": {"code", "message",
// "request_id"}}, and X-Latchkey-Code with the verify code:
// 401 unauthenticated (no key, malformed, unknown, expired, revoked,
// suspended; with WWW-Authenticate), 403 forbidden (scope, resource, IP,
// time window), 429 rate_limited (rate, quota, concurrency, or the server's
// brute-force guard; with Retry-After when known), 503 unavailable when the
// server cannot be asked (the request is refused, never let through), 500
// internal when the server calls the check itself malformed (a scope in the
// service's configuration that is not a scope).
func (v *Verifier) Middleware(scopes ...string) func(http.Handler) http.Handler {
	return v.MiddlewareWith(MiddlewareOptions{Scopes: scopes})
}

// MiddlewareWith is Middleware with a resource, cost, client address or
// logger of the service's choosing.
func (v *Verifier) MiddlewareWith(o MiddlewareOptions) func(http.Handler) http.Handler {
	o.Scopes = append([]string(nil), o.Scopes...)
	m := &middleware{v: v, o: o, log: o.Logger}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.o.ClientIP == nil {
		m.o.ClientIP = remoteHost
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.serve(w, r, next)
		})
	}
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	return host
}

func (m *middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	key := credential(r)
	reqID := r.Header.Get("X-Request-Id")
	if key == "" {
		refuse(w, http.StatusUnauthorized, CodeUnauthenticated, CodeMalformed, "no API key: send Authorization: Bearer <key> or X-API-Key", reqID, 0)
		return
	}
	req := VerifyRequest{Key: key, Scopes: m.o.Scopes, IP: m.o.ClientIP(r)}
	if m.o.Resource != nil {
		req.Resource = m.o.Resource(r)
	}
	if m.o.Cost != nil {
		req.Cost = m.o.Cost(r)
	}
	ans, err := m.v.Verify(r.Context(), req)
	if err != nil {
		if r.Context().Err() != nil {
			return // the caller went away
		}
		e, _ := err.(*Error)
		if e != nil && e.RequestID != "" && reqID == "" {
			reqID = e.RequestID
		}
		switch ErrorCode(err) {
		case CodeRateLimited:
			var retry time.Duration
			if e != nil {
				retry = e.RetryAfter
			}
			refuse(w, http.StatusTooManyRequests, CodeRateLimited, CodeKeyRateLimited, "too many failed key checks from this network; retry later", reqID, retry)
		case CodeInvalid, CodeTooLarge:
			m.log.ErrorContext(r.Context(), "latchkey: the key check is misconfigured", "err", err)
			refuse(w, http.StatusInternalServerError, CodeInternal, "", "the service's key check is misconfigured; see its log", reqID, 0)
		default:
			m.log.WarnContext(r.Context(), "latchkey: cannot verify the caller's key", "err", err)
			refuse(w, http.StatusServiceUnavailable, CodeUnavailable, "", "the key cannot be checked right now; retry later", reqID, 0)
		}
		return
	}
	if reqID == "" {
		reqID = ans.RequestID
	}
	h := w.Header()
	setLimitHeaders(h, ans, m.v.now())
	if !ans.Valid {
		status, code := verdictStatus(ans.Code)
		msg := "key denied: " + ans.Code
		if ans.Missing != "" {
			msg += " (lacks " + ans.Missing + ")"
		}
		refuse(w, status, code, ans.Code, msg, reqID, ans.RetryAfter)
		return
	}
	if ans.LeaseID != "" {
		defer m.release(r, key, ans.LeaseID)
	}
	next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), ans)))
}

// release frees the lease after the handler, on a context of its own: the
// request's may be cancelled already, and a lease left behind would hold a
// concurrency slot until its TTL.
func (m *middleware) release(r *http.Request, key, lease string) {
	ctx := context.WithoutCancel(r.Context())
	if err := m.v.Release(ctx, key, lease); err != nil {
		m.log.WarnContext(ctx, "latchkey: cannot release a concurrency lease; it ends with its TTL", "lease_id", lease, "err", err)
	}
}

// credential reads the key as the server does: Authorization: Bearer
// first, then X-API-Key.
func credential(r *http.Request) string {
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return strings.TrimSpace(r.Header.Get("X-API-Key"))
}

// verdictStatus maps a refusal's verify code to the status and error code
// the middleware answers with: the server's forward-auth table. A refusal
// that says VALID (a server gone wrong) is unauthenticated.
func verdictStatus(code string) (int, string) {
	if status, errCode := wire.VerifyStatus(code); errCode != "" {
		return status, errCode
	}
	return http.StatusUnauthorized, CodeUnauthenticated
}

// refuse answers with the API's error body.
func refuse(w http.ResponseWriter, status int, code, verdict, msg, reqID string, retry time.Duration) {
	h := w.Header()
	if verdict != "" {
		h.Set("X-Latchkey-Code", verdict)
	}
	switch status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer realm="latchkey"`)
	case http.StatusTooManyRequests:
		if retry > 0 {
			h.Set("Retry-After", strconv.FormatInt(int64((retry+time.Second-1)/time.Second), 10))
		}
	}
	if reqID != "" {
		h.Set("X-Request-Id", reqID)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(errorBody{Error: errorDetail{Code: code, Message: msg, RequestID: reqID}})
}

// setLimitHeaders passes the key's limit state on to the caller, as
// forward-auth does: the rate limit, else the quota.
func setLimitHeaders(h http.Header, v *Verification, now time.Time) {
	l := v.RateLimit
	if l == nil {
		l = v.Quota
	}
	if l == nil {
		return
	}
	h.Set("RateLimit-Limit", strconv.FormatInt(l.Limit, 10))
	h.Set("RateLimit-Remaining", strconv.FormatInt(max(l.Remaining, 0), 10))
	if l.ResetAt.IsZero() {
		return // a credit balance never refills
	}
	reset := int64(0)
	if d := l.ResetAt.Sub(now); d > 0 {
		reset = int64((d + time.Second - 1) / time.Second)
	}
	h.Set("RateLimit-Reset", strconv.FormatInt(reset, 10))
}
