// Package httpapi serves Latchkey's HTTP surface: the JSON admin API, key
// verification, forward-auth for reverse proxies, and health checks. Every
// route is listed in routes.go; errors map to statuses through the one table
// in the latchkey package.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/identity"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/secrets"
	"github.com/latchkeyhq/latchkey/webhook"
)

// Config configures a Server.
type Config struct {
	Keys *keys.Service
	// Secrets serves /v1/secrets and the seed routes (GET /keys/{provider},
	// GET /llm-keys); without it they answer not_found.
	Secrets *secrets.Service
	// Audit serves /v1/audit, /v1/security-events, /v1/reports and
	// /v1/keys/{id}/usage, and tells /readyz of a tampered audit log;
	// without it those routes answer not_found.
	Audit *audit.Service
	// Webhooks serves /v1/webhooks; without it those routes answer
	// not_found.
	Webhooks *webhook.Service
	// Identity serves /v1/identity-providers and POST /v1/token (workload
	// identity); without it they answer not_found.
	Identity *identity.Service
	Logger   *slog.Logger
	// TrustedProxies are the peers whose X-Forwarded-For and X-Real-IP
	// headers are believed. Requests from anyone else are attributed to the
	// direct peer, whatever their headers say.
	TrustedProxies []netip.Prefix
	// MaxBody bounds request bodies (default 1 MiB).
	MaxBody int64
	// Now is the clock used to show key states (default time.Now); it should
	// be the key service's clock.
	Now func() time.Time
	// Guard, when set, answers 429 to client networks that keep presenting
	// bad keys, before any store lookup (package guard's *Guard; a nil
	// pointer is no guard).
	Guard Guard
	// OnBlock, when set, is told each time the guard starts holding a
	// client network back (the security monitor records it).
	OnBlock func(network netip.Prefix, at time.Time)
	// RequestTimeout bounds reading a request body and writing an answer
	// (default 30s), against clients that trickle bytes to hold a
	// connection.
	RequestTimeout time.Duration
	// Observer, when set, is told about every verification and every
	// request outside forward-auth, for metrics (package metrics).
	Observer Observer
	// Metrics, when set, serves GET /metrics.
	Metrics http.Handler
	// Keyring, when set, is managed through /v1/keyring (operator only):
	// package keyring's *Keyring; a nil pointer is none.
	Keyring Keyring
	// SeedKeepAlive keeps connections of the seed routes (GET
	// /keys/{provider}, GET /llm-keys) open; by default they answer with
	// Connection: close (see Server.seed).
	SeedKeepAlive bool
	// Leaks configures the routes that take reports of leaked keys (POST
	// /v1/leaks/github, POST /v1/leaks).
	Leaks LeakConfig
}

// Observer records what a Server answers, for metrics. Its methods run on
// the request path and must be safe for concurrent use and cheap;
// Verified, which forward-auth calls, must not allocate.
type Observer interface {
	// Verified records a verification answered by POST /v1/keys/verify
	// (route "verify") or forward-auth (route "auth"): its verify code,
	// CodeGuarded or CodeError, and the handler's time. Requests refused
	// before a key is looked at (a malformed body, a bad scope) are not
	// verifications.
	Verified(route, code string, took time.Duration)
	// Served records a request answered through the mux (every route but
	// forward-auth), or by the fast path of GET /keys/{provider} under that
	// pattern: its method, the ServeMux pattern that matched ("" if none
	// did, as for a redirect) and its status.
	Served(method, pattern string, status int)
}

// Codes an Observer receives besides the verify codes.
const (
	// CodeGuarded: the brute-force guard held the client's network back.
	CodeGuarded = "GUARDED"
	// CodeError: the key could not be checked (the store failed).
	CodeError = "ERROR"
)

// Keyring is the keyring as the admin routes use it: package keyring's
// *Keyring, which cmd/latchkey hands in.
type Keyring interface {
	// Status tells the keyring's terms.
	Status() latchkey.KeyringStatus
	// Rotate adds a term; within runs in its transaction (the audit record).
	Rotate(ctx context.Context, within func(tx latchkey.KeyringTx, term int64) error) (int64, error)
	// RewrapFromFile wraps every term with the master key in the file at
	// path; within runs in its transaction.
	RewrapFromFile(ctx context.Context, path string, within func(tx latchkey.KeyringTx, terms int) error) (latchkey.RewrapResult, error)
}

// Guard is the brute-force guard as the server uses it: package guard's
// *Guard, which cmd/latchkey hands in (httpapi does not import it).
type Guard interface {
	// Blocked reports whether ip's network is held back, and for how long.
	Blocked(ip netip.Addr, now time.Time) (retryAfter time.Duration, blocked bool)
	// Fail counts a bad key from ip; true when that starts a hold.
	Fail(ip netip.Addr, now time.Time) (blockedNow bool)
	// Network is the client network ip is counted in.
	Network(ip netip.Addr) netip.Prefix
}

// Server is the HTTP handler of a Latchkey node.
type Server struct {
	svc      *keys.Service
	secrets  *secrets.Service
	audit    *audit.Service
	webhooks *webhook.Service
	identity *identity.Service
	log      *slog.Logger
	trusted  []netip.Prefix
	maxBody  int64
	now      func() time.Time
	timeout  time.Duration
	guard    Guard
	onBlock  func(netip.Prefix, time.Time)
	mux      *http.ServeMux
	ids      requestIDs
	obs      Observer
	metrics  http.Handler
	keyring  Keyring

	seedKeepAlive bool
	leaks         LeakConfig
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	cfg.Guard, cfg.Keyring = latchkey.OrNil(cfg.Guard), latchkey.OrNil(cfg.Keyring)
	s := &Server{
		svc:      cfg.Keys,
		secrets:  cfg.Secrets,
		audit:    cfg.Audit,
		webhooks: cfg.Webhooks,
		identity: cfg.Identity,
		log:      cfg.Logger,
		trusted:  cfg.TrustedProxies,
		maxBody:  cfg.MaxBody,
		now:      cfg.Now,
		timeout:  cfg.RequestTimeout,
		guard:    cfg.Guard,
		onBlock:  cfg.OnBlock,
		mux:      http.NewServeMux(),
		obs:      cfg.Observer,
		metrics:  cfg.Metrics,
		keyring:  cfg.Keyring,

		seedKeepAlive: cfg.SeedKeepAlive,
		leaks:         cfg.Leaks,
	}
	s.ids.init()
	s.routes()
	return s
}

// ServeHTTP gives every request an id (echoed in X-Request-Id and on every
// log line about it). Forward-auth and POST /v1/keys/verify, the hot
// paths, skip the mux and the per-request log line (verify logs its
// failures itself); every other route is logged when it ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, hdr := s.requestID(r)
	w.Header()["X-Request-Id"] = hdr
	if r.URL.Path == "/v1/auth" || strings.HasPrefix(r.URL.Path, "/v1/auth/") {
		if r.ContentLength != 0 {
			// The body is ignored, but net/http drains it to reuse the
			// connection; bound how long that may take.
			s.setDeadlines(w)
		}
		s.forwardAuth(w, r, id)
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == verifyPath && r.URL.RawPath == "" {
		s.serveVerify(w, r, id, true)
		return
	}
	if p := r.URL.Path; len(p) > 1 && p[1] == '/' {
		if q := seedPath(p); q != p {
			r.URL.Path, r.URL.RawPath = q, ""
		}
	}
	if provider, ok := seedProvider(r); ok && s.secrets != nil {
		s.seedKeyFast(w, r, id, provider)
		return
	}
	s.setDeadlines(w)
	info := &requestInfo{}
	ctx := context.WithValue(r.Context(), requestIDKey, id)
	ctx = context.WithValue(ctx, requestInfoKey, info)
	r = r.WithContext(ctx)
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.ErrorContext(ctx, "handler panicked", "request_id", id, "panic", fmt.Sprint(p))
			if !sw.wrote {
				s.writeError(sw, r, fmt.Errorf("panic: %v", p))
			}
		}
		attrs := append(logAttrs(r, sw.status), slog.Duration("duration", time.Since(start)))
		if info.actor != "" {
			attrs = append(attrs, slog.String("actor_key_id", info.actor))
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
		if s.obs != nil {
			s.obs.Served(r.Method, r.Pattern, sw.status)
		}
	}()
	if !cleanPath(r.URL.Path) {
		// ServeMux would redirect to the clean path, repeating the path
		// (which may hold a key pasted into it) in Location and in its
		// HTML body. No route has such a path.
		s.noRoute(sw, r)
		return
	}
	s.mux.ServeHTTP(sw, r)
}

// cleanPath reports whether p is a path as routes are written: rooted,
// with no empty, "." or ".." segment (a trailing slash is fine).
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	return c == p || c+"/" == p
}

// serveMetrics answers GET /metrics with Config.Metrics; without it (no
// metrics, or metrics on their own listener) there is no such route.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if s.metrics == nil {
		s.noRoute(w, r)
		return
	}
	s.metrics.ServeHTTP(w, r)
}

// requestID takes a caller's X-Request-Id when it is short and plain (so a
// proxy's id links the two logs), else makes one. It returns the id and the
// header value holding it. Every log line about the request carries the
// id, so one that is a key — the credential the request presents, or any
// string shaped like a Latchkey key — is replaced too.
func (s *Server) requestID(r *http.Request) (string, []string) {
	if v := r.Header["X-Request-Id"]; len(v) == 1 && plainID(v[0]) && !latchkey.OwnShape(v[0]) && v[0] != credential(r) {
		return v[0], v
	}
	return s.ids.next()
}

// requestIDs hands out ids "<8 hex random>-<10 base36 counter>" from chunks
// built 64 at a time: one string and one header-value array per chunk, so a
// forward-auth request gets its id without allocating.
type requestIDs struct {
	prefix string
	seq    atomic.Uint64
	cur    atomic.Pointer[idChunk]
}

const (
	idChunkSize = 64
	idCounterW  = 10 // base36 digits: 3.6e15 ids before the width grows
)

type idChunk struct {
	taken atomic.Int64
	text  string   // idChunkSize ids of equal width, back to back
	vals  []string // vals[i] is id i; header values are vals[i:i+1:i+1]
	width int
}

func (g *requestIDs) init() {
	var b [4]byte
	_, _ = rand.Read(b[:])
	g.prefix = hex.EncodeToString(b[:]) + "-"
	g.cur.Store(g.newChunk())
}

func (g *requestIDs) newChunk() *idChunk {
	base := g.seq.Add(idChunkSize) - idChunkSize
	width := len(g.prefix) + idCounterW
	buf := make([]byte, 0, width*idChunkSize)
	var num [16]byte
	for i := range uint64(idChunkSize) {
		buf = append(buf, g.prefix...)
		n := strconv.AppendUint(num[:0], base+i, 36)
		for range idCounterW - len(n) {
			buf = append(buf, '0')
		}
		buf = append(buf, n...)
	}
	c := &idChunk{text: string(buf), vals: make([]string, idChunkSize), width: width}
	for i := range c.vals {
		c.vals[i] = c.text[i*width : (i+1)*width]
	}
	return c
}

func (g *requestIDs) next() (string, []string) {
	for {
		c := g.cur.Load()
		if i := c.taken.Add(1) - 1; i < idChunkSize {
			// Capacity 1: anyone appending to the header gets a copy.
			return c.vals[i], c.vals[i : i+1 : i+1]
		}
		g.cur.CompareAndSwap(c, g.newChunk())
	}
}

// setDeadlines bounds the time left to read this request's body and to
// write its answer. net/http resets both before the connection's next
// request.
func (s *Server) setDeadlines(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	dl := time.Now().Add(s.timeout)
	_ = rc.SetReadDeadline(dl) // unsupported only by test recorders
	_ = rc.SetWriteDeadline(dl)
}

func plainID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

type requestInfo struct{ actor string }

const requestInfoKey ctxKey = 2

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// credential returns the key a request presents, from Authorization: Bearer
// or X-API-Key.
func credential(r *http.Request) string {
	if v := r.Header["Authorization"]; len(v) > 0 {
		a := v[0]
		if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			return strings.TrimSpace(a[7:])
		}
	}
	if v := r.Header["X-Api-Key"]; len(v) > 0 {
		return strings.TrimSpace(v[0])
	}
	return ""
}

// clientIP returns the address a request comes from. Forwarding headers are
// believed only from trusted proxies: X-Forwarded-For is read from the right,
// skipping trusted hops, so a client cannot choose its address by sending
// the header itself.
func (s *Server) clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	peer := ap.Addr().Unmap()
	if !s.isTrusted(peer) {
		return peer
	}
	if xff := r.Header["X-Forwarded-For"]; len(xff) > 0 {
		found := peer
		for i := len(xff) - 1; i >= 0; i-- {
			rest := xff[i]
			for rest != "" {
				var part string
				if j := strings.LastIndexByte(rest, ','); j >= 0 {
					part, rest = rest[j+1:], rest[:j]
				} else {
					part, rest = rest, ""
				}
				a, err := netip.ParseAddr(strings.TrimSpace(part))
				if err != nil {
					return found
				}
				found = a.Unmap()
				if !s.isTrusted(found) {
					return found
				}
			}
		}
		return found
	}
	if v := r.Header["X-Real-Ip"]; len(v) > 0 {
		if a, err := netip.ParseAddr(strings.TrimSpace(v[0])); err == nil {
			return a.Unmap()
		}
	}
	return peer
}

func (s *Server) isTrusted(a netip.Addr) bool {
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// guardSubject is the address the guard counts a verification against:
// the client a trusted caller names in the verify body (a service
// verifying on its users' behalf), otherwise the caller itself. A caller
// is trusted when the address it resolves to (clientIP: the connection,
// or the client trusted proxies name) is itself in --trusted-proxies, so
// naming the client in the body is believed exactly as far as naming it
// in X-Forwarded-For would be. An untrusted caller's body ip still
// feeds the key's IP allowlist, as documented, but not the guard: an
// attacker could otherwise name a new address with each guess.
func (s *Server) guardSubject(caller, named netip.Addr) netip.Addr {
	if named.IsValid() && caller.IsValid() && s.isTrusted(caller) {
		return named
	}
	return caller
}

// ownerKey reports whether key is valid from ip and holds one of
// Latchkey's own admin scopes: such a request is never refused by the
// guard, so that failures anyone on the owners' network can cause never
// lock the owners out. It is asked only once the network is blocked, so
// the unblocked path does not pay for it; it may read the store for a key
// the cache does not hold (unknown keys are then cached as such).
func (s *Server) ownerKey(ctx context.Context, key string, ip netip.Addr) bool {
	if key == "" {
		return false
	}
	var a latchkey.Actor
	if s.svc.Identify(ctx, key, ip, &a) != nil {
		return false
	}
	for _, sc := range latchkey.AdminScopes {
		if latchkey.ScopesAllow(a.Scopes, sc) {
			return true
		}
	}
	return false
}

// blocked reports whether the guard holds ip's network back, and for how
// long.
func (s *Server) blocked(ip netip.Addr) (time.Duration, bool) {
	if s.guard == nil {
		return 0, false
	}
	return s.guard.Blocked(ip, s.now())
}

// failed counts a bad key presented from ip.
func (s *Server) failed(ip netip.Addr) {
	if s.guard != nil {
		now := s.now()
		if s.guard.Fail(ip, now) && s.onBlock != nil {
			s.onBlock(s.guard.Network(ip), now)
		}
	}
}

// errGuarded is the answer to a network the guard holds back.
func errGuarded(w http.ResponseWriter, retry time.Duration) error {
	w.Header().Set("Retry-After", strconv.FormatInt(retrySeconds(retry), 10))
	return latchkey.Errorf(latchkey.ERateLimited, "too many failed key checks from this network; retry later")
}

// ParseTrustedProxies reads a comma-separated list of addresses and CIDR
// ranges, as the --trusted-proxies flag takes it.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	ps, err := latchkey.ParseIPAllow(strings.Split(s, ","))
	if err != nil {
		return nil, latchkey.Errorf(latchkey.EInvalid, "trusted proxies: %s", latchkey.ErrorMessage(err))
	}
	return ps, nil
}
